"""Is a difference between two classifiers real?  Intervals and paired tests.

One rule of thumb and two proper tools live here:

* the course notes' **rule of 30**: "a change that affects 30 examples in the
  validation set is statistically significant".  For two classifiers scored on the
  same examples, the examples the change affects are the *discordant* ones, so the
  rule reads ``|b - c| >= 30`` in McNemar's notation below;
* the **Wilson score interval** for one error rate (how precisely ``k`` errors out
  of ``n`` pin down the true error);
* **McNemar's test** for two classifiers evaluated on the same examples.  Only the
  examples on which they disagree carry information: with

                 B right   B wrong
      A right       -         b
      A wrong       c         -

  under H0 "A and B are equally accurate" each discordant example is a fair coin,
  ``b ~ Binomial(b + c, 1/2)``.  The exact p-value sums that binomial's tails; for
  many discordant examples the chi-square approximation with Edwards' continuity
  correction, ``X² = (|b - c| - 1)² / (b + c)`` on 1 degree of freedom, is the
  textbook choice.

The distributions come from :mod:`scipy.stats` (``binomtest`` for the exact
p-value and the Wilson interval, ``chi2`` for the approximation); this module adds
the input checks, the choice between the two tests and the report-ready records.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from descentlab.errors import ConfigError, did_you_mean

__all__ = [
    "EXACT_THRESHOLD",
    "RULE_OF_30",
    "binomial_two_sided_p",
    "chi2_sf_1dof",
    "mcnemar",
    "mean_std",
    "summarize_seeds",
    "wilson_interval",
]

#: The course notes' rule of thumb: a change that affects this many validation
#: examples is statistically significant.
RULE_OF_30 = 30

#: Below this many discordant pairs McNemar's test uses the exact binomial p-value
#: (the chi-square approximation is poor for few pairs); at or above it, the
#: continuity-corrected chi-square.  25 is the usual textbook cut-off.
EXACT_THRESHOLD = 25


def _check_confidence(confidence: float) -> float:
    if not isinstance(confidence, int | float) or not 0.0 < float(confidence) < 1.0:
        raise ConfigError(
            f"confidence must be a number strictly between 0 and 1, got {confidence!r}",
            hint="e.g. confidence=0.95",
        )
    return float(confidence)


def wilson_interval(errors: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for an error rate ``errors / n``.

    With ``p̂ = errors / n`` and ``z`` the ``1 - (1 - confidence) / 2`` normal
    quantile::

        centre    = (p̂ + z² / 2n) / (1 + z² / n)
        halfwidth = z / (1 + z² / n) · sqrt(p̂ (1 - p̂) / n + z² / 4n²)

    Unlike the normal ("Wald") interval ``p̂ ± z sqrt(p̂(1-p̂)/n)`` it never leaves
    [0, 1] and does not collapse to a point when ``errors`` is 0 or ``n`` — which
    matters for the small error rates of a good MNIST classifier.

    Returns ``(low, high)`` as rates in [0, 1].
    """
    if isinstance(errors, bool) or not isinstance(errors, int | np.integer):
        raise ConfigError(f"errors must be an integer count, got {errors!r}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise ConfigError(f"n must be an integer count, got {n!r}")
    errors, n = int(errors), int(n)
    if n <= 0:
        raise ConfigError(f"n must be a positive number of examples, got {n}")
    if not 0 <= errors <= n:
        raise ConfigError(f"errors must lie in [0, n] = [0, {n}], got {errors}")
    confidence = _check_confidence(confidence)

    p = errors / n
    ci = scipy_stats.binomtest(errors, n).proportion_ci(
        confidence_level=confidence, method="wilson"
    )
    # In exact arithmetic low <= p̂ <= high, and low = 0 exactly when errors = 0 (high = 1
    # when errors = n); rounding can miss both by ~1e-19, so state them exactly.
    low = 0.0 if errors == 0 else min(p, float(ci.low))
    high = 1.0 if errors == n else max(p, float(ci.high))
    return max(0.0, low), min(1.0, high)


def binomial_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair-coin trials.

    The probability, under Binomial(n, 1/2), of an outcome at most as likely as
    ``k``; by symmetry ``min(1, 2 · P(X <= min(k, n - k)))``
    (:func:`scipy.stats.binomtest`).  No trials (``n = 0``) give p = 1.
    """
    if n < 0 or not 0 <= k <= n:
        raise ConfigError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 1.0
    return float(min(1.0, scipy_stats.binomtest(int(k), int(n), 0.5).pvalue))


def chi2_sf_1dof(x: float) -> float:
    """Survival function of the chi-square distribution with one degree of freedom.

    If ``Z ~ N(0, 1)`` then ``Z² ~ χ²₁`` and ``P(Z² > x) = P(|Z| > √x)``
    (:data:`scipy.stats.chi2`).
    """
    if x < 0 or math.isnan(x):
        raise ConfigError(f"a chi-square statistic must be >= 0, got {x}")
    return float(scipy_stats.chi2.sf(x, df=1))


def _as_bool_vector(values: Any, name: str) -> np.ndarray:
    """Accept bools, 0/1 numbers, lists, NumPy arrays or (CPU or GPU) tensors."""
    if hasattr(values, "detach"):  # a torch.Tensor, possibly on a GPU
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ConfigError(
            f"{name} must be a 1-D array of per-example values, got shape {arr.shape}"
        )
    if arr.dtype == bool:
        return arr
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ConfigError(
            f"{name} must hold per-example correctness (True/False or 0/1)",
            hint="to compare predictions pass labels=..., e.g. mcnemar(pred_a, pred_b, labels=y)",
        )
    return arr.astype(bool)


def _as_label_vector(values: Any, name: str) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be a 1-D array of class indices, got shape {arr.shape}")
    return arr


def _correctness(correct_a: Any, correct_b: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-example correctness of A and B, from correctness or from predictions and labels."""
    if labels is not None:
        truth = _as_label_vector(labels, "labels")
        pred_a = _as_label_vector(correct_a, "predictions of A")
        pred_b = _as_label_vector(correct_b, "predictions of B")
        if not pred_a.shape == pred_b.shape == truth.shape:
            raise ConfigError(
                f"predictions and labels must have the same length, got {pred_a.shape[0]}, "
                f"{pred_b.shape[0]} and {truth.shape[0]}"
            )
        return pred_a == truth, pred_b == truth
    ok_a = _as_bool_vector(correct_a, "correct_a")
    ok_b = _as_bool_vector(correct_b, "correct_b")
    if ok_a.shape != ok_b.shape:
        raise ConfigError(
            f"correct_a and correct_b must score the same examples, got lengths "
            f"{ok_a.shape[0]} and {ok_b.shape[0]}"
        )
    return ok_a, ok_b


def mcnemar(
    correct_a: Any,
    correct_b: Any,
    labels: Any = None,
    *,
    alpha: float = 0.05,
    exact_threshold: int = EXACT_THRESHOLD,
) -> dict[str, Any]:
    """McNemar's test: are classifiers A and B equally accurate on these examples?

    Parameters
    ----------
    correct_a, correct_b
        Per-example correctness of A and B on the *same* examples in the same order
        (bool arrays, 0/1 arrays, lists or tensors).  If ``labels`` is given they
        are instead per-example predicted classes, and correctness is
        ``prediction == labels``.
    labels
        Optional true classes, to pass predictions instead of correctness.
    alpha
        Level at which ``significant`` is decided.
    exact_threshold
        Use the exact binomial p-value when ``b + c < exact_threshold``, else the
        continuity-corrected chi-square (both are always reported).

    Returns
    -------
    dict with
        ``n`` examples, ``errors_a``/``errors_b`` and ``error_a``/``error_b`` (rates),
        ``b`` (A right, B wrong), ``c`` (A wrong, B right), ``discordant = b + c``,
        ``p_exact`` (two-sided binomial), ``statistic`` (``(|b-c|-1)²/(b+c)``,
        clamped at 0 when ``|b - c| < 1``), ``p_chi2``, ``test`` (``"exact"`` or
        ``"chi2"``), ``p_value`` (of that test), ``significant``
        (``p_value < alpha``) and ``rule_of_30`` (``|b - c| >= 30``: the change
        affects at least 30 examples net).
    """
    ok_a, ok_b = _correctness(correct_a, correct_b, labels)
    n = int(ok_a.shape[0])
    if n == 0:
        raise ConfigError("McNemar's test needs at least one example, got none")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    if exact_threshold < 0:
        raise ConfigError(f"exact_threshold must be >= 0, got {exact_threshold}")

    b = int(np.count_nonzero(ok_a & ~ok_b))
    c = int(np.count_nonzero(~ok_a & ok_b))
    discordant = b + c
    p_exact = binomial_two_sided_p(b, discordant)
    if discordant == 0:
        statistic, p_chi2 = 0.0, 1.0
    else:
        # Edwards' continuity correction; clamped so that b == c gives X² = 0, not 1/(b+c).
        statistic = max(abs(b - c) - 1, 0) ** 2 / discordant
        p_chi2 = chi2_sf_1dof(statistic)
    test = "exact" if discordant < exact_threshold else "chi2"
    p_value = p_exact if test == "exact" else p_chi2
    errors_a, errors_b = n - int(ok_a.sum()), n - int(ok_b.sum())
    return {
        "n": n,
        "errors_a": errors_a,
        "errors_b": errors_b,
        "error_a": errors_a / n,
        "error_b": errors_b / n,
        "b": b,
        "c": c,
        "discordant": discordant,
        "statistic": statistic,
        "p_chi2": p_chi2,
        "p_exact": p_exact,
        "test": test,
        "p_value": p_value,
        "alpha": alpha,
        "significant": p_value < alpha,
        "rule_of_30": abs(b - c) >= RULE_OF_30,
    }


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``) of a few seeds' results.

    ``std = sqrt(Σ (v - mean)² / (n - 1))``; a single value has std 0 (one seed
    says nothing about the spread, and 0 keeps tables printable).  Non-finite
    values propagate (a diverged seed makes the mean ``inf``/``nan``, visibly).
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ConfigError("mean_std needs at least one value, got none")
    if len(vals) == 1 or (math.isfinite(vals[0]) and len(set(vals)) == 1):
        # Seeds that agree (or one seed): exactly the value and exactly 0 — a float
        # mean of equal numbers can land an ulp away and leave a spurious tiny std.
        return vals[0], 0.0
    mean = math.fsum(vals) / len(vals)
    var = math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return mean, math.sqrt(var)


def summarize_seeds(
    rows: Iterable[Mapping[str, Any]],
    group_keys: Sequence[str],
    metric_keys: Sequence[str],
) -> list[dict[str, Any]]:
    """Collapse one row per (configuration, seed) into one row per configuration.

    Rows are grouped by the values of ``group_keys`` (groups keep the order in
    which they first appear).  For each metric ``m`` the output row holds
    ``m_mean``, ``m_std`` (ddof=1), ``m_min``, ``m_max`` and ``m_n`` (how many
    seeds had a value: ``None`` — e.g. a test error that was not measured — is
    skipped; a group where no seed has the metric gets ``None`` statistics), and
    ``n`` is the number of rows in the group.
    """
    if isinstance(group_keys, str) or isinstance(metric_keys, str):
        raise ConfigError("group_keys and metric_keys must be lists of names, not one string")
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        missing = [k for k in (*group_keys, *metric_keys) if k not in row]
        if missing:
            raise ConfigError(
                f"row has no key {missing[0]!r}",
                hint=did_you_mean(missing[0], list(row.keys())) if row else "the row is empty",
            )
        key = tuple(row[k] for k in group_keys)
        groups.setdefault(key, []).append(row)

    out: list[dict[str, Any]] = []
    for key, members in groups.items():
        summary: dict[str, Any] = dict(zip(group_keys, key))
        summary["n"] = len(members)
        for m in metric_keys:
            vals = [float(r[m]) for r in members if r[m] is not None]
            if vals:
                mean, std = mean_std(vals)
                summary.update(
                    {
                        f"{m}_mean": mean,
                        f"{m}_std": std,
                        f"{m}_min": min(vals),
                        f"{m}_max": max(vals),
                    }
                )
            else:
                summary.update({f"{m}_{s}": None for s in ("mean", "std", "min", "max")})
            summary[f"{m}_n"] = len(vals)
        out.append(summary)
    return out
