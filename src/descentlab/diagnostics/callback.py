"""``train --diagnostics N``: the chapter-8 diagnostics recorded during training.

Every N-th validation (the first one included) :class:`DiagnosticsCallback` measures, at
the current parameters and on a fixed sample of the training split (4,096 examples by
default, the same sample every time so the series is not sampling noise):

* λmax of the training cost's Hessian (top-1 Lanczos, relative tolerance 10⁻³),
* the stability bound of the run's optimizer at that λmax (``None`` for adaptive ones),
* ‖g‖ of the sample's full gradient and the §8.2.1 ratio ½ε²gᵀHg / εgᵀg,
* the gradient noise scale B_simple, smoothed across measurements by an EMA,

and writes them into that validation's row of ``metrics.jsonl`` (the optional fields of
:class:`~descentlab.train.records.ValidationRecord`).  At the end it draws
``diagnostics.png`` (:func:`~descentlab.diagnostics.figures.plot_diagnostics`).

The callback lives here rather than in ``train/callbacks/`` because it needs the
diagnostics, which sit above ``train``; importing :mod:`descentlab.diagnostics`
registers it as the provider of the ``diagnostics`` option
(:func:`descentlab.train.register_option_callback`).  Nothing it does touches the
training's random streams: every draw uses its own seeded generator.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from descentlab.diagnostics.cost import default_cost
from descentlab.diagnostics.figures import plot_diagnostics
from descentlab.diagnostics.hessian import HessianOperator, top_eigenvalues
from descentlab.diagnostics.noise import NoiseScaleEstimator, gradient_noise_scale
from descentlab.diagnostics.stability import StepRule, stability_bound, step_test
from descentlab.errors import ConfigError
from descentlab.train import Callback, TrainConfig

if TYPE_CHECKING:
    from descentlab.train import FitResult, Trainer, ValidationRecord

__all__ = ["DiagnosticsCallback"]


class DiagnosticsCallback(Callback):
    """Record diagnostics into every ``every``-th validation row (see the module docstring).

    ``run_dir``: where ``diagnostics.png`` goes (``None``: no figure).  ``noise_batches``
    and ``noise_repeats`` size the noise-scale measurement; ``noise_decay`` is the EMA
    of its two estimators across measurements.
    """

    fills_rows: ClassVar[bool] = True
    serves_option: ClassVar[str] = "diagnostics"

    def __init__(
        self,
        every: int,
        *,
        sample: int = 4096,
        run_dir: str | Path | None = None,
        tol: float = 1e-3,
        noise_batches: tuple[int, int] = (32, 256),
        noise_repeats: int = 4,
        noise_decay: float = 0.5,
        seed: int = 0,
    ) -> None:
        if every < 1 or sample < 1:
            raise ConfigError(f"every and sample must be >= 1, got {every} and {sample}")
        self.every, self.sample, self.tol, self.seed = every, sample, tol, seed
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.noise_repeats = noise_repeats
        self.noise = NoiseScaleEstimator(*noise_batches, decay=noise_decay)

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> DiagnosticsCallback:
        """The callback ``--diagnostics N`` asks for."""
        assert cfg.diagnostics is not None
        return cls(cfg.diagnostics, run_dir=cfg.out, seed=cfg.seed)

    def on_validation(self, trainer: Trainer, row: ValidationRecord) -> None:
        if (len(trainer.history) - 1) % self.every:
            return
        cfg = trainer.config
        cost = default_cost(cfg.loss, cfg.l1, cfg.l2)
        split = trainer.data.train
        op = HessianOperator(
            trainer.model, cost, split.x, split.y, sample=self.sample, seed=self.seed
        )
        top = top_eigenvalues(op, 1, tol=self.tol, seed=self.seed)
        rule = StepRule.from_optimizer(trainer.optimizer)
        if top.values:
            row.lambda_max = top.values[0]
            row.lr_stability_bound = stability_bound(top.values[0], rule).lr_max
        test = step_test(op, rule.lr)
        row.full_grad_norm, row.step_ratio = test.grad_norm, test.ratio
        noise = gradient_noise_scale(
            trainer.model,
            cost,
            op.x,
            op.y,
            repeats=self.noise_repeats,
            seed=self.seed + len(trainer.history),
            estimator=self.noise,
        )
        row.noise_scale = noise.noise_scale
        row.diag_examples = op.n_examples

    def on_train_end(self, trainer: Trainer, result: FitResult) -> None:
        if self.run_dir is not None and self.run_dir.is_dir():
            plot_diagnostics(result.history, self.run_dir / "diagnostics.png")
