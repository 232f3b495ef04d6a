"""The trainer's fast path (train/fast.py) must follow the plain autograd path's trajectory.

Every test runs the same configuration twice — fast path on and off — from the same seed
and compares the parameters and the recorded costs.  Differences may only come from the
rounding of the matrix products (float32).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from descentlab.data import load_dataset
from descentlab.errors import DivergenceError
from descentlab.train import Callback, TrainConfig, Trainer
from descentlab.train.fast import DenseFastPath, fast_path_for

# float32 products summed in another order: a few ulps per step, compounding over steps.
RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _trainer(data, fast: bool, **options) -> Trainer:
    values = {"dataset": "digits", "quiet": True, "early_stopping": "none", "max_epochs": 2}
    cfg = TrainConfig(**{**values, **options, "fast_path": fast})
    return Trainer(cfg, data=data)


def _run_pair(data, **options) -> tuple[Trainer, Trainer]:
    # One after the other: dropout draws from the global generator each trainer seeds.
    fast = _trainer(data, True, **options)
    fast.fit()
    plain = _trainer(data, False, **options)
    plain.fit()
    return fast, plain


def _assert_same_trajectory(fast: Trainer, plain: Trainer) -> None:
    for (name, p), q in zip(fast.model.named_parameters(), plain.model.parameters()):
        torch.testing.assert_close(p, q, rtol=RTOL, atol=ATOL, msg=f"parameter {name}")
    assert len(fast.history) == len(plain.history)
    for a, b in zip(fast.history, plain.history):
        assert a["train_nll"] == pytest.approx(b["train_nll"], rel=1e-5)
        assert a["valid_error"] == pytest.approx(b["valid_error"], abs=2.5 / 360)


COMBOS = {
    "logreg-sgd (fused update)": dict(model="logreg", batch_size=20),
    "tanh-sgd-l2 (fused update)": dict(
        model="mlp", hidden=(64,), activation="tanh", lr=0.05, l2=1e-3, batch_size=20
    ),
    "relu-adam-shuffle (fused update)": dict(
        model="mlp",
        hidden=(64, 32),
        activation="relu",
        optimizer="adam",
        lr=1e-3,
        batch_size=16,
        shuffle=True,
    ),
    "sigmoid-nesterov-l1-l2": dict(
        model="mlp",
        hidden=(48,),
        activation="sigmoid",
        optimizer="nesterov",
        lr=0.05,
        l1=1e-4,
        l2=1e-4,
        batch_size=10,
    ),
    "relu-dropout-clip": dict(
        model="mlp",
        hidden=(64,),
        activation="relu",
        dropout=0.3,
        lr=0.05,
        batch_size=10,
        clip_norm=1.0,
    ),
    "tanh-dropout-sgd (fused update)": dict(
        model="mlp", hidden=(32, 32), dropout=0.2, lr=0.05, batch_size=25, shuffle=True
    ),
    "sgd-weight-decay-l1-schedule (fused update)": dict(
        model="mlp",
        hidden=(40,),
        lr=0.1,
        weight_decay=1e-3,
        l1=1e-4,
        schedule="linear:tau_epochs=1,final_ratio=0.1",
        batch_size=32,
        drop_last=False,
    ),
    # RMSProp divides by √r + δ: a gradient component near 0 moves by about ε·g/δ, so
    # with the default δ = 1e-6 the last-bit differences of such components (the matrix
    # products sum in another order) are amplified ε/δ = 1000 times.  A larger δ keeps
    # the comparison at the rounding level the gradients themselves agree to.
    "rmsprop-momentum-l2": dict(
        model="mlp",
        hidden=(32,),
        optimizer="rmsprop",
        lr=1e-3,
        eps=1e-4,
        momentum=0.9,
        l2=1e-3,
        batch_size=20,
    ),
    # Adam, AdaGrad, RMSProp: the optimizers' own fused=True updates inside the closure
    # (backward_fused_); momentum SGD's own step runs its fused kernel.
    "tanh-adagrad-l2 (fused update)": dict(
        model="mlp", hidden=(32,), optimizer="adagrad", lr=0.05, eps=1e-4, l2=1e-3, batch_size=20
    ),
    "relu-rmsprop-shuffle (fused update)": dict(
        model="mlp",
        hidden=(32,),
        activation="relu",
        optimizer="rmsprop",
        lr=1e-3,
        eps=1e-4,
        batch_size=20,
        shuffle=True,
    ),
    "logreg-momentum-weight-decay": dict(
        model="logreg", optimizer="momentum", lr=0.05, weight_decay=1e-3, batch_size=20
    ),
}


@pytest.mark.parametrize("name", list(COMBOS))
def test_fast_path_follows_the_plain_trajectory(digits, name):
    fast, plain = _run_pair(digits, **COMBOS[name])
    assert fast.fast_path is not None, fast.fast_path_reason
    assert plain.fast_path is None
    _assert_same_trajectory(fast, plain)
    # The closure applied the update itself (no .grad left) exactly where it should.
    fused = all(p.grad is None for p in fast.model.parameters())
    assert fused == ("(fused update)" in name)


def test_fused_sgd_is_used_only_when_nothing_reads_the_gradients(digits):
    fused = _trainer(digits, True, model="mlp", hidden=(16,), batch_size=50, max_epochs=1)
    fused.fit()
    assert fused._fuse_sgd
    assert all(p.grad is None for p in fused.model.parameters())

    clipped = _trainer(
        digits, True, model="mlp", hidden=(16,), batch_size=50, max_epochs=1, clip_norm=1.0
    )
    clipped.fit()
    assert not clipped._fuse_sgd
    assert all(p.grad is not None for p in clipped.model.parameters())

    class GradWatcher(Callback):
        def on_step(self, trainer, iteration, loss):
            self.seen = [p.grad is not None for p in trainer.model.parameters()]

    watcher = GradWatcher()
    cfg = TrainConfig(
        dataset="digits", quiet=True, model="mlp", hidden=(16,), batch_size=50, max_epochs=1
    )
    watched = Trainer(cfg, data=digits, callbacks=[watcher])
    watched.fit()
    assert watched.fast_path is not None and not watched._fuse_sgd
    assert all(watcher.seen)


def test_gradients_equal_autograd_on_one_minibatch(digits):
    torch.manual_seed(0)
    from descentlab.losses import nll, penalty
    from descentlab.models import build_model

    model = build_model("mlp", (1, 8, 8), 10, hidden=(30, 20), activation="tanh")
    x, y = digits.train.x[:40], digits.train.y[:40]
    fast, reason = fast_path_for(model, nll, l1=1e-3, l2=1e-2)
    assert isinstance(fast, DenseFastPath), reason
    cost = fast.forward(x, y)
    fast.backward()
    ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    expected = nll(model(x), y) + penalty(model, l1=1e-3, l2=1e-2)
    expected.backward()
    assert cost.item() == pytest.approx(expected.item(), rel=1e-6)
    for g, p in zip(ours, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (dict(model="mlp", hidden=(16,), batch_norm=True), "batch norm"),
        (dict(model="mlp", hidden=(16,), loss="mse"), "not the NLL"),
    ],
)
def test_fast_path_falls_back_where_it_does_not_apply(digits, options, reason):
    trainer = _trainer(digits, True, batch_size=50, **options)
    assert trainer.fast_path is None
    assert reason in trainer.fast_path_reason


def test_a_users_own_module_trains_by_autograd(digits):
    cfg = TrainConfig(dataset="digits", quiet=True, batch_size=50, max_epochs=1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    trainer = Trainer(cfg, data=digits, model=model)
    assert trainer.fast_path is None
    assert "not a descentlab logreg/mlp" in trainer.fast_path_reason
    trainer.fit()


def test_fast_path_off_when_hooks_or_frozen_parameters(digits):
    from descentlab.losses import nll
    from descentlab.models import build_model

    model = build_model("mlp", (1, 8, 8), 10, hidden=(8,))
    handle = model.output.register_forward_hook(lambda m, i, o: None)
    assert fast_path_for(model, nll, l1=0, l2=0)[0] is None
    handle.remove()
    assert fast_path_for(model, nll, l1=0, l2=0)[0] is not None
    model.output.bias.requires_grad_(False)
    assert "frozen" in fast_path_for(model, nll, l1=0, l2=0)[1]
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert fast_path_for(plain, nll, l1=0, l2=0)[0] is None


def test_a_hook_added_by_a_callback_switches_to_autograd_at_the_next_epoch(digits):
    calls = []

    class AddsHook(Callback):
        def on_train_start(self, trainer):
            trainer.model.output.register_forward_hook(lambda m, i, o: calls.append(1))

    cfg = TrainConfig(
        dataset="digits", quiet=True, model="mlp", hidden=(8,), batch_size=100, max_epochs=1
    )
    trainer = Trainer(cfg, data=digits, callbacks=[AddsHook()])
    trainer.fit()
    assert trainer.fast_path is None and "changed" in trainer.fast_path_reason
    assert calls  # the hook ran: the model was called through autograd


def test_divergence_is_reported_on_the_fast_path_too(digits):
    for fast in (True, False):
        trainer = _trainer(
            digits, fast, model="mlp", hidden=(16,), activation="relu", lr=1e12, batch_size=20
        )
        with pytest.raises(DivergenceError):
            trainer.fit()


def test_skip_batch_on_the_fast_path_leaves_no_stale_gradients(digits):
    trainer = _trainer(digits, True, model="mlp", hidden=(16,), batch_size=20, on_nan="skip-batch")
    x, y = digits.train.x[:20], digits.train.y[:20]
    trainer._step(x, y)  # a good step leaves gradients (or, fused, none) behind
    before = [p.detach().clone() for p in trainer.model.parameters()]
    loss = trainer._step(torch.full_like(x, math.nan), y)
    assert math.isnan(loss.item())
    assert trainer.skipped_batches == 1
    assert all(p.grad is None for p in trainer.model.parameters())
    for p, q in zip(trainer.model.parameters(), before):
        assert torch.equal(p, q)  # nothing was applied


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_fused_adam_matches_the_books_adam_step_by_step(weight_decay):
    # Same model twice; one trained by autograd + descentlab's Adam (foreach), the other by
    # the fast path's fused update.  Each step starts both from identical parameters.
    from descentlab.losses import nll
    from descentlab.models import build_model
    from descentlab.optim import Adam

    torch.manual_seed(0)
    ref = build_model("mlp", 64, 10, hidden=(32,), activation="relu")
    fused = build_model("mlp", 64, 10, hidden=(32,), activation="relu")
    fused.load_state_dict(ref.state_dict())
    opt_ref = Adam(ref.parameters(), lr=0.01, weight_decay=weight_decay)
    opt_fused = Adam(fused.parameters(), lr=0.01, weight_decay=weight_decay)
    fast, reason = fast_path_for(fused, nll)
    assert fast is not None, reason
    for step in range(1, 6):
        x, y = torch.randn(16, 64), torch.randint(0, 10, (16,))
        opt_ref.zero_grad()
        nll(ref(x), y).backward()
        opt_ref.step()
        fast.forward(x, y)
        assert fast.fused_optimizer(opt_fused) is opt_fused
        fast.backward_fused_(opt_fused)
        opt_fused.step()  # finds no .grad: must not apply anything again
        assert all(p.grad is None for p in fused.parameters())
        for p, q in zip(fused.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
            assert opt_fused.state[p]["step"] == step
            for key in ("first_moment", "second_moment"):
                torch.testing.assert_close(
                    opt_fused.state[p][key], opt_ref.state[q][key], rtol=1e-5, atol=1e-7
                )
        fused.load_state_dict(ref.state_dict())  # no drift between steps


def test_trainer_uses_the_fused_adam_update_only_when_nothing_reads_gradients(digits):
    fused = _trainer(digits, True, model="mlp", hidden=(16,), optimizer="adam", max_epochs=1)
    fused.fit()
    assert fused._fuse_sgd and all(p.grad is None for p in fused.model.parameters())
    clipped = _trainer(
        digits, True, model="mlp", hidden=(16,), optimizer="adam", max_epochs=1, clip_norm=1.0
    )
    clipped.fit()
    assert all(p.grad is not None for p in clipped.model.parameters())


@pytest.mark.parametrize(
    "option", [{"amsgrad": True}, {"maximize": True}], ids=["amsgrad", "maximize"]
)
def test_fused_fast_path_applies_every_option_of_the_optimizers_fused_update(digits, option):
    # The fast path hands the update to the optimizer's own fused=True update, which
    # implements AMSGrad and maximize: the trajectory is the autograd path's.
    fast = _trainer(digits, True, model="mlp", hidden=(16,), optimizer="adam", max_epochs=1)
    plain = _trainer(digits, False, model="mlp", hidden=(16,), optimizer="adam", max_epochs=1)
    for trainer in (fast, plain):
        trainer.optimizer.param_groups[0].update(option)
    assert fast.fast_path.fused_optimizer(fast.optimizer) is fast.optimizer
    fast.fit()
    plain.fit()
    assert all(p.grad is None for p in fast.model.parameters())  # the fused update ran
    _assert_same_trajectory(fast, plain)
    sgd = _trainer(digits, True, model="logreg", max_epochs=1)
    if "maximize" in option:
        sgd.optimizer.param_groups[0].update(option)
        assert sgd.fast_path.sgd_rates(sgd.optimizer) is None


@pytest.mark.parametrize(
    ("optimizer", "option"),
    [
        ("adagrad", {"eps_inside_sqrt": True}),
        ("rmsprop", {"centered": True}),
        ("rmsprop", {"momentum": 0.9}),
        ("nesterov", {}),
        ("adam", {"differentiable": True}),
    ],
)
def test_fused_fast_path_leaves_options_its_kernels_lack_to_the_optimizer(
    digits, optimizer, option
):
    fast = _trainer(digits, True, model="mlp", hidden=(16,), optimizer=optimizer, max_epochs=1)
    fast.optimizer.param_groups[0].update(option)
    assert fast.fast_path is not None
    assert fast.fast_path.fused_optimizer(fast.optimizer) is None


def test_fused_fast_path_adam_keeps_the_optimizers_tensor_step(digits):
    # One state schema on every path: t stays a float32 tensor after fast-path steps.
    fast = _trainer(digits, True, model="mlp", hidden=(16,), optimizer="adam", max_epochs=1)
    fast.fit()
    steps = {float(s["step"]) for s in fast.optimizer.state.values()}
    assert all(isinstance(s["step"], torch.Tensor) for s in fast.optimizer.state.values())
    assert steps == {float(fast.iteration + 1)}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_skipping_optimizer_step_changes_nothing_and_hooks_still_run(digits, optimizer):
    # When the fast path applies the whole update inside the closure, the trainer calls
    # the closure directly (optimizer.step would find no gradient).  A step hook must
    # still see every step (then step is called), and either way the run is the same.
    options = dict(model="mlp", hidden=(16,), batch_size=50, max_epochs=2, optimizer=optimizer,
                   lr=0.01 if optimizer == "adam" else 0.1, schedule="inv:t0=20")  # fmt: skip
    direct = _trainer(digits, True, **options)
    direct.fit()
    hooked = _trainer(digits, True, **options)
    calls = []
    handle = hooked.optimizer.register_step_pre_hook(lambda opt, args, kwargs: calls.append(1))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
        hooked.fit()
    handle.remove()
    assert len(calls) == 2 * hooked.batches_per_epoch > 0  # every step of the 2 epochs
    for a, b in zip(direct.model.parameters(), hooked.model.parameters()):
        assert torch.equal(a, b)
    assert [r.valid_error for r in direct.history] == [r.valid_error for r in hooked.history]
    assert [r.lr for r in direct.history] == [r.lr for r in hooked.history]
