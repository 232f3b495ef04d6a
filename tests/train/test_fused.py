"""The fused trainer: every member equals the separate run with the same options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from descentlab import fit
from descentlab.errors import ConfigError
from descentlab.train.build import load_data
from descentlab.train.config import from_mapping
from descentlab.train.fused import fit_fused, fuse_problem, group_key

BASE = {"dataset": "digits", "batch_size": 20, "quiet": True, "device": "cpu"}

# Members differ in everything a member may set on its own.
LOGREG = [
    {"lr": 0.13, "seed": 1},
    {"lr": 0.05, "seed": 2, "l2": 1e-3},
    {"lr": 0.2, "seed": 3, "l1": 1e-4},
]
MLP = [
    {"lr": 0.01, "optimizer": "momentum", "momentum": 0.9, "seed": 1},
    {"lr": 0.05, "optimizer": "momentum", "momentum": 0.5, "seed": 2, "l2": 1e-4},
    {"lr": 0.02, "optimizer": "momentum", "momentum": 0.9, "seed": 3, "weight_decay": 1e-3},
]


def _configs(model: str, members: list[dict], **extra: object) -> list:
    common = {**BASE, "model": model, **extra}
    if model == "mlp":
        common["hidden"] = (32,)
    return [from_mapping({**common, **m}) for m in members]


def _check_same(fused, separate, atol: float = 1e-5) -> None:
    fs, ss = fused.summary, separate.summary
    assert fs.best_iteration == ss.best_iteration
    assert fs.iterations == ss.iterations
    assert fs.epochs_run == ss.epochs_run
    assert fs.stopped_because == ss.stopped_because
    assert fs.best_valid_error == ss.best_valid_error
    assert fs.test_error == ss.test_error
    assert [r["valid_error"] for r in fused.history] == [r["valid_error"] for r in separate.history]
    assert [r["iteration"] for r in fused.history] == [r["iteration"] for r in separate.history]
    final_f = fused.model.state_dict()
    final_s = separate.model.state_dict()
    assert final_f.keys() == final_s.keys()
    for key in final_s:
        torch.testing.assert_close(final_f[key], final_s[key], rtol=1e-4, atol=atol)
    assert torch.equal(fused.test_predictions, separate.test_predictions)


@pytest.mark.parametrize(
    ("model", "members", "extra"),
    [
        ("logreg", LOGREG, {"max_epochs": 2, "early_stopping": "none"}),
        ("mlp", MLP, {"max_epochs": 2, "early_stopping": "none"}),
        # the tutorial's patience rule stops each member at its own iteration
        ("logreg", LOGREG, {"max_epochs": 40, "patience": 300}),
        ("mlp", MLP, {"max_epochs": 30, "patience": 200}),
    ],
)
def test_each_member_equals_its_separate_run(model, members, extra):
    configs = _configs(model, members, **extra)
    data = load_data(configs[0])
    fused = fit_fused(configs, data=data)
    # An L1 weight that hovers at 0 flips sign(W) on float32 rounding: an absolute
    # difference of about lr·λ1 = 2e-5 that stays put (errors stay identical).
    atol = 5e-5 if extra["max_epochs"] == 2 else 1e-4
    for cfg, result in zip(configs, fused):
        separate = fit(config=cfg, data=data)
        _check_same(result, separate, atol)


def test_members_that_stop_early_leave_the_group_and_the_rest_go_on():
    # member 0 stops early mid-run (patience 40), member 1 at its max_epochs (3), member 2 at 10
    configs = _configs("logreg", LOGREG, patience_increase=1.5)
    configs = [
        from_mapping({**c.to_dict(), "patience": p, "max_epochs": e})
        for c, p, e in zip(configs, (40, 1000, 1000), (10, 3, 10))
    ]
    data = load_data(configs[0])
    fused = fit_fused(configs, data=data)
    for cfg, result in zip(configs, fused):
        _check_same(result, fit(config=cfg, data=data), atol=1e-4)
    assert [r.summary.stopped_because for r in fused] == [
        "early_stopping",
        "max_epochs",
        "max_epochs",
    ]
    assert len({r.summary.iterations for r in fused}) == 3


def test_run_directories_match_a_separate_run(tmp_path):
    configs = _configs("logreg", LOGREG[:2], max_epochs=2)
    fused_dirs = [tmp_path / f"fused{i}" for i in range(2)]
    fit_fused(configs, out=fused_dirs)
    for i, cfg in enumerate(configs):
        alone = tmp_path / f"alone{i}"
        fit(config=cfg, out=str(alone))
        fused_dir = fused_dirs[i]
        names = {p.name for p in alone.iterdir()} - {"checkpoint"}
        assert {p.name for p in fused_dir.iterdir()} == names
        a = json.loads((alone / "summary.json").read_text())
        f = json.loads((fused_dir / "summary.json").read_text())
        timing = {"train_seconds", "seconds_per_epoch", "seconds_to_target"}
        nll = {"test_nll", "best_valid_nll"}  # float32 rounding of the batched products
        assert {k: v for k, v in a.items() if k not in timing | nll} == {
            k: v for k, v in f.items() if k not in timing | nll
        }
        for key in nll:
            assert f[key] == pytest.approx(a[key], rel=1e-5)
        assert np.array_equal(
            np.load(alone / "test_predictions.npy"), np.load(fused_dir / "test_predictions.npy")
        )
        rows_a = [json.loads(x) for x in (alone / "metrics.jsonl").read_text().splitlines()]
        rows_f = [json.loads(x) for x in (fused_dir / "metrics.jsonl").read_text().splitlines()]
        assert [r["valid_error"] for r in rows_a] == [r["valid_error"] for r in rows_f]


def test_what_does_not_fuse_is_refused():
    torch_adam = from_mapping({**BASE, "model": "logreg", "optimizer": "torch.Adam"})
    assert "torch.Adam" in fuse_problem(torch_adam)
    with pytest.raises(ConfigError, match="cannot fuse"):
        fit_fused([torch_adam])
    # the optimizer is a member's own choice: every one of them shares the group
    by_name = {
        name: group_key(from_mapping({**BASE, "model": "logreg", "optimizer": name}))
        for name in ("sgd", "momentum", "nesterov", "adam", "rmsprop", "rmsprop-nesterov")
    }
    assert len(set(by_name.values())) == 1
    a = from_mapping({**BASE, "model": "logreg", "lr": 0.1})
    b = from_mapping({**BASE, "model": "logreg", "lr": 0.1, "batch_size": 50})
    assert group_key(a) != group_key(b)
    with pytest.raises(ConfigError, match="differ"):
        fit_fused([a, b])


# Every optimizer of descentlab.optim, members differing in their hyperparameters.
OPTIMIZER_MEMBERS = {
    "nesterov": [{"lr": 0.01, "momentum": 0.9}, {"lr": 0.03, "momentum": 0.5, "l2": 1e-4}],
    "adagrad": [{"lr": 0.03}, {"lr": 0.01, "eps": 1e-6, "weight_decay": 1e-3}],
    "rmsprop": [{"lr": 1e-3}, {"lr": 3e-3, "rho": 0.95}],
    "rmsprop-nesterov": [{"lr": 3e-4}, {"lr": 1e-3, "momentum": 0.5}],
    "adam": [{"lr": 1e-3}, {"lr": 3e-3, "betas": [0.8, 0.99], "l1": 1e-5}],
    "adadelta": [{"lr": 1.0}, {"lr": 0.5, "rho": 0.9}],
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER_MEMBERS))
@pytest.mark.parametrize("model", ["logreg", "mlp"])
def test_every_optimizer_fuses_exactly(optimizer, model):
    members = [
        {**m, "optimizer": optimizer, "seed": i + 1, "shuffle": True}
        for i, m in enumerate(OPTIMIZER_MEMBERS[optimizer])
    ]
    configs = _configs(model, members, max_epochs=2, early_stopping="none", init="normal")
    data = load_data(configs[0])
    for cfg, result in zip(configs, fit_fused(configs, data=data)):
        _check_same(result, fit(config=cfg, data=data))


# Interleaved on purpose: the group puts each algorithm's members on adjacent rows.
MIXED = [
    {"optimizer": "adam", "lr": 1e-3, "seed": 1, "max_epochs": 3},
    {"optimizer": "sgd", "lr": 0.1, "seed": 2, "max_epochs": 1},
    {"optimizer": "nesterov", "lr": 0.01, "momentum": 0.9, "seed": 3, "max_epochs": 2},
    {"optimizer": "adam", "lr": 3e-3, "seed": 4, "max_epochs": 1},
    {"optimizer": "rmsprop-nesterov", "lr": 3e-4, "seed": 5, "max_epochs": 3},
    {"optimizer": "momentum", "lr": 0.05, "momentum": 0.5, "seed": 6, "max_epochs": 2},
    {"optimizer": "adadelta", "lr": 1.0, "seed": 7, "max_epochs": 3},
    {"optimizer": "adagrad", "lr": 0.03, "seed": 1, "max_epochs": 2},
]


@pytest.mark.parametrize("model", ["logreg", "mlp"])
def test_members_with_different_optimizers_share_one_group(model):
    # members leave after 1, 2 and 3 epochs: every algorithm's block shrinks and shifts
    configs = _configs(model, MIXED, early_stopping="none", shuffle=True, init="normal")
    assert len({group_key(c) for c in configs}) == 1
    data = load_data(configs[0])
    for cfg, result in zip(configs, fit_fused(configs, data=data)):
        _check_same(result, fit(config=cfg, data=data))


def test_a_mixed_group_needs_each_algorithm_on_adjacent_rows():
    from descentlab.train.fused.mixed import MixedUpdate, batched_update

    configs = _configs("logreg", MIXED[:3])
    models = [torch.nn.Linear(4, 3) for _ in configs]
    from descentlab.optim import build_optimizer

    opts = [build_optimizer(c.optimizer, m.parameters(), lr=c.lr) for c, m in zip(configs, models)]
    params = [torch.stack([m.weight.detach() for m in models])]
    assert isinstance(batched_update(opts, params), MixedUpdate)
    with pytest.raises(ConfigError, match="adjacent"):
        batched_update([opts[0], opts[1], opts[0]], [torch.stack([params[0][0]] * 3)])


def test_each_member_follows_its_own_schedule():
    members = [
        {"lr": 0.1, "schedule": "linear:tau=50,final_ratio=0.1", "seed": 1},
        {"lr": 0.05, "schedule": "exp:gamma=0.5", "seed": 2},
        {"lr": 0.1, "optimizer": "momentum", "momentum": 0.9, "seed": 3, "schedule": "inv:t0=20"},
    ]
    configs = _configs("mlp", members, max_epochs=3, early_stopping="none", shuffle=True)
    data = load_data(configs[0])
    for cfg, result in zip(configs, fit_fused(configs, data=data)):
        separate = fit(config=cfg, data=data)
        _check_same(result, separate)
        assert [r["lr"] for r in result.history] == [r["lr"] for r in separate.history]


def test_a_diverging_member_fails_alone_with_the_separate_runs_error(tmp_path):
    from descentlab.errors import DivergenceError
    from descentlab.train.fused import fit_group

    members = [{"lr": 0.05, "seed": 1}, {"lr": 1e37, "seed": 2}, {"lr": 0.1, "seed": 3}]
    configs = _configs("mlp", members, max_epochs=2, early_stopping="none", init="normal")
    data = load_data(configs[0])
    outcomes = fit_group(configs, data=data)
    assert isinstance(outcomes[1], DivergenceError)
    with pytest.raises(DivergenceError) as alone:
        fit(config=configs[1], data=data)
    assert str(outcomes[1]) == str(alone.value)
    for i in (0, 2):
        _check_same(outcomes[i], fit(config=configs[i], data=data))
    with pytest.raises(DivergenceError):
        fit_fused(configs, data=data)


def test_group_size_follows_the_memory_available(monkeypatch):
    from descentlab.train.fused import rules

    cfg = _configs("mlp", [{"lr": 0.1}])[0]
    per = rules.member_bytes(cfg, 64, 10)
    assert per > 4 * ((64 + 1) * 32 + (32 + 1) * 10)  # at least the parameters
    monkeypatch.setattr(rules, "available_bytes", lambda device: 100 * per)
    monkeypatch.setattr(rules, "cache_bytes", lambda: 1 << 30)  # memory decides
    assert rules.max_group_size(cfg, 64, 10) == 50
    assert rules.max_group_size(cfg, 64, 10, workers=2) == 25
    monkeypatch.setattr(rules, "available_bytes", lambda device: per // 10)
    assert rules.max_group_size(cfg, 64, 10) == 1


def test_on_a_cpu_a_group_keeps_its_weights_within_two_l2_caches(monkeypatch):
    from descentlab.train.fused import rules

    monkeypatch.setattr(rules, "available_bytes", lambda device: 1 << 40)
    monkeypatch.setattr(rules, "cache_bytes", lambda: 1 << 20)
    mnist = {"dataset": "mnist", "quiet": True}
    small = from_mapping({**mnist, "model": "mlp", "hidden": [100]})  # 318 kB of weights
    big = from_mapping({**mnist, "model": "mlp", "hidden": [500]})  # 1.6 MB: alone is faster
    logreg = from_mapping({**mnist, "model": "logreg"})  # 31 kB
    assert rules.max_group_size(small, 784, 10) == 6
    assert rules.max_group_size(big, 784, 10) == 1
    assert rules.max_group_size(logreg, 784, 10) == 66
    assert rules.max_group_size(big, 784, 10, device=torch.device("meta")) > 1  # not a CPU
    monkeypatch.undo()
    assert rules.cache_bytes() >= 1 << 16  # sysfs's L2 size, or 1 MiB where it says none


@pytest.mark.parametrize("optimizer", ["momentum", "rmsprop", "adam"])
def test_an_interrupted_group_resumes_each_member_exactly(tmp_path, optimizer):
    import os
    import signal

    from descentlab.errors import DescentlabError
    from descentlab.train.callbacks import Callback, MetricsFiles, RunDirectory
    from descentlab.train.fused import fit_group
    from descentlab.train.interrupt import TrainingInterrupted

    class Interrupt(Callback):  # Ctrl-C during epoch 2 of member 0 (after its epoch 1)
        def on_epoch_end(self, trainer, epoch):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGINT)

    def callbacks(run_dir):
        extra = [Interrupt()] if run_dir.name == "m0" else []
        return [MetricsFiles(run_dir), RunDirectory(run_dir), *extra]

    members = [{"lr": 0.01, "seed": 1, "l2": 1e-4}, {"lr": 0.003, "seed": 2}]
    configs = _configs("mlp", members, optimizer=optimizer, max_epochs=3,
                       early_stopping="none", shuffle=True)  # fmt: skip
    data = load_data(configs[0])
    dirs = [tmp_path / "m0", tmp_path / "m1"]
    outcomes = fit_group(configs, data=data, out=dirs, callbacks=callbacks)
    assert all(isinstance(o, TrainingInterrupted) for o in outcomes)
    assert all(isinstance(o, DescentlabError) and "checkpoint written" in str(o) for o in outcomes)
    for cfg, folder in zip(configs, dirs):
        resumed = fit(config=cfg, data=data, out=str(folder), resume=True)
        alone = fit(config=cfg, data=data)
        assert resumed.summary.iterations == alone.summary.iterations
        _check_same(resumed, alone)
        # the group computed what the separate run computes: resumed, it is that run
        for a, b in zip(resumed.model.parameters(), alone.model.parameters()):
            assert torch.equal(a, b)


def test_an_interrupted_group_resumes_as_a_group_exactly(tmp_path):
    import os
    import signal

    from descentlab.train.callbacks import Callback, MetricsFiles, RunDirectory
    from descentlab.train.fused import fit_group
    from descentlab.train.interrupt import TrainingInterrupted
    from descentlab.train.records import FitResult

    class Interrupt(Callback):  # Ctrl-C at a validation in the middle of epoch 2
        def on_validation(self, trainer, row):
            if trainer.progress.counters.iteration == 83:  # validations: (i + 1) % 7 == 0
                os.kill(os.getpid(), signal.SIGINT)

    def callbacks(run_dir):
        extra = [Interrupt()] if run_dir.name == "m0" else []
        return [MetricsFiles(run_dir), RunDirectory(run_dir), *extra]

    # Every kind of state: Adam's step count, a Nesterov look-ahead, AdaGrad's sums,
    # plain SGD updated inside the product; four algorithms in one group.
    members = [
        {"optimizer": "adam", "lr": 0.003, "seed": 1},
        {"optimizer": "nesterov", "lr": 0.01, "seed": 2, "l2": 1e-4},
        {"optimizer": "adagrad", "lr": 0.03, "seed": 1, "schedule": "exp:gamma=0.5"},
        {"optimizer": "sgd", "lr": 0.05, "seed": 3, "schedule": "linear:tau=120,final_ratio=0.1"},
    ]
    configs = _configs("mlp", members, max_epochs=3, validation_frequency=7, shuffle=True)
    data = load_data(configs[0])
    assert data.train.y.shape[0] // 20 < 83  # the interruption is inside epoch 2
    dirs = [tmp_path / f"m{i}" for i in range(len(members))]
    outcomes = fit_group(configs, data=data, out=dirs, callbacks=callbacks)
    assert all(isinstance(o, TrainingInterrupted) for o in outcomes)
    with pytest.raises(ConfigError, match="resume must be True, False"):
        fit_group(configs, data=data, out=dirs, resume="yes")
    with pytest.raises(ConfigError, match="different points of training"):
        fit_group(configs[:2], data=data, out=[dirs[0], tmp_path / "new"], resume=[True, False])
    resumed = fit_group(configs, data=data, out=dirs, resume=True)
    for cfg, again in zip(configs, resumed):
        alone = fit(config=cfg, data=data)
        assert isinstance(again, FitResult)
        _check_same(again, alone)
        for a, b in zip(again.model.parameters(), alone.model.parameters()):
            assert torch.equal(a, b)


def test_members_checkpointed_after_their_last_epoch_end_without_another_step(tmp_path):
    from descentlab.train.fused import fit_group

    members = [{"lr": 0.05, "seed": 1}, {"lr": 0.13, "seed": 2, "l2": 1e-4}]
    configs = _configs("logreg", members, max_epochs=2, early_stopping="none", shuffle=True)
    data = load_data(configs[0])
    dirs = [tmp_path / "m0", tmp_path / "m1"]
    finished = [fit(config=cfg, data=data, out=str(d)) for cfg, d in zip(configs, dirs)]
    for folder in dirs:  # killed after the last epoch's checkpoint, before the summary
        (folder / "summary.json").unlink()
    resumed = fit_group(configs, data=data, out=dirs, resume=True)
    for again, first in zip(resumed, finished):
        assert again.summary.epochs_run == 2  # not a third epoch
        _check_same(again, first)
        for a, b in zip(again.model.parameters(), first.model.parameters()):
            assert torch.equal(a, b)
        assert (Path(again.run_dir) / "summary.json").is_file()


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_members_with_one_seed_share_each_minibatch(optimizer):
    # an lr grid on one seed (a study's tuning stage): one minibatch order for all
    members = [{"lr": lr, "seed": 7} for lr in (0.001, 0.003, 0.01)]
    members[1]["l2"] = 1e-4
    configs = _configs("mlp", members, optimizer=optimizer, max_epochs=2,
                       early_stopping="none", shuffle=True, init="normal")  # fmt: skip
    data = load_data(configs[0])
    for cfg, result in zip(configs, fit_fused(configs, data=data)):
        _check_same(result, fit(config=cfg, data=data))


@pytest.mark.parametrize(
    ("model", "hidden", "shared"),
    [("logreg", (), True), ("logreg", (), False), ("mlp", (32,), True), ("mlp", (24, 16), False)],
)
@pytest.mark.parametrize("penalty", ["none", "l2", "l2 per member", "l1 per member"])
def test_batched_gradients_are_bitwise_the_fast_paths(model, hidden, shared, penalty):
    # Each member's gradient is computed by the kernels its separate run's fast path
    # uses, batched: not close to it, equal to it.
    from descentlab.losses import nll
    from descentlab.models import build_model
    from descentlab.objective import Objective
    from descentlab.train.fast import fast_path_for
    from descentlab.train.fused.dense import DenseBatch, Penalties

    k, batch, n_in = 3, 20, 64
    l1 = [1e-5 * (m + 1) if penalty == "l1 per member" else 0.0 for m in range(k)]
    l2 = {"l2": [1e-4] * k, "l2 per member": [1e-4 * (m + 1) for m in range(k)]}.get(
        penalty, [0.0] * k
    )
    torch.manual_seed(0)
    models = [build_model(model, (n_in,), 10, hidden=hidden, init="normal") for _ in range(k)]
    xs, ys = torch.rand(k, batch, n_in), torch.randint(0, 10, (k, batch))
    if shared:
        xs, ys = xs[:1].expand(k, -1, -1), ys[:1].expand(k, -1)
    separate = []
    for m, module in enumerate(models):
        fast, _ = fast_path_for(module, Objective(nll, l1=l1[m], l2=l2[m]))
        fast.forward(xs[m], ys[m])
        fast.backward()
        separate.append([p.grad.clone() for p in fast.params])
    per_member = [[t.detach() for t in m.parameters()] for m in models]
    stacked = [torch.stack([p[i] for p in per_member]) for i in range(len(per_member[0]))]
    dense = DenseBatch("tanh" if model == "mlp" else None)
    with torch.no_grad():
        penalties = Penalties.of(l1, l2, stacked[0])
        dense.forward(stacked, xs[0] if shared else xs, ys[0] if shared else ys, penalties)
        grads = dense.backward(stacked, penalties)
    for i, g in enumerate(grads):
        for m in range(k):
            assert torch.equal(g[m], separate[m][i]), (i, m)


BITWISE_LRS = {
    "sgd": (0.03, 0.3),
    "adam": (1e-3, 3e-2),
    "rmsprop": (1e-3, 3e-2),
    "adagrad": (0.03, 0.3),
    "momentum": (0.01, 0.1),
    "nesterov": (0.01, 0.1),
    "rmsprop-nesterov": (3e-4, 3e-3),
    "adadelta": (1.0, 10.0),
}


@pytest.mark.parametrize("optimizer", sorted(BITWISE_LRS))
def test_members_equal_their_separate_runs_bit_for_bit(optimizer):
    # Every optimizer applies, member by member, its separate run's own update: plain
    # SGD inside the gradient's product, the others their optimizer's kernel.
    lrs = BITWISE_LRS[optimizer]
    members = [{"optimizer": optimizer, "lr": lr, "seed": 1} for lr in lrs]  # one minibatch
    members.append({"optimizer": optimizer, "lr": lrs[1], "seed": 2, "l2": 1e-4})
    configs = _configs("mlp", members, max_epochs=2, early_stopping="none", shuffle=True)
    data = load_data(configs[0])
    for cfg, result in zip(configs, fit_fused(configs, data=data)):
        separate = fit(config=cfg, data=data)
        for a, b in zip(result.model.parameters(), separate.model.parameters()):
            assert torch.equal(a, b)
        assert [r["valid_error"] for r in result.history] == [
            r["valid_error"] for r in separate.history
        ]
