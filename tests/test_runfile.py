"""Run file: round trips, keep-last-N, episode log, atomic writes, errors."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from nbasync import runfile as runfile_mod
from nbasync.errors import RunFailedError
from nbasync.runfile import (
    EPISODE_DTYPE,
    EPISODE_LOG_MAGIC,
    EPISODE_LOG_NAME,
    FILE_NAME,
    FORMAT_VERSION,
    Checkpoint,
    RunFile,
    RunFileError,
    RunLockedError,
    RunWriteError,
    lock_run_dir,
    read_episode_log,
)

LAYOUT = [("fc1.weight", 0, (8, 4)), ("fc1.bias", 32, (8,)), ("out.weight", 40, (3, 8))]
N_PARAMS = 64
CONFIG = {"algo": "a3c", "env": "CartPole-v1", "n_workers": 2, "hidden": [64, 64], "lr": 7e-4}
REPO = Path(__file__).resolve().parents[1]


def make_ckpt_args(step: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed + step)
    bitgens = [np.random.default_rng(s).bit_generator.state for s in range(2)]
    return dict(
        step=step,
        params=rng.standard_normal(N_PARAMS).astype(np.float32),
        opt_stats={"g": rng.random(N_PARAMS).astype(np.float32)},
        worker_steps=np.array([step // 2, step - step // 2], dtype=np.int64),
        elapsed_s=1.5 * step,
        rng_state={"workers": bitgens, "env_seeds": np.array([7, 8], dtype=np.int64)},
    )


def assert_ckpt_equal(ck: Checkpoint, args: dict) -> None:
    assert ck.step == args["step"]
    assert ck.params.dtype == args["params"].dtype
    np.testing.assert_array_equal(ck.params, args["params"])
    assert ck.opt_stats.keys() == args["opt_stats"].keys()
    for k, v in args["opt_stats"].items():
        np.testing.assert_array_equal(ck.opt_stats[k], v)
    assert ck.worker_steps.dtype == np.int64
    np.testing.assert_array_equal(ck.worker_steps, args["worker_steps"])
    assert ck.elapsed_s == args["elapsed_s"]
    assert ck.rng_state["workers"] == args["rng_state"]["workers"]
    np.testing.assert_array_equal(ck.rng_state["env_seeds"], args["rng_state"]["env_seeds"])


def test_create_open_round_trip_config_and_layout(tmp_path):
    out = tmp_path / "runs" / "a"
    rf = RunFile.create(out, CONFIG, LAYOUT)
    assert (out / FILE_NAME).is_file()
    assert rf.n_params == N_PARAMS
    for target in (out, out / FILE_NAME, str(out)):
        again = RunFile.open(target)
        assert again.config() == CONFIG
        assert again.param_layout() == LAYOUT
        assert again.n_params == N_PARAMS
        assert again.latest_checkpoint() is None
        assert again.checkpoint_steps() == []
        assert len(again.episodes()) == 0
    with h5py.File(out / FILE_NAME, "r") as f:
        assert f.attrs["format_version"] == FORMAT_VERSION


def test_config_returned_is_a_copy(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    rf.config()["algo"] = "changed"
    assert rf.config()["algo"] == "a3c"


def test_checkpoint_round_trip_identical(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    args = make_ckpt_args(1000)
    written = rf.write_checkpoint(**args)
    assert_ckpt_equal(written, args)
    ck = RunFile.open(tmp_path).latest_checkpoint()
    assert_ckpt_equal(ck, args)
    assert ck.saved_at > 0
    # numpy bit-generator state restores exactly
    gen = np.random.default_rng()
    gen.bit_generator.state = ck.rng_state["workers"][1]
    assert gen.random() == np.random.default_rng(1).random()


def test_checkpoint_float64_and_empty_optional_parts(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    p = np.linspace(0, 1, N_PARAMS)
    rf.write_checkpoint(5, p)
    ck = RunFile.open(tmp_path).load_checkpoint(5)
    assert ck.params.dtype == np.float64
    np.testing.assert_array_equal(ck.params, p)
    assert ck.opt_stats == {} and ck.rng_state == {} and ck.norm_moments == {}
    assert ck.worker_steps.shape == (0,)


def test_checkpoint_normalisation_moments_round_trip(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    moments = {"obs": np.array([12.0, 0.5, -3.0, 7.0, 1e-3]), "return": np.array([9.0, 2.0, 40.0])}
    rf.write_checkpoint(10, np.zeros(N_PARAMS, np.float32), norm_moments=moments)
    rf.write_checkpoint(20, np.zeros(N_PARAMS, np.float32), norm_moments=moments)
    for step in (10, 20):
        got = RunFile.open(tmp_path).load_checkpoint(step).norm_moments
        assert got.keys() == moments.keys()
        for k in moments:  # bit for bit, float64
            assert got[k].dtype == np.float64
            np.testing.assert_array_equal(got[k], moments[k])


def test_each_checkpoint_records_the_machine_that_wrote_it(tmp_path, monkeypatch):
    """A run resumed on another machine keeps both: checkpoints are copied, not rewritten."""
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    rf.write_checkpoint(**make_ckpt_args(10))
    here = RunFile.open(tmp_path).load_checkpoint(10).machine
    assert f"{os.cpu_count()} cores" in here and f"Python {platform.python_version()}" in here
    monkeypatch.setattr(runfile_mod, "describe_machine", lambda: "elsewhere, 16 cores")
    rf.write_checkpoint(**make_ckpt_args(20))
    reopened = RunFile.open(tmp_path)
    assert [reopened.load_checkpoint(s).machine for s in (10, 20)] == [here, "elsewhere, 16 cores"]


def test_a_checkpoint_without_the_machine_reads_as_unknown(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    rf.write_checkpoint(**make_ckpt_args(10))
    with h5py.File(tmp_path / FILE_NAME, "r+") as f:  # as files written before it existed
        del f["checkpoints/000000000010"].attrs["machine"]
    assert RunFile.open(tmp_path).load_checkpoint(10).machine == ""


def test_checkpoint_group_names(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    rf.write_checkpoint(**make_ckpt_args(123))
    with h5py.File(tmp_path / FILE_NAME, "r") as f:
        assert list(f["checkpoints"]) == ["000000000123"]


def test_keep_last_n(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT, keep=3)
    for step in range(100, 800, 100):
        rf.write_checkpoint(**make_ckpt_args(step))
    assert rf.checkpoint_steps() == [500, 600, 700]
    again = RunFile.open(tmp_path)
    assert again.keep == 3
    for step in (500, 600, 700):
        assert_ckpt_equal(again.load_checkpoint(step), make_ckpt_args(step))
    assert_ckpt_equal(again.load_checkpoint(), make_ckpt_args(700))
    with pytest.raises(RunFileError, match="no checkpoint at step 100"):
        again.load_checkpoint(100)


def test_keep_default_and_override_on_open(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    for step in range(1, 8):
        rf.write_checkpoint(**make_ckpt_args(step))
    assert rf.checkpoint_steps() == [3, 4, 5, 6, 7]
    rf = RunFile.open(tmp_path, keep=2)
    rf.write_checkpoint(**make_ckpt_args(8))
    assert rf.checkpoint_steps() == [7, 8]
    assert RunFile.open(tmp_path).keep == 2


def test_same_step_replaces(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    rf.write_checkpoint(**make_ckpt_args(10, seed=0))
    args = make_ckpt_args(10, seed=99)
    rf.write_checkpoint(**args)
    assert rf.checkpoint_steps() == [10]
    assert_ckpt_equal(rf.load_checkpoint(10), args)


def test_file_size_does_not_grow_with_replaced_checkpoints(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT, keep=2)
    sizes = []
    for step in range(1, 12):
        rf.write_checkpoint(**make_ckpt_args(step))
        sizes.append(os.path.getsize(tmp_path / FILE_NAME))
    assert max(sizes[3:]) == min(sizes[3:])


def test_wrong_param_count_is_value_error(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    with pytest.raises(ValueError, match="64"):
        rf.write_checkpoint(1, np.zeros(63, np.float32))


def test_episodes_append_read(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    rf.append_episode(0, 100, 1.25, 10.0, 100)
    rf.append_episode(1, 180, 2.5, -3.5, 80)
    eps = rf.episodes()  # buffered ones are visible at once
    assert eps.dtype == EPISODE_DTYPE
    assert len(eps) == 2
    # not persisted until save
    assert len(RunFile.open(tmp_path).episodes()) == 0
    rf.save()
    rf.append_episode(0, 250, 3.0, 12.0, 70)
    rf.write_checkpoint(**make_ckpt_args(250))  # checkpoints persist episodes too
    rf.append_episode(1, 300, 4.0, 1.0, 50)
    rf.close()
    eps = RunFile.open(tmp_path).episodes()
    np.testing.assert_array_equal(eps["worker"], [0, 1, 0, 1])
    np.testing.assert_array_equal(eps["global_step"], [100, 180, 250, 300])
    np.testing.assert_array_equal(eps["wall_time"], [1.25, 2.5, 3.0, 4.0])
    np.testing.assert_array_equal(eps["return"], [10.0, -3.5, 12.0, 1.0])
    np.testing.assert_array_equal(eps["length"], [100, 80, 70, 50])
    assert RunFile.open(tmp_path).latest_checkpoint().n_episodes == 3


def test_episode_log_is_appended_not_rewritten(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT, keep=1)
    log = tmp_path / EPISODE_LOG_NAME
    assert log.read_bytes() == EPISODE_LOG_MAGIC
    h5_sizes, inodes = [], set()
    for i in range(1, 2001):
        rf.append_episode(i % 3, 10 * i, 0.01 * i, float(i), 10)
        if i % 500 == 0:
            rf.write_checkpoint(**make_ckpt_args(10 * i))
            h5_sizes.append((tmp_path / FILE_NAME).stat().st_size)
            inodes.add(log.stat().st_ino)
    assert len(inodes) == 1  # the same file, grown in place
    assert log.stat().st_size == len(EPISODE_LOG_MAGIC) + 2000 * EPISODE_DTYPE.itemsize
    assert max(h5_sizes) == min(h5_sizes)  # run.h5 does not grow with the log
    assert rf._pending == [] and rf.n_episodes == 2000
    # a reader that opened the run mid-way sees every row written since
    assert len(read_episode_log(log)) == 2000


def test_buffered_episodes_reach_the_log_within_a_second(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(runfile_mod.time, "monotonic", lambda: clock[0])
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    rf.append_episode(0, 10, 0.1, 1.0, 10)
    assert len(read_episode_log(tmp_path / EPISODE_LOG_NAME)) == 0
    clock[0] += 1.5
    rf.append_episode(0, 20, 0.2, 1.0, 10)
    assert len(read_episode_log(tmp_path / EPISODE_LOG_NAME)) == 2


def test_episodes_sorted_by_step_or_in_logged_order(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    for worker, step in [(0, 30), (1, 20), (0, 50), (1, 20), (1, 40)]:
        rf.append_episode(worker, step, float(step), float(worker), 1)
    rf.close()
    again = RunFile.open(tmp_path)
    np.testing.assert_array_equal(again.episodes()["global_step"], [20, 20, 30, 40, 50])
    np.testing.assert_array_equal(again.episodes()["return"], [1, 1, 0, 1, 0])  # stable
    np.testing.assert_array_equal(
        again.episodes(by_step=False)["global_step"], [30, 20, 50, 20, 40]
    )


def test_version_1_file_is_read_and_migrated_on_first_write(tmp_path):
    """Run files written before the append-only log (version 1: episodes inside run.h5)."""
    ckpt = make_ckpt_args(100)
    rows = np.array([(0, 100, 1.0, 5.0, 100), (1, 90, 1.5, 4.0, 90)], dtype=EPISODE_DTYPE)
    with h5py.File(tmp_path / FILE_NAME, "w") as f:
        f.attrs.update(format="nbasync-run", format_version=1, keep=5, created_at=1.0)
        f.create_dataset("config", data=json.dumps(CONFIG), dtype=h5py.string_dtype())
        f.create_dataset("param_layout", data=json.dumps(LAYOUT), dtype=h5py.string_dtype())
        f.create_dataset("episodes", data=rows)
        g = f.create_group("checkpoints").create_group("000000000100")
        g.attrs.update(step=100, elapsed_s=ckpt["elapsed_s"], n_episodes=2, saved_at=2.0)
        g["params"] = ckpt["params"]
        g["worker_steps"] = ckpt["worker_steps"]
        g.create_group("opt_stats")["g"] = ckpt["opt_stats"]["g"]
        g.create_group("rng_state")
    old = RunFile.open(tmp_path)
    np.testing.assert_array_equal(old.episodes()["global_step"], [90, 100])
    old.append_episode(0, 150, 3.0, 6.0, 50)
    old.write_checkpoint(**make_ckpt_args(150))
    new = RunFile.open(tmp_path)
    with h5py.File(tmp_path / FILE_NAME, "r") as f:
        assert f.attrs["format_version"] == FORMAT_VERSION and "episodes" not in f
    np.testing.assert_array_equal(new.episodes()["global_step"], [90, 100, 150])
    assert new.checkpoint_steps() == [100, 150]
    np.testing.assert_array_equal(new.load_checkpoint(100).params, ckpt["params"])


def test_run_lock_is_exclusive_names_the_holder_and_dies_with_it(tmp_path):
    lock = lock_run_dir(tmp_path)
    with pytest.raises(RunLockedError, match=f"in use by another run \\(pid {os.getpid()}\\)"):
        lock_run_dir(tmp_path)
    lock.release()
    lock_run_dir(tmp_path).release()  # free again
    # a holder killed by SIGKILL frees it too
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time; sys.path.insert(0, {str(REPO)!r}); "
         "from nbasync.runfile import lock_run_dir; "
         f"l = lock_run_dir({str(tmp_path)!r}); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            lock_run_dir(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    lock_run_dir(tmp_path).release()


def test_create_reuses_a_run_file_that_holds_nothing(tmp_path):
    RunFile.create(tmp_path, CONFIG, LAYOUT)  # killed before any checkpoint or episode
    rf = RunFile.create(tmp_path, {**CONFIG, "lr": 1e-3}, LAYOUT)
    assert rf.config()["lr"] == 1e-3
    rf.append_episode(0, 1, 0.1, 1.0, 1)
    rf.close()
    with pytest.raises(RunFileError, match="already exists"):
        RunFile.create(tmp_path, CONFIG, LAYOUT)


def test_context_manager_persists_episodes(tmp_path):
    with RunFile.create(tmp_path, CONFIG, LAYOUT) as rf:
        rf.append_episode(0, 1, 0.1, 1.0, 1)
    assert len(RunFile.open(tmp_path).episodes()) == 1


# ---------------------------------------------------------------- atomicity


def _failing_write_after(n_ok: int, monkeypatch):
    """The run directory's writes succeed ``n_ok`` times, then fail as on a full disk
    (after writing a few bytes: a partial write is the realistic case)."""
    real = runfile_mod._write_all
    calls = {"n": 0}

    def write_all(fd, data):
        calls["n"] += 1
        if calls["n"] > n_ok:
            real(fd, bytes(memoryview(data)[:7]))
            raise OSError(28, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(runfile_mod, "_write_all", write_all)


def test_disk_full_keeps_previous_file_and_log(tmp_path, monkeypatch):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    good = make_ckpt_args(100)
    rf.write_checkpoint(**good)
    rf.append_episode(0, 100, 1.0, 5.0, 100)
    rf.save()
    log_before = (tmp_path / EPISODE_LOG_NAME).read_bytes()

    _failing_write_after(0, monkeypatch)
    rf.append_episode(1, 150, 2.0, 6.0, 50)
    with pytest.raises(RunWriteError, match="No space left on device") as ei:
        rf.write_checkpoint(**make_ckpt_args(200))
    assert isinstance(ei.value, RunFailedError) and not isinstance(ei.value, RunFileError)
    one_line(ei)
    # the failed append was cut back to whole rows
    assert (tmp_path / EPISODE_LOG_NAME).read_bytes() == log_before
    monkeypatch.undo()
    _failing_write_after(1, monkeypatch)  # the log append works, run.h5 fails
    with pytest.raises(RunWriteError, match=r"run file .*previous one is kept"):
        rf.write_checkpoint(**make_ckpt_args(200))
    monkeypatch.undo()

    assert not (tmp_path / (FILE_NAME + ".tmp")).exists()
    again = RunFile.open(tmp_path)
    assert again.checkpoint_steps() == [100]
    assert_ckpt_equal(again.latest_checkpoint(), good)
    # the object is still usable once the disk has room again
    rf.write_checkpoint(**make_ckpt_args(200))
    assert RunFile.open(tmp_path).checkpoint_steps() == [100, 200]
    np.testing.assert_array_equal(RunFile.open(tmp_path).episodes()["global_step"], [100, 150])


def test_unwritable_path_is_input_error_not_run_failure(tmp_path, monkeypatch):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(runfile_mod.os, "open", refuse)
    with pytest.raises(RunFileError, match="Permission denied"):
        rf.write_checkpoint(**make_ckpt_args(1))


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, {repo!r})
    from nbasync import runfile
    from nbasync.runfile import RunFile

    out, where = sys.argv[1], sys.argv[2]
    rf = RunFile.open(out)
    real_write = os.write
    def write(fd, data):
        if where == "mid_write" and len(data) > 1000:
            real_write(fd, bytes(memoryview(data)[: len(data) // 2]))
            os.kill(os.getpid(), signal.SIGKILL)
        if where == "mid_episode" and len(data) == 2 * 40:
            real_write(fd, bytes(memoryview(data)[:50]))  # one row and a quarter
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write(fd, data)
    runfile.os.write = write
    if where == "before_replace":
        def replace(a, b):
            os.kill(os.getpid(), signal.SIGKILL)
        runfile.os.replace = replace
    if where == "mid_episode":
        rf.append_episode(1, 150, 2.0, 6.0, 50)
        rf.append_episode(0, 160, 2.5, 7.0, 60)
        rf.save()
    big = np.ones(rf.n_params, np.float32)
    rf.write_checkpoint(200, big, {{"g": big}}, np.array([1, 2]), 9.0, {{}})
    print("survived")
    """
)


@pytest.mark.parametrize("where", ["mid_write", "before_replace", "mid_episode"])
def test_killed_process_mid_write_keeps_last_good_checkpoint(tmp_path, where):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    good = make_ckpt_args(100)
    rf.write_checkpoint(**good)
    rf.append_episode(0, 100, 1.0, 5.0, 100)
    rf.save()

    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT.format(repo=str(REPO)))
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), where], capture_output=True, text=True
    )
    assert proc.returncode == -9, proc.stderr
    assert "survived" not in proc.stdout
    if where != "mid_episode":
        assert (tmp_path / (FILE_NAME + ".tmp")).exists()  # the crash left a stray tmp

    again = RunFile.open(tmp_path)
    assert again.checkpoint_steps() == [100]
    assert_ckpt_equal(again.latest_checkpoint(), good)
    expected = [100, 150] if where == "mid_episode" else [100]  # the partial row is ignored
    np.testing.assert_array_equal(again.episodes()["global_step"], expected)
    # the next writes cut the partial row, overwrite the stray tmp and succeed
    again.append_episode(1, 170, 3.0, 1.0, 10)
    again.write_checkpoint(**make_ckpt_args(300))
    assert not (tmp_path / (FILE_NAME + ".tmp")).exists()
    final = RunFile.open(tmp_path)
    assert final.checkpoint_steps() == [100, 300]
    np.testing.assert_array_equal(final.episodes()["global_step"], [*expected, 170])


def test_stray_tmp_is_ignored(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    rf.write_checkpoint(**make_ckpt_args(1))
    (tmp_path / (FILE_NAME + ".tmp")).write_bytes(os.urandom(1000))
    assert RunFile.open(tmp_path).checkpoint_steps() == [1]
    RunFile.open(tmp_path).write_checkpoint(**make_ckpt_args(2))
    assert RunFile.open(tmp_path).checkpoint_steps() == [1, 2]


# ---------------------------------------------------------------- errors


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_missing_dir_and_file(tmp_path):
    with pytest.raises(RunFileError, match="no run file at") as ei:
        RunFile.open(tmp_path / "nope")
    one_line(ei)
    with pytest.raises(RunFileError, match="no run file at"):
        RunFile.open(tmp_path)  # exists, but holds no run.h5


def test_random_bytes_is_run_file_error(tmp_path):
    (tmp_path / FILE_NAME).write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(RunFileError, match="cannot read run file") as ei:
        RunFile.open(tmp_path)
    one_line(ei)


def test_empty_file_is_run_file_error(tmp_path):
    (tmp_path / FILE_NAME).write_bytes(b"")
    with pytest.raises(RunFileError) as ei:
        RunFile.open(tmp_path)
    one_line(ei)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file_is_run_file_error(tmp_path, fraction):
    rf = RunFile.create(tmp_path / "src", CONFIG, LAYOUT)
    for step in (1, 2):
        rf.write_checkpoint(**make_ckpt_args(step))
    data = (tmp_path / "src" / FILE_NAME).read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / FILE_NAME).write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(RunFileError) as ei:
        r = RunFile.open(bad)
        r.latest_checkpoint()  # if the header survived, reading the data must fail cleanly
    one_line(ei)


def test_other_hdf5_file_is_not_a_run_file(tmp_path):
    with h5py.File(tmp_path / FILE_NAME, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(RunFileError, match="not an nbasync run file"):
        RunFile.open(tmp_path)


def test_wrong_format_version(tmp_path):
    RunFile.create(tmp_path, CONFIG, LAYOUT)
    with h5py.File(tmp_path / FILE_NAME, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(RunFileError, match=f"format version {FORMAT_VERSION + 1}") as ei:
        RunFile.open(tmp_path)
    one_line(ei)


def test_unwritable_out_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunFileError, match="cannot create run directory") as ei:
        RunFile.create(blocker / "run", CONFIG, LAYOUT)
    one_line(ei)
    with pytest.raises(RunFileError, match="cannot create run directory"):
        RunFile.create(blocker, CONFIG, LAYOUT)


def test_existing_run_not_overwritten_by_default(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    rf.write_checkpoint(**make_ckpt_args(1))
    with pytest.raises(RunFileError, match="already exists"):
        RunFile.create(tmp_path, CONFIG, LAYOUT)
    assert RunFile.open(tmp_path).checkpoint_steps() == [1]
    RunFile.create(tmp_path, CONFIG, LAYOUT, overwrite=True)
    assert RunFile.open(tmp_path).checkpoint_steps() == []


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="keep"):
        RunFile.create(tmp_path, CONFIG, LAYOUT, keep=0)
    with pytest.raises(ValueError, match="JSON"):
        RunFile.create(tmp_path, {"x": object()}, LAYOUT)
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    with pytest.raises(ValueError, match="rng_state"):
        rf.write_checkpoint(1, np.zeros(N_PARAMS), rng_state={"bad": object()})


# ---------------------------------------------------------------- resume checks


def test_check_compatible_accepts_same_and_allowed_changes(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    rf.check_compatible(dict(CONFIG), LAYOUT)
    rf.check_compatible(
        {**CONFIG, "steps": 10_000_000, "out_dir": "/elsewhere"},
        LAYOUT,
        may_differ={"steps", "out_dir"},
    )
    with pytest.raises(RunFileError, match="'steps' is new"):
        rf.check_compatible({**CONFIG, "steps": 10_000_000}, LAYOUT)
    rf.check_compatible({**CONFIG, "hidden": (64, 64)})  # tuples compare as lists


@pytest.mark.parametrize(
    "change, key",
    [
        ({"algo": "nstep_q"}, "algo"),
        ({"env": "Pong"}, "env"),
        ({"hidden": [128, 64]}, "hidden"),
        ({"lr": 1e-3}, "lr"),
    ],
)
def test_check_compatible_names_differing_key(tmp_path, change, key):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    with pytest.raises(RunFileError, match=f"{key} differs") as ei:
        rf.check_compatible({**CONFIG, **change})
    one_line(ei)


def test_check_compatible_missing_or_new_key(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    cfg = dict(CONFIG)
    del cfg["lr"]
    with pytest.raises(RunFileError, match="'lr' is missing"):
        rf.check_compatible(cfg)
    with pytest.raises(RunFileError, match="'gamma' is new"):
        rf.check_compatible({**CONFIG, "gamma": 0.99})
    rf.check_compatible({**CONFIG, "gamma": 0.99}, may_differ={"gamma"})


def test_check_compatible_layout(tmp_path):
    rf = RunFile.create(tmp_path, CONFIG, LAYOUT)
    with pytest.raises(RunFileError, match="n_params differs"):
        rf.check_compatible(CONFIG, [*LAYOUT, ("x", 64, (2,))])
    swapped = [("fc1.weight", 0, (4, 8)), *LAYOUT[1:]]
    with pytest.raises(RunFileError, match="network shape differs at 'fc1.weight'"):
        rf.check_compatible(CONFIG, swapped)


def test_writer_memory_does_not_grow_with_the_log(tmp_path):
    """The parent logs every episode of a long run: its RunFile keeps at most a small
    buffer, not the log (which was held whole and rewritten at every checkpoint)."""
    import tracemalloc

    rf = RunFile.create(tmp_path, CONFIG, LAYOUT, keep=2)

    def log(n, start):
        for i in range(start, start + n):
            rf.append_episode(i % 4, 10 * i, 0.01 * i, 1.0, 10)
            if i % 10_000 == 0:
                rf.write_checkpoint(**make_ckpt_args(10 * i))

    log(10_000, 1)
    tracemalloc.start()
    try:
        base = tracemalloc.take_snapshot()
        log(40_000, 10_001)
        grown = sum(d.size_diff for d in tracemalloc.take_snapshot().compare_to(base, "filename"))
    finally:
        tracemalloc.stop()
    assert rf.n_episodes == 50_000
    assert grown < 100_000, grown  # bytes; those 40k rows alone are 1.6 MB


# ------------------------------------------------------------------------- telemetry log


def _telemetry_rows(n: int, start: int = 0) -> np.ndarray:
    rows = np.zeros(n, runfile_mod.telemetry_dtype(len(LAYOUT)))
    rows["global_step"] = np.arange(start, start + n) * 5
    rows["worker"] = np.arange(n) % 2
    rows["staleness"] = np.arange(n) % 3
    rows["grad_norm"] = np.arange(n * len(LAYOUT)).reshape(n, len(LAYOUT))
    return rows


def test_telemetry_log_append_read_and_layer_columns(tmp_path):
    rf = RunFile.create(tmp_path / "run", CONFIG, LAYOUT)
    assert rf.telemetry() is None  # a run without telemetry has no log
    assert not rf.telemetry_path.exists()
    rows = _telemetry_rows(5)
    rf.append_telemetry(rows[:3])
    rf.append_telemetry(rows[3:])
    np.testing.assert_array_equal(rf.telemetry(), rows)  # buffered rows count too
    rf.write_checkpoint(**make_ckpt_args(10))  # a checkpoint flushes the log
    on_disk = runfile_mod.read_telemetry_log(tmp_path / "run" / runfile_mod.TELEMETRY_LOG_NAME)
    np.testing.assert_array_equal(on_disk, rows)
    assert on_disk["grad_norm"].shape == (5, len(LAYOUT))
    assert rf.layer_names() == [name for name, _, _ in LAYOUT]
    rf.close()
    with pytest.raises(ValueError, match="row type"):
        rf.append_telemetry(np.zeros(2, runfile_mod.telemetry_dtype(len(LAYOUT) + 1)))


def test_telemetry_log_is_appended_after_reopening_and_survives_a_partial_row(tmp_path):
    with RunFile.create(tmp_path / "run", CONFIG, LAYOUT) as rf:
        rf.append_telemetry(_telemetry_rows(4))
    path = tmp_path / "run" / runfile_mod.TELEMETRY_LOG_NAME
    with open(path, "ab") as f:
        f.write(b"\x01" * 7)  # a crash mid-append
    assert len(runfile_mod.read_telemetry_log(path)) == 4
    with RunFile.open(tmp_path / "run") as rf:  # the resumed run appends aligned rows
        rf.append_telemetry(_telemetry_rows(2, start=4))
        rf.save()
    got = RunFile.open(tmp_path / "run").telemetry()
    np.testing.assert_array_equal(got["global_step"], np.arange(6) * 5)


def test_telemetry_log_bad_file_is_run_file_error(tmp_path):
    rf = RunFile.create(tmp_path / "run", CONFIG, LAYOUT)
    rf.telemetry_path.write_bytes(b"not a telemetry log" * 10)
    with pytest.raises(RunFileError, match="not an nbasync telemetry log"):
        rf.telemetry()
