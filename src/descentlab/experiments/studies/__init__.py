"""Built-in studies: preset sweeps that answer one question each, with a tailored report.

==================  ==========================================================================
``optimizers``      the eight chapter-8 optimizers on MNIST (MLP and logistic regression),
                    learning rate tuned per optimizer on the validation set, 3+ seeds
``batch-size``      on-line (B = 1) vs minibatch vs full-batch training (Wilson & Martinez
                    2003) on six real datasets, lr tuned per B; compared at equal epochs,
                    examples seen and wall-clock seconds
``losses``          cross-entropy vs mean squared error on the same model (and the seeds'
                    worked example: same classification error, different losses)
``schedules``       constant vs linear decay vs exponential vs 1/t learning rates for SGD
``regularization``  none vs L1 vs L2 vs dropout vs early stopping: errors and train–valid gap
``surrogate``       validation NLL vs zero-one error vs macro-F1 through training: where the
                    surrogate keeps improving and the true metric does not
``edge-of-stability``  full-batch GD at several ε: λmax rises to 2/ε and hovers there
                    (Cohen et al. 2021; needs :mod:`descentlab.diagnostics` imported)
==================  ==========================================================================

Each study has a *fast* setting (minutes on two cores: subsets, small models, few
epochs, a short lr grid around each method's known-good value) and a *full* setting
(whole datasets, longer training, wider grids, more seeds — hours).  Every
conclusion a report states is computed from the runs, never written in advance.

One file per study (``optimizers.py``, ``batch_size.py``, ...), each defining
``build_plan``, ``report_sections`` and its :class:`Study` record ``STUDY``; this module
is the registry.  Running a study: :func:`descentlab.experiments.workflow.run_study`.
"""

from __future__ import annotations

from descentlab.errors import ConfigError, did_you_mean
from descentlab.experiments.studies import (
    batch_size,
    edge_of_stability,
    losses,
    optimizers,
    regularization,
    schedules,
    surrogate,
)
from descentlab.experiments.studies.batch_size import batch_size_analysis
from descentlab.experiments.studies.common import (
    KNOWN_GOOD_LR,
    Study,
    StudySettings,
    epoch_ranges,
    lr_grid,
)
from descentlab.experiments.studies.surrogate import surrogate_disagreements

__all__ = [
    "KNOWN_GOOD_LR",
    "STUDIES",
    "Study",
    "StudySettings",
    "batch_size_analysis",
    "epoch_ranges",
    "get_study",
    "lr_grid",
    "surrogate_disagreements",
]

STUDIES: dict[str, Study] = {
    module.STUDY.name: module.STUDY
    for module in (
        optimizers,
        batch_size,
        losses,
        schedules,
        regularization,
        surrogate,
        edge_of_stability,
    )
}


def get_study(name: str) -> Study:
    """The built-in study called ``name`` (a :class:`ConfigError` naming the others if none)."""
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}", hint=did_you_mean(name, list(STUDIES)))
    return STUDIES[name]
