"""The landscape lab: each §8.2 challenge shows what the book says it does."""

from __future__ import annotations

import numpy as np
import pytest

from descentlab.cli.main import main
from descentlab.errors import ConfigError
from descentlab.experiments.landscape import (
    DEFAULT_OPTIMIZERS,
    LANDSCAPES,
    MAX_ASPECT,
    landscape_figure,
    plot_landscape,
    run_landscape,
)
from descentlab.optim import OPTIMIZER_NAMES
from descentlab.plots import OPTIMIZER_STYLES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_every_optimizer_reduces_the_loss_on_the_quadratic():
    result = run_landscape("quadratic", list(OPTIMIZER_NAMES), steps=100)
    for name, path in result.paths.items():
        assert not path.diverged, name
        assert path.points.shape == (101, 2) and path.losses.shape == (101,)
        assert path.losses[-1] < 0.05 * path.losses[0], name
    # the start is the landscape's, the loss the function at the recorded point
    assert np.allclose(result.paths["sgd"].points[0], LANDSCAPES["quadratic"].start)
    x, y = result.paths["adam"].points[-1]
    assert result.paths["adam"].losses[-1] == pytest.approx(LANDSCAPES["quadratic"].value(x, y))


def test_saddle_traps_exact_gradients_and_noise_escapes():
    exact = run_landscape("saddle", ["sgd", "momentum", "adam"], steps=150)
    for name, path in exact.paths.items():
        assert np.all(path.points[:, 1] == 0.0), f"{name} left the x-axis without noise"
        assert abs(path.points[-1, 0]) < 1e-2  # ... and stalled at the saddle point (0, 0)
        assert path.losses[-1] == pytest.approx(0.0, abs=1e-3)
    noisy = run_landscape("saddle", ["sgd"], steps=150, noise=0.05, seed=3)
    y_end = noisy.paths["sgd"].points[-1, 1]
    assert abs(y_end) > 1.2  # escaped to one of the minima (0, ±√2)
    assert noisy.paths["sgd"].losses[-1] < -0.9


def test_clipping_bounds_every_step_on_the_cliff():
    lr, clip = 0.1, 1.0
    result = run_landscape("cliff", ["sgd", "sgd+clip"], lr=lr, clip_norm=None, steps=100)
    plain, clipped = result.paths["sgd"], result.paths["sgd+clip"]
    assert clipped.clip_norm == clip and plain.clip_norm is None
    assert np.all(clipped.steps <= lr * clip + 1e-12)
    assert plain.steps.max() > 5.0  # catapulted off the cliff face
    assert plain.grad_norms.max() > 50.0  # the face really is a cliff
    assert np.abs(clipped.points[:, 0]).max() < 3.5 and plain.points[:, 0].min() < -5
    # clip_norm= clips every path, at the given threshold
    every = run_landscape("cliff", ["sgd"], lr=lr, clip_norm=0.5, steps=100)
    assert np.all(every.paths["sgd"].steps <= lr * 0.5 + 1e-12)


def test_adam_reaches_the_rosenbrock_minimum():
    result = run_landscape("rosenbrock", ["adam"], steps=2000)
    assert np.allclose(result.paths["adam"].points[-1], [1.0, 1.0], atol=1e-2)


def test_noise_is_seeded_and_shared_by_every_path():
    a = run_landscape("noisy", ["sgd", "sgd+clip"], steps=30, seed=1, clip_norm=1e9)
    b = run_landscape("noisy", ["sgd"], steps=30, seed=1)
    c = run_landscape("noisy", ["sgd"], steps=30, seed=2)
    assert a.noise == LANDSCAPES["noisy"].noise > 0
    assert np.array_equal(a.paths["sgd"].points, b.paths["sgd"].points)
    assert np.array_equal(a.paths["sgd"].points, a.paths["sgd+clip"].points)  # never clipped
    assert not np.array_equal(b.paths["sgd"].points, c.paths["sgd"].points)


def test_diverging_paths_stop_and_are_marked():
    result = run_landscape("rosenbrock", ["sgd", "adam"], lr={"sgd": 0.1}, steps=200)
    sgd = result.paths["sgd"]
    assert sgd.diverged and sgd.stopped_at is not None and sgd.stopped_at < 200
    assert np.all(np.isfinite(sgd.points)) and len(sgd.points) == sgd.stopped_at
    assert not result.paths["adam"].diverged
    assert "diverged" in next(r for r in result.summary() if r["optimizer"] == "sgd")["status"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"function": "rosenbrok"}, "did you mean 'rosenbrock'"),
        ({"optimizers": []}, "no optimizers"),
        ({"optimizers": ["sgd", "sgd"]}, "twice"),
        ({"optimizers": ["adamm"]}, "did you mean 'adam'"),
        ({"steps": 0}, "steps"),
        ({"lr": -1.0}, "lr of sgd"),
        ({"noise": -0.1}, "noise"),
        ({"clip_norm": 0.0}, "clip_norm"),
        ({"start": (1.0,)}, "start"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, match):
    args = {"function": "quadratic", "optimizers": ["sgd"], "steps": 5, **kwargs}
    with pytest.raises(ConfigError, match=match):
        run_landscape(**args)


def test_plot_writes_png_svg_and_gif(tmp_path):
    result = run_landscape("cliff", ["sgd", "sgd+clip", "adam"], steps=12)
    written = plot_landscape(result, tmp_path, gif=True)
    names = sorted(p.name for p in written)
    assert names == ["cliff.gif", "cliff.png", "cliff.svg"]
    assert (tmp_path / "cliff.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "cliff.gif").read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    assert b"<svg" in (tmp_path / "cliff.svg").read_bytes()[:2000]
    # a file name: its suffix is replaced, the folder is created
    written = plot_landscape(result, tmp_path / "sub" / "paths.png")
    assert [p.name for p in written] == ["paths.png", "paths.svg"]


def test_plot_survives_a_diverged_path(tmp_path):
    result = run_landscape("rosenbrock", ["sgd"], lr=0.1, steps=50)
    assert result.paths["sgd"].diverged
    (png, _) = plot_landscape(result, tmp_path)
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_landscape_command_writes_the_files(tmp_path, capsys):
    out = tmp_path / "land"
    argv = ["landscape", "--function", "saddle", "--optimizers", "sgd,adam", "--steps", "60"]
    assert main([*argv, "--noise", "0.05", "--seed", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "optimizer=sgd" in printed and "wrote" in printed
    assert (out / "saddle.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "saddle.svg").is_file() and not (out / "saddle.gif").exists()
    assert main(["landscape", "--function", "nope", "--out", str(out)]) == 2


def test_gif_without_pillow_is_a_clear_error(tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "PIL" else real_find_spec(name, *a),
    )
    result = run_landscape("quadratic", ["sgd"], steps=3)
    with pytest.raises(ConfigError, match="Pillow"):
        plot_landscape(result, tmp_path, gif=True)


# ------------------------------------------------------------- how it reads
def _path_lines(ax):
    """The drawn paths: lines with more than one point and a line style."""
    return [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1 and ln.get_linestyle() != "None"]


def test_the_contours_have_a_colour_bar_and_log_levels():
    fig = landscape_figure(run_landscape("rosenbrock", ["sgd"], steps=20))
    bar = fig.axes[2]
    assert "f − min f" in bar.get_xlabel() and "log" in bar.get_xlabel()
    assert bar.get_xscale() == "log"  # Rosenbrock's f − min f spans many decades


def test_clipped_and_unclipped_sgd_look_different():
    fig = landscape_figure(run_landscape("cliff", ["sgd", "sgd+clip", "adam"], steps=30))
    ax = fig.axes[0]
    sgd, clipped, adam = _path_lines(ax)
    assert sgd.get_color() != clipped.get_color()
    assert sgd.get_linestyle() != clipped.get_linestyle()
    assert len({sgd.get_color(), clipped.get_color(), adam.get_color()}) == 3


def test_paths_that_share_a_valley_stay_visible():
    result = run_landscape("rosenbrock", ["sgd", "momentum", "adam"], steps=300)
    fig = landscape_figure(result)
    lines = {ln.get_color(): ln for ln in _path_lines(fig.axes[0])}
    adam = lines[OPTIMIZER_STYLES["adam"].color]
    sgd = lines[OPTIMIZER_STYLES["sgd"].color]
    # Adam travels farthest: drawn first, underneath and wider, not over the others.
    assert adam.get_zorder() < sgd.get_zorder()
    assert adam.get_linewidth() > sgd.get_linewidth()
    # Each path's end point is marked above every line.
    ends = [ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata()) == 1]
    assert len(ends) >= 3 + 2  # three end markers, plus the start and the minimum
    assert min(ln.get_zorder() for ln in ends) > max(ln.get_zorder() for ln in lines.values())


def test_the_cliff_panel_is_not_squashed():
    result = run_landscape("cliff", ["sgd", "sgd+clip", "adam"])
    assert result.paths["sgd"].points[:, 0].min() < -8  # thrown far to the left
    fig = landscape_figure(result)
    fig.canvas.draw()
    box = fig.axes[0].get_position()
    width, height = box.width * fig.get_figwidth(), box.height * fig.get_figheight()
    assert width / height <= MAX_ASPECT + 0.05


def test_the_default_plot_includes_nesterov():
    # docs/landscape.md compares Nesterov with classical momentum.
    assert "nesterov" in DEFAULT_OPTIMIZERS
    assert list(run_landscape("quadratic", steps=3).paths) == list(DEFAULT_OPTIMIZERS)
