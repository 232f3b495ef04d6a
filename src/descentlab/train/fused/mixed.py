"""Members with different optimizers in one group, and the update of any group.

:func:`batched_update` gives a group's update: one :class:`~.updates.BatchedUpdate` when
its members share an optimizer algorithm, else a :class:`MixedUpdate`, which runs each
algorithm's update on its own block of rows of the stacked tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from descentlab.errors import ConfigError
from descentlab.train.fused.updates import UPDATES, BatchedUpdate, algorithm_key

__all__ = ["MixedUpdate", "batched_update"]


class MixedUpdate:
    """Members with different optimizers in one group: one :class:`BatchedUpdate` per
    algorithm, each on its own contiguous rows of the stacked tensors.

    The forward and backward passes do not depend on the optimizer, so members with
    different algorithms still share them; only the update is split.  Rows ``[a, b)``
    of a stack ``(K, ...)`` are a view of it, so each part updates its rows in place.
    """

    def __init__(self, parts: list[tuple[int, BatchedUpdate]], size: int) -> None:
        self.parts = parts  # (first row, update); a part ends where the next begins
        self.size = size

    def _ranges(self) -> list[tuple[int, int, BatchedUpdate]]:
        starts = [start for start, _ in self.parts] + [self.size]
        return [(a, b, u) for (a, u), b in zip(self.parts, starts[1:])]

    @property
    def looks_ahead(self) -> bool:
        return any(update.looks_ahead for _, update in self.parts)

    @torch.no_grad()
    def lookahead(self, params: Sequence[Tensor], out: Sequence[Tensor]) -> None:
        """Each part's look-ahead rows; θ itself in the rows of a part without one."""
        for a, b, update in self._ranges():
            rows, at = [p[a:b] for p in params], [o[a:b] for o in out]
            if update.looks_ahead:
                update.lookahead(rows, at)
            else:
                for target, source in zip(at, rows):
                    target.copy_(source)

    def apply(self, params: list[Tensor], grads: Sequence[Tensor]) -> None:
        for a, b, update in self._ranges():
            update.apply([p[a:b] for p in params], [g[a:b] for g in grads])

    def set_lr(self, values: Sequence[float]) -> None:
        for a, b, update in self._ranges():
            update.set_lr(values[a:b])

    def in_product(self) -> dict[int, tuple[float, float]]:
        return {a + r: rates for a, _, u in self._ranges() for r, rates in u.in_product().items()}

    def skip(self, rows: set[int]) -> None:
        for a, b, update in self._ranges():
            update.skip({r - a for r in rows if a <= r < b})

    def keep(self, rows: Tensor) -> None:
        kept = rows.tolist()
        parts = []
        for a, b, update in self._ranges():
            mine = [r - a for r in kept if a <= r < b]
            if mine:
                parts.append((len([r for r in kept if r < a]), update))
                update.keep(torch.tensor(mine, device=rows.device))
        self.parts, self.size = parts, len(kept)

    def _part(self, row: int) -> tuple[int, BatchedUpdate]:
        for a, b, update in self._ranges():
            if a <= row < b:
                return row - a, update
        raise IndexError(f"no member at row {row}")

    def export(self, row: int, optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> None:
        at, update = self._part(row)
        update.export(at, optimizer, params)

    def load(self, row: int, optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> None:
        at, update = self._part(row)
        update.load(at, optimizer, params)


def batched_update(
    optimizers: Sequence[torch.optim.Optimizer], params: list[Tensor]
) -> BatchedUpdate | MixedUpdate:
    """The batched form of the members' optimizers over ``params``.

    One :class:`BatchedUpdate` when they share an algorithm (:func:`algorithm_key`);
    else a :class:`MixedUpdate`, which needs each algorithm's members on adjacent rows.
    """
    unknown = sorted({type(o).__name__ for o in optimizers if type(o) not in UPDATES})
    if unknown:
        raise ConfigError(
            f"no fused update for the optimizers {', '.join(unknown)}",
            hint="train them separately",
        )
    keys = [algorithm_key(o) for o in optimizers]
    starts = [i for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]]
    if len(starts) != len(set(keys)):
        raise ConfigError(
            "the members of one optimizer algorithm must be on adjacent rows",
            hint="order the members by descentlab.train.fused.updates.algorithm_key",
        )
    ends = [*starts[1:], len(keys)]
    parts = [
        (a, UPDATES[type(optimizers[a])](optimizers[a:b], [p[a:b] for p in params]))
        for a, b in zip(starts, ends)
    ]
    if len(parts) == 1:
        return parts[0][1]
    return MixedUpdate(parts, len(keys))
