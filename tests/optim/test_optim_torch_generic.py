"""PyTorch's generic optimizer tests, run against descentlab's optimizers (issue 12).

Each optimizer gets an ``OptimizerInfo`` entry (``torch.testing._internal.common_optimizers``)
listing its CPU configurations, as torch's ``optim_db`` does for torch.optim. The tests
below re-implement, for our classes, the generic tests of PyTorch's ``test/test_optim.py``
(``TestOptimRenewed``); each names the test it mirrors. Every configuration runs on every
implementation the class supports: the per-tensor loop (``foreach=False``), the
multi-tensor update (``foreach=True``; torch's helper would leave it out on CPU because
torch has no CPU foreach *kernels*, but ours runs there), ``fused=True`` where the class
has it, and ``differentiable=True``.

Not mirrored, and why:

* ``test_complex``, ``test_complex_2d``: our optimizers refuse complex parameters with a
  ConfigError naming the fix (``torch.view_as_real``) — the book's rules are real.
* ``test_rosenbrock_sparse``: dense gradients only (sparse ones are refused by design).
* ``test_state_dict_with_cuda_params``, ``test_cpu_load_state_dict``,
  ``test_forloop_goes_right_direction_multigpu``, ``test_fused_cpu_matches_cuda``,
  ``test_fused_large_tensor``, ``test_peak_memory_foreach``, every ``capturable`` test:
  need CUDA (this is a CPU build; ``capturable`` is for CUDA graphs and not offered).
* ``test_fused_does_not_step_if_foundinf``: we do not take AMP's ``grad_scale``/``found_inf``.
* ``test_defaults_changed_to_foreach``: checks which of torch's private functions torch.optim
  dispatches to.
* ``test_optim_infos_do_not_specify_global_cliquey_kwargs``: a lint of torch's own table;
  ours is built the same way (no foreach/fused/differentiable in the inputs).
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau, StepLR
from torch.testing._internal.common_optimizers import (
    OptimizerInfo,
    OptimizerInput,
)

from descentlab.optim import SGD, AdaDelta, AdaGrad, Adam, RMSProp


def _inputs(*configs: tuple[str, dict]):
    return lambda device, dtype=None: [OptimizerInput(None, kw, desc) for desc, kw in configs]


OPTIM_DB = [
    OptimizerInfo(
        SGD,
        optim_inputs_func=_inputs(
            ("plain", {"lr": 0.01}),
            ("tensor lr", {"lr": torch.tensor(0.01)}),
            ("momentum", {"lr": 0.01, "momentum": 0.9}),
            ("nesterov", {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
            ("weight_decay", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.1}),
            ("maximize", {"lr": 0.01, "momentum": 0.9, "maximize": True}),
        ),
        supported_impls=("foreach", "differentiable", "fused"),
        supports_fused_on=("cpu",),
        supports_complex=False,
    ),
    OptimizerInfo(
        AdaGrad,
        optim_inputs_func=_inputs(
            ("default", {"lr": 0.1}),
            ("tensor lr", {"lr": torch.tensor(0.1)}),
            ("initial_accumulator_value", {"lr": 0.1, "initial_accumulator_value": 0.1}),
            ("weight_decay", {"lr": 0.1, "weight_decay": 0.1}),
            ("maximize", {"lr": 0.1, "maximize": True}),
            ("eps inside the root", {"lr": 0.1, "eps_inside_sqrt": True}),
        ),
        supported_impls=("foreach", "differentiable", "fused"),
        supports_fused_on=("cpu",),
        supports_complex=False,
    ),
    OptimizerInfo(
        RMSProp,
        optim_inputs_func=_inputs(
            ("default", {"lr": 0.01}),
            ("tensor lr", {"lr": torch.tensor(0.01)}),
            ("centered", {"lr": 0.01, "centered": True}),
            ("momentum", {"lr": 0.01, "momentum": 0.9}),
            ("nesterov", {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
            ("centered momentum", {"lr": 0.01, "momentum": 0.9, "centered": True}),
            ("weight_decay", {"lr": 0.01, "weight_decay": 0.1}),
            ("maximize", {"lr": 0.01, "maximize": True}),
            ("eps inside the root", {"lr": 0.01, "eps_inside_sqrt": True}),
        ),
        supported_impls=("foreach", "differentiable", "fused"),
        supports_fused_on=("cpu",),
        supports_complex=False,
    ),
    OptimizerInfo(
        Adam,
        optim_inputs_func=_inputs(
            ("default", {"lr": 0.01}),
            ("tensor lr", {"lr": torch.tensor(0.01)}),
            ("tensor betas", {"lr": 0.01, "betas": (torch.tensor(0.9), torch.tensor(0.99))}),
            ("amsgrad", {"lr": 0.01, "amsgrad": True}),
            ("weight_decay", {"lr": 0.01, "weight_decay": 0.1}),
            ("maximize", {"lr": 0.01, "maximize": True, "amsgrad": True}),
        ),
        supported_impls=("foreach", "differentiable", "fused"),
        supports_fused_on=("cpu",),
        supports_complex=False,
    ),
    OptimizerInfo(
        AdaDelta,
        optim_inputs_func=_inputs(
            ("default", {}),
            ("tensor lr", {"lr": torch.tensor(1.0)}),
            ("rho", {"rho": 0.8}),
            ("weight_decay", {"weight_decay": 0.1}),
            ("maximize", {"maximize": True}),
        ),
        supported_impls=("foreach", "differentiable"),
        supports_complex=False,
    ),
]


def _fusable(cls: type, kwargs: dict) -> bool:
    """The configurations ``fused=True`` covers (RMSProp's kernel is plain RMSProp's)."""
    if cls is RMSProp:
        return not any(kwargs.get(k) for k in ("momentum", "centered", "eps_inside_sqrt"))
    return not kwargs.get("eps_inside_sqrt")


def _all_inputs(info: OptimizerInfo) -> list[tuple[str, dict]]:
    """Every configuration on every implementation (torch's
    ``_get_optim_inputs_including_global_cliquey_kwargs``, with our CPU foreach)."""
    out = []
    for inp in info.optim_inputs_func("cpu"):
        impls = [("forloop", {"foreach": False}), ("foreach", {"foreach": True})]
        if "fused" in info.supported_impls and _fusable(info.optim_cls, inp.kwargs):
            impls.append(("fused", {"fused": True}))
        impls.append(("differentiable", {"foreach": False, "differentiable": True}))
        out += [(f"{inp.desc}-{name}", {**copy.deepcopy(inp.kwargs), **kw}) for name, kw in impls]
    return out


CASES = [
    pytest.param(info, kwargs, id=f"{info.name}-{desc}")
    for info in OPTIM_DB
    for desc, kwargs in _all_inputs(info)
]
EAGER_CASES = [c for c in CASES if not c.values[1].get("differentiable")]


def _problem(dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(10, 5, generator=gen, dtype=dtype, requires_grad=True)
    bias = torch.randn(10, generator=gen, dtype=dtype, requires_grad=True)
    x = torch.randn(5, generator=gen, dtype=dtype)
    return weight, bias, x


def _closure(opt, weight, bias, x):
    def closure():
        opt.zero_grad()
        loss = (weight.mv(x) + bias).pow(2).sum()
        loss.backward()
        return loss

    return closure


def _build(info, params, kwargs):
    return info.optim_cls(params, **copy.deepcopy(kwargs))


@pytest.mark.parametrize(("info", "kwargs"), EAGER_CASES)
def test_forloop_goes_right_direction(info, kwargs):
    """Mirrors TestOptimRenewed.test_forloop_goes_right_direction (20 steps, CPU)."""
    weight, bias, x = _problem()
    opt = _build(info, [weight, bias], kwargs)
    closure = _closure(opt, weight, bias, x)
    initial = closure().item()
    for _ in range(20):
        opt.step(closure)
    final = closure().item()
    assert final > initial if kwargs.get("maximize") else final < initial
    repr(opt)  # (torch's _test_basic_cases also prints every optimizer)


@pytest.mark.parametrize("make_sched", [lambda o: StepLR(o, 10, 0.9), ReduceLROnPlateau])
@pytest.mark.parametrize(("info", "kwargs"), EAGER_CASES)
def test_param_group_with_lrscheduler_goes_right_direction(info, kwargs, make_sched):
    """Mirrors test_param_group_with_lrscheduler_goes_right_direction (StepLR and
    ReduceLROnPlateau, torch's default ``scheduler_inputs``), with two param groups."""
    weight, bias, x = _problem()
    groups = [{"params": [weight]}, {"params": [bias], "lr": 0.01}]
    opt = _build(info, groups, kwargs)
    sched = make_sched(opt)
    closure = _closure(opt, weight, bias, x)
    initial = closure().item()
    for _ in range(20):
        loss = opt.step(closure)
        sched.step(loss.item()) if isinstance(sched, ReduceLROnPlateau) else sched.step()
    final = closure().item()
    assert final > initial if kwargs.get("maximize") else final < initial


@pytest.mark.parametrize(("info", "kwargs"), EAGER_CASES)
def test_tensor_lr(info, kwargs):
    """Mirrors test_tensor_lr: a tensor lr gives the same iterates as the same float lr."""
    lr = float(kwargs.get("lr", 1.0))
    results = []
    for as_tensor in (False, True):
        weight, bias, x = _problem()
        # (a float64 tensor holds exactly the float's value)
        lr_arg = torch.tensor(lr, dtype=torch.float64) if as_tensor else lr
        opt = _build(info, [weight, bias], {**kwargs, "lr": lr_arg})
        closure = _closure(opt, weight, bias, x)
        for _ in range(5):
            opt.step(closure)
        results.append((weight.detach().clone(), bias.detach().clone()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize(("info", "kwargs"), CASES)
def test_step_is_noop_when_params_have_no_grad(info, kwargs):
    """Mirrors test_step_is_noop_when_params_have_no_grad."""
    params = [torch.randn(2, 3, requires_grad=True) for _ in range(2)]
    before = [p.detach().clone() for p in params]
    opt = _build(info, params, kwargs)
    opt.step()
    for p, q in zip(params, before):
        assert torch.equal(p.detach(), q)
    assert not any(opt.state.values())


@pytest.mark.parametrize(("info", "kwargs"), EAGER_CASES)
def test_step_is_noop_for_zero_grads(info, kwargs):
    """Mirrors test_step_is_noop_for_zero_grads (configs without weight decay: decoupled
    decay moves θ whatever g is, in torch.optim.AdamW too)."""
    if kwargs.get("weight_decay"):
        pytest.skip("weight decay moves θ with g = 0 by design")
    params = [torch.randn(2, 3, requires_grad=True) for _ in range(2)]
    before = [p.detach().clone() for p in params]
    opt = _build(info, params, kwargs)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    for p, q in zip(params, before):
        assert torch.equal(p.detach(), q)


@pytest.mark.parametrize(("info", "kwargs"), EAGER_CASES)
def test_state_dict_deterministic(info, kwargs):
    """Mirrors test_state_dict_deterministic: a loaded state continues identically and the
    state dicts of equal runs are equal."""
    weight, bias, x = _problem()
    opt = _build(info, [weight, bias], kwargs)
    closure = _closure(opt, weight, bias, x)
    for _ in range(10):
        opt.step(closure)
    weight_c = weight.detach().clone().requires_grad_()
    bias_c = bias.detach().clone().requires_grad_()
    opt_c = _build(info, [weight_c, bias_c], kwargs)
    saved = copy.deepcopy(opt.state_dict())
    opt_c.load_state_dict(copy.deepcopy(saved))
    closure_c = _closure(opt_c, weight_c, bias_c, x)
    for _ in range(10):
        opt.step(closure)
        opt_c.step(closure_c)
        assert torch.equal(weight, weight_c) and torch.equal(bias, bias_c)
    torch.testing.assert_close(opt.state_dict(), opt_c.state_dict(), rtol=0, atol=0)


@pytest.mark.parametrize(("info", "kwargs"), EAGER_CASES)
def test_can_load_older_state_dict(info, kwargs):
    """Mirrors test_can_load_older_state_dict: groups saved without the flags added later
    (torch's ``not_og_supported_flags``) load and step, and step as the full state does."""
    weight, bias, x = _problem()
    opt = _build(info, [weight, bias], kwargs)
    closure = _closure(opt, weight, bias, x)
    for _ in range(5):
        opt.step(closure)
    old = copy.deepcopy(opt.state_dict())
    for group in old["param_groups"]:
        for flag in (*info.not_og_supported_flags, "fused", "foreach", "maximize"):
            group.pop(flag, None)
    weight_c = weight.detach().clone().requires_grad_()
    bias_c = bias.detach().clone().requires_grad_()
    opt_c = _build(info, [weight_c, bias_c], kwargs)
    opt_c.load_state_dict(old)
    closure_c = _closure(opt_c, weight_c, bias_c, x)
    for _ in range(3):
        opt.step(closure)
        opt_c.step(closure_c)
    assert torch.equal(weight, weight_c) and torch.equal(bias, bias_c)


@pytest.mark.parametrize(("info", "kwargs"), EAGER_CASES)
def test_load_nontensor_step(info, kwargs):
    """Mirrors test_load_nontensor_step: a Python-number ``step`` loads and steps."""
    weight, bias, x = _problem()
    opt = _build(info, [weight, bias], kwargs)
    closure = _closure(opt, weight, bias, x)
    opt.step(closure)
    state = copy.deepcopy(opt.state_dict())
    for st in state["state"].values():
        if "step" in st:
            st["step"] = st["step"].item()
    opt.load_state_dict(state)
    opt.step(closure)
    for st in opt.state.values():
        assert "step" not in st or isinstance(st["step"], torch.Tensor)


def _paths_agree(info, kwargs, impl_kwargs, dtype, rtol, atol):
    results = []
    for impl in ({"foreach": False}, impl_kwargs):
        params = [
            torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=dtype),
            torch.randn(7, generator=torch.Generator().manual_seed(2), dtype=torch.float64),
        ]
        params = [p.requires_grad_() for p in params]
        base = {k: v for k, v in kwargs.items() if k not in ("foreach", "fused")}
        opt = _build(info, params, {**base, **impl})
        for k in range(8):
            for i, p in enumerate(params):
                g = torch.sin(p.detach() * (3 + i) + k)
                p.grad = g if k != 3 or i != 1 else None  # one parameter misses a step
            opt.step()
        results.append(([p.detach().clone() for p in params], opt))
    (pa, oa), (pb, ob) = results
    for a, b in zip(pa, pb):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    for p_a, p_b in zip(oa.param_groups[0]["params"], ob.param_groups[0]["params"]):
        assert set(oa.state.get(p_a, {})) == set(ob.state.get(p_b, {}))  # one schema


@pytest.mark.parametrize(("info", "kwargs"), [c for c in EAGER_CASES if c.values[1].get("foreach")])
def test_foreach_matches_forloop(info, kwargs):
    """Mirrors test_foreach_matches_forloop (and test_mixed_device_dtype: float32 and float64
    parameters in one group; one parameter without a gradient in one step)."""
    _paths_agree(info, kwargs, {"foreach": True}, torch.float32, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("info", "kwargs"), [c for c in EAGER_CASES if c.values[1].get("fused")])
def test_fused_matches_forloop(info, kwargs):
    """Mirrors test_fused_matches_forloop: the single-pass kernels compute the book's box."""
    _paths_agree(info, kwargs, {"fused": True}, torch.float32, rtol=1e-5, atol=1e-6)
    _paths_agree(info, kwargs, {"fused": True}, torch.float64, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(("info", "kwargs"), EAGER_CASES)
def test_param_groups_weight_decay_and_lr(info, kwargs):
    """Mirrors test_param_groups_weight_decay and test_param_groups_lr: per-group options
    are honoured and the run still goes the right direction."""
    weight, bias, x = _problem()
    lr = float(kwargs.get("lr", 1.0))
    # (decay pulls θ to 0 whichever way g points: with maximize it need not raise the loss)
    decay = 0.0 if kwargs.get("maximize") else 0.1
    groups = [{"params": [weight], "weight_decay": decay}, {"params": [bias], "lr": lr / 2}]
    opt = _build(info, groups, kwargs)
    assert opt.param_groups[0]["weight_decay"] == decay
    assert float(opt.param_groups[1]["lr"]) == lr / 2
    closure = _closure(opt, weight, bias, x)
    initial = closure().item()
    for _ in range(20):
        opt.step(closure)
    final = closure().item()
    assert final > initial if kwargs.get("maximize") else final < initial


@pytest.mark.parametrize(("info", "kwargs"), EAGER_CASES)
def test_step_and_state_dict_hooks(info, kwargs):
    """Mirrors test_step_pre_hook, test_step_post_hook, test_state_dict_pre_hook,
    test_state_dict_post_hook and test_load_state_dict_post_hook."""
    weight, bias, x = _problem()
    opt = _build(info, [weight, bias], kwargs)
    calls: list[str] = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    opt.register_state_dict_pre_hook(lambda o: calls.append("sd-pre"))
    opt.register_state_dict_post_hook(lambda o, sd: calls.append("sd-post"))
    opt.register_load_state_dict_post_hook(lambda o: calls.append("load-post"))
    opt.step(_closure(opt, weight, bias, x))
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert calls == ["pre", "post", "sd-pre", "sd-post", "load-post"]


@pytest.mark.parametrize(("info", "kwargs"), EAGER_CASES)
def test_deepcopy_copies_all_public_attrs_and_non_empty_state(info, kwargs):
    """Mirrors test_deepcopy_copies_all_public_attrs and test_non_empty_state (every state
    entry that exists is non-empty: plain SGD keeps none at all)."""
    weight, bias, x = _problem()
    opt = _build(info, [weight, bias], kwargs)
    opt.step(_closure(opt, weight, bias, x))

    def public(obj):
        return {k for k in obj.__dict__ if not k.startswith("_")}

    assert public(opt) == public(copy.deepcopy(opt))
    assert all(len(state) > 0 for state in opt.state.values())


@pytest.mark.parametrize(("info", "kwargs"), EAGER_CASES)
def test_save_load_equality_with_weights_only(info, kwargs):
    """Mirrors test_save_load_equality_with_weights_only: the state dict round-trips
    through ``torch.load(weights_only=True)``."""
    weight, bias, x = _problem()
    opt = _build(info, [weight, bias], kwargs)
    opt.step(_closure(opt, weight, bias, x))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    torch.testing.assert_close(loaded, opt.state_dict(), rtol=0, atol=0)


ERRORS = {
    SGD: [({"lr": -0.5}, "lr"), ({"lr": 0.1, "momentum": -0.5}, "momentum")],
    AdaGrad: [({"lr": -0.5}, "lr"), ({"eps": -1.0}, "eps")],
    RMSProp: [
        ({"lr": -0.5}, "lr"),
        ({"rho": 1.5}, "rho"),
        ({"fused": True, "momentum": 0.9}, "fused"),
    ],
    Adam: [
        ({"lr": -0.5}, "lr"),
        ({"betas": (1.0, 0.999)}, "betas"),
        ({"fused": True, "foreach": True}, "fused"),
    ],
    AdaDelta: [({"lr": -0.5}, "lr"), ({"rho": -0.1}, "rho")],
}


@pytest.mark.parametrize("info", OPTIM_DB, ids=lambda i: i.name)
def test_errors(info):
    """Mirrors test_errors (torch's ``optim_error_inputs_func``): invalid constructor
    inputs raise ValueError naming the option (ours: ConfigError, a ValueError)."""
    for kwargs, name in ERRORS[info.optim_cls]:
        with pytest.raises(ValueError, match=name):
            info.optim_cls([torch.zeros(2, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError, match="complex"):
        info.optim_cls([torch.zeros(2, dtype=torch.complex64, requires_grad=True)], lr=0.1)


@pytest.mark.parametrize(
    ("info", "kwargs"), [c for c in CASES if c.values[1].get("differentiable")]
)
def test_differentiable(info, kwargs):
    """Mirrors torch's test/optim/test_differentiable.py: with ``differentiable=True`` the
    update is part of the autograd graph, and gradcheck agrees with finite differences."""
    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    g0 = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)

    def two_steps(p_init, g):
        p = p_init.clone()  # a non-leaf: the update may be recorded on it
        opt = info.optim_cls([p], **copy.deepcopy(kwargs))
        for k in range(2):
            p.grad = g * (1.0 + k)
            opt.step()
        return p

    assert torch.autograd.gradcheck(two_steps, (p0, g0), eps=1e-6, atol=1e-5)
