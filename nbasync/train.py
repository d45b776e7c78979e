"""A training run from start to end: the parent process's job.

Owns the order of things: probe the environment, build and initialise the network, create
(or reopen) the run file, create the shared state, compile the kernels once, start the
workers through the runner, show progress, write checkpoints, and evaluate at the end. The
parts come from ``nbasync.build``, the algorithm from the registry (``nbasync.algos``), the
workers' entry from ``nbasync.worker``. Counts are agent steps throughout.
"""

from __future__ import annotations

import collections
import contextlib
import math
import queue
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .algos import AlgorithmSpec, get_algorithm, run_worker
from .build import (
    build_network,
    normalisation_layout,
    probe_env,
    refuse_continuous_only_settings,
)
from .config import (
    ConfigError,
    TrainConfig,
    build_config,
    may_differ_on_resume,
    resumed_settings,
    validate,
)
from .envs import EnvInfo
from .errors import DivergedError
from .evaluate import EvalResult, evaluate
from .events import EpisodeEvent, TelemetryEvent
from .normalise import RunningMoments
from .runfile import (
    LOCK_NAME,
    RunFile,
    RunFileError,
    RunLock,
    lock_run_dir,
    make_run_dir,
    telemetry_dtype,
)
from .runner import run_workers
from .shared import SharedState
from .worker import WorkerArgs, worker_main


@dataclass
class TrainSummary:
    out_dir: Path
    steps: int
    episodes: int
    elapsed_s: float
    mean_return: float
    evaluation: EvalResult | None = None
    skipped_updates: int = 0
    stop_reason: str = ""  # why the run stopped before --steps and --time-limit, if it did

    def describe(self) -> str:
        text = (
            f"done: {self.steps} steps, {self.episodes} episodes in {self.elapsed_s:.1f} s "
            f"({self.steps / max(self.elapsed_s, 1e-9):.0f} steps/s), mean return of the last "
            f"100 episodes {self.mean_return:.1f}; run file {self.out_dir / 'run.h5'}"
        )
        if self.stop_reason:
            text += f"\nstopped: {self.stop_reason}"
        if self.skipped_updates:
            text += f"\n{self.skipped_updates} updates skipped (non-finite gradients)"
        if self.evaluation is not None:
            text += "\n" + self.evaluation.describe()
        return text


@dataclass
class Progress:
    """The live line: steps, steps/s, episodes, mean return of the last 100, time left."""

    total_steps: int
    quiet: bool
    start_step: int = 0
    start_time: float = field(default_factory=time.time)
    time_limit: float = 0.0  # seconds of training for the whole run (0 = none)
    elapsed_before: float = 0.0  # training seconds of the parts before a resume
    returns: collections.deque = field(default_factory=lambda: collections.deque(maxlen=100))
    episodes: int = 0
    skipped_updates: int = 0
    _last_print: float = 0.0

    def episode(self, ret: float) -> None:
        self.returns.append(ret)
        self.episodes += 1

    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else math.nan

    def line(self, step: int) -> str:
        elapsed = time.time() - self.start_time
        rate = (step - self.start_step) / max(elapsed, 1e-9)
        left = (self.total_steps - step) / rate if rate > 0 else math.inf
        if self.time_limit:
            left = min(left, max(self.time_limit - self.elapsed_before - elapsed, 0.0))
        return (
            f"steps {step:>10,d}/{self.total_steps:,d} | {rate:7.0f} steps/s | "
            f"episodes {self.episodes:6d} | mean return (100) {self.mean_return():8.2f} | "
            f"{_clock(elapsed)} elapsed, {_clock(left)} left"
            + (f" | skipped updates {self.skipped_updates}" if self.skipped_updates else "")
        )

    def show(self, step: int, final: bool = False) -> None:
        if self.quiet:
            return
        now = time.time()
        tty = sys.stderr.isatty()
        if not final and now - self._last_print < (0.5 if tty else 10.0):
            return
        self._last_print = now
        end = "\n" if final or not tty else ""
        print(("\r" if tty else "") + self.line(step), end=end, file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def default_out_dir(config: TrainConfig) -> Path:
    env = config.env.replace("/", "-")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.algo}-{env}-s{config.seed}-{stamp}"


def warm_up(config: TrainConfig, algo: AlgorithmSpec) -> None:
    """Compile (or load from numba's cache) every kernel a worker uses, once, in the parent,
    so N workers start by loading the cache instead of compiling N times.

    It runs the worker's own code (:func:`~nbasync.algos.run_worker`: the algorithm's loop
    on its environment) for three rollouts on a throwaway shared state, in this process: a
    list of kernels to call instead would drift from what the algorithms call (env
    preprocessing, forward and backward at every row count, targets, loss, optimiser,
    telemetry), and this also fails early, before any worker is spawned, on a shape or dtype
    the configuration cannot run.
    """
    run_in_process(config.replace(steps=3 * (config.t_max + 1), workers=1), algo)


def run_in_process(config: TrainConfig, algo: AlgorithmSpec) -> None:
    """Worker 0's loop for ``config.steps`` steps in this process, on a throwaway shared
    state (fresh parameters from seed 0): the warm-up, and benchmarks of one worker's loop."""
    info = probe_env(config, algo.continuous)
    net = build_network(config, info, algo.head, max_batch=1)
    obs_norm_dim, return_norm = normalisation_layout(config, info)
    with SharedState.create(
        n_params=net.n_params,
        n_workers=1,
        target=algo.target_network,
        optimizer_stats=config.optimizer == "shared_rmsprop",
        obs_norm_dim=obs_norm_dim,
        return_norm=return_norm,
    ) as state:
        net.bind(state.params, net.grads)
        net.init_params(0)
        if state.target is not None:
            state.target[:] = state.params
        run_worker(config, algo, 0, state, queue.SimpleQueue())


def train(config: TrainConfig, announce: str | None = None) -> TrainSummary:
    """Run ``config`` from scratch; returns a summary (and writes ``<out>/run.h5``).

    ``announce``: a line for stderr once the input is known to be good and the run directory
    exists (the CLI's list of settings and their sources), unless ``config.quiet``."""
    validate(config)
    algo = get_algorithm(config.algo)
    info = probe_env(config, algo.continuous)
    normalisation_layout(config, info)  # --obs-norm on images: refused before any file
    refuse_continuous_only_settings(config, info)
    net = build_network(config, info, algo.head, max_batch=1)
    net.init_params(config.seed)
    out_dir = Path(config.out) if config.out else default_out_dir(config)
    config = config.replace(out=str(out_dir))
    lock = _lock_if_marked(out_dir)  # a directory in use: refused before anything else
    try:
        RunFile.check_creatable(out_dir)  # an existing run: refused, nothing written
        make_run_dir(out_dir)
        lock = lock or lock_run_dir(out_dir)
        runfile = RunFile.create(out_dir, config.to_dict(), net.layout)
        write_step_zero_checkpoint(runfile, config, net.params)
        if announce and not config.quiet:
            print(announce, file=sys.stderr, flush=True)
        with contextlib.closing(runfile):
            return _run(config, algo, info, runfile, net.params, None, None, segment=0)
    finally:
        if lock is not None:
            lock.release()


def _lock_if_marked(run_dir: Path) -> RunLock | None:
    """Take the run directory's lock now if it has a lock file (so a directory in use is
    refused with the holder's pid before anything else happens); otherwise the caller takes
    it once the input is known to be good, so that bad input creates no file."""
    return lock_run_dir(run_dir) if (run_dir / LOCK_NAME).exists() else None


def write_step_zero_checkpoint(runfile: RunFile, config: TrainConfig, params: np.ndarray) -> None:
    """The initial parameters as a checkpoint at step 0: a run killed before its first
    periodic checkpoint (about 8 minutes into an Atari run) can still be resumed."""
    runfile.write_checkpoint(
        step=0,
        params=params,
        worker_steps=np.zeros(config.workers, np.int64),
        rng_state={"seed": config.seed, "segment": 0},
    )


def resume(run_dir: str | Path, overrides: dict[str, Any]) -> TrainSummary:
    """Continue the run in ``run_dir`` from its latest checkpoint. Only
    ``config.RESUMABLE`` settings (e.g. a larger --steps) may differ from the run file's."""
    lock = _lock_if_marked(Path(run_dir) if Path(run_dir).is_dir() else Path(run_dir).parent)
    try:
        return _resume_locked(run_dir, overrides, lock)
    finally:
        if lock is not None:
            lock.release()


def _resume_locked(run_dir: str | Path, overrides: dict[str, Any], lock: RunLock | None):
    runfile = RunFile.open(run_dir)
    stored = dict(runfile.config())
    config = build_config(resumed_settings(stored, overrides))
    config = config.replace(out=str(runfile.out_dir))
    ckpt = runfile.latest_checkpoint()
    if ckpt is None:
        raise RunFileError(
            f"{runfile.path} has no checkpoint to resume from; start the run again with "
            f"--out {runfile.out_dir} (nothing in it would be lost)"
        )
    algo = get_algorithm(config.algo)
    info = probe_env(config, algo.continuous)
    net = build_network(config, info, algo.head, max_batch=1)
    runfile.check_compatible(config.to_dict(), net.layout, may_differ=may_differ_on_resume(stored))
    if ckpt.step >= config.steps:
        raise ConfigError(
            f"--steps: the run is already at step {ckpt.step}; ask for more than that to continue"
        )
    if config.time_limit and ckpt.elapsed_s >= config.time_limit:
        raise ConfigError(
            f"--time-limit: the run has already trained for {ckpt.elapsed_s:.0f} s and the "
            f"limit counts the whole run; ask for more than that (0 = no limit)"
        )
    segment = int(ckpt.rng_state.get("segment", 0)) + 1
    if lock is None:  # a run directory from before run locks: claim it now
        lock = lock_run_dir(runfile.out_dir)
    try:
        with contextlib.closing(runfile):
            return _run(
                config,
                algo,
                info,
                runfile,
                ckpt.params,
                ckpt.opt_stats,
                ckpt.worker_steps,
                segment,
                elapsed0=ckpt.elapsed_s,
                norm_moments=ckpt.norm_moments,
            )
    finally:
        lock.release()


def _run(
    config: TrainConfig,
    algo: AlgorithmSpec,
    info: EnvInfo,
    runfile: RunFile,
    params: np.ndarray,
    opt_stats: dict[str, np.ndarray] | None,
    worker_steps: np.ndarray | None,
    segment: int,
    elapsed0: float = 0.0,
    norm_moments: dict[str, np.ndarray] | None = None,
) -> TrainSummary:
    warm_up(config, algo)
    progress = Progress(
        total_steps=config.steps,
        quiet=config.quiet,
        time_limit=config.time_limit,
        elapsed_before=elapsed0,
    )
    obs_norm_dim, return_norm = normalisation_layout(config, info)
    with SharedState.create(
        n_params=params.size,
        n_workers=config.workers,
        target=algo.target_network,
        optimizer_stats=config.optimizer == "shared_rmsprop",
        obs_norm_dim=obs_norm_dim,
        return_norm=return_norm,
    ) as state:
        moments = {  # the shared normalisation statistics, by checkpoint name
            name: RunningMoments(rows, slot=None)
            for name, rows in (("obs", state.obs_moments), ("return", state.return_moments))
            if rows is not None
        }
        for name, m in moments.items():  # a resumed run counts on from its checkpoint
            if norm_moments and name in norm_moments:
                m.restore(norm_moments[name])
        state.params[:] = params
        if state.target is not None:
            state.target[:] = params
        if opt_stats and state.opt_stats is not None and "g" in opt_stats:
            state.opt_stats[:] = opt_stats["g"]
        if worker_steps is not None:
            restore_step_slots(state, worker_steps)
        progress.start_step = state.global_step()
        started = time.time()
        next_checkpoint = _next_multiple(state.global_step(), config.checkpoint_every)

        def elapsed() -> float:
            return elapsed0 + time.time() - started

        def checkpoint() -> None:
            runfile.write_checkpoint(
                step=state.global_step(),
                params=state.params,
                opt_stats={"g": state.opt_stats} if state.opt_stats is not None else {},
                worker_steps=np.array([state.worker_steps(i) for i in range(config.workers)]),
                elapsed_s=elapsed(),
                rng_state={"seed": config.seed, "segment": segment},
                norm_moments={name: m.merged(prior=False) for name, m in moments.items()},
            )

        tele_dtype = telemetry_dtype(len(runfile.param_layout()))
        recent = collections.deque(maxlen=config.stop_window)  # returns --stop-return reads
        stop_reason = ""
        if runfile.n_episodes:  # resumed: the counts and means go on from the run's log
            earlier = runfile.episodes(by_step=False)["return"]
            progress.episodes = len(earlier)
            progress.returns.extend(earlier[-progress.returns.maxlen :].tolist())
            recent.extend(earlier[-config.stop_window :].tolist())

        def on_event(event: tuple) -> None:
            """Dispatch on the event's type (``nbasync.events``); the runner's own kinds
            (a worker restarted or stalled) are not logged."""
            nonlocal stop_reason
            if isinstance(event, EpisodeEvent):
                run_time = elapsed0 + event.wall - started
                runfile.append_episode(event.worker, event.step, run_time, event.ret, event.length)
                progress.episode(event.ret)
                if math.isfinite(config.stop_return) and not stop_reason:  # (default: off)
                    recent.append(event.ret)
                    full = len(recent) == recent.maxlen
                    mean = float(np.mean(recent)) if full else -math.inf
                    if mean >= config.stop_return:
                        stop_reason = (
                            f"the mean return of the last {len(recent)} episodes reached "
                            f"{mean:.2f} (--stop-return {config.stop_return:g}) at step "
                            f"{event.step:,}, {run_time:.0f} s into the run"
                        )
            elif isinstance(event, TelemetryEvent):
                rows = np.frombuffer(event.rows, tele_dtype).copy()
                rows["wall_time"] += elapsed0 - started
                runfile.append_telemetry(rows)

        def params_finite() -> bool:
            return bool(np.isfinite(state.params).all()) and (
                state.opt_stats is None or bool(np.isfinite(state.opt_stats).all())
            )

        def check_diverged(step: int) -> None:
            """Workers never apply a non-finite update; stop when they keep skipping, or when
            theta (or g) went non-finite anyway. The last checkpoint written stays intact."""
            skipped = [state.skipped_updates(i) for i in range(config.workers)]
            progress.skipped_updates = sum(total for total, _ in skipped)
            cause = ""
            for i, (_, in_a_row) in enumerate(skipped):
                if in_a_row >= config.skip_limit:
                    cause = (
                        f"worker {i} skipped its last {in_a_row} updates (gradients with NaN or "
                        f"inf, --skip-limit {config.skip_limit})"
                    )
                    break
            else:
                if not params_finite():
                    cause = "the shared parameters or RMSProp statistics turned NaN or inf"
            if cause:
                steps = runfile.checkpoint_steps()
                kept = f"last good checkpoint: step {steps[-1]:,}" if steps else "no checkpoint"
                raise DivergedError(
                    f"training diverged at step {step:,}: {cause}; {kept} "
                    f"(try a lower --lr, or --grad-clip)"
                )

        def on_poll() -> None:
            nonlocal next_checkpoint
            step = state.global_step()
            check_diverged(step)
            progress.show(step)
            if config.checkpoint_every and step >= next_checkpoint:
                checkpoint()
                next_checkpoint = _next_multiple(step, config.checkpoint_every)

        try:
            run_workers(
                worker_main,
                n_workers=config.workers,
                state=state,
                worker_args=WorkerArgs(config.to_dict(), segment, algo),
                on_event=on_event,
                should_stop=lambda: (
                    bool(stop_reason)
                    or (bool(config.time_limit) and elapsed() >= config.time_limit)
                ),
                poll_s=0.25,
                on_poll=on_poll,
                stall_timeout_s=config.stall_timeout,
            )
        except DivergedError:
            raise  # keep the checkpoints written before the divergence; add none
        except BaseException:
            # The last good state is kept whatever else ended the run (a worker failure,
            # Ctrl-C, SIGTERM), unless theta itself is no longer finite.
            if params_finite():
                checkpoint()
            raise
        check_diverged(state.global_step())
        checkpoint()
        step = state.global_step()
        progress.show(step, final=True)
        params_final = state.params.copy()
        obs_final = moments["obs"].merged(prior=False) if "obs" in moments else None
    evaluation = None
    if config.eval_episodes:
        evaluation = evaluate(
            config,
            params_final,
            config.eval_episodes,
            seed=config.seed + 10_000,
            obs_moments=obs_final,
        )
    return TrainSummary(
        Path(config.out),
        step,
        progress.episodes,
        elapsed(),
        progress.mean_return(),
        evaluation,
        progress.skipped_updates,
        stop_reason,
    )


def restore_step_slots(state: SharedState, worker_steps: np.ndarray) -> None:
    """Each worker's step slot carries on from the checkpoint, so T does and so does
    ``worker_steps`` in the next checkpoint. With fewer workers than before, old worker j's
    steps go to slot j mod n_workers (the parent writes before any worker starts)."""
    for j, steps in enumerate(np.asarray(worker_steps, np.int64).reshape(-1)):
        state.add_steps(j % state.n_workers, int(steps))


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every if every else 0
