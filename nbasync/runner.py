"""Runner: starts, watches and stops the worker processes of one run.

Owns: process creation (spawn context, BLAS/OpenMP/numba threads pinned to 1 in the
children), the event queue from workers to the parent, the stop Event, the watch loop
(events -> ``on_event``, periodic ``on_poll``, ``should_stop``), what happens when a worker
dies (stop with ``WorkerError``, or restart it), and stopping everything on every kind of
ending (normal end, should_stop, Ctrl-C, SIGTERM, worker death) without ever hanging: joins
have timeouts, stragglers get SIGTERM and then SIGKILL.

Shared memory is NOT owned here: the caller creates a ``SharedState`` (which owns the segment
and its unlinking) and passes it in; workers get ``state.handle()``.

Worker side: ``worker_fn(index, handle, args, events, stop)`` is a top-level function (spawn
pickles it by name). The runner's bootstrap around it ignores SIGINT (Ctrl-C on a terminal
reaches the whole process group; the parent alone decides), watches for the parent's death,
and turns an exception into an ``("worker_error", ...)`` report plus exit code 1.
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
from typing import Any

from .errors import RunFailedError, UserInputError
from .shared import SharedHandle, SharedState, install_sigterm_exit

__all__ = ["run_workers", "RunResult", "WorkerError", "THREAD_ENV", "pinned_thread_env"]

#: Set to "1" in every worker's environment (one compute thread per process: Hogwild scales
#: with processes, not with threads inside them).
THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")

_ERROR_TAG = "worker_error"  # (tag, index, exc_type, message, traceback, kind) - consumed here


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
    (no exception: a signal or an exit code), "input" (it raised one of nbasync's input
    errors), "failure" (a ``RunFailedError``) or "bug" (anything else: show the traceback).
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


def _watch_parent(parent_pid: int, stop) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:  # parent gone: we were re-parented
            stop.set()
            time.sleep(5.0)  # give worker_fn a chance to return on its own
            os._exit(1)


def _worker_main(worker_fn, index, handle, args, events, stop, parent_pid) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
    join_timeout_s: float = 10.0,
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
    on_event(event): called for each event tuple from the workers. The runner adds one kind:
        ("worker_restarted", index, exitcode) when a dead worker was restarted.
    should_stop(): checked every ``poll_s`` seconds; True stops the run (reason "stopped").
    on_poll(): called every ``poll_s`` seconds (progress line, checkpoints).
    warmup(): called once in the parent BEFORE spawning (compile numba kernels so that the
        workers load them from numba's cache instead of compiling N times).
    on_worker_death: "stop" (default): stop everything, raise ``WorkerError`` naming the
        worker and its exit code; "restart": start a fresh process with the same index
        (parameters live in shared memory), at most ``max_restarts`` times per run.
    join_timeout_s: how long workers get to return after a stop before SIGTERM, then SIGKILL.

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
                            on_event(("worker_restarted", i, code))
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
    alive = wait_for(time.monotonic() + 2.0)
    for p in alive:
        with contextlib.suppress(Exception):
            p.kill()
    for p in live:
        p.join(timeout=2.0)
    with contextlib.suppress(Exception):
        drain()
    # Workers are gone: nothing will be put any more; do not wait on the feeder thread.
    events.cancel_join_thread()
    events.close()
