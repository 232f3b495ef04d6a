"""``bench train`` and ``bench time-to-target`` run end to end at toy size (no timing claims)."""

from __future__ import annotations

import json
import os

import pytest

from descentlab.bench.timing import interleaved, summarize, thread_limit
from descentlab.bench.train import (
    CONTENDERS,
    format_time_to_target,
    format_train_table,
    run_time_to_target,
    run_train_bench,
)
from descentlab.cli.main import main
from descentlab.errors import ConfigError
from descentlab.train.config import PRESETS

EAGER = [c for c in CONTENDERS if c != "torch.compile loop"]  # compiling takes minutes


def test_train_bench_rows_are_sane():
    rows = run_train_bench(
        workloads=["logreg", "mlp-tanh"],
        contenders=EAGER,
        dataset="digits",
        repeats=2,
        warmup=0,
        threads=1,
    )
    assert [(r["workload"], r["contender"]) for r in rows] == [
        (w, c) for w in ("logreg", "mlp-tanh") for c in EAGER
    ]
    for r in rows:
        assert 0 < r["min_s"] <= r["median_s"] <= r["max_s"]
        assert r["cpu_median_s"] > 0
        assert 0.0 <= r["test_error"] <= 1.0
        assert r["epochs"] == 2 and r["threads"] == 1
        assert r["floor_s"] > 0 and r["floor_fraction"] == pytest.approx(
            r["floor_s"] / r["median_s"]
        )
        # The speedup is against the fastest baseline (every contender that is not ours).
        baselines = [
            q["median_s"]
            for q in rows
            if q["workload"] == r["workload"] and not q["contender"].startswith("descentlab")
        ]
        assert r["speedup"] == pytest.approx(min(baselines) / r["median_s"])
    by = {(r["workload"], r["contender"]): r for r in rows}
    assert by[("mlp-tanh", "descentlab")]["fast_path"] is True
    assert "checkpoint" in by[("mlp-tanh", "descentlab")]["detail"]
    assert by[("mlp-tanh", "descentlab plain")]["fast_path"] is False
    assert by[("mlp-tanh", "scikit-learn")]["detail"] == "MLPClassifier"
    # Two epochs of minibatches of 20 on digits learn something (chance is 90% error).
    for contender in ("descentlab", "descentlab plain", "torch loop", "naive loop"):
        assert by[("mlp-tanh", contender)]["test_error"] < 0.5, contender
    table = format_train_table(rows)
    assert "mlp-tanh" in table and "naive loop" in table and "speedup" in table
    assert "GFLOP/s" in table


def test_two_thread_counts_are_measured_in_the_same_rounds():
    rows = run_train_bench(
        workloads=["logreg"],
        contenders=["descentlab", "torch loop", "naive loop"],
        dataset="digits",
        repeats=2,
        warmup=0,
        threads=[1, 2],
    )
    assert [(r["threads"], r["contender"]) for r in rows] == [
        (n, c) for n in (1, 2) for c in ("descentlab", "torch loop", "naive loop")
    ]
    for n in (1, 2):
        group = [r for r in rows if r["threads"] == n]
        best = min(r["median_s"] for r in group if r["contender"] != "descentlab")
        for r in group:  # each count against its own best baseline and its own floor
            assert r["speedup"] == pytest.approx(best / r["median_s"])
            assert r["floor_fraction"] == pytest.approx(r["floor_s"] / r["median_s"])
    # Both counts were timed between the same load readings: one interleaved run.
    assert len({json.dumps(r["load_average"]) for r in rows}) == 1
    table = format_train_table(rows)
    assert "s/epoch 1t" in table and "s/epoch 2t" in table
    assert "1 thread: measured" in table and "2 threads: measured" in table
    with pytest.raises(ConfigError, match="threads"):
        run_train_bench(workloads=["logreg"], dataset="digits", threads=[1, 0])


def test_a_baseline_that_cannot_be_built_is_skipped_with_a_note(monkeypatch):
    import torch

    caches: list[str | None] = []

    def broken(*args, **kwargs):
        caches.append(os.environ.get("TORCHINDUCTOR_CACHE_DIR"))
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    rows = run_train_bench(
        workloads=["logreg"],
        contenders=["descentlab train-only", "torch.compile loop"],
        dataset="digits",
        repeats=1,
        warmup=0,
        threads=1,
    )
    assert [r["contender"] for r in rows] == ["descentlab train-only"]
    assert rows[0]["speedup"] is None
    assert "torch.compile loop skipped: RuntimeError: no C++ compiler" in rows[0]["notes"]
    assert "skipped" in format_train_table(rows)
    # Compiled in a cache of the benchmark's own, not the one other processes share.
    assert caches and caches[0] is not None and "torchinductor" not in caches[0]
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ


def test_gemm_shapes_count_every_product_of_a_step():
    from descentlab.bench.floor import compute_floor, gemm_shapes

    # 784-500-10 at batch 20: forward and weight gradient of both layers, input gradient
    # of the second only.
    assert gemm_shapes(784, (500,), 10, 20) == [
        (20, 784, 500),
        (500, 20, 784),
        (20, 500, 10),
        (10, 20, 500),
        (20, 10, 500),
    ]
    floor = compute_floor(64, (16,), 10, 8, steps=3, repeats=3)
    assert floor.flop_per_step == 2 * 8 * (64 * 16 * 2 + 16 * 10 * 3)
    assert floor.seconds_per_epoch == pytest.approx(3 * floor.seconds_per_step)
    assert floor.gflops > 0


def test_train_bench_rejects_unknown_names():
    with pytest.raises(ConfigError, match="workload"):
        run_train_bench(workloads=["mlp-tahn"], dataset="digits")
    with pytest.raises(ConfigError, match="contender"):
        run_train_bench(contenders=["pytorch"], dataset="digits")


def test_interleaved_alternates_order_and_counts():
    calls: list[str] = []
    cpu: dict[str, list[float]] = {}
    times = interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        repeats=3,
        warmup=1,
        cpu=cpu,
    )
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert [len(v) for v in times.values()] == [3, 3]
    assert [len(v) for v in cpu.values()] == [3, 3]
    stats = summarize([3.0, 1.0, 2.0])
    assert stats == {"median_s": 2.0, "min_s": 1.0, "max_s": 3.0}
    with pytest.raises(ConfigError):
        interleaved({"a": lambda: None}, repeats=0)


def test_thread_limit_restores_the_setting():
    import torch

    before = torch.get_num_threads()
    with thread_limit(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError), thread_limit(0):
        pass


def test_fast_mnist_preset_is_registered():
    from descentlab.train import TrainConfig

    cfg = TrainConfig(**PRESETS["fast-mnist"])  # a valid configuration
    assert (cfg.dataset, cfg.model, cfg.max_epochs) == ("mnist", "lenet", 1)


def test_time_to_target_in_process():
    # The fast-mnist preset with a small MLP (digits are too small for LeNet).
    result = run_time_to_target(
        0.7,
        dataset="digits",
        model="mlp",
        hidden=(32,),
        batch_size=32,
        validation_frequency=16,
        max_epochs=2,
        threads=1,
        subprocess=False,
    )
    assert result["reached"] is True
    assert 0 < result["seconds_to_target"] <= result["train_seconds"]
    assert 0 < result["startup_seconds"] < result["wall_seconds"]
    assert result["wall_to_target_seconds"] == pytest.approx(
        result["startup_seconds"] + result["seconds_to_target"]
    )
    assert result["wall_to_target_seconds"] <= result["wall_seconds"]
    assert result["epoch_at_target"] in (1, 2)
    assert result["test_error"] <= 0.7
    assert result["fast_path"] is True
    assert result["peak_rss_mb"] > 0
    assert "reached test error" in format_time_to_target(result)


def test_cli_bench_time_to_target_in_a_child_process(capsys):
    code = main(
        [
            "bench",
            "time-to-target",
            "--preset",
            "dlt-mlp",
            "--dataset",
            "digits",
            "--max-epochs",
            "1",
            "--target",
            "0.001",
            "--threads",
            "1",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reached"] is False and result["seconds_to_target"] is None
    assert result["epochs_run"] == 1
    # A child that imported torch and trained: tens to hundreds of MB, not bytes or TB.
    assert 20 < result["peak_rss_mb"] < 4000


def test_cli_bench_train_json(capsys):
    code = main(
        [
            "bench",
            "train",
            "--dataset",
            "digits",
            "--workloads",
            "mlp-adam",
            "--contenders",
            "descentlab,torch loop",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--json",
        ]
    )
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["contender"] for r in rows] == ["descentlab", "torch loop"]
    assert rows[1]["speedup"] == 1.0


def test_cli_bench_rejects_a_bad_workload(capsys):
    code = main(["bench", "train", "--dataset", "digits", "--workloads", "nope"])
    assert code == 2
    assert "unknown benchmark workload" in capsys.readouterr().err


def test_cli_bench_optim_wraps_the_optimizer_bench(capsys):
    code = main(
        [
            "bench",
            "optim",
            "--sizes",
            "2k",
            "--tensors",
            "4",
            "--optimizers",
            "sgd,adam",
            "--repeats",
            "2",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--json",
        ]
    )
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["optimizer"], r["size"], r["n_tensors"]) for r in rows] == [
        ("sgd", 2000, 4),
        ("adam", 2000, 4),
    ]
    assert all(r["ours_ms"] > 0 and r["threads"] == 1 for r in rows)


def test_cli_bench_overhead_times_each_part_of_an_epoch(capsys):
    code = main(
        ["bench", "overhead", "--preset", "dlt-mlp", "--subset", "200", "--repeats", "1",
         "--warmup", "0", "--threads", "1", "--json"]
    )  # fmt: skip
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    parts = result["parts"]
    assert list(parts) == ["end to end", "training only", "validation", "test set", "checkpoint"]
    assert parts["training only"]["share"] == pytest.approx(1.0)
    assert all(p["median_s"] > 0 for p in parts.values())
    assert result["overhead"] == pytest.approx(
        parts["end to end"]["median_s"] / parts["training only"]["median_s"] - 1
    )
    assert result["threads"] == 1 and result["eval_batch_size"] == 1000
