"""Training runs end to end: run file, checkpoints, resume, and clean endings.

Every ending (normal, SIGINT, SIGTERM, a worker SIGKILLed) must leave no ``nbasync_``
segment in /dev/shm, no worker process, and a run file whose last checkpoint opens.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nbasync import train as train_mod
from nbasync.algos import get_algorithm
from nbasync.build import build_network, probe_env
from nbasync.config import ConfigError, build_config
from nbasync.runfile import RunFile, RunLockedError, lock_run_dir

SHM = Path("/dev/shm")


def shm_segments(pid: int) -> set[str]:
    """Segments created by process ``pid`` (names are nbasync_<creator pid>_<random>)."""
    return {p.name for p in SHM.glob(f"nbasync_{pid}_*")}


def small(tmp_path, **kw):
    settings = {
        "algo": "a3c",
        "steps": 3000,
        "workers": 2,
        "quiet": True,
        "out": str(tmp_path / "run"),
        "checkpoint_every": 1000,
    }
    settings.update(kw)
    return build_config(settings)


@pytest.mark.parametrize("algo", ["a3c", "onestep_q", "onestep_sarsa", "nstep_q"])
def test_short_run_writes_run_file(tmp_path, algo):
    summary = train_mod.train(small(tmp_path, algo=algo))
    assert summary.steps >= 3000
    rf = RunFile.open(tmp_path / "run")
    assert rf.config()["algo"] == algo
    # the last checkpoint is the end of the run; periodic ones depend on how fast it ran
    # (the parent polls every 0.25 s) and are checked by the endings tests below
    assert rf.checkpoint_steps()[-1] >= 3000
    episodes = rf.episodes()
    assert len(episodes) == summary.episodes > 0
    assert set(np.unique(episodes["worker"])) <= {0, 1}
    assert np.all(np.diff(episodes["wall_time"]) > -1.0)  # seconds since the run started
    assert np.all(np.diff(episodes["global_step"]) >= 0)  # episodes() sorts by step
    assert not shm_segments(os.getpid())


def test_resume_restores_parameters_statistics_and_counters(tmp_path, monkeypatch):
    train_mod.train(small(tmp_path))
    # How the real run split its steps depends on the scheduler (on a busy 2-core CI
    # machine one worker may finish all 3000 before the other starts), so the last
    # checkpoint is rewritten with a known uneven split for the counters to carry.
    rf = RunFile.open(tmp_path / "run")
    real = rf.latest_checkpoint()
    rf.write_checkpoint(
        real.step,
        real.params,
        real.opt_stats,
        worker_steps=np.array([1234, real.step - 1234]),
        elapsed_s=real.elapsed_s,
        rng_state=real.rng_state,
        norm_moments=real.norm_moments,
    )
    rf.close()
    ckpt = RunFile.open(tmp_path / "run").latest_checkpoint()
    seen = {}

    def fake_run_workers(worker_fn, n_workers, state, worker_args, **kw):
        seen["params"] = state.params.copy()
        seen["g"] = state.opt_stats.copy()
        seen["step"] = state.global_step()
        seen["slots"] = [state.worker_steps(i) for i in range(n_workers)]
        seen["segment"] = worker_args[1]

    monkeypatch.setattr(train_mod, "run_workers", fake_run_workers)
    train_mod.resume(tmp_path / "run", {"steps": 6000})
    np.testing.assert_array_equal(seen["params"], ckpt.params)
    np.testing.assert_array_equal(seen["g"], ckpt.opt_stats["g"])
    assert seen["step"] == ckpt.step == int(ckpt.worker_steps.sum())
    assert seen["slots"] == [1234, ckpt.step - 1234]  # each worker's count carries on
    assert seen["segment"] == 1
    # the checkpoint written at the end of the resumed segment keeps the split too
    after = RunFile.open(tmp_path / "run").latest_checkpoint()
    assert list(after.worker_steps) == list(ckpt.worker_steps)


def test_resume_with_fewer_workers_folds_their_steps(tmp_path, monkeypatch):
    train_mod.train(small(tmp_path, workers=3))
    ckpt = RunFile.open(tmp_path / "run").latest_checkpoint()
    seen = {}

    def fake_run_workers(worker_fn, n_workers, state, worker_args, **kw):
        seen["slots"] = [state.worker_steps(i) for i in range(n_workers)]

    monkeypatch.setattr(train_mod, "run_workers", fake_run_workers)
    train_mod.resume(tmp_path / "run", {"steps": 6000, "workers": 2})
    old = list(ckpt.worker_steps)
    assert seen["slots"] == [old[0] + old[2], old[1]]


def test_step_zero_checkpoint_and_lock_of_a_new_run(tmp_path, monkeypatch):
    seen = {}

    def fake_run_workers(worker_fn, n_workers, state, worker_args, **kw):
        rf = RunFile.open(tmp_path / "run")
        seen["steps"] = rf.checkpoint_steps()
        seen["params"] = rf.load_checkpoint(0).params
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            lock_run_dir(tmp_path / "run")

    monkeypatch.setattr(train_mod, "run_workers", fake_run_workers)
    config = small(tmp_path)
    train_mod.train(config)
    assert seen["steps"] == [0]
    algo = get_algorithm(config.algo)
    net = build_network(config, probe_env(config, algo.continuous), algo.head, max_batch=6)
    net.init_params(config.seed)
    np.testing.assert_array_equal(seen["params"], net.params)
    lock_run_dir(tmp_path / "run").release()  # released at the end


KILL_IN_WARMUP = (
    "import os, signal, sys; from nbasync import train; "
    "train.warm_up = lambda *a: os.kill(os.getpid(), signal.SIGKILL); "
    "from nbasync.cli import train_main; sys.exit(train_main())"
)


def test_run_killed_before_its_first_checkpoint_can_be_resumed(tmp_path, monkeypatch):
    """The Atari preset's first periodic checkpoint comes minutes in; a run SIGKILLed
    before it is no dead end: it resumes from step 0."""
    proc = subprocess.run(
        [sys.executable, "-c", KILL_IN_WARMUP, "--steps", "3000", "--quiet",
         "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == -9, proc.stderr
    assert RunFile.open(tmp_path / "run").checkpoint_steps() == [0]
    seen = {}
    monkeypatch.setattr(
        train_mod, "run_workers", lambda *a, **k: seen.setdefault("segment", k["worker_args"][1])
    )
    train_mod.resume(tmp_path / "run", {})
    assert seen["segment"] == 1


def test_second_process_on_a_run_directory_is_refused_naming_the_holder(tmp_path, capsys):
    from nbasync.cli import train_main

    train_mod.train(small(tmp_path))
    before = (tmp_path / "run" / "run.h5").read_bytes()
    with lock_run_dir(tmp_path / "run"):  # as a running nbasync-train holds it
        for argv in (["--resume", str(tmp_path / "run"), "--steps", "9000"],
                     ["--out", str(tmp_path / "run"), "--steps", "9000"]):  # fmt: skip
            assert train_main([*argv, "--quiet"]) == 2
            err = capsys.readouterr().err.strip()
            assert err.count("\n") == 0 and f"in use by another run (pid {os.getpid()})" in err
    assert (tmp_path / "run" / "run.h5").read_bytes() == before


def test_resume_continues_to_the_new_budget(tmp_path):
    train_mod.train(small(tmp_path))
    first = RunFile.open(tmp_path / "run")
    n_episodes = len(first.episodes())
    summary = train_mod.resume(tmp_path / "run", {"steps": 6000})
    assert summary.steps >= 6000
    rf = RunFile.open(tmp_path / "run")
    assert rf.checkpoint_steps()[-1] >= 6000
    assert len(rf.episodes()) > n_episodes
    # the summary (and the live line) count the whole run, not the resumed part alone
    logged = rf.episodes(by_step=False)["return"]
    assert summary.episodes == len(logged)
    assert summary.mean_return == pytest.approx(np.mean(logged[-100:]), rel=1e-6)


def test_time_limit_counts_the_whole_resumed_run(tmp_path):
    train_mod.train(small(tmp_path, steps=10_000_000, workers=1, time_limit=1.5))
    first = RunFile.open(tmp_path / "run").latest_checkpoint().elapsed_s
    assert 1.5 <= first < 3.0
    train_mod.resume(tmp_path / "run", {"time_limit": 3.0})
    total = RunFile.open(tmp_path / "run").latest_checkpoint().elapsed_s
    assert 3.0 <= total < 4.5  # the second part ran about 1.5 s more, not 3 s
    with pytest.raises(ConfigError, match="--time-limit: the run has already trained"):
        train_mod.resume(tmp_path / "run", {"time_limit": 2.0})


def test_stop_return_ends_the_run_when_the_window_mean_reaches_it(tmp_path):
    summary = train_mod.train(
        small(tmp_path, steps=10_000_000, workers=1, stop_return=40.0, stop_window=10)
    )
    assert summary.steps < 1_000_000 and "reached" in summary.stop_reason
    episodes = RunFile.open(tmp_path / "run").episodes()
    means = np.convolve(episodes["return"], np.ones(10) / 10, "valid")
    crossing = int(np.flatnonzero(means >= 40.0)[0]) + 9  # the episode that first reached it
    assert f"at step {int(episodes['global_step'][crossing]):,}," in summary.stop_reason
    # the run stopped soon after the first crossing, far from its 10M-step budget (on
    # CartPole's early games of ~20 steps the parent has seen the crossing 2-5 s late)
    assert episodes["wall_time"][-1] - episodes["wall_time"][crossing] < 15.0


def test_resume_rejects_changed_settings_and_finished_runs(tmp_path):
    train_mod.train(small(tmp_path))
    with pytest.raises(ConfigError, match="cannot change lr"):
        train_mod.resume(tmp_path / "run", {"lr": 0.5})
    with pytest.raises(ConfigError, match="already at step"):
        train_mod.resume(tmp_path / "run", {})


# -- endings of a real nbasync-train process ------------------------------------------------


TRAIN_MAIN = "import sys; from nbasync.cli import train_main; sys.exit(train_main())"


def _start(tmp_path, *extra):
    cmd = [
        sys.executable, "-c", TRAIN_MAIN,
        "--algo", "a3c", "--steps", "100000000", "--workers", "2", "--quiet",
        "--checkpoint-every", "2000", "--out", str(tmp_path / "run"), *extra,
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _wait_for_checkpoint(tmp_path, proc, timeout=90.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"trainer ended early: {proc.communicate()}")
        try:
            if RunFile.open(tmp_path / "run").checkpoint_steps()[-1] > 0:  # past step 0
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")


def _workers_of(proc) -> list[int]:
    # spawn's resource tracker is a child too; workers run nbasync code via spawn_main
    pids = []
    for pid in _children(proc.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            pids.append(pid)
    return pids


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "expected_codes"),
    [
        ("SIGINT", (130,)),
        ("SIGTERM", (143, -15)),
        ("kill_worker", (3,)),
        ("stop_worker", (3,)),  # SIGSTOP: a hung worker, caught by --stall-timeout
    ],
)
def test_every_ending_cleans_up_and_keeps_a_checkpoint(tmp_path, how, expected_codes):
    proc = _start(tmp_path, "--stall-timeout", "3")
    try:
        _wait_for_checkpoint(tmp_path, proc)
        workers = _workers_of(proc)
        assert len(workers) == 2
        hit = time.monotonic()
        if how == "SIGINT":
            proc.send_signal(signal.SIGINT)
        elif how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        elif how == "kill_worker":
            os.kill(workers[0], signal.SIGKILL)
        else:
            os.kill(workers[0], signal.SIGSTOP)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - hit
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in expected_codes, (proc.returncode, err)
    assert "Traceback" not in err
    if how in ("SIGINT", "SIGTERM") and proc.returncode > 0:  # one line says how it ended
        ending = "interrupted" if how == "SIGINT" else "terminated (SIGTERM)"
        assert err.strip().splitlines()[-1] == f"nbasync-train: {ending}", err
    if how == "kill_worker":
        assert "worker" in err and "SIGKILL" in err and len(err.strip().splitlines()) == 1
    if how == "stop_worker":
        assert len(err.strip().splitlines()) == 1, err
        assert f"(pid {workers[0]}) made no step for 3" in err
        assert took < 3 + 10, took  # noticed after 3 s, everything stopped within 10 s
    else:
        assert took < 10, took
    deadline = time.time() + 5
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{w}").exists() for w in workers)
    assert not shm_segments(proc.pid)
    rf = RunFile.open(tmp_path / "run")
    assert rf.latest_checkpoint().step > 0


def test_eval_and_plot_a_run(tmp_path, capsys):
    from nbasync.cli import eval_main, plot_main

    train_mod.train(small(tmp_path))
    assert eval_main([str(tmp_path / "run"), "--episodes", "3"]) == 0
    out = capsys.readouterr().out
    assert "evaluation over 3 episodes: mean" in out and "(greedy policy (argmax pi))" in out
    pytest.importorskip("matplotlib")
    png = tmp_path / "curve.png"
    assert plot_main([str(tmp_path / "run"), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


DISK_FULL_AFTER_4_WRITES = """
import errno, os, sys
from nbasync import runfile
real_replace, real_write = runfile._replace_atomically, runfile._write_all
files_replaced = [0]
def replace(path, data):
    files_replaced[0] += 1
    return real_replace(path, data)
def write_all(fd, data):  # log, run.h5, step-0 checkpoint and one more, then a full disk
    if files_replaced[0] > 4:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_write(fd, data)
runfile._replace_atomically, runfile._write_all = replace, write_all
from nbasync.cli import train_main
sys.exit(train_main())
"""


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str):
    """A real small filesystem (needs mount rights, e.g. root in a container); skips if not."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["tmpfs", "injected"])
def test_disk_full_ends_with_one_line_and_keeps_the_run_file(tmp_path, how):
    with contextlib.ExitStack() as stack:
        if how == "tmpfs":
            root = stack.enter_context(small_tmpfs(tmp_path / "disk", "400k"))
            code = TRAIN_MAIN
        else:
            root, code = tmp_path, DISK_FULL_AFTER_4_WRITES
        cmd = [sys.executable, "-c", code, "--steps", "100000000", "--quiet",
               "--checkpoint-every", "500", "--out", str(root / "run")]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen_workers: set[int] = set()
        while proc.poll() is None:
            seen_workers.update(_workers_of(proc))
            time.sleep(0.1)
        err = proc.stderr.read()
        assert proc.returncode == 3, err
        assert err.strip().count("\n") == 0 and "No space left on device" in err, err
        assert "Traceback" not in err
        assert not any(Path(f"/proc/{w}").exists() for w in seen_workers)
        assert not shm_segments(proc.pid)
        rf = RunFile.open(root / "run")
        ckpt = rf.latest_checkpoint()  # the last good checkpoint opens
        assert ckpt.step > 0 and np.all(np.isfinite(ckpt.params))
        assert len(rf.episodes()) > 0


@pytest.mark.slow
def test_sigkilled_parent_takes_workers_and_tracker_along_silently(tmp_path):
    """A second trainer on the running directory is refused naming the holder; when the
    holder is SIGKILLed, its workers and multiprocessing's resource tracker are gone within
    2 s, the shared memory is unlinked, nothing is printed, and the directory is free."""
    proc = _start(tmp_path)
    try:
        _wait_for_checkpoint(tmp_path, proc)
        second = subprocess.run(
            [sys.executable, "-c", TRAIN_MAIN, "--resume", str(tmp_path / "run"), "--quiet"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr
        assert f"in use by another run (pid {proc.pid})" in second.stderr
        assert second.stderr.strip().count("\n") == 0
        children = _children(proc.pid)  # the workers and the resource tracker
        assert len(children) == 3
        proc.kill()
        killed = time.monotonic()
        while any(_running(c) for c in children) and time.monotonic() - killed < 10:
            time.sleep(0.02)
        gone_after = time.monotonic() - killed
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert gone_after < 2.0, gone_after
    assert err == ""
    deadline = time.time() + 2
    while shm_segments(proc.pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not shm_segments(proc.pid)
    lock_run_dir(tmp_path / "run").release()
    assert RunFile.open(tmp_path / "run").latest_checkpoint().step > 0


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "zombie" not in status


# -- divergence: never train on NaN, never lose the last good checkpoint --------------------

# lr 1e30 is a valid number that makes the first update overflow theta's forward pass into
# inf/NaN, so every later gradient is non-finite: a reproducible trigger. (--lr 10, reported
# as a trigger on an earlier version, stays finite on CartPole here: max |theta| ~ 500-1250
# after 200k steps, two seeds.)
DIVERGING = ["--algo", "a3c", "--lr", "1e30", "--workers", "2", "--quiet", "--steps", "200000"]


def test_diverging_run_stops_with_one_line_and_exit_3(tmp_path, capsys):
    from nbasync.cli import train_main

    code = train_main([*DIVERGING, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 3, err
    (line,) = err.strip().splitlines()
    assert "training diverged at step" in line and "skipped its last" in line
    for step in RunFile.open(tmp_path / "run").checkpoint_steps():  # any it wrote are finite
        assert np.isfinite(RunFile.open(tmp_path / "run").load_checkpoint(step).params).all()
    assert not shm_segments(os.getpid())


@pytest.mark.slow
def test_divergence_keeps_the_last_good_checkpoint(tmp_path, capsys):
    from nbasync.cli import train_main

    run = str(tmp_path / "run")
    # Skipping every update (skip limit out of reach) leaves theta finite: a checkpoint.
    code = train_main([*DIVERGING, "--steps", "3000", "--skip-limit", "1000000000", "--out", run])
    assert code == 0
    summary = capsys.readouterr().out
    assert "updates skipped (non-finite gradients)" in summary
    before = RunFile.open(run).latest_checkpoint()
    assert np.isfinite(before.params).all()
    # Resumed with a skip limit, the run stops at once and adds no checkpoint.
    code = train_main(["--resume", run, "--steps", "200000", "--skip-limit", "50"])
    err = capsys.readouterr().err
    assert code == 3 and "diverged" in err and "Traceback" not in err
    after = RunFile.open(run).latest_checkpoint()
    assert after.step == before.step
    np.testing.assert_array_equal(after.params, before.params)
    assert f"last good checkpoint: step {before.step:,}" in err


def test_telemetry_of_one_worker_has_zero_staleness_and_resume_may_change_it(tmp_path):
    train_mod.train(small(tmp_path, workers=1, telemetry_every=1))
    rf = RunFile.open(tmp_path / "run")
    rows = rf.telemetry()
    assert len(rows) > 500  # one row per update: 3000 steps / t_max 5, fewer at episode ends
    assert (rows["worker"] == 0).all() and (rows["staleness"] == 0).all()
    assert (np.diff(rows["update"]) == 1).all() and rows["update"][0] == 1
    assert (rows["wall_time"] >= 0).all() and (rows["wall_time"] < 600).all()  # run time
    n = len(rows)
    train_mod.resume(tmp_path / "run", {"steps": 4000, "telemetry_every": 10})
    rf = RunFile.open(tmp_path / "run")
    rows = rf.telemetry()
    # Updates in the resumed 1000 steps: one per t_max = 5 steps, plus one short rollout per
    # episode that ended there; a row per 10 updates.
    ended = int((rf.episodes()["global_step"] > 3000).sum())
    assert 0 < len(rows) - n <= (1000 // 5 + ended) // 10 + 1
    assert (rows["window_updates"][n:] == 10).all()


def test_no_telemetry_log_when_off(tmp_path):
    train_mod.train(small(tmp_path, workers=1, steps=500))
    assert RunFile.open(tmp_path / "run").telemetry() is None
    assert not (tmp_path / "run" / "telemetry.bin").exists()


@pytest.mark.slow
def test_telemetry_of_two_workers_sees_stale_updates(tmp_path):
    """Real processes: with two workers, some updates land between the other's sync and
    write (the exact values are tested in tests/algos/test_telemetry.py)."""
    train_mod.train(small(tmp_path, workers=2, steps=20_000, telemetry_every=1))
    rows = RunFile.open(tmp_path / "run").telemetry()
    assert set(np.unique(rows["worker"])) == {0, 1}
    assert rows["staleness"].max() > 0


def test_progress_line_counts_down_the_time_limit_of_the_whole_run():
    start = time.time() - 10.0
    line = train_mod.Progress(
        total_steps=100_000, quiet=True, start_time=start, time_limit=100.0, elapsed_before=40.0
    ).line(500)  # 50 steps/s: the steps would take 33 min, the clock stops the run in 50 s
    assert line.endswith(("00:50 left", "00:49 left"))
    no_limit = train_mod.Progress(total_steps=100_000, quiet=True, start_time=start).line(500)
    assert no_limit.endswith(("33:10 left", "33:09 left"))
