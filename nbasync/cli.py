"""Command-line entry points: nbasync-train, nbasync-eval, nbasync-plot.

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

from .config import ALGOS, TrainConfig, build_config, load_toml
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
            p.add_argument(flag, default=None, metavar="{" + ",".join(ALGOS) + "}", help=helptext)
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

    from .train import evaluate_run

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
    from .plot import PlotError, plot_runs

    p = _Parser(prog="nbasync-plot", description="Learning curves of one or more runs.")
    p.add_argument("runs", nargs="+", help="run directories (or run.h5 files)")
    p.add_argument("-o", "--output", default="curve.png")
    p.add_argument("--window", type=int, default=100, help="moving-average window (episodes)")
    args = p.parse_args(argv)
    try:
        written = plot_runs(args.runs, args.output, window=args.window)
    except PlotError as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {written}")
    return 0


def plot_main(argv: Sequence[str] | None = None) -> int:
    return _run("nbasync-plot", _plot, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train_main())
