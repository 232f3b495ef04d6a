"""Data-parallel training over ``torch.distributed``: the process group and its collectives.

A data-parallel run is W copies of the same run, one per process ("rank"), started by
``torchrun`` (or ``descentlab train --nproc W``, which calls the same launcher).  Each
rank builds the same model from the same seed and draws the same permutation of the
training set; every global minibatch of ``--batch-size`` B examples is split into W
shares (sizes differ by at most one), and each rank computes the cost and gradient of
its share.  One all-reduce per step then gives every rank the global-mean gradient::

    rank r:  g_r = ∇ (1/n_r) Σ_{i ∈ share r} cost_i        n_r = |share r|
    all-reduce  [n_r·g_r, n_r]  → [Σ_r n_r·g_r, B]          (one flat buffer)
    g = Σ_r n_r·g_r / B  =  ∇ (1/B) Σ_{i ∈ batch} cost_i     the 1-process gradient

so uneven shares give the exact global mean, and the optimizer (any of them) takes the
same step on every rank.  The weight penalty's gradient is the same on every rank, and
Σ_r n_r/B = 1 keeps it once.  This is done explicitly after the backward pass rather
than by wrapping the model in ``DistributedDataParallel``: the dense fast path
(:mod:`descentlab.train.fast`) computes gradients by hand, outside autograd, where
DDP's hooks never fire; an explicit reduction serves both paths alike (DDP's bucketing
would overlap communication with the backward pass, which matters on GPUs with large
models, not for the tutorials' networks).

Every collective is guarded: a rank that died or stopped answering makes the others
fail within ``--dist-timeout`` seconds with :class:`DistributedError`, one line,
instead of hanging.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from descentlab.errors import ConfigError, DescentlabError

__all__ = [
    "DistributedError",
    "GradientSync",
    "World",
    "all_reduce_sum",
    "broadcast_buffers",
    "env_is_main",
    "env_world_size",
    "launch_local",
    "setup",
    "shutdown",
]

T = TypeVar("T")


class DistributedError(DescentlabError):
    """Another rank failed, or the process group could not be set up."""


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` (``size == 1``: not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    started_here: bool = False  # this process initialized the group (so it shuts it down)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that prints and writes the run directory."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def share(self, n: int) -> tuple[int, int]:
        """``(start, stop)`` of this rank's part of ``n`` items (sizes differ by at most one)."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)


SINGLE = World()


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"environment variable {name}={text!r} is not an integer",
            hint="start data-parallel runs with torchrun or descentlab train --nproc N",
        ) from None


def env_world_size() -> int:
    """``WORLD_SIZE`` as set by torchrun (1 when not launched by it)."""
    return _env_int("WORLD_SIZE", 1)


def env_is_main() -> bool:
    """Whether this process is rank 0 of the torchrun job (or not part of one)."""
    return _env_int("RANK", 0) == 0 or env_world_size() <= 1


def current() -> World:
    """The world of the process group already set up here, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return World(rank=dist.get_rank(), size=dist.get_world_size(),
                     local_rank=_env_int("LOCAL_RANK", 0))  # fmt: skip
    return SINGLE


def choose_backend(backend: str, device: torch.device) -> str:
    """``auto``: nccl for CUDA tensors, gloo otherwise; nccl on a CPU device is refused."""
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError(
            "the nccl backend needs CUDA devices", hint="use --backend gloo for CPU training"
        )
    return backend


def setup(device: torch.device, *, backend: str = "auto", timeout: float = 300.0) -> World:
    """Join the process group that torchrun's environment describes (if any).

    Reads RANK, WORLD_SIZE, LOCAL_RANK (and MASTER_ADDR/PORT, through ``env://``).  With
    no WORLD_SIZE, or WORLD_SIZE 1, nothing is set up.  On CUDA each rank uses the device
    ``cuda:LOCAL_RANK``.  An already initialized group is reused as it is.
    """
    size = env_world_size()
    if size <= 1 or not dist.is_available():
        return SINGLE
    if dist.is_initialized():
        return current()
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    name = choose_backend(backend, device)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:  # two ranks on one GPU: nccl refuses, later and obscurely
            raise DistributedError(
                f"rank {rank} would use cuda:{local_rank}, but this machine has "
                f"{count} CUDA device{'s' if count != 1 else ''}",
                hint=f"start at most one process per GPU (--nproc or --nproc-per-node "
                f"{max(count, 1)}), or train on the CPU with --device cpu",
            )
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(
            backend=name,
            init_method="env://",
            rank=rank,
            world_size=size,
            timeout=datetime.timedelta(seconds=timeout),
        )
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(
            f"rank {rank} could not join the {name} process group of {size} ranks ({_short(exc)})",
            hint="check MASTER_ADDR/MASTER_PORT (or --rdzv-endpoint) and that every rank "
            "was started",
        ) from None
    return World(rank=rank, size=size, local_rank=local_rank, started_here=True)


def shutdown(world: World) -> None:
    """Leave the process group this process set up (no-op otherwise)."""
    if world.started_here and dist.is_initialized():
        dist.destroy_process_group()


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:160] + ("..." if len(text) > 160 else "")


@contextmanager
def guarded(what: str) -> Iterator[None]:
    """Turn a failed collective (a peer died, a timeout) into one :class:`DistributedError`."""
    try:
        yield
    except RuntimeError as exc:  # torch's DistBackendError/DistNetworkError subclass it
        raise DistributedError(
            f"rank {dist.get_rank()}: {what} failed: another rank of this job stopped "
            f"or did not answer within the timeout ({_short(exc)})",
            hint="see that rank's own error above; raise --dist-timeout if it was only slow",
        ) from None


def all_reduce_sum(tensor: torch.Tensor, what: str = "an all-reduce") -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place (and return it)."""
    with guarded(what):
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(what: str = "a barrier") -> None:
    with guarded(what):
        dist.barrier()


def broadcast_object(value: T, what: str = "a broadcast") -> T:
    """Rank 0's ``value`` on every rank (a small picklable object)."""
    box = [value]
    with guarded(what):
        dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (batch-norm running statistics) on every rank, so all evaluate
    the same model (on the CPU each rank keeps its own statistics while training)."""
    buffers = [b for b in model.buffers() if b.is_floating_point() or b.dtype == torch.int64]
    if not buffers:
        return
    with guarded("sharing the batch-norm statistics"):
        for b in buffers:
            dist.broadcast(b, src=0)


class GradientSync:
    """The per-step all-reduce of gradients, weighted by each rank's share (module docstring).

    :meth:`begin` is called with this rank's share size before the step; :meth:`__call__`
    runs after the backward pass (before clipping and the update); :meth:`mean_loss`
    turns this rank's cost into the cost of the whole global minibatch.
    """

    def __init__(self, params: Sequence[nn.Parameter]) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.n_local = 0
        self.n_total = 0.0

    def begin(self, n_local: int) -> None:
        self.n_local = n_local

    def __call__(self) -> None:
        params = [p for p in self.params if p.grad is not None]
        grads = [p.grad for p in params]
        n = float(self.n_local)
        if not grads:
            flat = torch.tensor([n], dtype=torch.float64)
        else:
            device = grads[0].device  # type: ignore[union-attr]
            parts = [g.reshape(-1).double() * n for g in grads]  # type: ignore[union-attr]
            parts.append(torch.tensor([n], dtype=torch.float64, device=device))
            flat = torch.cat(parts)
        all_reduce_sum(flat, "the gradient all-reduce")
        self.n_total = float(flat[-1])
        if grads:
            offset = 0
            for g in grads:
                assert g is not None
                k = g.numel()
                g.copy_((flat[offset : offset + k] / self.n_total).view_as(g))
                offset += k

    def mean_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The global minibatch's cost: Σ_r n_r·cost_r / Σ_r n_r (the same on every rank)."""
        both = torch.stack([loss.detach().double() * self.n_local,
                            torch.tensor(float(self.n_local), dtype=torch.float64,
                                         device=loss.device)])  # fmt: skip
        all_reduce_sum(both, "the loss all-reduce")
        return (both[0] / both[1]).to(loss.dtype)


def chain(*hooks: Callable[[], None] | None) -> Callable[[], None] | None:
    """One ``after_backward`` hook that runs ``hooks`` in order (None when there are none)."""
    present = [h for h in hooks if h is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]

    def run_all() -> None:
        for h in present:
            h()

    return run_all


# ------------------------------------------------------------------ local launching
def launch_local(nproc: int, module_args: Sequence[str]) -> int:
    """Run ``python -m descentlab <module_args>`` as ``nproc`` ranks on this machine.

    The same as ``torchrun --standalone --nproc-per-node nproc -m descentlab ...``: torch's
    elastic launcher picks a free port, starts the ranks, and stops them all when one
    fails.  Returns 0, or 1 after one line naming the failed rank.
    """
    from torch.distributed import run as torchrun  # heavy; only --nproc needs it

    args = torchrun.parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "--module", "descentlab"]
    )
    # Set after parsing: torchrun's parser would read descentlab's flags as its own
    # (``--nproc`` is an ambiguous prefix of ``--nproc-per-node``).
    args.training_script_args = list(module_args)
    try:
        torchrun.run(args)
    except Exception as exc:  # ChildFailedError: the launcher has stopped every rank
        failures: dict[int, Any] = getattr(exc, "failures", {}) or {}
        ranks = ", ".join(str(r) for r in sorted(failures)) or "?"
        codes = ", ".join(str(getattr(f, "exitcode", "?")) for _, f in sorted(failures.items()))
        raise DistributedError(
            f"the data-parallel job failed: rank {ranks} exited with code {codes}, "
            "and the launcher stopped the others",
            hint="the failing rank's own error is printed above",
        ) from None
    return 0
