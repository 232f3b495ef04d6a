"""Chapter-8 diagnostics: curvature, the step test, gradient noise and the learning rate.

Every function takes a model, a cost ``cost(model, x, y) -> scalar`` (a mean over the
examples plus a data-free penalty; :func:`default_cost` builds the trainer's) and the data
tensors, and measures on the deterministic network (:func:`eval_mode`).

==========================  =============================================================
:class:`HessianOperator`    ``v ↦ Hv`` by double backward, chunked over the examples
:func:`top_eigenvalues`     top-k eigenvalues (Lanczos, ``scipy.sparse.linalg.eigsh``)
:func:`min_eigenvalue`      the most negative eigenvalue (Lanczos, ``which="SA"``)
:func:`power_iteration`     fallback; finds the eigenvalue of largest ``|λ − shift|``
:func:`hutchinson_trace`    ``tr H`` with a standard error
:func:`stability_bound`     ``2/λmax``, ``2(1+α)/λmax``, ... for a :class:`StepRule`
:func:`step_test`           §8.2.1: ``½ε²gᵀHg`` versus ``εgᵀg``
:func:`gradient_noise_scale`  ``B_simple = tr(Σ)/|G|²`` (McCandlish et al. 2018)
:func:`lr_find`             learning-rate range test; :func:`plot_lr_find`
:func:`edge_of_stability`   full-batch GD with λmax recorded (Cohen et al. 2021)
:func:`diagnose`            all of the above into one :class:`Diagnostics` record
:class:`DiagnosticsCallback`  the same every N validations of a run (``--diagnostics N``)
==========================  =============================================================
"""

from descentlab.diagnostics.callback import DiagnosticsCallback
from descentlab.diagnostics.cost import CostFn, default_cost, eval_mode
from descentlab.diagnostics.eos import EdgeOfStability, edge_of_stability
from descentlab.diagnostics.figures import plot_diagnostics
from descentlab.diagnostics.hessian import (
    EigenResult,
    HessianOperator,
    TraceEstimate,
    hutchinson_trace,
    lambda_max_power,
    lambda_min_power,
    min_eigenvalue,
    power_iteration,
    top_eigenvalues,
)
from descentlab.diagnostics.lr_find import LRFindResult, lr_find, plot_lr_find
from descentlab.diagnostics.noise import NoiseScale, NoiseScaleEstimator, gradient_noise_scale
from descentlab.diagnostics.report import DiagnoseOptions, Diagnostics, diagnose
from descentlab.diagnostics.stability import (
    StabilityBound,
    StepRule,
    StepTest,
    stability_bound,
    step_test,
)
from descentlab.train import register_option_callback

__all__ = [
    "CostFn",
    "DiagnoseOptions",
    "Diagnostics",
    "DiagnosticsCallback",
    "EdgeOfStability",
    "EigenResult",
    "HessianOperator",
    "LRFindResult",
    "NoiseScale",
    "NoiseScaleEstimator",
    "StabilityBound",
    "StepRule",
    "StepTest",
    "TraceEstimate",
    "default_cost",
    "diagnose",
    "edge_of_stability",
    "eval_mode",
    "gradient_noise_scale",
    "hutchinson_trace",
    "lambda_max_power",
    "lambda_min_power",
    "lr_find",
    "min_eigenvalue",
    "plot_diagnostics",
    "plot_lr_find",
    "power_iteration",
    "stability_bound",
    "step_test",
    "top_eigenvalues",
]

# ``train --diagnostics N`` / ``fit(diagnostics=N)`` are served by this package's callback.
register_option_callback("diagnostics", DiagnosticsCallback.from_config)
