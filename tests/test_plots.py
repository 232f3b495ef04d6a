"""The shared figures: spreads, seed means on a common grid, learning curves, styles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from descentlab.plots import (
    OPTIMIZER_STYLES,
    curves_figure,
    learning_curve_figure,
    line_styles,
    lr_sensitivity_figure,
    mean_over_runs,
    plot_lr_sensitivity,
    spread,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ spreads
@pytest.mark.parametrize("value", [0.1, 0.0583, 1 / 3, 0.07799442896935933, 2.2e-16])
def test_identical_seeds_spread_exactly_zero(value):
    # np.mean([0.1] * 3) is 0.10000000000000002: the old max − mean was −1.4e-17.
    assert spread([value] * 3) == (value, 0.0, 0.0)


def test_spread_is_never_negative():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        vals = list(rng.choice(rng.random(3), size=int(rng.integers(1, 6))))
        mean, down, up = spread(vals)
        assert down >= 0 and up >= 0
        assert min(vals) <= mean <= max(vals)


def test_spread_skips_diverged_runs():
    assert spread([0.2, math.nan, 0.4]) == pytest.approx((0.3, 0.1, 0.1))
    mean, down, up = spread([math.nan, math.inf])
    assert math.isnan(mean) and (down, up) == (0.0, 0.0)


def test_lr_sensitivity_with_seeds_that_cannot_differ(tmp_path):
    # The README's compare: three seeds of a zero-initialised, unshuffled softmax
    # regression give identical results.  This crashed with "'yerr' must not
    # contain negative values".
    rows = [
        {"optimizer": opt, "lr": lr, "valid_error": err}
        for opt, lr, err in [
            ("sgd", 0.01, 0.1),
            ("sgd", 0.1, 0.07799442896935933),
            ("adam", 0.01, 1 / 3),
            ("adam", 0.1, 0.0583),
        ]
        for _seed in range(3)
    ]
    png, svg = plot_lr_sensitivity(rows, tmp_path / "lr", percent=True)
    assert png.read_bytes()[:8] == PNG_MAGIC and svg.is_file()


# ------------------------------------------------------ means over seeds
def test_seed_mean_uses_only_the_range_every_seed_covers():
    # Wall-clock x values never coincide; one seed ends earlier than the other.
    a = (np.array([0.1, 0.2, 0.3, 0.4]), np.array([10.0, 8.0, 6.0, 4.0]))
    b = (np.array([0.15, 0.25, 0.35]), np.array([12.0, 10.0, 8.0]))
    agg = mean_over_runs([a, b], "minmax")
    assert agg["x"][0] == pytest.approx(0.15) and agg["x"][-1] == pytest.approx(0.35)
    # Every point is a mean of both seeds: a straight line here, no zig-zag where a
    # single seed would take over.
    expected = (np.interp(agg["x"], *a) + np.interp(agg["x"], *b)) / 2
    np.testing.assert_allclose(agg["mean"], expected)
    assert np.all(np.diff(agg["mean"]) < 0)
    assert np.all(agg["low"] <= agg["mean"]) and np.all(agg["mean"] <= agg["high"])


def test_seeds_sharing_their_x_values_keep_them():
    x = np.arange(1.0, 6.0)
    agg = mean_over_runs([(x, x * 0 + 1.0), (x, x * 0 + 3.0)], "std")
    np.testing.assert_array_equal(agg["x"], x)
    np.testing.assert_allclose(agg["mean"], 2.0)
    np.testing.assert_allclose(agg["high"] - agg["mean"], math.sqrt(2))


def test_identical_seed_curves_have_an_empty_band():
    x, y = np.arange(1.0, 4.0), np.array([0.3, 0.2, 0.1])
    agg = mean_over_runs([(x, y), (x, y.copy()), (x, y.copy())], "std")
    np.testing.assert_array_equal(agg["low"], agg["mean"])
    np.testing.assert_array_equal(agg["high"], agg["mean"])


def _series(errors_by_group):
    return [
        {
            "group": g,
            "optimizer": g,
            "history": [{"epoch": e + 1, "valid_error": v} for e, v in enumerate(errs)],
        }
        for g, errs in errors_by_group
    ]


def test_curves_are_in_percent_with_integer_epoch_ticks():
    fig = curves_figure(
        _series([("sgd", [0.2, 0.1, 0.05]), ("adam", [0.15, 0.08, 0.04])]),
        "epoch",
        "valid_error",
        "group",
        style_key="optimizer",
        percent=True,
        title="mlp on digits: validation error",
    )
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.get_ylabel() == "validation error (%)"
    assert ax.get_title() == "mlp on digits: validation error"
    ys = np.concatenate([line.get_ydata() for line in ax.get_lines()])
    assert ys.max() == pytest.approx(20.0)
    ticks = ax.get_xticks()
    assert np.allclose(ticks, np.round(ticks))


def test_eight_optimizers_are_told_apart_by_colour_and_dashes():
    styles = [OPTIMIZER_STYLES[name] for name in OPTIMIZER_STYLES]
    assert len({s.color for s in styles}) == len(styles) == 8
    assert len({s.marker for s in styles}) == 8
    assert OPTIMIZER_STYLES["sgd"].ls == "-"
    assert OPTIMIZER_STYLES["momentum"].ls == OPTIMIZER_STYLES["nesterov"].ls == "--"
    assert OPTIMIZER_STYLES["adagrad"].ls == OPTIMIZER_STYLES["rmsprop"].ls == ":"
    # Not one optimizer per group (two batch sizes of each): still all different.
    groups = [f"{o}, batch_size={b}" for o in ("sgd", "adam", "rmsprop") for b in (20, 128)]
    opts = [g.split(",")[0] for g in groups]
    got = line_styles(groups, opts)
    assert len({(s.color, s.ls) for s in got}) == len(groups)
    assert [s.ls for s in got[:2]] == ["-", "-"] and got[2].ls == "-."
    many = line_styles([f"config {i}" for i in range(12)])
    assert len({(s.color, s.ls) for s in many}) == 12


def test_lr_sensitivity_joins_the_learning_rates_of_a_configuration():
    rows = [
        {"group": g, "optimizer": g, "lr": lr, "valid_error": 0.1 * lr + seed * 1e-3}
        for g in ("sgd", "momentum")
        for lr in (0.01, 0.1, 1.0)
        for seed in range(2)
    ]
    fig = lr_sensitivity_figure(rows, group_key="group", style_key="optimizer", percent=True)
    joined = [line for line in fig.axes[0].get_lines() if line.get_linestyle() != "None"]
    # one connected line per configuration through its three lrs (caps are unjoined)
    assert [len(line.get_xdata()) for line in joined] == [3, 3]
    assert [line.get_linestyle() for line in joined] == ["-", "--"]


# ------------------------------------------------------------ learning curve
def _row(epoch, examples, valid, test_at_best, nll=1.0):
    return {
        "epoch": epoch,
        "iteration": examples // 20 - 1,
        "examples_seen": examples,
        "train_nll": nll,
        "valid_error": valid,
        "test_error": test_at_best,
        "test_error_at_best": test_at_best,
    }


def test_frequent_validation_is_drawn_against_examples_seen():
    # fast-mnist validates several times per epoch: on an epoch axis the curve was a
    # vertical line at epoch 1.
    hist = [_row(1 + i // 5, 200 * (i + 1), 0.5 / (i + 1), 0.4 / (i + 1)) for i in range(10)]
    fig = learning_curve_figure(hist, title="run fast")
    ax_err = fig.axes[1]
    assert ax_err.get_xlabel() == "training examples seen"
    labels = [t.get_text() for t in ax_err.get_legend().get_texts()]
    assert labels[0] == "validation error (best 5.00%, after 2,000 examples)"
    xs = ax_err.get_lines()[0].get_xdata()
    assert len(set(xs)) == 10
    assert "run fast" in fig.get_suptitle() and "10 validations over 2 epochs" in (
        fig.get_suptitle()
    )


def test_epoch_curves_have_integer_ticks_percent_and_named_test_error():
    hist = [_row(e, 1000 * e, 0.2 / e, 0.18 / e, nll=1 / e) for e in range(1, 9)]
    fig = learning_curve_figure(hist, title="run r1")
    fig.canvas.draw()
    ax_err = fig.axes[1]
    assert ax_err.get_xlabel() == "epoch"
    assert np.allclose(ax_err.get_xticks(), np.round(ax_err.get_xticks()))
    assert ax_err.get_ylabel() == "error rate (%)"
    labels = [t.get_text() for t in ax_err.get_legend().get_texts()]
    assert "test error at best validation" in labels
    assert any(label.startswith("validation error (best 2.50%, epoch 8)") for label in labels)
    assert max(ax_err.get_lines()[0].get_ydata()) == pytest.approx(20.0)


def test_a_one_epoch_run_is_not_a_dot_on_a_blown_up_axis():
    fig = learning_curve_figure([_row(1, 1060, 0.194, 0.159)], title="run one")
    fig.canvas.draw()
    ax_err = fig.axes[1]
    lo, hi = ax_err.get_xlim()
    assert lo == 0 and hi == 2  # was 0.96–1.04
    assert ax_err.get_ylim()[0] == 0
    assert "single validation" in fig.get_suptitle()
    ticks = [t for t in ax_err.get_xticks() if lo <= t <= hi]
    assert ticks == [0, 1, 2]


def test_empty_history_still_draws():
    fig = learning_curve_figure([])
    assert "no validation yet" in fig.get_suptitle()
