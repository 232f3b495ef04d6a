"""Many runs at once: K configurations of one dense classifier trained as one batched model.

A sweep over learning rates, momenta, penalties or seeds trains K small models of the same
architecture on the same data.  Each of them alone leaves the machine mostly idle and pays
the per-step dispatch overhead K times.  Here the K members are stacked along a leading
dimension and trained together::

    W⁽ˡ⁾ ∈ ℝ^{K×out×in},  b⁽ˡ⁾ ∈ ℝ^{K×out}         member k's layer l is W⁽ˡ⁾[k], b⁽ˡ⁾[k]
    x_k  = train.x[order_k[step·B : (step+1)·B]]   each member's own minibatch order
    a⁽ˡ⁾ = baddbmm(b⁽ˡ⁾, h⁽ˡ⁻¹⁾, W⁽ˡ⁾ᵀ)              (K, B, out): one batched product
    cost_k = NLL(z_k, y_k) + λ1_k Σ|W_k| + λ2_k Σ W_k²     (the cost of objective.py)
    ∇ Σ_k cost_k                                   member k's gradient is its own
    v_k ← α_k v_k − ε_k g_k;  θ_k ← (1 − ε_k λwd_k) θ_k + v_k     (Algorithms 8.1/8.2)

Every member *is* a :class:`~descentlab.train.Trainer`, built exactly as a separate run
builds it (same seeding, so the same initial parameters; its own shuffling generator, so
its own minibatch order; its own early-stopping rule, progress, callbacks and run
directory).  The group only replaces the training step: validation is the trainer's own
:func:`~descentlab.train.loop.validate` on the member's model (its slice of the stacked
parameters copied in), and the end of a run the trainer's own
:func:`~descentlab.train.loop.finish`, so ``metrics.jsonl``, ``summary.json``,
``model.safetensors`` and ``test_predictions.npy`` are those of a separate run.  A member
that stops is finished at once and its rows are removed from the stacked tensors
(``index_select``), so it costs no more compute.

What fuses (:func:`fuse_problem` says why a configuration does not): the ``logreg`` and
``mlp`` models without dropout or batch norm, the NLL, the optimizers ``sgd`` and
``momentum`` (book SGD, Algorithms 8.1/8.2, any ``lr``, ``momentum``, ``weight_decay``),
a constant learning rate, no averaging, clipping or gradient logging, ``on_nan = "stop"``.
Members of one group share the model, the data and the batch size (:func:`group_key`).
Fused groups write no checkpoints.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from descentlab.data import Dataset
from descentlab.errors import ConfigError, DivergenceError
from descentlab.fsio import WriterLock
from descentlab.models import ACTIVATIONS, MLP, LogisticRegression
from descentlab.optim.sgd import SGD
from descentlab.train.build import load_data
from descentlab.train.callbacks import Callback, MetricsFiles, RunDirectory
from descentlab.train.config import TrainConfig
from descentlab.train.loop import finish, validate
from descentlab.train.records import FitResult
from descentlab.train.run_dir import check_run_dir, prepare_run_dir
from descentlab.train.trainer import Trainer

__all__ = ["FusedGroup", "fit_fused", "fuse_problem", "group_key"]

# Options a member may set freely; every other option must be equal across a group.
_PER_MEMBER = frozenset(
    {
        "lr", "momentum", "weight_decay", "l1", "l2", "seed", "max_epochs", "patience",
        "patience_increase", "improvement_threshold", "min_delta", "name", "out",
        "target_error", "quiet", "threads", "checkpoint_every", "restore_best",
        "optimizer",  # only sgd and momentum fuse: one update (momentum 0 is plain SGD)
    }
)  # fmt: skip
_DATA_OPTIONS = ("dataset", "data_dir", "offline", "standardize", "label_column", "subset")


def fuse_problem(cfg: TrainConfig) -> str:
    """Why ``cfg`` cannot be trained in a fused group ("" when it can)."""
    checks = (
        (cfg.model in ("logreg", "mlp"), f"model {cfg.model} (only logreg and mlp fuse)"),
        (cfg.optimizer in ("sgd", "momentum"), f"optimizer {cfg.optimizer}"),
        (not cfg.nesterov, "Nesterov momentum"),
        (cfg.loss == "nll", f"loss {cfg.loss}"),
        (not cfg.dropout, "dropout"),
        (not cfg.batch_norm, "batch norm"),
        (cfg.schedule in (None, "", "constant"), f"schedule {cfg.schedule}"),
        (cfg.polyak_start is None and cfg.ema is None, "parameter averaging"),
        (cfg.clip_norm is None and cfg.clip_value is None, "gradient clipping"),
        (not cfg.log_grad_norm, "gradient-norm logging"),
        (cfg.on_nan == "stop", f"on_nan {cfg.on_nan}"),
        (not cfg.tensorboard, "TensorBoard logging"),
    )
    return next((why for ok, why in checks if not ok), "")


def group_key(cfg: TrainConfig) -> tuple[Any, ...]:
    """Configurations with equal keys can share one fused group."""
    return tuple(
        (name, repr(value)) for name, value in sorted(cfg.to_dict().items())
        if name not in _PER_MEMBER
    )  # fmt: skip


@dataclass
class _Hyper:
    """Per-member step sizes and penalties, one entry per member still training."""

    lr: Tensor
    momentum: Tensor
    weight_decay: Tensor
    l1: Tensor
    l2: Tensor

    def select(self, rows: Tensor) -> _Hyper:
        return _Hyper(*(t.index_select(0, rows) for t in vars(self).values()))


def _layers(model: torch.nn.Module) -> list[torch.nn.Linear]:
    if isinstance(model, LogisticRegression):
        return [model.linear]
    assert isinstance(model, MLP)
    hidden: list[Any] = list(model.hidden_layers)
    return [*hidden, model.output]


def _sgd_hyper(trainer: Trainer) -> tuple[float, float, float]:
    opt = trainer.optimizer
    if type(opt) is not SGD or len(opt.param_groups) != 1:
        raise ConfigError("a fused member needs descentlab's SGD with one parameter group")
    group = opt.param_groups[0]
    return float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])


class FusedGroup:
    """The stacked parameters of the members still training, and their batched step."""

    def __init__(self, trainers: Sequence[Trainer]) -> None:
        first = trainers[0].model
        self.activation = (
            ACTIVATIONS[first.activation] if isinstance(first, MLP) else None  # type: ignore[index]
        )
        per_member = [[t for lin in _layers(tr.model) for t in (lin.weight, lin.bias)]
                      for tr in trainers]  # fmt: skip
        with torch.no_grad():
            self.params = [
                torch.stack([m[i].detach() for m in per_member]).requires_grad_(True)
                for i in range(len(per_member[0]))
            ]
        hyper = [_sgd_hyper(tr) for tr in trainers]
        device = self.params[0].device

        def column(values: Sequence[float]) -> Tensor:
            return torch.tensor(values, dtype=self.params[0].dtype, device=device)

        self.hyper = _Hyper(
            lr=column([h[0] for h in hyper]),
            momentum=column([h[1] for h in hyper]),
            weight_decay=column([h[2] for h in hyper]),
            l1=column([tr.objective.l1 for tr in trainers]),
            l2=column([tr.objective.l2 for tr in trainers]),
        )
        self.use_momentum = any(h[1] for h in hyper)
        self.use_decay = any(h[2] for h in hyper)
        self.velocity = [torch.zeros_like(p) for p in self.params] if self.use_momentum else []

    def cost(self, x: Tensor, y: Tensor) -> Tensor:
        """Each member's cost on its own minibatch: ``x`` (K, B, ...), ``y`` (K, B) → (K,)."""
        h = x.flatten(2)
        n_layers = len(self.params) // 2
        for i in range(n_layers):
            w, b = self.params[2 * i], self.params[2 * i + 1]
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if i < n_layers - 1:
                assert self.activation is not None
                h = self.activation(h)
        k, batch = y.shape
        nll = F.cross_entropy(h.reshape(k * batch, -1), y.reshape(-1), reduction="none")
        cost = nll.view(k, batch).mean(1)
        weights = self.params[0::2]
        if bool(self.hyper.l2.any()):
            cost = cost + self.hyper.l2 * sum(w.square().sum((1, 2)) for w in weights)
        if bool(self.hyper.l1.any()):
            cost = cost + self.hyper.l1 * sum(w.abs().sum((1, 2)) for w in weights)
        return cost

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One SGD step for every member; returns the members' costs (detached)."""
        cost = self.cost(x, y)
        grads = torch.autograd.grad(cost.sum(), self.params)
        hp = self.hyper
        with torch.no_grad():
            for i, (p, g) in enumerate(zip(self.params, grads)):
                shape = (-1,) + (1,) * (p.dim() - 1)
                lr = hp.lr.view(shape)
                if self.use_decay:
                    p.mul_(1.0 - lr * hp.weight_decay.view(shape))  # θ ← θ − ελθ
                if self.use_momentum:
                    # v ← αv − εg (addcmul: no temporary ε·g of the parameter's size)
                    v = self.velocity[i]
                    v.mul_(hp.momentum.view(shape)).addcmul_(lr, g, value=-1.0)
                    p.add_(v)  # θ ← θ + v
                else:
                    p.addcmul_(lr, g, value=-1.0)  # θ ← θ − εg
        return cost.detach()

    def keep(self, rows: Tensor) -> None:
        """Keep only the members at ``rows`` (the others stopped)."""
        with torch.no_grad():
            self.params = [p.index_select(0, rows).requires_grad_(True) for p in self.params]
            self.velocity = [v.index_select(0, rows) for v in self.velocity]
        self.hyper = self.hyper.select(rows)

    @torch.no_grad()
    def write_member(self, row: int, trainer: Trainer) -> None:
        """Copy the member at ``row`` into its trainer's model (for validation, the end)."""
        targets = [t for lin in _layers(trainer.model) for t in (lin.weight, lin.bias)]
        for target, stacked in zip(targets, self.params):
            target.copy_(stacked[row])


def _member_callbacks(run_dir: Path | None) -> list[Callback]:
    return [MetricsFiles(run_dir), RunDirectory(run_dir)] if run_dir is not None else []


def _member_data(configs: Sequence[TrainConfig]) -> list[Dataset]:
    """Each member's dataset, loaded once per distinct data option (equal ones shared)."""
    loaded: dict[tuple[Any, ...], Dataset] = {}
    out = []
    for cfg in configs:
        key = (*(getattr(cfg, n) for n in _DATA_OPTIONS), cfg.seed, cfg.pixel_scale)
        if key not in loaded:
            data = load_data(cfg)
            same = next((d for d in loaded.values() if _same_data(d, data)), None)
            loaded[key] = same if same is not None else data
        out.append(loaded[key])
    sizes = {d.train.y.shape[0] for d in out}
    if len(sizes) != 1:
        raise ConfigError(
            f"the members' training sets differ in size ({sorted(sizes)})",
            hint="fuse only members whose data options give equal-sized splits",
        )
    return out


def _same_data(a: Dataset, b: Dataset) -> bool:
    pairs = ((a.train, b.train), (a.valid, b.valid), (a.test, b.test))
    return all(
        u.x.shape == v.x.shape and torch.equal(u.x, v.x) and torch.equal(u.y, v.y) for u, v in pairs
    )


def _check_group(configs: Sequence[TrainConfig]) -> None:
    if not configs:
        raise ConfigError("a fused group needs at least one configuration")
    for cfg in configs:
        why = fuse_problem(cfg)
        if why:
            raise ConfigError(f"cannot fuse a run with {why}", hint="train it on its own")
    if len({group_key(cfg) for cfg in configs}) != 1:
        raise ConfigError(
            "the configurations differ in more than lr, momentum, penalties, seed and stopping",
            hint="group them with descentlab.train.fused.group_key",
        )


def fit_fused(
    configs: Sequence[TrainConfig],
    *,
    data: Dataset | None = None,
    out: Sequence[str | Path | None] | None = None,
) -> list[FitResult]:
    """Train ``configs`` as one fused group; one :class:`FitResult` per member, in order.

    ``out`` gives each member's run directory (default: each config's ``out``; None
    writes nothing).  ``data`` is shared by all members; without it each member gets the
    data its config names (loaded once per distinct data option: on datasets split by
    seed, members with other seeds train on other splits, as their separate runs do).
    """
    _check_group(configs)
    dirs = list(out) if out is not None else [cfg.out for cfg in configs]
    if len(dirs) != len(configs):
        raise ConfigError(f"{len(configs)} configurations but {len(dirs)} run directories")
    datasets = [data] * len(configs) if data is not None else _member_data(configs)
    trainers = []
    # One writer per run directory, as for a separate run (descentlab.fsio.WriterLock).
    with contextlib.ExitStack() as locks:
        for cfg, folder, shared in zip(configs, dirs, datasets):
            run_dir = check_run_dir(folder) if folder else None
            callbacks = _member_callbacks(run_dir)
            trainer = Trainer(cfg, data=shared, callbacks=callbacks, run_dir=run_dir)
            if run_dir is not None:
                prepare_run_dir(run_dir, resume=False)
                locks.enter_context(WriterLock(run_dir, "run"))
            trainers.append(trainer)
        return _FusedLoop(trainers).run()


class _FusedLoop:
    """The loop of :mod:`descentlab.train.loop`, stepping every active member at once."""

    def __init__(self, trainers: list[Trainer]) -> None:
        self.trainers = trainers
        self.group = FusedGroup(trainers)
        self.active = list(range(len(trainers)))  # member index of each stacked row
        self.results: list[FitResult | None] = [None] * len(trainers)
        first = trainers[0]
        # Distinct training sets, stacked (M, N, ...) when members train on different ones.
        sources: list[Any] = []
        for t in trainers:
            if not any(t.data.train is s for s in sources):
                sources.append(t.data.train)
        self.train = first.data.train
        self.train_x = torch.stack([s.x for s in sources]) if len(sources) > 1 else None
        self.train_y = torch.stack([s.y for s in sources]) if len(sources) > 1 else None
        self.source = [next(i for i, s in enumerate(sources) if s is t.data.train)
                       for t in trainers]  # fmt: skip
        self.batch_size = first.config.batch_size
        self.n_batches = first.batches_per_epoch
        device = first.device
        self.loss_sums = torch.zeros(len(trainers), dtype=torch.float64, device=device)
        self.loss_counts = [0] * len(trainers)

    def run(self) -> list[FitResult]:
        for t in self.trainers:
            t.progress.clock.start()
            t.emit("on_train_start")
        epoch = 0
        while self.active:
            epoch += 1
            self._epoch(epoch)
        results = [r for r in self.results if r is not None]
        assert len(results) == len(self.trainers)
        return results

    def _epoch(self, epoch: int) -> None:
        orders = []
        for m in self.active:
            t = self.trainers[m]
            t.epoch_rng_state = t.generator.get_state()
            t.emit("on_epoch_start", epoch)
            order = t.batches.epoch_order()
            orders.append(order if order is not None else torch.arange(self.train.y.shape[0]))
        order_rows = torch.stack(orders).to(self.train.x.device)
        b, last = self.batch_size, self.n_batches - 1
        for k in range(self.n_batches):
            idx = order_rows[:, k * b : (k + 1) * b]
            cost = self.group.step(*self._minibatches(idx))
            self._account(cost)
            stopped = []
            for row, m in enumerate(self.active):
                t = self.trainers[m]
                counters = t.progress.counters
                counters.iteration += 1
                counters.batch_in_epoch += 1
                if t.stopper.validation_due(counters.iteration, counters.batch_in_epoch > last):
                    self._validate(row, m, epoch)
                if counters.iteration >= t.stopper.stop_iteration:
                    t.progress.stopped_because = "early_stopping"
                    stopped.append(row)
            if stopped:
                self._stop(stopped, epoch)
                keep = [r for r in range(len(order_rows)) if r not in stopped]
                order_rows = order_rows[keep]
            if not self.active:
                return
        self._end_epoch(epoch)

    def _minibatches(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Row r's minibatch from its member's training set: (K, B, ...) and (K, B)."""
        if self.train_x is None or self.train_y is None:
            return self.train.x[idx], self.train.y[idx]
        src = torch.tensor([self.source[m] for m in self.active], device=idx.device)
        return self.train_x[src[:, None], idx], self.train_y[src[:, None], idx]

    def _account(self, cost: Tensor) -> None:
        rows = torch.tensor(self.active, device=cost.device)
        self.loss_sums.index_add_(0, rows, cost.double())
        for m in self.active:
            self.loss_counts[m] += 1

    def _validate(self, row: int, member: int, epoch: int) -> None:
        t = self.trainers[member]
        self.group.write_member(row, t)
        interval = t.progress.interval
        interval.loss_sum.fill_(float(self.loss_sums[member]))
        interval.loss_count = self.loss_counts[member]
        self.loss_sums[member] = 0.0
        self.loss_counts[member] = 0
        try:
            validate(t, epoch)
        except DivergenceError as exc:
            raise DivergenceError(
                f"fused member {member} ({t.run_dir or 'no run dir'}): {exc.args[0]}",
                hint=exc.hint,
            ) from None

    def _end_epoch(self, epoch: int) -> None:
        stopped = []
        for row, m in enumerate(self.active):
            t = self.trainers[m]
            t.progress.counters.epoch, t.progress.counters.batch_in_epoch = epoch, 0
            if t.stopper.should_stop_after_epoch():
                t.progress.stopped_because = "early_stopping"
            elif epoch >= t.config.max_epochs:
                t.progress.stopped_because = "max_epochs"
            if t.progress.stopped_because is not None:
                stopped.append(row)
            else:
                t.emit("on_epoch_end", epoch)
        if stopped:
            self._stop(stopped, epoch)

    def _stop(self, rows: list[int], epoch: int) -> None:
        """Finish the members at ``rows`` and drop them from the group."""
        for row in rows:
            m = self.active[row]
            t = self.trainers[m]
            self.group.write_member(row, t)
            counters = t.progress.counters
            counters.epoch, counters.batch_in_epoch = epoch, 0
            t.emit("on_epoch_end", epoch)
            t.progress.interval.loss_sum.fill_(float(self.loss_sums[m]))
            t.progress.interval.loss_count = self.loss_counts[m]
            result = finish(t)
            t.emit("on_train_end", result)
            self.results[m] = result
        keep = [r for r in range(len(self.active)) if r not in rows]
        self.active = [self.active[r] for r in keep]
        if keep:
            self.group.keep(torch.tensor(keep, device=self.group.params[0].device))
