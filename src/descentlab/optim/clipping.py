"""Gradient clipping against the "cliffs" of §8.2.4.

Near a cliff of the cost surface the gradient can be huge and a single step catapults the
parameters far away, undoing much of the work done so far. Clipping bounds the step:

* by global norm: if ‖g‖ > max_norm, g ← g · max_norm/‖g‖ (‖·‖ over *all* parameters, so
  the direction of the step is kept);
* by value: each coordinate is clamped to [−clip_value, clip_value] (the direction changes).

Call them between ``backward()`` and ``optimizer.step()`` — inside the training closure.
Both return the total gradient norm *before* clipping, as a 0-d tensor (no device sync),
so a training loop can log it or detect divergence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from descentlab.errors import ConfigError
from descentlab.optim._base import foreach_buckets


def _grads(parameters: Tensor | Iterable[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return params, [p.grad for p in params if p.grad is not None]


def _check_threshold(name: str, value: float) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise ConfigError(
            f"{name} must be a finite number > 0, got {value!r}",
            hint="e.g. 1.0 or 5.0; leave clipping off to disable it",
        )
    return x


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    *,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    """Rescale all gradients together so that their global norm is at most ``max_norm``.

    g ← g · min(1, max_norm / ‖g‖), with ‖g‖ the ``norm_type``-norm of all gradients
    concatenated. Returns ‖g‖ before clipping (0 when no parameter has a gradient).
    The scaling is one multi-tensor (foreach) multiply by min(1, max_norm/‖g‖).
    """
    max_norm = _check_threshold("max_norm", max_norm)
    _, grads = _grads(parameters)
    if not grads:
        return torch.tensor(0.0)
    total = torch.nn.utils.get_total_norm(
        grads, norm_type, error_if_nonfinite=error_if_nonfinite, foreach=foreach
    )
    # min(1, max_norm/‖g‖) as a tensor: no host-device sync; ‖g‖ = 0 gives inf → 1.
    # (torch.nn.utils.clip_grad_norm_ divides by ‖g‖ + 1e-6 instead.)
    coef = (max_norm / total).clamp_(max=1.0)
    with torch.no_grad():
        for (bucket,) in foreach_buckets(grads):
            scale = coef.to(device=bucket[0].device, dtype=bucket[0].dtype)
            if foreach is False:
                for g in bucket:
                    g.mul_(scale)
            else:
                torch._foreach_mul_(bucket, scale)
    return total


def clip_grad_value_(
    parameters: Tensor | Iterable[Tensor],
    clip_value: float,
    *,
    foreach: bool | None = None,
) -> Tensor:
    """Clamp every gradient coordinate to [−clip_value, clip_value].

    Returns the global 2-norm of the gradients before clipping (for logging).
    """
    clip_value = _check_threshold("clip_value", clip_value)
    params, grads = _grads(parameters)
    if not grads:
        return torch.tensor(0.0)
    total = torch.nn.utils.get_total_norm(grads, 2.0, foreach=foreach)
    torch.nn.utils.clip_grad_value_(params, clip_value, foreach=foreach)
    return total
