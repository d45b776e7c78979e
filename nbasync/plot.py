"""Learning curves from run files: mean episode return vs global steps and vs wall time.

Owns: ``plot_runs`` (behind ``nbasync-plot``). matplotlib is the optional ``plot`` extra; it
is imported lazily, only here, and only the Agg canvas is used (no pyplot, no display, no
global backend switch), so plotting works on headless machines and inside other programs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .runfile import RunFile

__all__ = ["PlotError", "moving_average", "plot_runs"]

_INSTALL_HINT = "install the plot extra: pip install nbasync[plot]"


class PlotError(Exception):
    """Plotting is impossible (matplotlib missing, nothing to plot, unwritable output)."""


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` values; the first ``window - 1`` points
    average over the values seen so far (so the curve starts at the first episode)."""
    values = np.asarray(values, dtype=np.float64)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    csum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def _import_matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError(f"matplotlib is not installed; {_INSTALL_HINT}") from None
    return Figure, FigureCanvasAgg


def _output_path(out, canvas_class) -> Path:
    """The file that will be written: a name without a suffix gets ``.png`` (and the caller
    reports that name); a suffix matplotlib cannot write (``x.txt``) is refused up front."""
    out = Path(out)
    if not out.suffix:
        return out.with_name(out.name + ".png")
    kinds = canvas_class.get_supported_filetypes()
    if out.suffix[1:].lower() not in kinds:
        raise PlotError(
            f"cannot write a {out.suffix} file ({out}); use one of "
            + ", ".join("." + k for k in sorted(kinds))
        )
    return out


def _label(run: RunFile) -> str:
    algo = run.config().get("algo")
    name = run.out_dir.name or str(run.out_dir)
    return f"{name} ({algo})" if algo else name


def plot_runs(run_paths, out_png, window: int = 100, title: str | None = None) -> Path:
    """Plot the learning curves of ``run_paths`` (run dirs or run.h5 files) into
    ``out_png``: left panel vs global steps, right panel vs wall time, one line per run
    (labelled ``<run dir> (<algo>)``). Each point is the mean return of the last ``window``
    episodes. Returns the path written (``.png`` added to a name without a suffix).
    Unreadable runs raise ``RunFileError``; a window < 1 or an unknown suffix ``PlotError``.
    """
    if isinstance(run_paths, (str, Path)):
        run_paths = [run_paths]
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise PlotError(f"--window must be a whole number of episodes >= 1, got {window!r}")
    Figure, FigureCanvasAgg = _import_matplotlib()
    out = _output_path(out_png, FigureCanvasAgg)
    runs = [RunFile.open(p) for p in run_paths]
    if not runs:
        raise PlotError("no runs to plot")

    fig = Figure(figsize=(12, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_steps, ax_wall = fig.subplots(1, 2, sharey=True)

    curves = []
    for run in runs:
        ep = run.episodes()
        curves.append((_label(run), ep))
    max_wall = max((float(ep["wall_time"].max()) for _, ep in curves if len(ep)), default=0.0)
    scale, unit = (3600.0, "h") if max_wall > 3 * 3600 else (60.0, "min")
    if max_wall <= 180:
        scale, unit = 1.0, "s"

    for label, ep in curves:
        if len(ep) == 0:
            label = f"{label}: no episodes"
            ax_steps.plot([], [], label=label)
            ax_wall.plot([], [])
            continue
        by_step = ep[np.argsort(ep["global_step"], kind="stable")]
        (line,) = ax_steps.plot(
            by_step["global_step"], moving_average(by_step["return"], window), label=label
        )
        by_wall = ep[np.argsort(ep["wall_time"], kind="stable")]
        ax_wall.plot(
            by_wall["wall_time"] / scale,
            moving_average(by_wall["return"], window),
            color=line.get_color(),
        )

    ax_steps.set_xlabel("global steps T (agent steps)")
    ax_steps.set_ylabel(f"mean return (last {window} episodes)")
    ax_wall.set_xlabel(f"wall time ({unit})")
    for ax in (ax_steps, ax_wall):
        ax.grid(True, alpha=0.3)
    ax_steps.legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
    except OSError as exc:
        raise PlotError(f"cannot write {out}: {' '.join(str(exc).split())}") from None
    return out
