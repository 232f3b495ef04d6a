"""Which configurations fuse, which share a group, and how many members fit in memory."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import psutil
import torch

from descentlab.optim import OPTIMIZER_NAMES
from descentlab.train.config import TrainConfig

__all__ = [
    "CPU_CACHE_SHARE",
    "MEMORY_FRACTION",
    "cache_bytes",
    "fuse_problem",
    "group_key",
    "max_group_size",
    "member_bytes",
    "parameter_count",
]

#: Options a member may set freely; every other option must be equal across a group.
PER_MEMBER = frozenset(
    {
        "lr", "momentum", "weight_decay", "l1", "l2", "seed", "max_epochs", "patience",
        "patience_increase", "improvement_threshold", "min_delta", "name", "out",
        "target_error", "quiet", "threads", "checkpoint_every", "restore_best", "schedule",
        "betas", "eps", "rho",
    }
)  # fmt: skip

#: On a CPU, a group's stacked parameters may take this many L2 caches' worth of bytes
#: (see :func:`max_group_size`).
CPU_CACHE_SHARE = 2.0

#: The share of the free memory a fused group may plan to use (the rest is headroom
#: for the allocator, the evaluation batches and whatever else runs on the machine).
MEMORY_FRACTION = 0.5


def fuse_problem(cfg: TrainConfig) -> str:
    """Why ``cfg`` cannot be trained in a fused group ("" when it can)."""
    checks = (
        (cfg.model in ("logreg", "mlp"), f"model {cfg.model} (only logreg and mlp fuse)"),
        (cfg.optimizer in OPTIMIZER_NAMES, f"optimizer {cfg.optimizer}"),
        (cfg.loss == "nll", f"loss {cfg.loss}"),
        (not cfg.dropout, "dropout"),
        (not cfg.batch_norm, "batch norm"),
        (cfg.polyak_start is None and cfg.ema is None, "parameter averaging"),
        (cfg.clip_norm is None and cfg.clip_value is None, "gradient clipping"),
        (not cfg.log_grad_norm, "gradient-norm logging"),
        (cfg.on_nan == "stop", f"on_nan {cfg.on_nan}"),
        (not cfg.tensorboard, "TensorBoard logging"),
        (not cfg.diagnostics, "diagnostics"),
        (cfg.nproc == 1, "data-parallel training"),
        (not cfg.stop_at_target, "stop at target"),
        (not cfg.extra, "extra options"),
    )
    return next((why for ok, why in checks if not ok), "")


def group_key(cfg: TrainConfig) -> tuple[Any, ...]:
    """Configurations with equal keys can share one fused group.

    Equal: everything but :data:`PER_MEMBER` and the optimizer.  Members with different
    optimizers share the forward and backward passes; each optimizer algorithm updates
    its own rows (:class:`~descentlab.train.fused.mixed.MixedUpdate`).
    """
    return tuple(
        (name, repr(value)) for name, value in sorted(cfg.to_dict().items())
        if name not in PER_MEMBER and name not in ("optimizer", "nesterov")
    )  # fmt: skip


def member_bytes(cfg: TrainConfig, n_inputs: int, n_classes: int) -> int:
    """Bytes one member adds to a fused step (float32).

    Parameters P, their gradient, the optimizer's state (up to 3 tensors of P: Adam with
    amsgrad), a look-ahead copy (Nesterov) and the autograd graph's activations: the
    minibatch copy B·n_in, and per layer its pre-activation, activation and gradients
    (≈ 4·B·width).
    """
    widths = _widths(cfg, n_inputs, n_classes)
    activations = cfg.batch_size * (n_inputs + 4 * sum(widths[1:]))
    return 4 * (6 * parameter_count(cfg, n_inputs, n_classes) + activations)


def _widths(cfg: TrainConfig, n_inputs: int, n_classes: int) -> list[int]:
    return [n_inputs, *(cfg.hidden if cfg.model == "mlp" else []), n_classes]


def parameter_count(cfg: TrainConfig, n_inputs: int, n_classes: int) -> int:
    """The parameters of one member (weights and biases of every layer)."""
    return sum((a + 1) * b for a, b in itertools.pairwise(_widths(cfg, n_inputs, n_classes)))


def available_bytes(device: torch.device) -> int:
    """Free memory where the group trains: the GPU's free memory, else the machine's."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return int(psutil.virtual_memory().available)


def cache_bytes() -> int:
    """The size of one core's level-2 cache (Linux's sysfs; 1 MiB where it does not say)."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if (index / "level").read_text().strip() != "2":
                continue
            size = (index / "size").read_text().strip().upper()  # e.g. "1024K"
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
        digits = size.rstrip("KMG")
        if digits.isdigit() and int(digits) > 0:
            return int(digits) * scale
    return 1 << 20


def max_group_size(
    cfg: TrainConfig,
    n_inputs: int,
    n_classes: int,
    *,
    device: torch.device | None = None,
    workers: int = 1,
    fraction: float = MEMORY_FRACTION,
) -> int:
    """How many members of ``cfg``'s shape one group may hold.

    Memory: ``K = ⌊fraction · free / (workers · member_bytes)⌋`` (at least 1): ``workers``
    groups train at once, each may use its share of ``fraction`` of the free memory
    (:func:`available_bytes`).  The data set is loaded once per group and not counted.

    On a CPU also ``K ≤ ⌊CPU_CACHE_SHARE · L2 / parameter bytes⌋`` (:func:`cache_bytes`):
    a separate run of a small model keeps its weights in its core's cache through a step,
    where a group streams all its members' weights through memory; measured on this
    project's machine (1 MiB L2, one thread, one MNIST epoch of 8 configurations): a
    784-100-10 MLP (0.3 MB) ran fastest in groups of 4–8, 1.1× the separate runs, slower
    in groups of 16; a 784-500-10 MLP (1.6 MB) ran 10–25% *slower* in any group; softmax
    regression (31 kB) 2.4× in groups of 8.  A cap of 1 runs the members separately.
    """
    free = available_bytes(device or torch.device("cpu"))
    per = member_bytes(cfg, n_inputs, n_classes)
    k = max(1, math.floor(fraction * free / (max(1, workers) * per)))
    if (device or torch.device("cpu")).type == "cpu":
        weights = 4 * parameter_count(cfg, n_inputs, n_classes)
        k = min(k, max(1, math.floor(CPU_CACHE_SHARE * cache_bytes() / weights)))
    return k
