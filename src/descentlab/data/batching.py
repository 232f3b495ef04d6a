"""Minibatches by slicing tensors that already live on the training device.

The tutorial's minibatch loop takes ``train_set_x[i * B : (i + 1) * B]`` from data that
sits in (GPU) memory once; :class:`Batches` does the same for a whole :class:`Split`::

    each epoch:
        order = randperm(N, generator)  if shuffle  else  0, 1, ..., N-1
        order = order[rank * M : (rank + 1) * M]        M = N // world_size (sharding)
        for k in 0 .. n_batches-1:                      n_batches = M // B  (drop_last)
            idx = order[k * B : (k + 1) * B]                      or ceil(M / B)
            yield x[idx], y[idx]

No per-example Python and no DataLoader: a batch is one ``index_select`` when shuffling
and a plain slice (a view, no copy) when not.  Gathering each batch on demand was
measured against gathering the whole permuted epoch once (``tests/data/bench_batching.py``):
per batch was as fast or faster for batch sizes 20 and 600 on MNIST, and it never holds
a second copy of the training set, so it is what this class does.

Determinism and resuming.  The permutation of an epoch is drawn from ``generator`` when
the epoch starts and depends on nothing else, so to checkpoint mid-epoch the trainer
saves ``generator.get_state()`` *before* starting each epoch, plus the number ``k`` of
batches already done.  To resume it restores that state and calls
``batches.iter_from(k)``, which redraws the same permutation and continues with batch
``k``: the remaining batches are identical to those of the uninterrupted run.

Sharding for data-parallel training.  With ``world_size`` W, every rank draws the same
permutation (all ranks must use generators with the same seed/state), and rank r takes
the r-th contiguous block of ``N // W`` positions.  The blocks are disjoint and of equal
size, so every rank runs the same number of steps; the ``N mod W`` examples at the end
of the permutation are skipped that epoch (different ones each epoch when shuffling).
``batch_size`` is per rank: the global batch is ``batch_size * world_size``.

Shares of a global batch (``global_batch=True``, what data-parallel training uses).
``batch_size`` is the *global* minibatch B: the batches are exactly those of one
process, and rank r takes the r-th of W contiguous shares of each (sizes differ by at
most one: ``torch.tensor_split``'s rule).  A run's trajectory then does not depend on
W, up to the order in which the ranks' gradients are summed::

    idx   = order[k * B : (k + 1) * B]                  the one-process batch k
    share = idx[lo_r : hi_r]                            lo_r = r·⌊b/W⌋ + min(r, b mod W)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from descentlab.errors import ConfigError, DataError

__all__ = ["Batches"]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


class Batches:
    """Iterable of ``(x, y)`` minibatches of a split; ``len()`` is batches per epoch.

    Parameters
    ----------
    split:
        A :class:`~descentlab.data.datasets.Split` (anything with tensors ``.x`` and
        ``.y``) or an ``(x, y)`` pair, already on the device to train on.
    batch_size:
        Examples per batch (per rank).
    shuffle:
        Draw a new permutation from ``generator`` at the start of every epoch.
    generator:
        The ``torch.Generator`` the trainer seeds; with ``shuffle`` and no generator, a
        private one seeded from ``torch.initial_seed()`` is used.
    drop_last:
        Skip the final partial batch (default, as in the tutorial: 50,000 examples in
        batches of 600 give 83 batches, 49,800 examples); ``False`` keeps it.
    rank, world_size:
        This process's shard of every epoch (see the module docstring).
    global_batch:
        ``batch_size`` is the global minibatch and each rank takes its share of every
        batch (see the module docstring); every batch needs at least ``world_size``
        examples.
    """

    def __init__(
        self,
        split: Any,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
        global_batch: bool = False,
    ) -> None:
        if isinstance(split, tuple | list) and len(split) == 2:
            x, y = split
        elif hasattr(split, "x") and hasattr(split, "y"):
            x, y = split.x, split.y
        else:
            raise ConfigError(f"Batches needs a Split or an (x, y) pair, got {type(split)}")
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise ConfigError("Batches needs tensors x and y")
        if x.shape[0] != y.shape[0]:
            raise DataError(f"split has {x.shape[0]} inputs but {y.shape[0]} labels")
        if x.device != y.device:
            raise ConfigError(f"x is on {x.device} but y on {y.device}; move both to one device")
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.world_size = _positive_int(world_size, "world_size")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ConfigError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ConfigError(f"generator must be a torch.Generator, got {type(generator)}")
        self.x, self.y = x, y
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.rank = rank
        if self.shuffle and generator is None:
            generator = torch.Generator().manual_seed(torch.initial_seed())
        self.generator = generator

        n = int(x.shape[0])
        self.n_total = n
        self.global_batch = bool(global_batch)
        if self.global_batch:
            self._check_shares(n)
            world_size = 1  # batches are counted as for one process; shares taken per batch
        self.per_rank = n // world_size  # examples this rank sees per epoch (before batching)
        if self.per_rank == 0:
            raise DataError(
                f"cannot shard {n} examples over {world_size} ranks",
                hint="fix: use fewer ranks or more data",
            )
        if self.drop_last and self.batch_size > self.per_rank:
            shard = f" per rank ({n} over {world_size} ranks)" if world_size > 1 else ""
            raise DataError(
                f"batch_size {self.batch_size} is larger than the {self.per_rank} "
                f"examples{shard}, so an epoch would have no batches",
                hint=f"fix: use batch_size <= {self.per_rank}, or drop_last=False",
            )
        if self.drop_last:
            self._n_batches = self.per_rank // self.batch_size
        else:
            self._n_batches = -(-self.per_rank // self.batch_size)

    def _check_shares(self, n: int) -> None:
        b, w = min(self.batch_size, n), self.world_size
        last = n % b if not self.drop_last else 0
        if b < w or 0 < last < w:
            raise DataError(
                f"a minibatch of {last if 0 < last < w else b} examples cannot be shared "
                f"by {w} ranks",
                hint=f"use --batch-size >= {w} (and drop_last, or a batch size whose last "
                "batch has at least one example per rank)",
            )

    def share(self, b: int) -> tuple[int, int]:
        """``(lo, hi)`` of this rank's share of a global batch of ``b`` examples."""
        if not self.global_batch:
            return 0, b
        base, extra = divmod(b, self.world_size)
        lo = self.rank * base + min(self.rank, extra)
        return lo, lo + base + (1 if self.rank < extra else 0)

    def __len__(self) -> int:
        return self._n_batches

    @property
    def examples_per_epoch(self) -> int:
        """Examples this rank visits per epoch (49,800 for 50,000 in batches of 600)."""
        if self.drop_last:
            return self._n_batches * self.batch_size
        return self.per_rank

    def epoch_order(self) -> torch.Tensor | None:
        """This rank's example order for a new epoch (draws from the generator when
        shuffling); ``None`` means "in storage order", which is served by views."""
        if not self.shuffle:
            return None
        gen = self.generator
        assert gen is not None
        perm = torch.randperm(self.n_total, generator=gen, device=gen.device)
        if self.global_batch:
            return perm.to(self.x.device)
        start = self.rank * self.per_rank
        return perm[start : start + self.per_rank].to(self.x.device)

    def iter_from(self, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Start a new epoch and yield its batches from number ``start_batch`` on.

        The permutation is drawn exactly as for a whole epoch, so restoring the
        generator state saved before the epoch and calling ``iter_from(k)`` continues
        an interrupted epoch exactly.
        """
        if (
            isinstance(start_batch, bool)
            or not isinstance(start_batch, int)
            or not 0 <= start_batch <= self._n_batches
        ):
            raise ConfigError(
                f"start_batch must be an integer in [0, {self._n_batches}], got {start_batch!r}"
            )
        # Draw now, not lazily at the first next(): the generator must advance when the
        # epoch starts even if the caller never consumes a batch.
        order = self.epoch_order()
        return self._generate(order, start_batch)

    def _generate(
        self, order: torch.Tensor | None, start_batch: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        b = self.batch_size
        end_all = self.examples_per_epoch
        if order is None:
            offset = 0 if self.global_batch else self.rank * self.per_rank
            for k in range(start_batch, self._n_batches):
                lo, hi = offset + k * b, offset + min((k + 1) * b, end_all)
                s_lo, s_hi = self.share(hi - lo)
                yield self.x[lo + s_lo : lo + s_hi], self.y[lo + s_lo : lo + s_hi]
        else:
            for k in range(start_batch, self._n_batches):
                idx = order[k * b : min((k + 1) * b, end_all)]
                s_lo, s_hi = self.share(idx.shape[0])
                idx = idx[s_lo:s_hi]
                yield self.x.index_select(0, idx), self.y.index_select(0, idx)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_from(0)

    def __repr__(self) -> str:
        return (
            f"Batches(n={self.n_total}, batch_size={self.batch_size}, batches={len(self)}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, "
            f"rank={self.rank}/{self.world_size})"
        )
