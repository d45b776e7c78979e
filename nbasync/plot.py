"""Learning curves from run files: mean episode return vs global steps and vs wall time;
gradient telemetry (``--grads``): per-layer norms and update ratios, staleness, clipping.

Owns: ``plot_runs`` and ``plot_grads`` (behind ``nbasync-plot``). matplotlib is the optional
``plot`` extra; it is imported lazily, only here, and only the Agg canvas is used (no
pyplot, no display, no global backend switch), so plotting works on headless machines and
inside other programs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .runfile import RunFile

__all__ = ["PlotError", "binned_median", "moving_average", "plot_grads", "plot_runs"]

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


def save_figure(fig, out: Path) -> Path:
    """Write ``fig`` to ``out`` (checked by ``_output_path``); PlotError when it cannot."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
    except OSError as exc:
        raise PlotError(f"cannot write {out}: {' '.join(str(exc).split())}") from None
    return out


def _label(run: RunFile) -> str:
    algo = run.config().get("algo")
    name = run.out_dir.name or str(run.out_dir)
    return f"{name} ({algo})" if algo else name


def plot_runs(
    run_paths,
    out_png,
    window: int = 100,
    title: str | None = None,
    baselines: Sequence[tuple[float, str]] = (),
) -> Path:
    """Plot the learning curves of ``run_paths`` (run dirs or run.h5 files) into
    ``out_png``: left panel vs global steps, right panel vs wall time, one line per run
    (labelled ``<run dir> (<algo>)``). Each point is the mean return of the last ``window``
    episodes. ``baselines``: (return, label) pairs drawn as dashed horizontal lines on both
    panels, for the scores a curve is read against (a random policy, a published figure).
    Returns the path written (``.png`` added to a name without a suffix).
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

    for value, label in baselines:
        (line,) = ax_steps.plot([], [])  # the next colour of the cycle
        for ax in (ax_steps, ax_wall):
            ax.axhline(value, linestyle="--", linewidth=1, color=line.get_color())
        line.set_label(f"{label} ({value:g})")
        line.set_linestyle("--")

    ax_steps.set_xlabel("global steps T (agent steps)")
    ax_steps.set_ylabel(f"mean return (last {window} episodes)")
    ax_wall.set_xlabel(f"wall time ({unit})")
    for ax in (ax_steps, ax_wall):
        ax.grid(True, alpha=0.3)
    ax_steps.legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)

    return save_figure(fig, out)


def binned_median(x: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Median of ``y`` (rows; columns kept) in ``bins`` equal ranges of ``x``; empty bins
    dropped. Rows of many workers arrive interleaved: a median per step range is the curve."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    edges = np.linspace(x.min(), x.max(), bins + 1) if len(x) else np.zeros(1)
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max(bins - 1, 0))
    centres, medians = [], []
    for b in np.unique(which):
        sel = which == b
        centres.append(x[sel].mean())
        with np.errstate(all="ignore"):
            medians.append(np.nanmedian(y[sel], axis=0))
    return np.array(centres), np.array(medians)


def _binned_rates(rows: np.ndarray, bins: int):
    """(mean step, fraction clipped, fraction skipped) per step range; the fractions count
    every update through the rows' window counters, not only the recorded ones."""
    x = rows["global_step"].astype(np.float64)
    edges = np.linspace(x.min(), x.max(), bins + 1)
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
    used = np.unique(which)
    total = np.bincount(which, rows["window_updates"], bins)[used]
    steps = np.bincount(which, x, bins)[used] / np.bincount(which, None, bins)[used]
    clipped = np.bincount(which, rows["window_clipped"], bins)[used] / total
    skipped = np.bincount(which, rows["window_skipped"], bins)[used] / total
    return steps, clipped, skipped


def _telemetry_of(run: RunFile) -> np.ndarray:
    rows = run.telemetry()
    if rows is None or len(rows) == 0:
        raise PlotError(
            f"{run.out_dir} recorded no telemetry (train with --telemetry-every K to record it)"
        )
    return rows[np.argsort(rows["global_step"], kind="stable")]


def plot_grads(run_paths, out_png, bins: int = 200, title: str | None = None) -> Path:
    """Draw the gradient telemetry of ``run_paths`` into ``out_png``.

    One row per run: per-layer gradient norm (pre-clip) and update-to-parameter ratio vs
    global steps (median over ``bins`` step ranges, log y). A last row: the staleness
    distribution (fraction of recorded updates; per worker for one run, per run otherwise)
    and the fraction of updates clipped (and skipped) vs steps. Returns the path written.
    """
    if isinstance(run_paths, (str, Path)):
        run_paths = [run_paths]
    Figure, FigureCanvasAgg = _import_matplotlib()
    out = _output_path(out_png, FigureCanvasAgg)
    runs = [RunFile.open(p) for p in run_paths]
    if not runs:
        raise PlotError("no runs to plot")
    tele = [_telemetry_of(run) for run in runs]

    fig = Figure(figsize=(13, 3.6 * (len(runs) + 1)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(runs) + 1, 2, squeeze=False)
    for i, (run, rows) in enumerate(zip(runs, tele, strict=True)):
        names = run.layer_names()
        every = run.config().get("telemetry_every", "?")
        for ax, field, what in (
            (axes[i, 0], "grad_norm", "gradient norm (pre-clip)"),
            (axes[i, 1], "update_ratio", "||update|| / ||theta||"),
        ):
            steps, med = binned_median(rows["global_step"], rows[field], bins)
            for j, name in enumerate(names):
                ax.plot(steps, med[:, j], label=name, lw=1.2)
            ax.set_yscale("log")
            ax.set_ylabel(what)
            ax.set_title(f"{_label(run)}: {what}, every {every} updates", fontsize="medium")
            ax.set_xlabel("global steps T")
            ax.grid(True, alpha=0.3, which="both")
        axes[i, 0].legend(fontsize="x-small", ncol=2)

    ax_stale, ax_clip = axes[-1]
    for run, rows in zip(runs, tele, strict=True):
        workers = run.config().get("workers", "?")
        groups = [(f"{_label(run)}, {workers} workers", rows)]
        if len(runs) == 1:
            groups = [(f"worker {w}", rows[rows["worker"] == w]) for w in np.unique(rows["worker"])]
        for label, sel in groups:
            counts = np.bincount(sel["staleness"].clip(0))
            frac = counts / counts.sum()
            mean = float(sel["staleness"].mean())
            ax_stale.plot(
                np.arange(len(frac)), frac, drawstyle="steps-mid", marker="o", ms=3,
                label=f"{label} (mean {mean:.2f})",
            )  # fmt: skip
        steps, clipped, skipped = _binned_rates(rows, min(bins, 50))
        clip = run.config().get("grad_clip")
        off = " (--grad-clip 0: never)" if clip == 0 else f" (--grad-clip {clip})"
        (line,) = ax_clip.plot(steps, clipped, label=f"{_label(run)} clipped{off}")
        if skipped.any():
            ax_clip.plot(steps, skipped, ls="--", color=line.get_color(),
                         label=f"{_label(run)} skipped (non-finite)")  # fmt: skip
    ax_stale.set_yscale("log")
    ax_stale.set_xlabel("staleness: other workers' updates between sync and write")
    ax_stale.set_ylabel("fraction of recorded updates")
    ax_stale.set_title("Hogwild staleness", fontsize="medium")
    ax_stale.legend(fontsize="x-small")
    ax_stale.grid(True, alpha=0.3)
    ax_clip.set_xlabel("global steps T")
    ax_clip.set_ylabel("fraction of updates")
    ax_clip.set_ylim(-0.02, 1.02)
    ax_clip.set_title("gradient clipping fired (global norm > --grad-clip)", fontsize="medium")
    ax_clip.legend(fontsize="x-small")
    ax_clip.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_figure(fig, out)
