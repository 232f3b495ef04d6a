"""The single-pass kernels behind the default paths, Adam's packed step counters, and
``step_fused`` (what the trainer's fast path calls)."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from descentlab.optim import SGD, AdaGrad, Adam, RMSProp


def _problem(seed: int = 0, steps: int = 6):
    gen = torch.Generator().manual_seed(seed)
    base = [torch.randn(7, 3, generator=gen, dtype=torch.float64) for _ in range(2)]
    base.append(torch.randn(5, generator=gen, dtype=torch.float64))
    grads = [
        [torch.randn(b.shape, generator=gen, dtype=b.dtype) for b in base] for _ in range(steps)
    ]
    return base, grads


def _run(make, base, grads, *, skip: dict[int, int] | None = None):
    """Step ``make(params)`` through ``grads``; ``skip`` maps a step to a parameter left
    without a gradient at that step."""
    params = [b.clone().requires_grad_() for b in base]
    opt = make(params)
    for k, gs in enumerate(grads):
        for i, (p, g) in enumerate(zip(params, gs)):
            p.grad = None if skip and skip.get(k) == i else g.clone()
        opt.step()
    return params, opt


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
@pytest.mark.parametrize("maximize", [False, True], ids=["descend", "maximize"])
@pytest.mark.parametrize("path", [{"foreach": True}, {"fused": True}], ids=["foreach", "fused"])
def test_momentum_kernel_paths_equal_the_per_tensor_box(nesterov, maximize, path):
    # The foreach path runs torch's fused SGD kernel for momentum; Nesterov without a
    # closure adds a second pass. Both must be the per-tensor box to float64 rounding.
    base, grads = _problem()
    kw = dict(lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.01, maximize=maximize)
    ref, _ = _run(lambda p: SGD(p, foreach=False, **kw), base, grads)
    out, opt = _run(lambda p: SGD(p, **path, **kw), base, grads)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)
    assert set(opt.state[out[0]]) == {"velocity"}


def test_adam_step_counters_are_packed_and_exact_when_a_parameter_misses_steps():
    base, grads = _problem(steps=8)
    skip = {2: 1, 5: 1, 6: 0}  # parameter 1 misses steps 3 and 6, parameter 0 step 7
    ref, ref_opt = _run(lambda p: Adam(p, lr=0.01, foreach=False), base, grads, skip=skip)
    for path in ({"foreach": True}, {"fused": True}):
        out, opt = _run(lambda p, path=path: Adam(p, lr=0.01, **path), base, grads, skip=skip)
        for a, b in zip(out, ref):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
        steps = [opt.state[p]["step"] for p in out]
        assert [float(t) for t in steps] == [float(ref_opt.state[p]["step"]) for p in ref]
        assert [float(t) for t in steps] == [7.0, 6.0, 8.0]
        assert all(t.dtype == torch.float32 and t.dim() == 0 for t in steps)


def test_adam_packed_step_counters_survive_a_checkpoint():
    base, grads = _problem(steps=6)
    params, opt = _run(lambda p: Adam(p, lr=0.01), base, grads[:3])
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    resumed = [p.detach().clone().requires_grad_() for p in params]
    opt2 = Adam(resumed, lr=0.01)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    for k in range(3, 6):
        for ps, o in ((params, opt), (resumed, opt2)):
            for p, g in zip(ps, grads[k]):
                p.grad = g.clone()
            o.step()
    for a, b in zip(params, resumed):
        assert torch.equal(a, b)
    assert {float(opt2.state[p]["step"]) for p in resumed} == {6.0}
    # The two optimizers do not share counters after the load.
    opt.state[params[0]]["step"].add_(100.0)
    assert float(opt2.state[resumed[0]]["step"]) == 6.0


@pytest.mark.parametrize(
    "make",
    [
        lambda p, **kw: Adam(p, lr=0.01, weight_decay=0.01, **kw),
        lambda p, **kw: Adam(p, lr=0.01, amsgrad=True, maximize=True, **kw),
        lambda p, **kw: AdaGrad(p, lr=0.1, initial_accumulator_value=0.1, **kw),
        lambda p, **kw: RMSProp(p, lr=0.01, weight_decay=0.01, **kw),
    ],
    ids=["adam", "adam-amsgrad-maximize", "adagrad-r0", "rmsprop"],
)
def test_step_fused_is_the_fused_update_whatever_the_flags(make):
    base, grads = _problem()
    ref, ref_opt = _run(lambda p: make(p, fused=True), base, grads)
    params = [b.clone().requires_grad_() for b in base]
    opt = make(params)  # foreach by default
    assert opt.fused_update_applies()
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step_fused()
    for a, b in zip(params, ref):
        assert torch.equal(a, b)
    for p, q in zip(params, ref):
        assert opt.state[p].keys() == ref_opt.state[q].keys()


@pytest.mark.parametrize(
    "opt",
    [
        lambda p: AdaGrad(p, eps_inside_sqrt=True),
        lambda p: RMSProp(p, momentum=0.9),
        lambda p: RMSProp(p, centered=True),
        lambda p: Adam(p, foreach=False, differentiable=True),
        lambda p: SGD(p, lr=0.1, momentum=0.9),
    ],
    ids=["adagrad-inside", "rmsprop-momentum", "rmsprop-centered", "differentiable", "sgd"],
)
def test_fused_update_applies_only_where_a_kernel_covers_the_options(opt):
    assert not opt([torch.zeros(3, requires_grad=True)]).fused_update_applies()


def test_fused_rmsprop_scratch_never_carries_garbage_or_a_past_nan():
    # The kernel reads its scratch "first moment" before writing g into it: a buffer that
    # started as uninitialized memory (inf/NaN bits) or held a NaN from a bad step before
    # a reload made the parameters non-finite (seen in the trainer's fast path).
    base, grads = _problem(steps=4)
    params = [b.clone().requires_grad_() for b in base]
    opt = RMSProp(params, lr=0.01, fused=True)
    for p, g in zip(params, grads[0]):
        p.grad = g.clone()
    opt.step()
    saved = copy.deepcopy(opt.state_dict())
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.full_like(p, float("nan"))
    opt.step()  # a non-finite gradient reaches the optimizer
    assert not params[0].isfinite().all()
    with torch.no_grad():
        for p, b in zip(params, before):
            p.copy_(b)
    opt.load_state_dict(saved)
    for gs in grads[1:]:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()
    assert all(p.isfinite().all() for p in params)
    ref, _ = _run(lambda p: RMSProp(p, lr=0.01, foreach=False), base, grads)
    for a, b in zip(params, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)
