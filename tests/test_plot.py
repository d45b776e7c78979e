"""Learning-curve plots from run files."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from nbasync.plot import PlotError, moving_average, plot_runs
from nbasync.runfile import RunFile, RunFileError

LAYOUT = [("w", 0, (4,))]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(path, algo, n_episodes, seed=0):
    rf = RunFile.create(path, {"algo": algo, "env": "CartPole-v1"}, LAYOUT)
    rng = np.random.default_rng(seed)
    for i in range(n_episodes):
        rf.append_episode(i % 2, 100 * (i + 1), 0.5 * (i + 1), float(i + rng.random()), 100)
    rf.save()
    return path


def test_moving_average():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(moving_average(x, 2), [1.0, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(moving_average(x, 100), np.cumsum(x) / np.arange(1, 6))
    np.testing.assert_allclose(moving_average(x, 1), x)
    assert moving_average(np.zeros(0), 3).shape == (0,)
    with pytest.raises(ValueError):
        moving_average(x, 0)


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    a = make_run(tmp_path / "run_a", "a3c", 300)
    b = make_run(tmp_path / "run_b", "nstep_q", 50, seed=1)
    empty = make_run(tmp_path / "run_c", "one_step_q", 0)
    out = plot_runs([a, b / "run.h5", empty], tmp_path / "plots" / "curves.png", window=20)
    assert out.is_file()
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_plot_single_path(tmp_path):
    pytest.importorskip("matplotlib")
    a = make_run(tmp_path / "run_a", "a3c", 10)
    out = plot_runs(str(a), tmp_path / "one.png")
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_plot_draws_baselines_on_both_panels(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import nbasync.plot as plot

    figures = []
    monkeypatch.setattr(plot, "save_figure", lambda fig, out: figures.append(fig) or out)
    a = make_run(tmp_path / "run_a", "a3c", 30)
    plot_runs([a], tmp_path / "c.png", baselines=[(1.4, "random policy"), (-3.0, "paper")])
    ax_steps, ax_wall = figures[0].axes
    for ax in (ax_steps, ax_wall):
        flat = sorted(
            line.get_ydata()[0]
            for line in ax.get_lines()
            if len(set(line.get_ydata())) == 1 and len(line.get_ydata()) == 2
        )
        assert flat == [-3.0, 1.4]
    labels = [text.get_text() for text in ax_steps.get_legend().get_texts()]
    assert "random policy (1.4)" in labels and "paper (-3)" in labels


def test_plot_without_matplotlib_is_one_line_error(tmp_path, monkeypatch):
    a = make_run(tmp_path / "run_a", "a3c", 10)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(PlotError, match=r"pip install nbasync\[plot\]") as ei:
        plot_runs([a], tmp_path / "x.png")
    assert "\n" not in str(ei.value)
    assert not (tmp_path / "x.png").exists()


def test_plot_missing_run_is_run_file_error(tmp_path):
    with pytest.raises(RunFileError, match="no run file"):
        plot_runs([tmp_path / "nope"], tmp_path / "x.png")


def test_plot_no_runs(tmp_path):
    with pytest.raises(PlotError, match="no runs"):
        plot_runs([], tmp_path / "x.png")


def test_output_without_suffix_gets_png_and_is_reported(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    from nbasync.cli import plot_main

    a = make_run(tmp_path / "run_a", "a3c", 10)
    monkeypatch.chdir(tmp_path)
    assert plot_main([str(a), "-o", "curve"]) == 0
    assert capsys.readouterr().out.strip() == "wrote curve.png"
    assert (tmp_path / "curve.png").read_bytes()[:8] == PNG_MAGIC
    assert not (tmp_path / "curve").exists()


def test_bad_window_and_suffix_are_plot_errors_before_anything_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    a = make_run(tmp_path / "run_a", "a3c", 10)
    with pytest.raises(PlotError, match="--window"):
        plot_runs([a], tmp_path / "out" / "c.png", window=0)
    with pytest.raises(PlotError, match=r"cannot write a \.txt file"):
        plot_runs([a], tmp_path / "out" / "c.txt")
    assert not (tmp_path / "out").exists()


def test_binned_median_takes_each_step_range():
    from nbasync.plot import binned_median

    x = np.array([0, 1, 2, 10, 11, 12])
    y = np.array([[1.0, 5.0], [2.0, np.nan], [3.0, 7.0], [10.0, 1.0], [20.0, 2.0], [30.0, 3.0]])
    centres, med = binned_median(x, y, 2)
    np.testing.assert_allclose(centres, [1.0, 11.0])
    np.testing.assert_allclose(med, [[2.0, 6.0], [20.0, 2.0]])


def test_plot_grads_writes_png_and_needs_telemetry(tmp_path):
    pytest.importorskip("matplotlib")
    from nbasync.plot import plot_grads
    from nbasync.runfile import telemetry_dtype

    runs = []
    for n_workers in (1, 2):
        rf = RunFile.create(tmp_path / f"w{n_workers}", {"algo": "a3c", "workers": n_workers},
                            LAYOUT)  # fmt: skip
        rows = np.zeros(40, telemetry_dtype(1))
        rows["global_step"] = np.arange(40) * 5
        rows["worker"] = np.arange(40) % n_workers
        rows["staleness"] = np.arange(40) % 3 if n_workers > 1 else 0
        rows["grad_norm"] = 1.0 + np.arange(40)[:, None]
        rows["update_ratio"] = 1e-3
        rows["window_updates"] = 1
        rows["window_clipped"] = np.arange(40) % 2
        rf.append_telemetry(rows)
        rf.close()
        runs.append(rf.out_dir)
    for paths in (runs, runs[1:]):
        out = plot_grads(paths, tmp_path / "grads")
        assert out.suffix == ".png" and out.read_bytes()[:8] == PNG_MAGIC
    make_run(tmp_path / "plain", "a3c", 10)
    with pytest.raises(PlotError, match="recorded no telemetry"):
        plot_grads(tmp_path / "plain", tmp_path / "x.png")
