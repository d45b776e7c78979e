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
import math
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .algos import algorithm_names
from .config import (
    TrainConfig,
    build_config_explained,
    explain_settings,
    load_toml,
    preset_name_for,
)
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
    except SystemExit as exc:
        if exc.code != 128 + signal.SIGTERM:  # argparse's exits (0 for --help, 2) pass through
            raise
        print(f"{prog}: terminated (SIGTERM)", file=sys.stderr)
        return exc.code
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


Explained = tuple[TrainConfig, dict[str, str]]  # a configuration and each setting's source


def train_parser(shown: Explained | None = None) -> argparse.ArgumentParser:
    """The parser; its help shows the value each setting will really take: ``shown`` (the
    configuration that --env/--algo/--preset/--config on the command line give, with
    sources) or, without it, the default env's."""
    if shown is None:
        shown = _effective_for_help([])
    config, sources = shown
    p = _Parser(
        prog="nbasync-train",
        description="Train an asynchronous RL agent (A3C paper). Counts are agent steps. "
        f"Each (default: ...) below is the value a run of --env {config.env} --algo "
        f"{config.algo} takes (preset {preset_name_for(config.env, config.preset)} "
        "applied); give --env, --algo, --preset or --config before --help to see another's, "
        "or --print-settings.",
    )
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        helptext = f.metadata.get("help", "")
        value = getattr(config, f.name)
        src = sources[f.name]
        where = "" if src in ("default", "command line") else f", from {src}"
        if isinstance(f.default, bool):
            p.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{helptext} (default: {'on' if value else 'off'}{where})",
            )
        elif f.name == "algo":
            names = ",".join(algorithm_names())
            p.add_argument(flag, default=None, metavar="{" + names + "}", help=helptext)
        else:
            p.add_argument(flag, default=None, help=f"{helptext} (default: {_show(value)}{where})")
    p.add_argument("--config", default=None, metavar="FILE.toml", help="settings from a TOML file")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    p.add_argument(
        "--print-settings",
        action="store_true",
        help="print every setting the run would use and where it came from (default, preset, "
        "config file, command line), then exit without training",
    )
    return p


def _effective_for_help(argv: Sequence[str]) -> Explained:
    """What --env/--algo/--preset/--config in ``argv`` make of the settings, for the help
    text; the plain defaults when they cannot be read (the real parse reports that)."""
    pre = argparse.ArgumentParser(add_help=False)
    for name in ("--env", "--algo", "--preset", "--config"):
        pre.add_argument(name, default=None)
    try:
        known, _ = pre.parse_known_args(argv)
        file_settings = load_toml(known.config) if known.config else {}
        given = (("env", known.env), ("algo", known.algo), ("preset", known.preset))
        cli = {k: v for k, v in given if v is not None}
        return build_config_explained(file_settings, cli)
    except (UserInputError, SystemExit):
        return build_config_explained({}, {})


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _split_settings(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings from --config, settings given as options)."""
    file_settings = load_toml(args.config) if args.config else {}
    cli: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name)
        if value is not None:
            cli[f.name] = value
    return file_settings, cli


def _train(argv: Sequence[str] | None) -> int:
    from .train import resume, train

    argv = sys.argv[1:] if argv is None else list(argv)
    args = train_parser(_effective_for_help(argv)).parse_args(argv)
    file_settings, cli = _split_settings(args)
    if args.resume:
        if args.print_settings:
            raise UserError("--print-settings: not with --resume (the run file has them)")
        summary = resume(args.resume, {**file_settings, **cli})
    else:
        config, sources = build_config_explained(
            file_settings, cli, f"config file {args.config}" if args.config else "config file"
        )
        if args.print_settings:
            print(explain_settings(config, sources, everything=True))
            return 0
        summary = train(config, announce=explain_settings(config, sources))
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
    p.add_argument("--title", default=None, help="a title above the curves")
    p.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="RETURN=LABEL",
        help="a dashed line at RETURN labelled LABEL (e.g. '1.4=random policy'); repeatable",
    )
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
            baselines = [_parse_baseline(text) for text in args.baseline]
            written = plot_runs(
                args.runs, args.output, window=args.window, title=args.title, baselines=baselines
            )
    except PlotError as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {written}")
    return 0


def _parse_baseline(text: str) -> tuple[float, str]:
    """'1.4=random policy' -> (1.4, 'random policy'); a bare number is its own label."""
    value, _, label = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        raise UserError(
            f"--baseline: expected RETURN=LABEL with a number before '=', got {text!r}"
        ) from None
    if not math.isfinite(number):
        raise UserError(f"--baseline: the return must be a finite number, got {text!r}")
    return number, label.strip() or value.strip()


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
