"""The default thread count (train/threads.py): a pure function of the machine and the work."""

from __future__ import annotations

import math

import pytest
import torch

import descentlab as dl
from descentlab.train import loop, threads
from descentlab.train.evaluate import evaluate
from descentlab.train.threads import (
    SMALL_STEP_FLOPS,
    busy_elsewhere,
    choose_threads,
    evaluation_threads,
    step_flops,
)

BIG = 10 * SMALL_STEP_FLOPS


def test_requested_threads_always_win():
    choice = choose_threads(allowed=2, load=9.0, flops_per_step=BIG, requested=4)
    assert choice.count == 4 and choice.reason == "--threads"


def test_small_work_gets_one_thread_even_on_an_idle_machine():
    tutorial_mlp = step_flops(784 * 500 + 500 + 500 * 10 + 10, 20)  # ≈ 48 MFLOP
    choice = choose_threads(allowed=8, load=0.0, flops_per_step=tutorial_mlp)
    assert choice.count == 1
    assert "48 MFLOP per step" in choice.reason


@pytest.mark.parametrize(
    ("allowed", "load", "expected"),
    [
        (2, 0.0, 2),  # idle: every core
        (2, 0.4, 2),  # a little noise rounds away
        (2, 1.0, 1),  # one core busy
        (2, 9.0, 1),  # oversubscribed: never fewer than one
        (8, 3.0, 5),
        (1, 0.0, 1),
    ],
)
def test_large_work_gets_the_free_cores(allowed, load, expected):
    choice = choose_threads(allowed=allowed, load=load, flops_per_step=BIG)
    assert choice.count == expected
    assert choice.describe().startswith(f"{expected} thread")


@pytest.mark.parametrize("load", [None, math.nan])
def test_unknown_load_or_work_uses_the_allowed_cpus(load):
    assert choose_threads(allowed=4, load=load, flops_per_step=None).count == 4


def test_step_flops_counts_the_three_products_of_a_dense_step():
    assert step_flops(1000, 10) == 6 * 1000 * 10


@pytest.mark.parametrize(
    ("training", "allowed", "busy", "expected"),
    [
        (1, 2, 0.0, 2),  # nothing else runs: both cores
        (1, 2, 0.4, 2),
        (1, 2, 1.0, 1),  # another process holds the second core: stay on one
        (1, 2, 7.5, 1),  # oversubscribed: never below the training count
        (2, 2, 0.0, 2),
        (1, 8, 2.2, 6),  # two other busy cores out of eight
        (1, 1, 0.0, 1),
        (1, 4, math.nan, 1),  # unknown: keep the training count
    ],
)
def test_evaluation_uses_the_cores_free_besides_training(training, allowed, busy, expected):
    assert evaluation_threads(training, allowed=allowed, busy=busy) == expected


def test_busy_elsewhere_takes_the_larger_of_the_average_and_the_running_tasks(monkeypatch):
    # A process started seconds ago: the 1-minute average has not caught up with it yet.
    monkeypatch.setattr(threads, "load_average", lambda: 0.3)
    monkeypatch.setattr(threads, "_running_now", lambda: 2)  # it and the reader
    assert busy_elsewhere() == 1.0
    assert choose_threads(allowed=2, load=busy_elsewhere(), flops_per_step=BIG).count == 1
    # A long-running one the sample missed: the average still counts it (less our own).
    monkeypatch.setattr(threads, "load_average", lambda: 2.1)
    monkeypatch.setattr(threads, "_running_now", lambda: 1)
    assert busy_elsewhere(own=1) == pytest.approx(1.1)
    monkeypatch.setattr(threads, "load_average", lambda: None)
    monkeypatch.setattr(threads, "_running_now", lambda: None)
    assert busy_elsewhere() is None


@pytest.mark.parametrize(("given", "expected"), [(None, [2]), (1, [1])])
def test_a_chosen_thread_count_scores_on_the_free_cores_then_trains_as_before(
    monkeypatch, given, expected
):
    """The loop switches to the evaluation count only around scoring (not when given)."""
    seen: list[int] = []

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluation_threads", lambda training: 2)
    monkeypatch.setattr(loop, "evaluate", spy)
    before = torch.get_num_threads()
    try:
        dl.fit(model="mlp", dataset="digits", hidden=(16,), max_epochs=2, quiet=True,
               early_stopping="none", threads=given)  # fmt: skip
        assert torch.get_num_threads() == 1  # the digits MLP trains on one thread
    finally:
        torch.set_num_threads(before)
    assert set(seen) == set(expected) and len(seen) >= 2
