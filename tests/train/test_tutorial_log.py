"""--log-style tutorial: the closing lines as the tutorial's documentation prints them."""

from __future__ import annotations

from descentlab.train.callbacks.tutorial_log import closing_lines


def _summary(valid: float, test: float, best_iteration: int) -> dict[str, float | int]:
    return {
        "best_valid_error": valid,
        "test_error": test,
        "best_iteration": best_iteration - 1,  # ours is 0-based, the scripts print +1
        "train_seconds": 120.0,
        "epochs_run": 10,
    }


def test_mlp_closing_line_is_the_published_one() -> None:
    out, err = closing_lines("mlp", _summary(0.0169, 0.0165, 2_070_000))
    assert out == [
        "Optimization complete. Best validation score of 1.690000 % obtained at iteration "
        "2070000, with test performance 1.650000 %"
    ]
    assert err == ["The code for file mlp.py ran for 2.00m"]


def test_lenet_closing_lines_are_the_published_ones() -> None:
    out, _ = closing_lines("lenet", _summary(0.0091, 0.0092, 17_800))
    # doc/lenet.txt wraps the second line; the script prints it as one line
    assert out == [
        "Optimization complete.",
        "Best validation score of 0.910000 % obtained at iteration 17800,"
        "with test performance 0.920000 %",
    ]


def test_logreg_closing_lines() -> None:
    out, err = closing_lines("logreg", _summary(0.075, 0.07489583333333333, 6059))
    assert out[0] == (
        "Optimization complete with best validation score of 7.500000 %,"
        "with test performance 7.489583 %"
    )
    assert out[1] == "The code run for 10 epochs, with 0.083333 epochs/sec" and err == []
