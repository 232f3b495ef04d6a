"""Averages of the iterates: Polyak averaging (§8.7.3) and an exponential moving average.

Polyak averaging evaluates the model at the average of the points that gradient descent
visited, θ̂_t = (1/t) Σ_i θ_i: the iterates of SGD with a non-vanishing learning rate
bounce around a minimum, and their mean sits closer to it than any one of them. On
non-convex problems the book recommends an exponentially decaying running average,
θ̂_t = β θ̂_{t−1} + (1 − β) θ_t, which forgets the early, far-away iterates.

Both classes keep the average in separate tensors, update it with one multi-tensor
(foreach) lerp per step, and can swap it into the model temporarily::

    ema = EMA(model, decay=0.999)
    for step, batch in enumerate(batches, start=1):
        optimizer.step(closure)
        ema.update(step)
    with ema.applied(model):
        evaluate(model)          # sees the averaged weights; restored afterwards

**Buffers.** Batch-norm running statistics are estimates made *under the current
weights*. With ``buffers="average"`` (the default when a module is given) every
floating-point buffer is averaged exactly like the weights, so the running mean/variance
that :meth:`applied` swaps in belong (approximately) to the averaged weights. With
``buffers="keep"`` the live buffers stay in place. Integer buffers such as
``num_batches_tracked`` are never averaged. For exact statistics of the averaged network,
recompute them inside ``applied()`` with one pass over the training data
(``torch.optim.swa_utils.update_bn``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import Tensor, nn

from descentlab.errors import CheckpointError, ConfigError
from descentlab.optim._base import foreach_buckets

BufferPolicy = Literal["average", "keep"]


class _IterateAverage:
    """Shared machinery: which tensors are averaged, update via lerp, swap in/out."""

    kind = ""

    def __init__(
        self,
        module_or_params: nn.Module | Iterable[Tensor],
        *,
        start: int,
        buffers: BufferPolicy,
    ) -> None:
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ConfigError(
                f"{type(self).__name__}: start must be an integer >= 0, got {start!r}"
            )
        if buffers not in ("average", "keep"):
            raise ConfigError(
                f"{type(self).__name__}: buffers must be 'average' or 'keep', got {buffers!r}"
            )
        self.start = start
        self.buffers = buffers
        # Buffers are tracked only when a module was given (a parameter list has none).
        self._with_buffers = isinstance(module_or_params, nn.Module) and buffers == "average"
        self._tracked = self._select(module_or_params)
        if not self._tracked:
            raise ConfigError(f"{type(self).__name__}: there are no parameters to average")
        self._average = [t.detach().clone() for t in self._tracked]
        self.n_averaged = 0

    def _select(self, source: nn.Module | Iterable[Tensor]) -> list[Tensor]:
        """The tensors to average, in a fixed order: parameters, then float buffers."""
        if isinstance(source, nn.Module):
            tensors: list[Tensor] = list(source.parameters())
            if self._with_buffers:
                tensors += [b for b in source.buffers() if b.is_floating_point()]
            return tensors
        if isinstance(source, Tensor):
            return [source]
        return list(source)

    def _weight(self) -> float:
        """Weight of the newest iterate in the lerp, for ``n_averaged`` ≥ 2."""
        raise NotImplementedError

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the current weights; ``step`` is the number of optimizer steps taken.

        Calls with ``step < start`` are ignored. The first included iterate initializes the
        average; each later one moves it by ``average ← average + w (θ − average)``.
        """
        if step < self.start:
            return
        self.n_averaged += 1
        live = [t.detach() for t in self._tracked]
        if self.n_averaged == 1:
            for avg, cur in foreach_buckets(self._average, live):
                torch._foreach_copy_(avg, cur)
            return
        weight = self._weight()
        for avg, cur in foreach_buckets(self._average, live):
            torch._foreach_lerp_(avg, cur, weight)

    def averaged(self) -> list[Tensor]:
        """The averaged tensors (parameters first, then averaged buffers); do not modify."""
        return self._average

    def _targets(self, module: nn.Module | None) -> list[Tensor]:
        if module is None:
            return self._tracked
        targets = self._select(module)
        if len(targets) != len(self._average) or any(
            t.shape != a.shape for t, a in zip(targets, self._average)
        ):
            raise ConfigError(
                f"{type(self).__name__}.applied(): the module's parameters do not match the "
                "averaged ones",
                hint="pass the module the average was built from (or an identical copy)",
            )
        return targets

    @contextmanager
    def applied(self, module: nn.Module | None = None) -> Iterator[nn.Module | None]:
        """Temporarily load the averaged weights into ``module`` (default: the tracked ones).

        On exit the previous values are copied back bit for bit, also after an exception.
        Before the first :meth:`update` there is no average yet and nothing is swapped.
        """
        targets = self._targets(module)
        if self.n_averaged == 0:
            yield module
            return
        with torch.no_grad():
            backup = [t.detach().clone() for t in targets]
            for dst, src in foreach_buckets([t.detach() for t in targets], self._average):
                torch._foreach_copy_(dst, src)
        try:
            yield module
        finally:
            with torch.no_grad():
                for dst, src in foreach_buckets([t.detach() for t in targets], backup):
                    torch._foreach_copy_(dst, src)

    @torch.no_grad()
    def copy_to(self, module: nn.Module | None = None) -> None:
        """Overwrite the weights with the average for good (e.g. at the end of training)."""
        if self.n_averaged == 0:
            return
        targets = self._targets(module)
        for dst, src in foreach_buckets([t.detach() for t in targets], self._average):
            torch._foreach_copy_(dst, src)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (the averaged tensors are returned by reference)."""
        return {
            "kind": self.kind,
            "start": self.start,
            "buffers": self.buffers,
            "n_averaged": self.n_averaged,
            "average": list(self._average),
            **self._extra_state(),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (tensors are copied into the existing ones)."""
        name = type(self).__name__
        if state.get("kind") != self.kind:
            raise CheckpointError(
                f"{name} cannot load a {state.get('kind')!r} average",
                hint="resume with the same averaging option",
            )
        saved = state.get("average", [])
        if len(saved) != len(self._average) or any(
            s.shape != a.shape for s, a in zip(saved, self._average)
        ):
            raise CheckpointError(
                f"{name}: the saved average does not match the model's parameters",
                hint="the checkpoint belongs to a different model",
            )
        for avg, src in zip(self._average, saved):
            avg.copy_(src)
        self.start = int(state["start"])
        self.n_averaged = int(state["n_averaged"])
        self._load_extra_state(state)

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass


class PolyakAverage(_IterateAverage):
    """Running arithmetic mean of the iterates from step ``start`` on (§8.7.3).

    θ̂ = (1/n) Σ_{i=1..n} θ_{t_i} over the n iterates passed to :meth:`update` with
    ``step >= start``, computed incrementally as θ̂ ← θ̂ + (θ − θ̂)/n. Starting later than
    step 0 skips the early iterates that are far from any minimum (as in SWA/ASGD).
    See the module docstring for how buffers are treated.
    """

    kind = "polyak"

    def __init__(
        self,
        module_or_params: nn.Module | Iterable[Tensor],
        start: int = 0,
        *,
        buffers: BufferPolicy = "average",
    ) -> None:
        super().__init__(module_or_params, start=start, buffers=buffers)

    def _weight(self) -> float:
        return 1.0 / self.n_averaged


class EMA(_IterateAverage):
    """Exponential moving average of the weights: θ̂ ← β θ̂ + (1 − β) θ, β = ``decay``.

    The first included iterate (``step >= start``) initializes θ̂, so there is no bias
    towards the initial weights or zero; an iterate k updates old makes up a fraction
    ≈ (1 − β) β^k of θ̂ (an effective window of about 1/(1 − β) steps).
    See the module docstring for how buffers are treated.
    """

    kind = "ema"

    def __init__(
        self,
        module_or_params: nn.Module | Iterable[Tensor],
        decay: float = 0.999,
        *,
        start: int = 0,
        buffers: BufferPolicy = "average",
    ) -> None:
        if isinstance(decay, bool) or not isinstance(decay, int | float):
            raise ConfigError(f"EMA: decay must be a number in [0, 1), got {decay!r}")
        if not (math.isfinite(decay) and 0.0 <= decay < 1.0):
            raise ConfigError(
                f"EMA: decay must be in [0, 1), got {decay!r}", hint="e.g. 0.999 or 0.9999"
            )
        self.decay = float(decay)
        super().__init__(module_or_params, start=start, buffers=buffers)

    def _weight(self) -> float:
        return 1.0 - self.decay

    def _extra_state(self) -> dict[str, Any]:
        return {"decay": self.decay}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.decay = float(state.get("decay", self.decay))
