"""Command-line entry points: nbasync-train, nbasync-eval, nbasync-plot, nbasync-sweep.

This module only parses, validates and calls. Every error a user can cause (bad option,
unknown algorithm or environment, missing or mismatched run file) ends as ONE line on
stderr and exit code 2; a run that fails otherwise (divergence, a dead worker) as one line
and exit code 3; a bug shows its traceback (``nbasync.errors`` has the policy). The options
of nbasync-train are generated from ``TrainConfig``'s fields, so they cannot drift from the
settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .algos import algorithm_names
from .config import TrainConfig, build_config, load_toml
from .errors import EXIT_USAGE, RunFailedError, UserInputError


class UserError(UserInputError):
    """A bad command-line option; shown as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UserError(message)


def _run(prog: str, main: Callable[[Sequence[str] | None], int], argv) -> int:
    """Exit codes and what is printed: see ``nbasync.errors``."""
    from .runner import WorkerError

    try:
        return main(argv)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except UserInputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WorkerError as exc:
        if exc.kind == "bug":  # a bug in nbasync: the worker's traceback, then the line
            print(exc.traceback.rstrip(), file=sys.stderr)
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 1
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.kind == "input" else exc.exit_code
    except RunFailedError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code


# -- nbasync-train ------------------------------------------------------------------------


def train_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="nbasync-train",
        description="Train an asynchronous RL agent (A3C paper). Counts are agent steps.",
    )
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        helptext = f.metadata.get("help", "")
        if isinstance(f.default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        elif f.name == "algo":
            names = ",".join(algorithm_names())
            p.add_argument(flag, default=None, metavar="{" + names + "}", help=helptext)
        else:
            p.add_argument(flag, default=None, help=f"{helptext} (default: {_show(f.default)})")
    p.add_argument("--config", default=None, metavar="FILE.toml", help="settings from a TOML file")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    return p


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _explicit_settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if args.config:
        settings.update(load_toml(args.config))
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name)
        if value is not None:
            settings[f.name] = value
    return settings


def _train(argv: Sequence[str] | None) -> int:
    from .train import resume, train

    args = train_parser().parse_args(argv)
    settings = _explicit_settings(args)
    if args.resume:
        summary = resume(args.resume, settings)
    else:
        config = build_config(settings)
        summary = train(config)
    print(summary.describe())
    return 0


def train_main(argv: Sequence[str] | None = None) -> int:
    return _run("nbasync-train", _train, argv)


# -- nbasync-eval -------------------------------------------------------------------------


def _eval(argv: Sequence[str] | None) -> int:
    from gymnasium.error import DependencyNotInstalled

    from .evaluate import evaluate_run

    p = _Parser(prog="nbasync-eval", description="Play episodes with a trained agent.")
    p.add_argument("run", help="run directory (or its run.h5)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--sample", action="store_true", help="sample actions (default: greedy)")
    p.add_argument("--epsilon", type=float, default=0.0, help="epsilon for Q methods")
    p.add_argument("--render-gif", default=None, metavar="PATH", help="write episode 1 as a GIF")
    args = p.parse_args(argv)
    if args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}")
    if not 0.0 <= args.epsilon <= 1.0:  # also refuses nan
        raise UserError(f"--epsilon must be in [0, 1], got {args.epsilon}")
    try:
        result = evaluate_run(
            args.run,
            episodes=args.episodes,
            seed=args.seed,
            greedy=not args.sample,
            epsilon=args.epsilon,
            gif_path=args.render_gif,
        )
    except (ValueError, DependencyNotInstalled) as exc:  # e.g. --render-gif, no Pillow/pygame
        raise UserError(str(exc).splitlines()[0]) from None
    print(result.describe())
    return 0


def eval_main(argv: Sequence[str] | None = None) -> int:
    return _run("nbasync-eval", _eval, argv)


# -- nbasync-plot -------------------------------------------------------------------------


def _plot(argv: Sequence[str] | None) -> int:
    from .plot import PlotError, plot_grads, plot_runs

    p = _Parser(prog="nbasync-plot", description="Learning curves of one or more runs.")
    p.add_argument(
        "runs", nargs="+", help="run directories (or run.h5 files), or one sweep's --out"
    )
    p.add_argument("-o", "--output", default="curve.png")
    p.add_argument("--window", type=int, default=100, help="moving-average window (episodes)")
    p.add_argument(
        "--grads",
        action="store_true",
        help="draw the gradient telemetry instead (runs trained with --telemetry-every): "
        "per-layer norms and update ratios, staleness distribution, clip rate",
    )
    _add_sweep_plot_options(p)
    args = p.parse_args(argv)
    try:
        if args.grads:
            written = plot_grads(args.runs, args.output)
        elif _plot_sweep(args):
            return 0
        else:
            written = plot_runs(args.runs, args.output, window=args.window)
    except PlotError as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {written}")
    return 0


def _add_sweep_plot_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("a sweep (nbasync-plot SWEEP_DIR)")
    g.add_argument("--x", default=None, metavar="SETTING", help="score against SETTING (e.g. lr)")
    g.add_argument("--metric", default="final_mean", help="score: final_mean or best_mean")
    g.add_argument("--by", default=None, metavar="SETTING", help="learning curves grouped by it")
    g.add_argument("--speedup", action="store_true", help="speed-up to the target vs workers")


def _plot_sweep(args: argparse.Namespace) -> bool:
    """Draw a sweep when the one path given is a sweep's --out; False otherwise."""
    from .sweep_plot import is_sweep_dir, plot_sweep

    if not any(is_sweep_dir(r) for r in args.runs):
        if args.x or args.by or args.speedup:
            raise UserError("--x, --by and --speedup need a sweep directory (nbasync-sweep --out)")
        return False
    if len(args.runs) != 1:
        raise UserError("give one sweep directory at a time")
    path, text = plot_sweep(
        args.runs[0], args.output, x=args.x, by=args.by, speedup=args.speedup,
        metric=args.metric, window=args.window,
    )  # fmt: skip
    if text:
        print(text)
    print(f"wrote {path}")
    return True


def plot_main(argv: Sequence[str] | None = None) -> int:
    return _run("nbasync-plot", _plot, argv)


# -- nbasync-sweep ------------------------------------------------------------------------


def sweep_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="nbasync-sweep",
        description="Run a sweep of training runs described in a TOML spec (see experiments/).",
    )
    p.add_argument("spec", metavar="SPEC.toml", help="the sweep: [sweep], [base], [grid], [sample]")
    p.add_argument("--out", required=True, metavar="DIR", help="one run directory per trial")
    p.add_argument(
        "--ray",
        default=None,
        metavar="auto|ADDRESS",
        help="run the trials as tasks on a Ray cluster (pip install 'nbasync[ray]')",
    )
    p.add_argument(
        "--cores", type=int, default=None, help="local: cores to fill (default: all of them)"
    )
    p.add_argument("--retry-failed", action="store_true", help="run failed trials again")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SETTING=V1,V2",
        help="run only the trials with these values (e.g. workers=1,2 on a small machine)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def _sweep(argv: Sequence[str] | None) -> int:
    from .sweep import LocalExecutor, RayExecutor, run_sweep
    from .sweep_spec import load_spec

    args = sweep_parser().parse_args(argv)
    if args.cores is not None and args.cores < 1:
        raise UserError(f"--cores must be at least 1, got {args.cores}")
    if args.ray is not None and args.cores is not None:
        raise UserError("--cores is for local sweeps; Ray places trials by their CPUs")
    only: dict[str, list[str]] = {}
    for item in args.only:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise UserError(f"--only: expected SETTING=V1,V2, got {item!r}")
        only.setdefault(key, []).extend(values.split(","))
    spec = load_spec(args.spec)
    executor = RayExecutor(args.ray) if args.ray else LocalExecutor(args.cores)
    result = run_sweep(
        spec, args.out, executor, retry_failed=args.retry_failed, quiet=args.quiet, only=only
    )
    print(result.describe())
    return 0


def sweep_main(argv: Sequence[str] | None = None) -> int:
    return _run("nbasync-sweep", _sweep, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train_main())
