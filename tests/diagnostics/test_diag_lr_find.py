"""Learning-rate range test on scikit-learn digits."""

from __future__ import annotations

import math

import pytest
import torch
from diag_problems import digits

from descentlab.diagnostics import default_cost, lr_find, plot_lr_find
from descentlab.errors import ConfigError
from descentlab.models import build_model


@pytest.fixture(scope="module")
def sweep():
    x, y = digits()
    torch.manual_seed(0)
    model = build_model("logreg", (64,), 10)
    before = [p.detach().clone() for p in model.parameters()]
    result = lr_find(model, default_cost(), x, y, lr_min=1e-4, lr_max=100.0, steps=250)
    return model, before, result


def test_suggestion_is_finite_and_below_the_divergence_point(sweep):
    _, _, r = sweep
    assert r.diverged_at is not None  # lr_max = 100 is far too large for this problem
    assert math.isfinite(r.suggestion) and r.suggestion > 1e-4
    assert r.suggestion < r.lr_at_min < r.diverged_at
    assert r.lr_min_over_10 == pytest.approx(r.lr_at_min / 10)
    # The stop rule fired: the last losses are well above the best ones.
    assert max(r.losses[-5:]) > 2 * min(r.losses)
    # The cost at the suggested rate is falling: below the starting cost, above the min.
    i = r.lrs.index(r.suggestion)
    assert r.smoothed[0] > r.smoothed[i] > min(s for s in r.smoothed if math.isfinite(s))


def test_sweep_is_geometric_and_model_untouched(sweep):
    model, before, r = sweep
    ratios = [b / a for a, b in zip(r.lrs, r.lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios))
    assert r.lrs[0] == pytest.approx(1e-4)
    assert len(r.lrs) == len(r.losses) == len(r.smoothed) < 250
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_plot_written(sweep, tmp_path):
    _, _, r = sweep
    out = plot_lr_find(r, tmp_path / "lr.png", bound=1.5)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runs_to_lr_max_without_divergence_and_rejects_bad_ranges():
    x, y = digits()
    model = build_model("logreg", (64,), 10)
    r = lr_find(model, default_cost(), x, y, lr_min=1e-5, lr_max=1e-2, steps=30)
    assert r.diverged_at is None and len(r.lrs) == 30
    assert r.lrs[-1] == pytest.approx(1e-2)
    with pytest.raises(ConfigError):
        lr_find(model, default_cost(), x, y, lr_min=1.0, lr_max=0.1)
    with pytest.raises(ConfigError):
        lr_find(model, default_cost(), x, y, steps=3)
