"""Figures and tables of a sweep (``nbasync-plot SWEEP_DIR``), read from its ``sweep.json``
and its trials' run files.

Owns: the robustness figure (a score against a swept setting, log-scale for spread-out
positive values such as lr; failed trials marked at the bottom), learning curves grouped by
a setting (mean over the group's trials, shaded min..max: the spread over seeds), and the
speed-up table of the paper's Table 2 (time to the spec's target score against workers,
relative to the fewest workers, averaged over seeds). matplotlib is the optional ``plot``
extra, imported lazily through ``nbasync.plot``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .plot import PlotError, _import_matplotlib, _output_path, moving_average, save_figure
from .runfile import RunFile
from .sweep import FAILED, FINISHED, TrialRecord, read_state

__all__ = [
    "SpeedupRow",
    "format_speedup_table",
    "is_sweep_dir",
    "plot_curves_by",
    "plot_score_vs_setting",
    "plot_speedup",
    "plot_sweep",
    "speedup_table",
    "swept_settings",
]


def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / "sweep.json").is_file()


def swept_settings(spec_json: dict[str, Any]) -> list[str]:
    keys = [*spec_json.get("grid", {}), *spec_json.get("sample", {})]
    if spec_json.get("repeats", 1) > 1 and "seed" not in keys:
        keys.append("seed")
    return keys


def _figure(ncols: int = 1, width: float = 6.5):
    Figure, FigureCanvasAgg = _import_matplotlib()
    fig = Figure(figsize=(width * ncols, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png) -> Path:
    """The same output rules as a run's plot (``.png`` added, unwritable suffixes refused)."""
    _, FigureCanvasAgg = _import_matplotlib()
    return save_figure(fig, _output_path(out_png, FigureCanvasAgg))


def _hue_key(spec_json: dict[str, Any], records: list[TrialRecord], exclude: str) -> str | None:
    """The first other swept setting that takes more than one value (seed excluded)."""
    for key in swept_settings(spec_json):
        if key in (exclude, "seed"):
            continue
        if len({repr(r.settings.get(key)) for r in records}) > 1:
            return key
    return None


def _log_scale(values: list[float], key: str) -> bool:
    positive = [v for v in values if isinstance(v, (int, float)) and v > 0]
    return (
        bool(positive)
        and len(positive) == len(values)
        and (key == "lr" or max(positive) / min(positive) >= 20)
    )


def plot_score_vs_setting(
    sweep_dir: str | Path, out_png: str | Path, x: str, metric: str = "final_mean"
) -> Path:
    """The robustness figure: ``metric`` of every trial against setting ``x``, one colour
    per value of the next swept setting (e.g. algo). Failed trials (e.g. diverged) are
    drawn as crosses at the bottom."""
    spec_json, records = read_state(sweep_dir)
    if metric not in ("final_mean", "best_mean", "seconds_to_target", "steps_to_target"):
        raise PlotError(f"unknown metric {metric!r}")
    if not any(x in r.settings for r in records):
        raise PlotError(f"no trial of {sweep_dir} sets {x!r} (swept: {swept_settings(spec_json)})")
    hue = _hue_key(spec_json, records, exclude=x)
    fig = _figure()
    ax = fig.subplots()
    scored = [r for r in records if r.status == FINISHED and not math.isnan(getattr(r, metric))]
    failed = [r for r in records if r.status == FAILED]
    if not scored and not failed:
        raise PlotError(f"no finished trials in {sweep_dir} yet")
    groups: dict[str, list[TrialRecord]] = defaultdict(list)
    for r in scored:
        groups[str(r.settings.get(hue)) if hue else "trials"].append(r)
    for label, members in sorted(groups.items()):
        ax.scatter(
            [r.settings[x] for r in members],
            [getattr(r, metric) for r in members],
            label=f"{hue}={label}" if hue else label,
            s=18,
            alpha=0.8,
        )
    if failed:
        bottom = min((getattr(r, metric) for r in scored), default=0.0)
        ax.scatter(
            [r.settings[x] for r in failed],
            [bottom] * len(failed),
            marker="x",
            color="red",
            label=f"failed ({len(failed)})",
        )
    if _log_scale([r.settings[x] for r in scored + failed], x):
        ax.set_xscale("log")
    window = spec_json.get("window", 100)
    names = {"final_mean": f"final score (mean of last {window} episodes)"}
    ax.set_xlabel(x)
    ax.set_ylabel(names.get(metric, metric))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    ax.set_title(f"{spec_json.get('name') or Path(sweep_dir).name}: {len(records)} trials")
    return _save(fig, out_png)


def _curve(run_dir: Path, window: int, clock: str) -> tuple[np.ndarray, np.ndarray] | None:
    ep = RunFile.open(run_dir).episodes()
    if len(ep) == 0:
        return None
    ep = ep[np.argsort(ep[clock], kind="stable")]
    return ep[clock].astype(np.float64), moving_average(ep["return"], window)


def plot_curves_by(sweep_dir: str | Path, out_png: str | Path, by: str, window: int = 100) -> Path:
    """Learning curves grouped by setting ``by`` (e.g. workers or algo): per group the mean
    of its trials' curves (each a moving average over ``window`` episodes, interpolated
    onto a common axis, drawn where at least half of them have data) and the min..max band
    over them; against steps and training time."""
    spec_json, records = read_state(sweep_dir)
    done = [r for r in records if r.status == FINISHED and (Path(sweep_dir) / r.id).is_dir()]
    if not done:
        raise PlotError(f"no finished trials in {sweep_dir} yet")
    if not any(by in r.settings for r in done):
        raise PlotError(f"no trial of {sweep_dir} sets {by!r} (swept: {swept_settings(spec_json)})")
    groups: dict[Any, list[TrialRecord]] = defaultdict(list)
    for r in done:
        groups[r.settings.get(by)].append(r)
    fig = _figure(ncols=2)
    ax_steps, ax_wall = fig.subplots(1, 2, sharey=True)
    for value in sorted(groups, key=lambda v: (isinstance(v, str), v)):
        color = None
        for ax, clock in ((ax_steps, "global_step"), (ax_wall, "wall_time")):
            curves = [_curve(Path(sweep_dir) / r.id, window, clock) for r in groups[value]]
            curves = [c for c in curves if c is not None]
            if not curves:
                continue
            lo, hi = min(c[0][0] for c in curves), max(c[0][-1] for c in curves)
            grid = np.linspace(lo, hi, 300)
            ys = np.array([np.interp(grid, cx, cy, left=np.nan, right=np.nan) for cx, cy in curves])
            # drawn where at least half of the group's runs have data (runs end at
            # different times), so the mean does not hang on one survivor
            keep = np.sum(~np.isnan(ys), axis=0) >= max(1, (len(curves) + 1) // 2)
            ys, grid = ys[:, keep], grid[keep]
            label = f"{by}={value} ({len(curves)} runs)"
            (line,) = ax.plot(grid, np.nanmean(ys, axis=0), color=color, label=label)
            color = line.get_color()
            band = (np.nanmin(ys, axis=0), np.nanmax(ys, axis=0))
            ax.fill_between(grid, *band, color=color, alpha=0.2)
    ax_steps.set_xlabel("global steps T (agent steps)")
    ax_wall.set_xlabel("training time (s)")
    ax_steps.set_ylabel(f"mean return (last {window} episodes); band: min..max over runs")
    for ax in (ax_steps, ax_wall):
        ax.grid(True, alpha=0.3)
    ax_steps.legend(loc="best", fontsize="small")
    fig.suptitle(f"{spec_json.get('name') or Path(sweep_dir).name}: grouped by {by}")
    return _save(fig, out_png)


@dataclass(frozen=True)
class SpeedupRow:
    """One line of the Table-2 protocol: a group (the other swept settings, e.g. algo and
    env), a worker count, how many runs reached the target, their mean time to it, and the
    speed-up: the mean over seeds of t(fewest workers, seed) / t(this, seed), over the
    seeds that reached the target at both."""

    group: tuple[tuple[str, Any], ...]
    workers: int
    runs: int
    reached: int
    mean_seconds: float
    mean_steps: float
    speedup: float
    paired_seeds: int


def speedup_table(
    spec_json: dict[str, Any], records: list[TrialRecord], by: str = "workers"
) -> list[SpeedupRow]:
    """Speed-up in time to the target score against ``by`` (see ``SpeedupRow``)."""
    if spec_json.get("target") is None:
        raise PlotError("the sweep's spec names no target score ([sweep] target = ...)")
    group_keys = [k for k in swept_settings(spec_json) if k not in (by, "seed")]
    cells: dict[tuple, dict[int, list[TrialRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.status != FINISHED or by not in r.settings:
            continue
        group = tuple((k, r.settings.get(k)) for k in group_keys)
        cells[group][int(r.settings[by])].append(r)
    rows = []
    for group, by_workers in cells.items():
        fewest = min(by_workers)
        base = {
            r.settings.get("seed"): r.seconds_to_target
            for r in by_workers[fewest]
            if not math.isnan(r.seconds_to_target)
        }
        for workers in sorted(by_workers):
            runs = by_workers[workers]
            hit = [r for r in runs if not math.isnan(r.seconds_to_target)]
            ratios = [
                base[r.settings.get("seed")] / r.seconds_to_target
                for r in hit
                if r.settings.get("seed") in base and r.seconds_to_target > 0
            ]
            rows.append(
                SpeedupRow(
                    group=group,
                    workers=workers,
                    runs=len(runs),
                    reached=len(hit),
                    mean_seconds=float(np.mean([r.seconds_to_target for r in hit]))
                    if hit
                    else math.nan,
                    mean_steps=float(np.mean([r.steps_to_target for r in hit]))
                    if hit
                    else math.nan,
                    speedup=float(np.mean(ratios)) if ratios else math.nan,
                    paired_seeds=len(ratios),
                )
            )
    return rows


def format_speedup_table(rows: list[SpeedupRow], target: float, by: str = "workers") -> str:
    """A Markdown table of ``rows`` (the text ``nbasync-plot --speedup`` prints)."""
    lines = [
        f"time to mean return >= {target:g}; speed-up = mean over seeds of t(fewest) / t",
        "",
        f"| group | {by} | reached | mean s to target | mean steps to target | speed-up |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def num(v: float, fmt: str) -> str:
        return "-" if math.isnan(v) else format(v, fmt)

    for r in rows:
        group = ", ".join(f"{k}={v}" for k, v in r.group) or "all"
        lines.append(
            f"| {group} | {r.workers} | {r.reached}/{r.runs} | {num(r.mean_seconds, '.1f')} | "
            f"{num(r.mean_steps, ',.0f')} | {num(r.speedup, '.2f')} ({r.paired_seeds} seeds) |"
        )
    return "\n".join(lines)


def plot_speedup(rows: list[SpeedupRow], out_png: str | Path, by: str = "workers") -> Path:
    """Speed-up against ``by``, one line per group, with the ideal (linear) speed-up."""
    if not rows:
        raise PlotError("no finished trials to compute a speed-up from")
    fig = _figure()
    ax = fig.subplots()
    groups: dict[tuple, list[SpeedupRow]] = defaultdict(list)
    for r in rows:
        groups[r.group].append(r)
    for group, members in groups.items():
        label = ", ".join(f"{k}={v}" for k, v in group) or "speed-up"
        ax.plot([r.workers for r in members], [r.speedup for r in members], "o-", label=label)
    counts = sorted({r.workers for r in rows})
    ax.plot(counts, [c / counts[0] for c in counts], "k--", alpha=0.5, label="ideal")
    ax.set_xlabel(by)
    ax.set_ylabel("speed-up in time to target")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, out_png)


def plot_sweep(
    sweep_dir: str | Path,
    out_png: str | Path,
    x: str | None = None,
    by: str | None = None,
    speedup: bool = False,
    metric: str = "final_mean",
    window: int = 100,
) -> tuple[Path, str]:
    """What ``nbasync-plot SWEEP_DIR`` draws; returns (figure path, text to print). With
    no choice: the score against the first sampled setting, else curves by the first grid
    setting."""
    spec_json, records = read_state(sweep_dir)
    if speedup:
        rows = speedup_table(spec_json, records)
        return plot_speedup(rows, out_png), format_speedup_table(rows, spec_json["target"])
    if x is None and by is None:
        if spec_json.get("sample"):
            x = next(iter(spec_json["sample"]))
        elif spec_json.get("grid"):
            by = next(iter(spec_json["grid"]))
        else:
            by = "seed"
    if x is not None:
        return plot_score_vs_setting(sweep_dir, out_png, x, metric), ""
    return plot_curves_by(sweep_dir, out_png, by, window), ""
