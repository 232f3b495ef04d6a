"""Significance tools against hand-computed values and SciPy (SciPy is a test-only dependency)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from descentlab.errors import ConfigError
from descentlab.experiments.stats import (
    binomial_two_sided_p,
    chi2_sf_1dof,
    mcnemar,
    mean_std,
    summarize_seeds,
    wilson_interval,
)

scipy_stats = pytest.importorskip("scipy.stats")


# --- Wilson score interval ------------------------------------------------------------------
# Reference values from the closed form (2np + z² ± z·sqrt(z² + 4np(1-p))) / (2(n + z²)),
# z = 1.959963984540054, i.e. what statsmodels' proportion_confint(method="wilson") returns.
@pytest.mark.parametrize(
    ("errors", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775327998628892),  # z²/(n+z²): never collapses to [0, 0]
        (5, 10, 0.23659309051256397, 0.7634069094874361),
        (75, 10_000, 0.005987897888436751, 0.009390340506679697),
        (10, 10, 0.7224672001371107, 1.0),
    ],
)
def test_wilson_reference_values(errors: int, n: int, low: float, high: float) -> None:
    got = wilson_interval(errors, n)
    assert got == pytest.approx((low, high), abs=1e-12)


def test_wilson_wider_at_higher_confidence() -> None:
    lo90, hi90 = wilson_interval(30, 200, confidence=0.90)
    lo99, hi99 = wilson_interval(30, 200, confidence=0.99)
    assert lo99 < lo90 < 0.15 < hi90 < hi99


@given(n=st.integers(1, 100_000), frac=st.floats(0.0, 1.0), conf=st.floats(0.5, 0.999))
@settings(max_examples=200, deadline=None)
def test_wilson_contains_point_estimate_and_stays_in_unit_interval(
    n: int, frac: float, conf: float
) -> None:
    errors = round(frac * n)
    low, high = wilson_interval(errors, n, confidence=conf)
    assert 0.0 <= low <= errors / n <= high <= 1.0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((11, 10), "errors must lie"),
        ((0, 0), "positive"),
        ((1.5, 10), "integer"),
        ((1, 10, 1.0), "confidence"),
    ],
)
def test_wilson_rejects_bad_input(args: tuple, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        wilson_interval(*args)


# --- McNemar ------------------------------------------------------------------------------
def _paired(
    b: int, c: int, both_right: int = 50, both_wrong: int = 7
) -> tuple[np.ndarray, np.ndarray]:
    """Correctness vectors with exactly b (A right, B wrong) and c (A wrong, B right) pairs."""
    a = [True] * b + [False] * c + [True] * both_right + [False] * both_wrong
    bb = [False] * b + [True] * c + [True] * both_right + [False] * both_wrong
    order = np.random.default_rng(0).permutation(len(a))
    return np.array(a)[order], np.array(bb)[order]


def test_mcnemar_exact_small_counts() -> None:
    # b=10, c=3: 2·P(X <= 3), X ~ Bin(13, 1/2) = 2·(1 + 13 + 78 + 286)/8192 = 0.0922851...
    res = mcnemar(*_paired(10, 3))
    assert (res["b"], res["c"], res["discordant"]) == (10, 3, 13)
    assert res["test"] == "exact"
    assert res["p_exact"] == pytest.approx(2 * 378 / 8192, rel=1e-12)
    assert res["p_value"] == res["p_exact"]
    assert res["p_exact"] == pytest.approx(0.09229, abs=5e-6)
    assert not res["significant"]
    assert not res["rule_of_30"]


def test_mcnemar_chi2_with_continuity_correction() -> None:
    # b=25, c=5: (|25-5| - 1)² / 30 = 361/30 = 12.0333...
    res = mcnemar(*_paired(25, 5))
    assert res["test"] == "chi2"
    assert res["statistic"] == pytest.approx(361 / 30, rel=1e-12)
    assert res["p_chi2"] == pytest.approx(scipy_stats.chi2.sf(361 / 30, df=1), rel=1e-9)
    assert res["p_value"] == res["p_chi2"]
    assert res["significant"]
    assert res["p_exact"] == pytest.approx(scipy_stats.binomtest(25, 30).pvalue, rel=1e-9)


@pytest.mark.parametrize(("b", "c"), [(0, 0), (0, 1), (7, 7), (3, 40), (100, 62), (2500, 2411)])
def test_binomial_p_matches_scipy(b: int, c: int) -> None:
    expected = scipy_stats.binomtest(b, b + c).pvalue if b + c else 1.0
    assert binomial_two_sided_p(b, b + c) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@given(x=st.floats(0.0, 200.0))
@settings(max_examples=100, deadline=None)
def test_chi2_sf_matches_scipy(x: float) -> None:
    assert chi2_sf_1dof(x) == pytest.approx(scipy_stats.chi2.sf(x, df=1), rel=1e-9, abs=1e-300)


def test_mcnemar_rule_of_30_counts_net_changed_examples() -> None:
    # 45 vs 15 discordant: net 30 examples changed -> the rule fires; 44 vs 15 does not.
    assert mcnemar(*_paired(45, 15))["rule_of_30"]
    assert not mcnemar(*_paired(44, 15))["rule_of_30"]
    # Symmetric in direction.
    assert mcnemar(*_paired(15, 45))["rule_of_30"]


def test_mcnemar_equal_disagreement_is_not_significant() -> None:
    res = mcnemar(*_paired(20, 20))
    assert res["statistic"] == 0.0
    assert res["p_chi2"] == 1.0
    assert res["p_exact"] == 1.0


def test_mcnemar_identical_classifiers() -> None:
    ok = np.array([True, False, True])
    res = mcnemar(ok, ok)
    assert (res["b"], res["c"], res["p_value"], res["significant"]) == (0, 0, 1.0, False)


def test_mcnemar_accepts_predictions_and_labels() -> None:
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    pred_a = torch.tensor([0, 1, 2, 3, 0, 0])  # wrong on the last two
    pred_b = torch.tensor([0, 1, 9, 9, 4, 5])  # wrong on items 2 and 3
    res = mcnemar(pred_a, pred_b, labels=labels)
    assert (res["b"], res["c"], res["errors_a"], res["errors_b"]) == (2, 2, 2, 2)
    assert res["error_a"] == pytest.approx(2 / 6)
    # The same through 0/1 lists.
    res01 = mcnemar([1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 1, 1])
    assert (res01["b"], res01["c"]) == (2, 2)


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ([True, False], [True], "same examples"),
        ([0, 3], [1, 1], "labels="),
        ([], [], "at least one"),
        ([[True]], [[True]], "1-D"),
    ],
)
def test_mcnemar_rejects_bad_input(a: list, b: list, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        mcnemar(a, b)


# --- seeds ---------------------------------------------------------------------------------
def test_mean_std_uses_sample_std() -> None:
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert mean_std([0.07]) == (0.07, 0.0)
    with pytest.raises(ConfigError):
        mean_std([])


def test_summarize_seeds_groups_in_first_seen_order() -> None:
    rows = [
        {"optimizer": "sgd", "lr": 0.1, "seed": 0, "valid_error": 0.10, "test_error": None},
        {"optimizer": "adam", "lr": 0.001, "seed": 0, "valid_error": 0.05, "test_error": 0.06},
        {"optimizer": "sgd", "lr": 0.1, "seed": 1, "valid_error": 0.12, "test_error": 0.13},
        {"optimizer": "adam", "lr": 0.001, "seed": 1, "valid_error": 0.07, "test_error": 0.08},
    ]
    out = summarize_seeds(rows, ["optimizer", "lr"], ["valid_error", "test_error"])
    assert [(r["optimizer"], r["lr"], r["n"]) for r in out] == [("sgd", 0.1, 2), ("adam", 0.001, 2)]
    sgd = out[0]
    assert sgd["valid_error_mean"] == pytest.approx(0.11)
    assert sgd["valid_error_std"] == pytest.approx(math.sqrt(2) * 0.01)
    assert (sgd["valid_error_min"], sgd["valid_error_max"]) == (0.10, 0.12)
    # None is skipped, not counted as 0.
    assert sgd["test_error_n"] == 1
    assert sgd["test_error_mean"] == pytest.approx(0.13)
    assert sgd["test_error_std"] == 0.0


def test_summarize_seeds_reports_missing_key_with_hint() -> None:
    with pytest.raises(ConfigError, match="did you mean 'valid_error'"):
        summarize_seeds([{"optimizer": "sgd", "valid_error": 0.1}], ["optimizer"], ["valid_eror"])
