"""The default thread count (train/threads.py): a pure function of the machine and the work."""

from __future__ import annotations

import math

import pytest

from descentlab.train.threads import SMALL_STEP_FLOPS, choose_threads, step_flops

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
