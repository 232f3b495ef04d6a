"""Plumbing shared by the chapter-8 optimizers.

:class:`BookOptimizer` is a :class:`torch.optim.Optimizer` that

* validates every hyperparameter of every param group (also groups added later with
  :meth:`add_param_group`), raising :class:`~descentlab.errors.ConfigError`;
* calls the closure with gradients enabled and, for Nesterov momentum, first moves the
  parameters to the look-ahead point θ + αv and back (Algorithms 8.3 and 8.6);
* dispatches each param group to the optimizer's multi-tensor (``torch._foreach_*``) update,
  the default, or to its plain per-tensor update (``foreach=False``), which is written to be
  read next to the algorithm box and serves as the reference in the tests;
* keeps per-parameter *scratch* buffers for the foreach updates (see :meth:`_scratch_like`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor

from descentlab.errors import CheckpointError, ConfigError
from descentlab.optim import _validate as check

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]]

# Scratch slot that holds θ while the parameters sit at the Nesterov look-ahead point.
_BACKUP_SLOT = -1


def foreach_buckets(*lists: list[Any]) -> Iterator[tuple[list[Any], ...]]:
    """Split parallel lists into runs whose first list shares one (device, dtype).

    ``torch._foreach_*`` ops need all their tensors on one device with one dtype; in the usual
    case (one model on one device) the lists are passed through unchanged.
    """
    first = lists[0]
    if not first:
        yield lists
        return
    # The usual case first, cheaply (t.device builds a new object per call).
    dtype, on_cpu = first[0].dtype, first[0].is_cpu
    if on_cpu and all(t.is_cpu and t.dtype is dtype for t in first):
        yield lists
        return
    keys = [(t.device, t.dtype) for t in first]
    if len(set(keys)) <= 1:
        yield lists
        return
    buckets: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, key in enumerate(keys):
        buckets.setdefault(key, []).append(i)
    for idx in buckets.values():
        yield tuple([lst[i] for i in idx] for lst in lists)


#: Elements per tensor list in one cache tile of a CPU foreach update (2 MiB of float32).
TILE_NUMEL = 1 << 19


def foreach_tiles(
    *lists: list[Any], tile_numel: int | None = None
) -> Iterator[tuple[list[Any], ...]]:
    """:func:`foreach_buckets`, then cut into cache-sized tiles for large CPU updates.

    A foreach update is a sequence of passes over the same tensors (Adam: lerp, mul,
    addcmul, sqrt, add, addcdiv). Once the tensors outgrow the CPU caches every pass
    streams them from main memory again; running the whole sequence tile by tile keeps a
    tile cached between passes. Each element still sees exactly the same operations, so the
    results are bit-for-bit those of the untiled update. Tensors larger than a tile are cut
    into contiguous pieces (views), small ones are grouped; entries of lists that are not
    tensors (Adam's step counts) are repeated for every piece. On other devices, and when
    everything fits in about two tiles, the buckets are passed through unchanged.
    """
    tile_numel = TILE_NUMEL if tile_numel is None else tile_numel
    for bucket in foreach_buckets(*lists):
        first = bucket[0]
        if first[0].device.type != "cpu" or sum(t.numel() for t in first) <= 2 * tile_numel:
            yield bucket
            continue
        tile: list[list[Any]] = [[] for _ in bucket]
        filled = 0
        for i, p in enumerate(first):
            row = [lst[i] for lst in bucket]
            n = p.numel()
            splittable = n > tile_numel and all(
                not isinstance(x, Tensor) or (x.shape == p.shape and x.is_contiguous()) for x in row
            )
            if splittable:
                n_pieces = -(-n // tile_numel)  # ⌈n / tile_numel⌉, the length of split()
                columns = [
                    x.view(-1).split(tile_numel) if isinstance(x, Tensor) else [x] * n_pieces
                    for x in row
                ]
            else:
                columns = [[x] for x in row]
            for k in range(len(columns[0])):
                for j, column in enumerate(columns):
                    tile[j].append(column[k])
                filled += columns[0][k].numel()
                if filled >= tile_numel:
                    yield tuple(tile)
                    tile = [[] for _ in bucket]
                    filled = 0
        if tile[0]:
            yield tuple(tile)


def scalar(x: float | Tensor) -> float | Tensor:
    """A hyperparameter or step count as a Python number for the eager updates.

    A tensor learning rate or step counter is read with ``.item()`` (cheap on CPU, exact);
    while ``torch.compile`` traces, the tensor itself is used so that the graph does not
    specialize on its value (that would recompile on every change).
    """
    if isinstance(x, Tensor) and not torch.compiler.is_compiling():
        return x.item()
    return x


def update_path(group: dict[str, Any]) -> str:
    """Which update a param group runs: ``"fused"``, ``"foreach"`` or ``"single"``.

    ``foreach=None`` (torch's "let the optimizer choose") means the multi-tensor update.
    ``differentiable=True`` and code traced by ``torch.compile`` take the per-tensor update,
    written with tensor arithmetic only (the compiler fuses it itself).
    """
    if group.get("differentiable") or torch.compiler.is_compiling():
        return "single"
    if group.get("fused"):
        return "fused"
    return "single" if group.get("foreach") is False else "foreach"


def step_counter() -> Tensor:
    """A fresh step counter t = 0: a float32 CPU scalar tensor, as torch.optim keeps it."""
    return torch.tensor(0.0, dtype=torch.float32)


def decay_(p: Tensor, lr: float, weight_decay: float) -> None:
    """Decoupled weight decay θ ← θ − ελθ of one parameter (nothing when λ = 0)."""
    if weight_decay != 0.0:
        p.mul_(1.0 - lr * weight_decay)


def descend_(p: Tensor, num: Tensor, denom: Tensor, lr: float | Tensor) -> None:
    """θ ← θ − ε·num/denom for one parameter (ε a number, or a tensor under compile)."""
    if isinstance(lr, Tensor):
        p.sub_(lr * num / denom)
    else:
        p.addcdiv_(num, denom, value=-lr)


def step_along_(x: Tensor, g: Tensor, lr: float | Tensor) -> Tensor:
    """x ← x − ε·g in place (ε a number, or a tensor under compile); returns x."""
    return x.sub_(lr * g) if isinstance(lr, Tensor) else x.add_(g, alpha=-lr)


def decay_foreach_(params: list[Tensor], lr: float, weight_decay: float) -> None:
    """:func:`decay_` for a list of parameters at once."""
    if weight_decay != 0.0:
        torch._foreach_mul_(params, 1.0 - lr * weight_decay)


def sqrt_into(out: list[Tensor], xs: list[Tensor]) -> list[Tensor]:
    """``out[i] = √xs[i]`` without allocating (torch._foreach_sqrt would allocate)."""
    for o, x in zip(out, xs):
        torch.sqrt(x, out=o)
    return out


def add_scalar_into(out: list[Tensor], xs: list[Tensor], c: float) -> list[Tensor]:
    """``out[i] = xs[i] + c`` without allocating."""
    for o, x in zip(out, xs):
        torch.add(x, c, out=o)
    return out


def rms_denom_into(
    out: list[Tensor], xs: list[Tensor], eps: float, eps_inside_sqrt: bool
) -> list[Tensor]:
    """``out[i] = √(δ + xs[i])`` if ``eps_inside_sqrt`` else ``δ + √xs[i]``, without allocating.

    The two placements of δ in the AdaGrad/RMSProp denominator (see :class:`RMSProp`).
    """
    if eps_inside_sqrt:
        torch._foreach_sqrt_(add_scalar_into(out, xs, eps))
    else:
        torch._foreach_add_(sqrt_into(out, xs), eps)
    return out


# The options every chapter-8 optimizer takes, with torch.optim's names (AdaDelta has no
# fused kernel, so no ``fused``: checks of options an optimizer lacks are skipped).
_SHARED_CHECKS: dict[str, Callable[..., Any]] = {
    "weight_decay": check.nonnegative,
    "maximize": check.boolean,
    "foreach": check.optional_boolean,
    "fused": check.optional_boolean,
    "differentiable": check.boolean,
}


def option_checks(**own: Callable[..., Any]) -> dict[str, Callable[..., Any]]:
    """An optimizer's :attr:`~BookOptimizer._checks`: ``lr``, its own hyperparameters
    (name → check from :mod:`descentlab.optim._validate`), then the shared options."""
    return {"lr": check.learning_rate, **own, **_SHARED_CHECKS}


def options_of(args: dict[str, Any]) -> dict[str, Any]:
    """An optimizer's ``__init__`` arguments, ``locals()`` at its start, as the defaults of
    its param groups (everything but ``self``, ``params`` and ``__class__``)."""
    return {k: v for k, v in args.items() if k not in ("self", "params", "__class__")}


def _torch_method(name: str) -> Callable[..., Any]:
    """``torch.optim.Optimizer.<name>``, without the import of ``torch._dynamo`` it does
    on first use while nothing has imported dynamo yet.

    torch wraps ``add_param_group``, ``state_dict``, ``load_state_dict`` and
    ``zero_grad`` so that dynamo does not trace them, and the wrapper imports
    ``torch._dynamo`` the first time it runs: about one second of every process that
    builds an optimizer (half of ``descentlab train``'s start-up).  Without dynamo
    imported, nothing can be tracing the call, so the wrapped function itself is what
    the wrapper would run; once dynamo is loaded (``torch.compile``), the wrapper is used.
    """
    method = getattr(torch.optim.Optimizer, name)
    if "torch._dynamo" in sys.modules:
        return method  # type: ignore[no-any-return]
    return getattr(method, "__wrapped__", method)  # type: ignore[no-any-return]


class BookOptimizer(torch.optim.Optimizer):
    """Base class of the chapter-8 optimizers (validation, closure, look-ahead, foreach).

    Subclasses set :attr:`_checks` (hyperparameter name → check from
    :mod:`descentlab.optim._validate`, built by :func:`option_checks`), pass their
    ``__init__`` arguments as defaults (:func:`options_of`), set :attr:`_state_keys`, and implement
    :meth:`_update_group`; optionally :meth:`_check_group` for constraints between
    hyperparameters.
    """

    _checks: ClassVar[dict[str, Callable[..., Any]]] = {}
    _state_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        owner = type(self).__name__
        for name, check_option in self._checks.items():
            if name in defaults:
                defaults[name] = check_option(name, defaults[name], owner=owner)
        self._check_flags(defaults)
        self._check_group(defaults)
        # Scratch buffers live outside ``self.state`` so that they never reach a checkpoint.
        self._scratch: dict[tuple[Tensor, int], Tensor] = {}
        # id(param group) -> the vector whose elements are its step counters (see
        # _advance_steps); also outside the state.
        self._step_vectors: dict[int, Tensor] = {}
        super().__init__(params, defaults)

    # ----------------------------------------------------------------- validation
    def _check_group(self, group: dict[str, Any]) -> None:
        """Constraints between hyperparameters of one group (override in subclasses)."""

    def _check_flags(self, group: dict[str, Any]) -> None:
        """The combinations of ``foreach``/``fused``/``differentiable`` torch refuses too."""
        owner = type(self).__name__
        if group.get("fused"):
            if group.get("foreach"):
                raise ConfigError(
                    f"{owner}: fused=True and foreach=True cannot be used together",
                    hint="pass only one of them (fused is the single-pass update)",
                )
            if group.get("differentiable"):
                raise ConfigError(
                    f"{owner}: fused=True does not support differentiable=True",
                    hint="use differentiable=True with the per-tensor path (foreach=False)",
                )
        if group.get("differentiable") and group.get("foreach"):
            raise ConfigError(
                f"{owner}: differentiable=True needs the per-tensor path",
                hint="pass foreach=False (multi-tensor ops do not record autograd history)",
            )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group after validating its hyperparameters (see torch's docs)."""
        if isinstance(param_group, dict):
            owner = type(self).__name__
            for name, check_option in self._checks.items():
                if name in param_group:
                    param_group[name] = check_option(name, param_group[name], owner=owner)
            self._check_flags({**self.defaults, **param_group})
            self._check_group({**self.defaults, **param_group})
            params = param_group.get("params")
            if not isinstance(params, set):  # torch refuses unordered sets itself
                # Materialize generators here: the complex check below would consume them.
                params = [params] if isinstance(params, Tensor) else list(params or [])
                param_group["params"] = params
            for p in params or []:
                if isinstance(p, Tensor) and p.is_complex():
                    raise ConfigError(
                        f"{owner} does not support complex parameters",
                        hint="split them into real and imaginary parts (torch.view_as_real)",
                    )
        _torch_method("add_param_group")(self, param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by :meth:`state_dict`; refuse state from another optimizer.

        Param groups saved before a flag existed (``foreach``, ``maximize``, ...) get the
        flag's value from this optimizer's defaults, as torch does; state written by older
        descentlab versions (factored velocities, Python-int step counts) is converted to
        the one schema of :attr:`_state_keys`.
        """
        for key in {k for st in state_dict.get("state", {}).values() for k in st}:
            if key not in self._state_keys | self._legacy_state_keys:
                raise CheckpointError(
                    f"optimizer state has a {key!r} entry that {type(self).__name__} does not use",
                    hint="was the checkpoint saved with a different optimizer? "
                    "resume with the same --optimizer",
                )
        try:
            _torch_method("load_state_dict")(self, state_dict)
            self._scratch.clear()  # nothing computed before the load may leak past it
        except (ValueError, KeyError) as exc:
            raise CheckpointError(
                f"cannot load {type(self).__name__} state: {exc}",
                hint="the checkpoint belongs to a model with different parameters",
            ) from exc
        # Re-validate what was loaded: a hand-edited checkpoint must not bypass the checks.
        owner = type(self).__name__
        for group in self.param_groups:
            for name, check_option in self._checks.items():
                if name in group:
                    group[name] = check_option(name, group[name], owner=owner)
            self._check_flags(group)
            self._check_group(group)
        for state in self.state.values():
            self._upgrade_state(state)

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state and groups, as torch's ``state_dict`` (see its docs)."""
        return _torch_method("state_dict")(self)  # type: ignore[no-any-return]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients, as torch's ``zero_grad`` (see its docs)."""
        _torch_method("zero_grad")(self, set_to_none)

    #: State keys earlier versions wrote; :meth:`_upgrade_state` converts them.
    _legacy_state_keys: ClassVar[frozenset[str]] = frozenset()

    def _upgrade_state(self, state: dict[str, Any]) -> None:
        """Convert one parameter's state from an older layout (override in subclasses)."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_scratch", {})
        self.__dict__.setdefault("_step_vectors", {})
        # Groups saved before a flag existed step with the flag's default (torch does this
        # in each optimizer's __setstate__, which load_state_dict calls).
        for group in self.param_groups:
            for name, value in self.defaults.items():
                if name != "params":
                    group.setdefault(name, value)

    # ----------------------------------------------------------------- helpers
    def _gather(
        self,
        group: dict[str, Any],
        zeros: tuple[str, ...] = (),
        *,
        fill: float = 0.0,
        path: str = "foreach",
    ) -> tuple[list[Tensor], list[Tensor], list[dict]]:
        """The parameters of ``group`` that have a gradient, their gradients and states.

        Each state gets a tensor shaped like its parameter, filled with ``fill``, for every
        key in ``zeros`` that it does not hold yet (the accumulators of the first step).
        Without ``zeros`` no state entry is created and the list of states is empty
        (plain SGD keeps no state). The
        gradients are negated for ``maximize=True`` groups (θ then ascends), except on the
        ``"fused"`` path (``path``), whose kernels negate them themselves.
        """
        # Comprehensions, not one loop with appends: this runs every step for every tensor.
        params: list[Tensor] = [p for p in group["params"] if p.grad is not None]
        grads: list[Tensor] = [p.grad for p in params]  # type: ignore[misc]
        if any(g.is_sparse for g in grads):
            raise ConfigError(
                f"{type(self).__name__} does not support sparse gradients",
                hint="use dense embeddings (sparse=False) or torch.SparseAdam",
            )
        states: list[dict] = []
        if zeros:
            states = [self.state[p] for p in params]
            for p, state in zip(params, states):
                for key in zeros:
                    if key not in state:
                        state[key] = torch.full_like(p, fill, memory_format=torch.preserve_format)
        if group.get("maximize") and path != "fused" and grads:
            if group.get("differentiable"):
                grads = [-g for g in grads]
            else:
                grads = list(torch._foreach_neg(grads))
        return params, grads, states

    def _scratch_like(
        self, params: list[Tensor], slot: int = 0, *, zeros: bool = False
    ) -> list[Tensor]:
        """Reusable buffers shaped like ``params`` for intermediate results (e.g. √r + δ).

        ``torch._foreach_sqrt`` and friends allocate a fresh parameter-sized result on every
        step; on CPU the allocator often hands such large blocks back to the OS and the next
        step pays the page faults again, which costs more than the arithmetic. Keeping one
        buffer per parameter (and slot) makes the steady-state step allocation-free. Peak
        memory is the same as torch.optim's foreach path, which needs the same temporaries.
        ``zeros``: new buffers start at 0, for a kernel that reads its buffer before writing
        it (see :func:`~descentlab.optim.rmsprop.fused_rmsprop_`).
        """
        out = []
        for p in params:
            key = (p, slot)
            buf = self._scratch.get(key)
            if (
                buf is None
                or buf.shape != p.shape
                or buf.dtype != p.dtype
                or buf.device != p.device
            ):
                make = torch.zeros_like if zeros else torch.empty_like
                buf = make(p, memory_format=torch.preserve_format)
                self._scratch[key] = buf
            out.append(buf)
        return out

    def _advance_steps(
        self, group: dict[str, Any], states: list[dict[str, Any]]
    ) -> tuple[list[Tensor], list[float]]:
        """t ← t + 1 for the ``step`` counter of each state; returns the counters and their
        new values.

        Each counter stays a float32 scalar tensor of its own (torch.optim's schema), but
        advancing fifty separate scalar tensors costs about 80 µs on a CPU (one dispatch
        each) and reading them back one ``.item()`` each as much again, more than a fused
        Adam step of a small model. So the counters of a group that steps as a whole are
        made views of one vector, advanced by one ``add_`` and read by one ``tolist()``.
        Counters in any other layout (loaded from a checkpoint, set by hand, a group of
        which only some parameters stepped) are advanced one by one, then packed again.
        """
        steps: list[Tensor] = []
        for state in states:
            t = state.get("step")
            if not isinstance(t, Tensor):  # new, or a Python number from an old checkpoint
                t = state["step"] = torch.tensor(float(t or 0), dtype=torch.float32)
            steps.append(t)
        packed = self._step_vectors.get(id(group))
        if (
            packed is not None
            and packed.numel() == len(steps)
            and all(t._base is packed for t in steps)
        ):
            return steps, packed.add_(1.0).tolist()
        torch._foreach_add_(steps, 1.0)
        if not all(t.dim() == 0 and t.dtype == torch.float32 and not t.is_cuda for t in steps):
            return steps, [t.item() for t in steps]
        packed = self._step_vectors[id(group)] = torch.stack(steps)
        steps = list(packed.unbind())
        for state, t in zip(states, steps):
            state["step"] = t
        return steps, packed.tolist()

    def release_scratch(self) -> None:
        """Free the scratch buffers (they are re-created on the next foreach step)."""
        self._scratch.clear()

    def _move_to_lookahead(self) -> list[tuple[list[Tensor], list[Tensor], bool]]:
        """θ → θ + αv for every Nesterov group; returns what :meth:`_restore` needs.

        θ is saved in a scratch buffer and copied back afterwards, so the parameters hold
        exactly θ again (subtracting αv would be off by a rounding error).
        """
        saved = []
        with torch.no_grad():
            for group in self.param_groups:
                alpha = group.get("momentum", 0.0)
                if not (group.get("nesterov") and alpha > 0.0):
                    continue
                ps, vs, scales = [], [], []
                for p in group["params"]:
                    state = self.state.get(p)
                    parts = self._velocity_parts(state) if state else None
                    if parts is not None:  # no velocity yet: v = 0, θ + αv = θ
                        ps.append(p)
                        vs.append(parts[0])
                        scales.append(parts[1])
                if not ps:
                    continue
                backups = self._scratch_like(ps, slot=_BACKUP_SLOT)
                if group["foreach"] and len(set(scales)) == 1:
                    for bp, bv, bb in foreach_buckets(ps, vs, backups):
                        torch._foreach_copy_(bb, bp)
                        torch._foreach_add_(bp, bv, alpha=alpha * scales[0])
                else:
                    for p, v, c, b in zip(ps, vs, scales, backups):
                        b.copy_(p)
                        p.add_(v, alpha=alpha * c)
                saved.append((ps, backups, group["foreach"]))
        return saved

    def _velocity_parts(self, state: dict[str, Any]) -> tuple[Tensor, float] | None:
        """The velocity of one parameter as (tensor, scale), v = scale·tensor; None if none."""
        v = state.get("velocity")
        return None if v is None else (v, 1.0)

    def velocity(self, p: Tensor) -> Tensor | None:
        """The velocity v of parameter ``p`` (a new tensor), or ``None`` if it has none."""
        state = self.state.get(p)
        parts = self._velocity_parts(state) if state else None
        return None if parts is None else parts[0] * parts[1]

    @staticmethod
    def _restore(saved: list[tuple[list[Tensor], list[Tensor], bool]]) -> None:
        """θ + αv → θ for what :meth:`_move_to_lookahead` moved."""
        with torch.no_grad():
            for ps, backups, foreach in saved:
                if foreach:
                    for bp, bb in foreach_buckets(ps, backups):
                        torch._foreach_copy_(bp, bb)
                else:
                    for p, b in zip(ps, backups):
                        p.copy_(b)

    # ----------------------------------------------------------------- the step
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Perform one update and return the closure's loss (``None`` without a closure).

        With a closure and Nesterov momentum the closure runs at the look-ahead point
        θ + αv (the parameters are moved there and back), as in Algorithms 8.3 and 8.6, so
        the returned loss is the loss *at the look-ahead point*. Afterwards the parameters
        hold θ. Without a closure, Nesterov groups use the reformulation in which the
        parameters hold the look-ahead point itself (see the optimizer's docstring).
        """
        loss = None
        if closure is not None:
            saved = self._move_to_lookahead()
            try:
                with torch.enable_grad():
                    loss = closure()
            finally:
                self._restore(saved)  # also when the closure raised
        for group in self.param_groups:
            # differentiable=True records the update in the autograd graph (torch's meaning).
            with torch.set_grad_enabled(bool(group.get("differentiable"))):
                self._update_group(
                    group, closure_given=closure is not None, path=update_path(group)
                )
        return loss

    def _update_group(self, group: dict[str, Any], *, closure_given: bool, path: str) -> None:
        """Apply the update to the parameters of ``group`` that have a gradient.

        ``path`` is the implementation (:func:`update_path`); ``closure_given`` says whether
        the gradient was taken at θ (Nesterov's closure form) or at the parameters as they are.
        """
        raise NotImplementedError

    # ----------------------------------------------------------------- fused, for fast paths
    def _fusable(self, group: dict[str, Any]) -> bool:
        """Whether the class's fused single-pass update covers ``group``'s options."""
        return False

    def fused_update_applies(self) -> bool:
        """Whether :meth:`step_fused` can update every param group (see each class's
        ``fused=True``: which options its kernel covers)."""
        return all(not g["differentiable"] and self._fusable(g) for g in self.param_groups)

    @torch.no_grad()
    def step_fused(self) -> None:
        """One update of every group by the fused single-pass kernel, as ``fused=True``.

        The gradients are read from ``.grad``; there is no closure. For callers that
        compute the gradients themselves inside a closure and want the fewest passes over
        memory whatever the groups' ``foreach``/``fused`` flags say (the trainer's dense
        fast path). Only when :meth:`fused_update_applies`; the state is the one schema of
        every path.
        """
        for group in self.param_groups:
            self._update_group(group, closure_given=True, path="fused")
