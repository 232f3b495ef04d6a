"""Checkpointing, foreach vs per-tensor paths, closure/Nesterov semantics, param groups."""

from __future__ import annotations

import copy
import io

import optim_problem as P
import pytest
import torch

from descentlab.errors import CheckpointError, ConfigError
from descentlab.optim import SGD, AdaDelta, AdaGrad, Adam, RMSProp, build_optimizer

# Every algorithm and mode, with hyperparameters that keep the runs well conditioned: near
# the minimum of this problem RMSProp behaves like sign descent and, with larger steps,
# amplifies rounding differences chaotically (the literal per-tensor path then also drifts
# away from a NumPy transcription), which would make "equal up to rounding" meaningless.
CONFIGS = {
    "sgd": lambda p, fe: SGD(p, lr=0.3, weight_decay=0.01, foreach=fe),
    "momentum": lambda p, fe: SGD(p, lr=0.1, momentum=0.9, foreach=fe),
    "nesterov": lambda p, fe: SGD(p, lr=0.1, momentum=0.9, nesterov=True, foreach=fe),
    "adagrad": lambda p, fe: AdaGrad(p, lr=0.1, foreach=fe),
    "rmsprop": lambda p, fe: RMSProp(p, lr=0.001, foreach=fe),
    "rmsprop-inside": lambda p, fe: RMSProp(p, lr=0.001, eps_inside_sqrt=True, foreach=fe),
    "rmsprop-nesterov": lambda p, fe: RMSProp(
        p, lr=0.0003, momentum=0.9, nesterov=True, foreach=fe
    ),
    "adam": lambda p, fe: Adam(p, lr=0.01, weight_decay=0.01, foreach=fe),
    "adadelta": lambda p, fe: AdaDelta(p, foreach=fe),
}


def _params_equal(a, b):
    return all(torch.equal(x.detach(), y.detach()) for x, y in zip(a, b))


@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "per-tensor"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_dict_resume_is_bit_identical(name, foreach):
    make = CONFIGS[name]
    problem = P.TorchProblem(dtype=torch.float32)
    opt = make(problem.params, foreach)
    P.run_torch(problem, opt, 10)

    buffer = io.BytesIO()
    torch.save(
        {"opt": opt.state_dict(), "params": [p.detach().clone() for p in problem.params]}, buffer
    )
    P.run_torch(problem, opt, 10)  # the uninterrupted run

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = P.TorchProblem(dtype=torch.float32)
    with torch.no_grad():
        for p, v in zip(resumed.params, saved["params"]):
            p.copy_(v)
    opt2 = make(resumed.params, foreach)
    opt2.load_state_dict(saved["opt"])
    P.run_torch(resumed, opt2, 10)
    assert _params_equal(problem.params, resumed.params)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_foreach_and_per_tensor_paths_agree(name):
    make = CONFIGS[name]
    a, b = P.TorchProblem(), P.TorchProblem()
    P.run_torch(a, make(a.params, True), 50)
    P.run_torch(b, make(b.params, False), 50)
    if name not in ("sgd", "adagrad", "adadelta"):
        # The foreach path rearranges the arithmetic (Adam folds the bias corrections into
        # scalars, SGD factors the velocity as c·u, RMSProp r as s·r̃): equal up to rounding.
        for x, y in zip(a.params, b.params):
            torch.testing.assert_close(x, y, rtol=1e-13, atol=1e-13)
    else:
        # Same elementary ops in the same order: bit for bit on CPU.
        assert _params_equal(a.params, b.params)


def test_foreach_handles_mixed_dtypes():
    p32 = torch.ones(4, requires_grad=True)
    p64 = torch.ones(3, dtype=torch.float64, requires_grad=True)
    q32 = torch.ones(4, requires_grad=True)
    q64 = torch.ones(3, dtype=torch.float64, requires_grad=True)
    for opt, ps in (
        (Adam([p32, p64], foreach=True), (p32, p64)),
        (Adam([q32, q64], foreach=False), (q32, q64)),
    ):
        for _ in range(3):
            opt.zero_grad()
            sum((p * p).sum() for p in ps).backward()
            opt.step()
    torch.testing.assert_close(p32, q32)
    torch.testing.assert_close(p64, q64)


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("cls", [SGD, RMSProp])
def test_nesterov_closure_runs_at_lookahead_and_leaves_theta(cls, foreach):
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = cls([w], lr=0.1, momentum=0.5, nesterov=True, foreach=foreach)
    seen = []

    def closure():
        opt.zero_grad()
        seen.append(w.detach().clone())
        loss = (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)  # v = 0: the look-ahead point is θ itself
    assert torch.equal(seen[0], torch.tensor([1.0, -2.0], dtype=torch.float64))
    theta = w.detach().clone()
    v = opt.velocity(w)
    loss = opt.step(closure)
    lookahead = theta + 0.5 * v
    torch.testing.assert_close(seen[1], lookahead, rtol=0, atol=1e-15)
    assert loss.item() == pytest.approx((lookahead**2).sum().item())
    # After the step the parameters hold θ + v_new (not the look-ahead point).
    torch.testing.assert_close(w.detach(), theta + opt.velocity(w), rtol=0, atol=1e-15)
    assert not torch.allclose(w.detach(), lookahead)


def test_closure_exception_restores_theta_exactly():
    w = torch.tensor([0.3, 0.7, -1.1], requires_grad=True)
    opt = SGD([w], lr=0.1, momentum=0.9, nesterov=True)

    def good():
        opt.zero_grad()
        (w**2).sum().backward()
        return 0.0

    opt.step(good)
    opt.step(good)
    before = w.detach().clone()

    def bad():
        raise RuntimeError("data loader failed")

    with pytest.raises(RuntimeError, match="data loader"):
        opt.step(bad)
    assert torch.equal(w.detach(), before)


def test_param_groups_with_their_own_hyperparameters():
    problem = P.TorchProblem()
    W, b = problem.params
    opt = SGD(
        [{"params": [W]}, {"params": [b], "lr": 0.0001, "momentum": 0.0}], lr=0.5, momentum=0.9
    )
    b0 = b.detach().clone()
    P.run_torch(problem, opt, 5)
    assert (b.detach() - b0).abs().max() < 1e-3
    assert "velocity" not in opt.state[b]
    with pytest.raises(ConfigError, match="lr"):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "lr": -1.0})
    with pytest.raises(ConfigError, match="nesterov"):
        opt.add_param_group(
            {"params": [torch.zeros(2, requires_grad=True)], "momentum": 0.0, "nesterov": True}
        )


def test_loading_another_optimizers_state_is_a_checkpoint_error():
    problem = P.TorchProblem()
    adam = Adam(problem.params)
    P.run_torch(problem, adam, 2)
    sgd = SGD(problem.params, lr=0.1, momentum=0.9)
    with pytest.raises(CheckpointError, match="different optimizer"):
        sgd.load_state_dict(adam.state_dict())


def test_deepcopy_and_scratch_buffers_stay_out_of_the_state():
    problem = P.TorchProblem()
    opt = Adam(problem.params)
    P.run_torch(problem, opt, 2)
    assert set(opt.state_dict()["state"][0]) == {"step", "first_moment", "second_moment"}
    clone = copy.deepcopy(opt)
    assert clone._scratch == {}
    clone.release_scratch()


def test_sparse_gradients_are_refused():
    emb = torch.nn.Embedding(5, 2, sparse=True)
    opt = build_optimizer("adam", emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(ConfigError, match="sparse"):
        opt.step()


def _quadratic_params():
    gen = torch.Generator().manual_seed(5)
    flat = torch.randn(40, generator=gen, dtype=torch.float64)
    transposed = torch.randn(6, 7, generator=gen, dtype=torch.float64).t()  # not contiguous
    small = torch.randn(3, generator=gen, dtype=torch.float64)
    return [
        t.clone().requires_grad_() if t.is_contiguous() else t.requires_grad_()
        for t in (flat, transposed, small)
    ]


def _run_quadratic(make, params, steps, skip_small_every=0):
    opt = make(params, True)
    weights = [torch.linspace(0.5, 2.0, p.numel(), dtype=p.dtype).view_as(p) for p in params]
    for k in range(steps):
        opt.zero_grad()
        used = params if not skip_small_every or k % skip_small_every else params[:-1]
        sum(((p - 1.0) ** 2 * w).sum() for p, w in zip(used, weights)).backward()
        opt.step()
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cache_tiles_do_not_change_a_single_bit(name, monkeypatch):
    """With tiny tiles every large tensor is cut into views; results must not change."""
    from descentlab.optim import _base

    untiled = _run_quadratic(CONFIGS[name], _quadratic_params(), 20, skip_small_every=3)
    monkeypatch.setattr(_base, "TILE_NUMEL", 8)
    seen = list(_base.foreach_tiles(_quadratic_params(), [1, 2, 3]))
    assert len(seen) > 3 and all(len(t[0]) == len(t[1]) for t in seen)
    tiled = _run_quadratic(CONFIGS[name], _quadratic_params(), 20, skip_small_every=3)
    for a, b in zip(untiled, tiled):
        assert torch.equal(a, b)


@pytest.mark.parametrize("first", [True, False], ids=["foreach-then-per-tensor", "reverse"])
@pytest.mark.parametrize("name", ["momentum", "nesterov", "rmsprop", "rmsprop-nesterov"])
def test_state_converts_between_paths(name, first):
    """A state written by one path continues on the other."""
    make = CONFIGS[name]
    ref, mixed = P.TorchProblem(), P.TorchProblem()
    P.run_torch(ref, make(ref.params, True), 120)
    opt = make(mixed.params, first)
    P.run_torch(mixed, opt, 110)
    v_before = [opt.velocity(p) for p in mixed.params]
    opt2 = make(mixed.params, not first)
    opt2.load_state_dict(opt.state_dict())
    for a, p in zip(v_before, mixed.params):
        assert a is None or torch.equal(a, opt2.velocity(p))
    P.run_torch(mixed, opt2, 10)
    for x, y in zip(ref.params, mixed.params):
        torch.testing.assert_close(x, y, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_one_state_schema_on_both_paths(name):
    """The foreach and per-tensor paths store the same keys holding the same book quantity."""
    a, b = P.TorchProblem(), P.TorchProblem()
    opt_a, opt_b = CONFIGS[name](a.params, True), CONFIGS[name](b.params, False)
    P.run_torch(a, opt_a, 30)
    P.run_torch(b, opt_b, 30)
    for pa, pb in zip(a.params, b.params):
        sa, sb = opt_a.state.get(pa, {}), opt_b.state.get(pb, {})
        assert set(sa) == set(sb) <= type(opt_a)._state_keys
        for key in sa:
            torch.testing.assert_close(sa[key], sb[key], rtol=1e-12, atol=1e-14)


def test_plain_sgd_keeps_no_state():
    problem = P.TorchProblem()
    opt = SGD(problem.params, lr=0.1)
    P.run_torch(problem, opt, 3)
    assert opt.state_dict()["state"] == {}


def test_state_of_the_older_layouts_is_converted_on_load():
    """Checkpoints written before the one-schema change (v = c·u, r = s·r̃, int t) resume."""
    a, b = P.TorchProblem(), P.TorchProblem()
    sgd_a, sgd_b = SGD(a.params, lr=0.1, momentum=0.9), SGD(b.params, lr=0.1, momentum=0.9)
    P.run_torch(a, sgd_a, 5)
    old = copy.deepcopy(sgd_a.state_dict())  # (state_dict() shares the live state dicts)
    for st in old["state"].values():  # the old foreach layout of the same v: u = −v, c = −1
        st["momentum_avg"] = st.pop("velocity").neg()
        st["velocity_scale"] = -1.0
    with torch.no_grad():
        for p, q in zip(b.params, a.params):
            p.copy_(q)
    sgd_b.load_state_dict(old)
    P.run_torch(a, sgd_a, 5)
    P.run_torch(b, sgd_b, 5)
    assert _params_equal(a.params, b.params)

    rms = RMSProp(a.params, lr=1e-3)
    P.run_torch(a, rms, 3)
    old = copy.deepcopy(rms.state_dict())
    r = {k: st["square_avg"].clone() for k, st in old["state"].items()}
    for st in old["state"].values():
        st["square_avg"] = st["square_avg"] * 4.0
        st["square_avg_scale"] = 0.25
    rms2 = RMSProp(b.params, lr=1e-3)
    rms2.load_state_dict(old)
    for k, p in enumerate(b.params):
        torch.testing.assert_close(rms2.state[p]["square_avg"], r[k], rtol=1e-15, atol=0)

    adam = Adam(a.params)
    P.run_torch(a, adam, 3)
    old = copy.deepcopy(adam.state_dict())
    for st in old["state"].values():
        st["step"] = int(st["step"].item())
    adam2 = Adam(b.params)
    adam2.load_state_dict(old)
    assert all(isinstance(adam2.state[p]["step"], torch.Tensor) for p in b.params)


def test_an_optimizer_does_not_import_dynamo_until_something_else_does():
    # torch's wrappers of add_param_group/state_dict/zero_grad import torch._dynamo on
    # first use (about a second of start-up); ours call the wrapped functions until
    # dynamo is loaded, then the wrappers.  Checked in a fresh interpreter.
    import subprocess
    import sys

    code = """
import sys, torch
from descentlab.optim import build_optimizer
p = torch.nn.Parameter(torch.ones(3))
for name in ("sgd", "momentum", "adam", "adagrad", "rmsprop", "adadelta"):
    opt = build_optimizer(name, [p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    opt.zero_grad()
    state = opt.state_dict()
    opt.load_state_dict(state)
    opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))]})
assert "torch._dynamo" not in sys.modules, "dynamo was imported"
import torch._dynamo
opt = build_optimizer("adam", [p], lr=0.1)
opt.load_state_dict(opt.state_dict())
opt.zero_grad()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
