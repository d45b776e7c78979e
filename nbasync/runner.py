"""Runner: starts, watches and stops the worker processes of one run.

Owns: process creation (spawn context, BLAS/OpenMP/numba threads pinned to 1 in the
children), the event queue from workers to the parent, the stop Event, the watch loop
(events -> ``on_event``, periodic ``on_poll``, ``should_stop``), the watchdog on each worker's
progress (a worker whose step slot stops growing is stalled), what happens when a worker
dies or stalls (stop with ``WorkerError``, or restart it), and stopping everything on every
kind of ending (normal end, should_stop, Ctrl-C, SIGTERM, worker death) within a bounded
time: joins have timeouts, stragglers get SIGTERM and then SIGKILL.

Shared memory is NOT owned here: the caller creates a ``SharedState`` (which owns the segment
and its unlinking) and passes it in; workers get ``state.handle()``.

Worker side: ``worker_fn(index, handle, args, events, stop)`` is a top-level function (spawn
pickles it by name). The runner's bootstrap around it ignores SIGINT (Ctrl-C on a terminal
reaches the whole process group; the parent alone decides), dies with its parent (Linux:
``PR_SET_PDEATHSIG``; elsewhere a thread polls the parent pid), and turns an exception into
an ``("worker_error", ...)`` report plus exit code 1.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait as _wait_ready
from typing import Any, NamedTuple

from .errors import RunFailedError, UserInputError
from .shared import SharedHandle, SharedState, install_sigterm_exit

__all__ = [
    "run_workers",
    "RunResult",
    "WorkerError",
    "WorkerRestarted",
    "WorkerStalled",
    "THREAD_ENV",
    "pinned_thread_env",
]

#: Set to "1" in every worker's environment (one compute thread per process: Hogwild scales
#: with processes, not with threads inside them).
THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")

_ERROR_TAG = "worker_error"  # (tag, index, exc_type, message, traceback, kind) - consumed here


class WorkerRestarted(NamedTuple):
    """The runner's event: dead worker ``index`` (``exitcode``) was started again."""

    kind: str
    index: int
    exitcode: int


class WorkerStalled(NamedTuple):
    """The runner's event ("restart" mode): worker ``index`` made no step for ``seconds``;
    it was killed and a replacement started."""

    kind: str
    index: int
    seconds: float


def _error_kind(exc: BaseException) -> str:
    """How the command line shows a worker's exception (see ``nbasync.errors``)."""
    if isinstance(exc, UserInputError):
        return "input"
    if isinstance(exc, RunFailedError):
        return "failure"
    return "bug"


class WorkerError(RunFailedError):
    """A worker died (non-zero exit, signal, exception) and the run was stopped.

    ``str(err)`` is one line, suitable for a CLI error message. ``err.traceback`` holds the
    worker's traceback when it raised (empty when it was killed). ``err.kind``: "killed"
    (no exception: a signal or an exit code), "stalled" (no step for ``stall_timeout_s``;
    killed by the parent), "input" (it raised one of nbasync's input errors), "failure" (a
    ``RunFailedError``) or "bug" (anything else: show the traceback).
    """

    def __init__(
        self, index: int, exitcode: int | None, message: str, tb: str = "", kind: str = "killed"
    ):
        self.index = index
        self.exitcode = exitcode
        self.traceback = tb
        self.kind = kind
        super().__init__(message, details=tb)


@dataclass
class RunResult:
    """How a run ended. ``reason``: "finished" (every worker returned) or "stopped"
    (``should_stop`` said so). ``restarts``: workers restarted after dying."""

    reason: str
    seconds: float
    restarts: int = 0
    exitcodes: list[int | None] = field(default_factory=list)


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "is not running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name} (exit code {exitcode})"
    return f"exited with code {exitcode}"


@contextlib.contextmanager
def pinned_thread_env():
    """Temporarily set every ``THREAD_ENV`` variable to "1" (spawned children inherit it)."""
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update({k: "1" for k in THREAD_ENV})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ----------------------------------------------------------------------------- worker side


def _die_with_parent(parent_pid: int) -> bool:
    """Linux: ask the kernel to SIGKILL this worker the instant its parent dies
    (``prctl(PR_SET_PDEATHSIG)``), so a SIGKILLed parent leaves no worker behind and the
    resource tracker (which waits for every holder of its pipe) exits at once too.
    Returns False where that is not available (the polling thread is the fallback)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    return True


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _watch_parent(parent_pid: int, stop) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:  # parent gone: we were re-parented
            stop.set()
            time.sleep(1.0)  # give worker_fn a chance to return on its own
            os._exit(1)


def _worker_main(worker_fn, index, handle, args, events, stop, parent_pid) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not _die_with_parent(parent_pid):
        threading.Thread(target=_watch_parent, args=(parent_pid, stop), daemon=True).start()
    try:
        worker_fn(index, handle, args, events, stop)
    except BaseException as e:  # noqa: BLE001 - reported to the parent, then exit 1
        tb = traceback.format_exc()
        with contextlib.suppress(Exception):
            events.put((_ERROR_TAG, index, type(e).__name__, str(e), tb, _error_kind(e)))
        sys.exit(1)


# ----------------------------------------------------------------------------- parent side


def run_workers(
    worker_fn: Callable[[int, SharedHandle, Any, Any, Any], None],
    n_workers: int,
    state: SharedState,
    worker_args: Any = None,
    on_event: Callable[[tuple], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    poll_s: float = 1.0,
    *,
    on_poll: Callable[[], None] | None = None,
    warmup: Callable[[], None] | None = None,
    on_worker_death: str = "stop",
    max_restarts: int = 10,
    join_timeout_s: float = 6.0,
    stall_timeout_s: float | None = None,
) -> RunResult:
    """Run ``n_workers`` processes of ``worker_fn`` until they all return or a stop.

    worker_fn(index, handle, args, events, stop): top-level function run in each worker.
        index  0..n_workers-1 (a restarted worker keeps its index)
        handle ``state.handle()``; attach with ``SharedState.attach(handle)``
        args   ``worker_args(index)`` if ``worker_args`` is callable (evaluated in the
               parent, result must be picklable: put the per-worker seed here), else
               ``worker_args`` itself
        events multiprocessing Queue: ``events.put(tuple)``; the parent calls
               ``on_event(tuple)`` for each (in the parent's main thread)
        stop   multiprocessing Event set when the run stops; workers should poll it (or the
               cheaper ``state.stop_requested()``, set at the same time) and return
    on_event(event): called for each event tuple from the workers. The runner adds its own
        kinds: ``WorkerRestarted("worker_restarted", index, exitcode)`` when a dead worker
        was restarted, ``WorkerStalled("worker_stalled", index, seconds)`` (see below).
    should_stop(): checked every ``poll_s`` seconds; True stops the run (reason "stopped").
    on_poll(): called every ``poll_s`` seconds (progress line, checkpoints).
    warmup(): called once in the parent BEFORE spawning (compile numba kernels so that the
        workers load them from numba's cache instead of compiling N times).
    on_worker_death: "stop" (default): stop everything, raise ``WorkerError`` naming the
        worker and its exit code; "restart": start a fresh process with the same index
        (parameters live in shared memory), at most ``max_restarts`` times per run.
    join_timeout_s: how long workers get to return after a stop before SIGTERM, then (2 s
        later) SIGKILL: shutdown takes at most join_timeout_s + 3 s whatever the workers do.
    stall_timeout_s: a live worker whose step slot (``state.worker_steps(i)``) has not
        grown for this many seconds is stalled: SIGSTOPped, deadlocked, stuck in a call
        (before its first step it gets ``START_ALLOWANCE_S``, 180 s, if that is longer:
        start-up). It is SIGKILLed at once, then
        handled like a dead worker: "stop" raises ``WorkerError`` ("worker 1 (pid 123) made
        no step for 30 s"), "restart" reports ``WorkerStalled`` and
        starts a new one. None or 0: not watched.

    A dead worker is noticed within ~0.1 s. Ctrl-C (KeyboardInterrupt) and SIGTERM
    (SystemExit(143), see ``nbasync.shared.install_sigterm_exit``) stop and reap every worker
    and then propagate. Shared memory is left to the caller's ``SharedState``.
    """
    if n_workers <= 0:
        raise ValueError(f"n_workers must be > 0, got {n_workers}")
    if on_worker_death not in ("stop", "restart"):
        raise ValueError(f"on_worker_death must be 'stop' or 'restart', got {on_worker_death!r}")
    if n_workers > state.n_workers:
        raise ValueError(f"state has {state.n_workers} worker slots, asked for {n_workers}")
    install_sigterm_exit()
    if warmup is not None:
        warmup()

    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    stop = ctx.Event()
    handle = state.handle()
    parent_pid = os.getpid()
    procs: list[Any] = [None] * n_workers
    failure: WorkerError | None = None
    errors: dict[int, tuple[str, str, str]] = {}
    restarts = 0
    t0 = time.monotonic()
    progress = _ProgressWatch(state, n_workers, stall_timeout_s)

    def args_for(i: int):
        return worker_args(i) if callable(worker_args) else worker_args

    def start(i: int) -> None:
        p = ctx.Process(
            target=_worker_main,
            args=(worker_fn, i, handle, args_for(i), events, stop, parent_pid),
            name=f"nbasync-worker-{i}",
            daemon=True,
        )
        with pinned_thread_env():
            p.start()
        procs[i] = p
        progress.started(i)

    def drain(block_s: float = 0.0) -> None:
        deadline = time.monotonic() + block_s
        while True:
            try:
                remaining = deadline - time.monotonic()
                ev = events.get(timeout=remaining) if remaining > 0 else events.get_nowait()
            except (queue.Empty, OSError, EOFError, ValueError):
                return
            if isinstance(ev, tuple) and ev and ev[0] == _ERROR_TAG:
                errors[ev[1]] = ev[2:]
            elif on_event is not None:
                on_event(ev)

    def death_error(i: int, code: int | None) -> WorkerError:
        drain(0.2)  # the worker's error report is flushed before it exits
        if i in errors:
            etype, msg, tb, kind = errors.pop(i)
            return WorkerError(i, code, f"worker {i} raised {etype}: {msg}", tb, kind)
        return WorkerError(i, code, f"worker {i} {_describe_exit(code)}")

    reason = "finished"
    try:
        for i in range(n_workers):
            start(i)
        next_poll = time.monotonic() + poll_s
        while True:
            drain()
            running = 0
            for i, p in enumerate(procs):
                code = p.exitcode
                if code is None:
                    running += 1
                elif code != 0 and not stop.is_set():
                    err = death_error(i, code)
                    if on_worker_death == "restart" and restarts < max_restarts:
                        restarts += 1
                        start(i)
                        running += 1
                        if on_event is not None:
                            on_event(WorkerRestarted("worker_restarted", i, code))
                    else:
                        if on_worker_death == "restart":
                            err = WorkerError(
                                i,
                                code,
                                f"{err} (after {restarts} restarts, max_restarts)",
                                err.traceback,
                                err.kind,
                            )
                        failure = err
                        break
            if failure is None and running:
                for i in progress.stalled(procs):
                    seconds = round(time.monotonic() - progress.last_change[i], 1)
                    err = _kill_stalled(procs[i], i, seconds)
                    if on_worker_death == "restart" and restarts < max_restarts:
                        restarts += 1
                        if on_event is not None:
                            on_event(WorkerStalled("worker_stalled", i, seconds))
                        start(i)
                    else:
                        failure = err
                        break
            if failure is not None or running == 0:
                break
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + poll_s
                if on_poll is not None:
                    on_poll()
                if should_stop is not None and should_stop():
                    reason = "stopped"
                    break
            _wait_ready([p.sentinel for p in procs if p.exitcode is None], timeout=0.05)
    finally:
        _stop_all(procs, events, stop, state, drain, join_timeout_s)
    if failure is not None:
        raise failure
    return RunResult(
        reason=reason,
        seconds=time.monotonic() - t0,
        restarts=restarts,
        exitcodes=[p.exitcode for p in procs],
    )


#: Before its first step a worker may take this long (or stall_timeout_s if longer): a
#: spawned process imports numpy/numba, loads compiled kernels and makes its environment,
#: which takes seconds, or tens of them on a machine whose cores are all busy. Seen: over
#: 60 s for a sweep trial's worker inside a Ray task on 2 cores at load 8 (Ray starting up
#: beside a training run and a test suite), hence the margin.
START_ALLOWANCE_S = 180.0


class _ProgressWatch:
    """The parent's view of each worker's progress: when its step slot last grew."""

    def __init__(self, state: SharedState, n_workers: int, timeout_s: float | None):
        self.state = state
        self.timeout_s = float(timeout_s or 0.0)
        self.last_steps = [0] * n_workers
        self.last_change = [time.monotonic()] * n_workers
        self.has_stepped = [False] * n_workers

    def started(self, i: int) -> None:
        self.last_steps[i] = self.state.worker_steps(i)
        self.last_change[i] = time.monotonic()
        self.has_stepped[i] = False

    def stalled(self, procs) -> list[int]:
        """Indexes of live workers that made no step for ``timeout_s`` seconds."""
        if self.timeout_s <= 0:
            return []
        now = time.monotonic()
        out = []
        for i, p in enumerate(procs):
            if p is None or p.exitcode is not None:
                continue
            steps = self.state.worker_steps(i)
            if steps != self.last_steps[i]:
                self.last_steps[i], self.last_change[i] = steps, now
                self.has_stepped[i] = True
                continue
            allowed = self.timeout_s
            if not self.has_stepped[i]:
                allowed = max(allowed, START_ALLOWANCE_S)
            if now - self.last_change[i] >= allowed:
                out.append(i)
        return out


def _kill_stalled(p, i: int, seconds: float) -> WorkerError:
    """SIGKILL a stalled worker now (a SIGSTOPped process handles nothing else) and say so."""
    pid = p.pid
    with contextlib.suppress(Exception):
        p.kill()
        p.join(timeout=2.0)
    return WorkerError(
        i,
        p.exitcode,
        f"worker {i} (pid {pid}) made no step for {seconds:g} s (stalled; "
        f"see --stall-timeout): stopped the run",
        kind="stalled",
    )


def _stop_all(procs, events, stop, state, drain, join_timeout_s: float) -> None:
    """Stop every worker: ask (stop Event + shared flag), wait, SIGTERM, SIGKILL. Never hangs.

    Keeps draining the event queue while waiting: a worker whose queue feeder still holds
    events cannot exit until they are read.
    """
    stop.set()
    with contextlib.suppress(Exception):
        if not state.closed:
            state.request_stop()
    live = [p for p in procs if p is not None]

    def wait_for(deadline: float) -> list:
        while True:
            alive = [p for p in live if p.exitcode is None]
            if not alive or time.monotonic() >= deadline:
                return alive
            with contextlib.suppress(Exception):
                drain()
            _wait_ready([p.sentinel for p in alive], timeout=0.05)

    alive = wait_for(time.monotonic() + join_timeout_s)
    for p in alive:
        with contextlib.suppress(Exception):
            p.terminate()
            os.kill(p.pid, signal.SIGCONT)  # a SIGSTOPped worker acts on SIGTERM only now
    alive = wait_for(time.monotonic() + 2.0)
    for p in alive:
        with contextlib.suppress(Exception):
            p.kill()
    deadline = time.monotonic() + 1.0  # SIGKILL is not refused; only reaping is left
    for p in live:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    with contextlib.suppress(Exception):
        drain()
    # Workers are gone: nothing will be put any more; do not wait on the feeder thread.
    events.cancel_join_thread()
    events.close()
