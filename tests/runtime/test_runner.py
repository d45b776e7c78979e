"""run_workers: normal end, stop, worker exception, worker SIGKILL, restart, stuck worker.

After every kind of ending: no ``nbasync_<our pid>_`` segment in /dev/shm and no worker
process left.
"""

import os
import time

import pytest
from _workers import ignore_stop, ready_then_loop, stepping_worker

from nbasync.runner import THREAD_ENV, WorkerError, run_workers
from nbasync.shared import SEGMENT_PREFIX, SharedState


def segments(pid):
    return sorted(f for f in os.listdir("/dev/shm") if f.startswith(f"{SEGMENT_PREFIX}{pid}_"))


def alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            state = next(line for line in f if line.startswith("State:"))
        return "Z" not in state  # a zombie has exited
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return False


class Recorder:
    def __init__(self):
        self.events = []
        self.times = {}

    def __call__(self, ev):
        self.events.append(ev)
        self.times.setdefault(ev[0], time.monotonic())

    def pids(self):
        return [ev[2] for ev in self.events if ev[0] in ("ready", "restarted_ran")]


def check_clean(rec):
    assert segments(os.getpid()) == []
    assert rec.pids(), "workers never reported"
    assert not [p for p in rec.pids() if alive(p)]


def test_normal_end_env_and_warmup():
    rec = Recorder()
    calls = []
    env_before = {k: os.environ.get(k) for k in THREAD_ENV}
    with SharedState.create(16, 2) as s:
        res = run_workers(
            ready_then_loop,
            2,
            s,
            lambda i: {"finish_after": 0.2},
            rec,
            poll_s=0.05,
            warmup=lambda: calls.append(time.monotonic()),
        )
        assert res.reason == "finished" and res.exitcodes == [0, 0] and res.restarts == 0
    ready = [ev for ev in rec.events if ev[0] == "ready"]
    assert sorted(ev[1] for ev in ready) == [0, 1]
    for ev in ready:  # thread pinning reached the children
        assert ev[3] == {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    assert len(calls) == 1
    assert {k: os.environ.get(k) for k in THREAD_ENV} == env_before  # parent's env restored
    check_clean(rec)


def test_should_stop_and_on_poll():
    rec = Recorder()
    polls = []
    with SharedState.create(16, 2) as s:

        def should_stop():
            return len([e for e in rec.events if e[0] == "ready"]) == 2

        res = run_workers(
            ready_then_loop, 2, s, None, rec, should_stop, 0.05, on_poll=lambda: polls.append(1)
        )
        assert res.reason == "stopped" and s.stop_requested()
    assert polls
    check_clean(rec)


def test_exception_in_worker_stops_with_clear_error():
    rec = Recorder()
    with SharedState.create(16, 2) as s, pytest.raises(WorkerError) as info:
        run_workers(ready_then_loop, 2, s, {"fail_after": 0.1}, rec, poll_s=0.05)
    err = info.value
    assert err.index == 0 and err.exitcode == 1
    assert str(err) == "worker 0 raised ValueError: boom in worker 0"
    assert "Traceback" in err.traceback and "boom in worker 0" in err.traceback
    check_clean(rec)


@pytest.mark.parametrize(
    ("fail_with", "kind"),
    [("ValueError", "bug"), ("EnvError", "input"), ("RunFailedError", "failure")],
)
def test_worker_error_says_whether_it_was_a_bug(fail_with, kind):
    """Only nbasync's own error types may become one-line messages (see nbasync.errors)."""
    rec = Recorder()
    args = {"fail_after": 0.1, "fail_with": fail_with}
    with SharedState.create(16, 2) as s, pytest.raises(WorkerError) as info:
        run_workers(ready_then_loop, 2, s, args, rec, poll_s=0.05)
    assert info.value.kind == kind and fail_with in str(info.value)
    check_clean(rec)


def test_sigkilled_worker_noticed_quickly():
    rec = Recorder()
    with SharedState.create(16, 2) as s, pytest.raises(WorkerError) as info:
        run_workers(ready_then_loop, 2, s, {"kill_after": 0.1}, rec, poll_s=0.05)
    noticed = time.monotonic()
    assert info.value.index == 0 and info.value.exitcode == -9
    assert str(info.value) == "worker 0 was killed by SIGKILL (exit code -9)"
    assert info.value.kind == "killed"
    assert noticed - rec.times["dying"] < 2.0
    check_clean(rec)


def test_restart_dead_worker():
    rec = Recorder()
    with SharedState.create(16, 2) as s:
        res = run_workers(
            ready_then_loop,
            2,
            s,
            {"kill_after": 0.1, "restart_ok": True, "finish_after": 1.5},
            rec,
            poll_s=0.05,
            on_worker_death="restart",
        )
        assert res.restarts == 1 and res.reason == "finished"
        assert s.worker_steps(0) == 2  # the restarted worker kept its slot
    kinds = [ev[0] for ev in rec.events]
    assert ("worker_restarted", 0, -9) in rec.events and "restarted_ran" in kinds
    check_clean(rec)


def test_restart_gives_up_after_max_restarts():
    rec = Recorder()
    with SharedState.create(16, 1) as s, pytest.raises(WorkerError, match="max_restarts"):
        # max_restarts=0: the first death is already one too many
        run_workers(
            ready_then_loop,
            1,
            s,
            {"kill_after": 0.1},
            rec,
            poll_s=0.05,
            on_worker_death="restart",
            max_restarts=0,
        )
    check_clean(rec)


def test_stuck_worker_is_killed_never_hangs():
    rec = Recorder()
    t0 = time.monotonic()
    with SharedState.create(16, 1) as s:
        res = run_workers(
            ignore_stop,
            1,
            s,
            None,
            rec,
            should_stop=lambda: bool(rec.events),
            poll_s=0.05,
            join_timeout_s=0.5,
        )
        assert res.reason == "stopped" and res.exitcodes == [-9]
    assert time.monotonic() - t0 < 10
    check_clean(rec)


def test_stalled_worker_is_named_and_stops_the_run():
    """A SIGSTOPped worker is alive but makes no step: noticed after stall_timeout_s, killed,
    and the run stopped with one line naming it; nothing is left running."""
    rec = Recorder()
    with SharedState.create(16, 2) as s, pytest.raises(WorkerError) as info:
        run_workers(stepping_worker, 2, s, {"freeze": 1}, rec, poll_s=0.05, stall_timeout_s=1.0)
    ended = time.monotonic()
    err = info.value
    assert err.index == 1 and err.kind == "stalled"
    frozen_pid = next(ev[2] for ev in rec.events if ev[0] == "ready" and ev[1] == 1)
    assert str(err).startswith(f"worker 1 (pid {frozen_pid}) made no step for 1")
    assert 1.0 <= ended - rec.times["freezing"] < 4.0
    check_clean(rec)


def test_stalled_worker_is_replaced_in_restart_mode():
    rec = Recorder()
    with SharedState.create(16, 2) as s:
        res = run_workers(
            stepping_worker,
            2,
            s,
            {"freeze": 1},
            rec,
            should_stop=lambda: sum(ev[0] == "ready" for ev in rec.events) >= 3,
            poll_s=0.05,
            on_worker_death="restart",
            stall_timeout_s=1.0,
        )
    assert res.restarts == 1 and res.reason == "stopped"
    assert [ev[:2] for ev in rec.events if ev[0] == "worker_stalled"] == [("worker_stalled", 1)]
    check_clean(rec)


def test_watch_counts_steps_not_time_alive():
    """Workers that keep stepping are never stalled, however long the run."""
    rec = Recorder()
    t0 = time.monotonic()
    with SharedState.create(16, 2) as s:
        res = run_workers(
            stepping_worker,
            2,
            s,
            None,
            rec,
            should_stop=lambda: time.monotonic() - t0 > 3.0,
            poll_s=0.05,
            stall_timeout_s=0.5,
        )
    assert res.reason == "stopped"
    check_clean(rec)


@pytest.mark.slow
def test_shutdown_is_bounded_with_a_sigstopped_worker_and_no_watch():
    """Stopping never waits on a worker that cannot act (SIGSTOP): at most
    join_timeout_s + 3 s, under 10 s with the defaults."""
    rec = Recorder()
    stop_asked = []

    def should_stop():
        if "freezing" in rec.times and not stop_asked:
            stop_asked.append(time.monotonic())
        return bool(stop_asked)

    with SharedState.create(16, 2) as s:
        res = run_workers(stepping_worker, 2, s, {"freeze": 0}, rec, should_stop, poll_s=0.05)
        took = time.monotonic() - stop_asked[0]
    assert res.reason == "stopped" and took < 10.0, took
    check_clean(rec)
