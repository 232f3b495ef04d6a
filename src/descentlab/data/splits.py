"""Seeded stratified splitting into train / valid / test.

Stratification by systematic sampling over the class-sorted examples::

    order = the examples sorted by class, shuffled (seeded) within each class
    for each split s = S, S-1, ..., 2 (peeling splits off the end):
        share = f_s / (f_1 + ... + f_s)            its fraction of what is left
        walk the remaining examples in order; example j (1-based) goes to split s
            iff floor(share * j + 1/2) > floor(share * (j - 1) + 1/2)
    split 1 takes whatever remains

The rule takes every (1/share)-th example, Bresenham-style, so split s gets
round(share * n) examples in total and every class -- a contiguous run of ``order``
-- contributes its proportional share to within one example.  Each split is then
shuffled once more so that class-sorted files (iris is sorted by species) do not
give class-sorted splits.  The same ``seed`` and labels always give the same split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from descentlab.data.checks import check_labels
from descentlab.data.containers import SPLITS, RawSplits
from descentlab.errors import ConfigError

__all__ = ["holdout_fractions", "stratified_split", "three_way_split"]

#: Fraction of all examples held out for testing when a dataset comes unsplit.
TEST_FRACTION = 0.2
#: Default fraction of the training pool (everything not in test) held out for
#: validation; with :data:`TEST_FRACTION` this gives 60 / 20 / 20.
DEFAULT_VALID_FRACTION = 0.25


def stratified_split(
    y: np.ndarray, fractions: Sequence[float], *, seed: int = 0
) -> list[np.ndarray]:
    """Indices of each split, stratified by the integer labels ``y``.

    ``fractions`` are the shares of each split and must be positive and sum to 1.
    Returns one int64 index array per fraction; together they partition ``range(len(y))``.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or fr.size == 0 or np.any(fr <= 0) or not np.isclose(fr.sum(), 1.0):
        raise ConfigError(f"split fractions must be positive and sum to 1, got {list(fractions)}")
    labels = np.asarray(y)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(labels.shape[0])
    remaining = perm[np.argsort(labels[perm], kind="stable")]  # class-sorted, shuffled within
    out: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * fr.size
    left = float(fr.sum())
    for s in range(fr.size - 1, 0, -1):
        share = min(float(fr[s]) / left, 1.0)
        taken = np.floor(share * np.arange(remaining.size + 1) + 0.5).astype(np.int64)
        pick = np.diff(taken) == 1
        out[s] = remaining[pick]
        remaining = remaining[~pick]
        left -= float(fr[s])
    out[0] = remaining
    return [rng.permutation(part).astype(np.int64) for part in out]


def holdout_fractions(valid_fraction: float | None, *, with_test: bool) -> list[float]:
    """Fractions ``[train, valid(, test)]`` for data that still has to be split.

    ``valid_fraction`` is the share of the *training pool* (all examples not held out
    for testing) that becomes the validation split.  With ``with_test`` a further
    :data:`TEST_FRACTION` of all examples is held out for testing first.
    """
    vf = DEFAULT_VALID_FRACTION if valid_fraction is None else valid_fraction
    if isinstance(vf, bool) or not isinstance(vf, int | float) or not 0.0 < float(vf) < 1.0:
        raise ConfigError(
            f"valid_fraction must be a number strictly between 0 and 1, got {valid_fraction!r}",
            hint="fix: e.g. valid_fraction=0.2",
        )
    vf = float(vf)
    if not with_test:
        return [1.0 - vf, vf]
    pool = 1.0 - TEST_FRACTION
    return [pool * (1.0 - vf), pool * vf, TEST_FRACTION]


def three_way_split(
    x: np.ndarray, y: np.ndarray, valid_fraction: float | None, seed: int
) -> RawSplits:
    """Train / valid / test arrays of data that is not already split (stratified, seeded).

    The test split holds out 20 %; ``valid_fraction`` (default 0.25) of the rest is
    validation (see :func:`holdout_fractions`).
    """
    fractions = holdout_fractions(valid_fraction, with_test=True)
    idx = stratified_split(check_labels(y, "labels"), fractions, seed=seed)
    return {s: (x[i], y[i]) for s, i in zip(SPLITS, idx)}
