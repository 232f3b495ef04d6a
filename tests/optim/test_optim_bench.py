"""The optimizer benchmark runs and returns sane rows (no timing assertions)."""

from __future__ import annotations

import math

import pytest
import torch

from descentlab.bench.optim import CASES, format_optim_table, run_optim_bench
from descentlab.errors import ConfigError


def test_bench_runs_at_a_tiny_size():
    rows = run_optim_bench(sizes=(2_000, 3_001), n_tensors=5, repeats=3, warmup=1)
    assert [(r["optimizer"], r["size"]) for r in rows] == [
        (name, size) for size in (2_000, 3_001) for name in CASES
    ]
    for r in rows:
        assert r["n_tensors"] == 5 and r["repeats"] == 3
        assert r["ours_ms"] > 0 and r["torch_ms"] > 0
        assert math.isclose(r["ratio"], r["ours_ms"] / r["torch_ms"])
        assert r["torch"].startswith("torch.optim.")
        has_fused = CASES[r["optimizer"]].torch_fused is not None
        assert (r["torch_fused_ms"] is not None) == has_fused
        if has_fused:
            assert math.isclose(r["ratio_fused"], r["ours_ms"] / r["torch_fused_ms"])
    table = format_optim_table(rows)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["optimizer", "params", "tensors"]
    assert len(lines) == 2 + len(rows) + 1
    assert "adam" in table and "3001" in table and "2k" in table


def test_bench_subset_and_bad_arguments():
    rows = run_optim_bench(sizes=(500,), n_tensors=3, repeats=1, warmup=0, optimizers=["adam"])
    assert [r["optimizer"] for r in rows] == ["adam"]
    with pytest.raises(ConfigError, match="did you mean 'adam'"):
        run_optim_bench(sizes=(500,), optimizers=["adamm"])
    with pytest.raises(ConfigError, match="size"):
        run_optim_bench(sizes=(10,), n_tensors=50)
    with pytest.raises(ConfigError, match="repeats"):
        run_optim_bench(sizes=(500,), repeats=0)
    with pytest.raises(ConfigError, match="threads"):
        run_optim_bench(sizes=(500,), threads=0)


def test_bench_threads_option_is_restored():
    before = torch.get_num_threads()
    rows = run_optim_bench(
        sizes=(500,), n_tensors=2, repeats=1, warmup=0, threads=1, optimizers=["sgd"]
    )
    assert rows[0]["threads"] == 1
    assert torch.get_num_threads() == before
