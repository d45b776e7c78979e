"""nbasync-sweep: the spec and its trials, the local and Ray executors, a failing or killed
trial, a stopped sweep resumed with the same command, the summary, and the sweep plots.

Trials are real CartPole runs of a couple of thousand steps (1 worker each)."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from nbasync.cli import eval_main, plot_main, sweep_main
from nbasync.runfile import RunFile
from nbasync.sweep import (
    FAILED,
    FINISHED,
    INTERRUPTED,
    PENDING,
    LocalExecutor,
    TrialRecord,
    read_state,
    run_sweep,
)
from nbasync.sweep_plot import format_speedup_table, speedup_table
from nbasync.sweep_spec import REPEAT_SEED_STRIDE, SweepSpecError, expand, load_spec, parse_spec

BASE = 'algo = "a3c"\nenv = "CartPole-v1"\nworkers = 1\nsteps = 2000\n'


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- the spec -------------------------------------------------------------------------------


def test_trials_are_grid_times_samples_times_repeats():
    spec = parse_spec(
        {
            "sweep": {"samples": 3, "seed": 7, "repeats": 2},
            "base": {"env": "CartPole-v1", "seed": 5},
            "grid": {"algo": ["a3c", "nstep_q"]},
            "sample": {"lr": {"loguniform": [1e-4, 1e-2]}, "t_max": {"choice": [5, 10]}},
        }
    )
    trials = expand(spec)
    assert len(trials) == 2 * 3 * 2
    assert [t.id for t in trials] == [f"t{i:04d}" for i in range(12)]
    lrs = [t.settings["lr"] for t in trials]
    assert all(1e-4 <= lr <= 1e-2 for lr in lrs)
    # every method is run at the same sampled values (a paired comparison)
    a3c = [(t.settings["lr"], t.settings["t_max"]) for t in trials if t.settings["algo"] == "a3c"]
    nq = [
        (t.settings["lr"], t.settings["t_max"]) for t in trials if t.settings["algo"] == "nstep_q"
    ]
    assert a3c == nq and len(set(a3c)) == 3
    assert {t.settings["seed"] for t in trials} == {5, 5 + REPEAT_SEED_STRIDE}
    # the same spec gives the same trials; another sweep seed other draws
    assert [t.settings for t in expand(spec)] == [t.settings for t in trials]
    other = parse_spec({"sweep": {"samples": 3, "seed": 8}, "sample": LR})
    assert {t.settings["lr"] for t in expand(other)}.isdisjoint(lrs)


LR = {"lr": {"loguniform": [1e-4, 1e-2]}}


def test_loguniform_draws_are_uniform_in_log_space():
    spec = parse_spec({"sweep": {"samples": 2000, "seed": 0}, "sample": LR})
    logs = np.log10([t.settings["lr"] for t in expand(spec)])
    assert logs.min() >= -4 and logs.max() <= -2
    counts, _ = np.histogram(logs, bins=4, range=(-4, -2))
    assert np.all(np.abs(counts - 500) < 80), counts  # each quarter-decade gets ~1/4


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (f"[base]\n{BASE}lrr = 0.1\n", "[base]: unknown setting 'lrr'"),
        (f"[base]\n{BASE}[grd]\nseed = [0]\n", "unknown table or key 'grd'"),
        (f"[sweep]\nsamplez = 3\n[base]\n{BASE}", "[sweep]: unknown key 'samplez'"),
        (f"[base]\n{BASE}[grid]\nseed = []\n", "[grid] seed: empty list"),
        (f"[base]\n{BASE}[grid]\n", "[grid] is empty"),
        (f"[base]\n{BASE}[grid]\nseed = 3\n", "[grid] seed: must be a list"),
        (f"[base]\n{BASE}[sample]\nlr = {{ lognormal = [1, 2] }}\n", "unknown distribution"),
        (f"[base]\n{BASE}[sample]\nlr = {{ loguniform = [0, 1e-2] }}\n", "0 < low"),
        (f"[base]\n{BASE}[sample]\nlr = {{ uniform = [1e-2, 1e-4] }}\n", "low < high"),
        (f"[base]\n{BASE}[sample]\nlr = 0.1\n", "expected one distribution"),
        (f"[base]\n{BASE}[grid]\nsteps = [100]\n", "also set in [base]"),
        (f"[base]\n{BASE}out = 'x'\n", "set by the sweep"),
        (f"[base]\n{BASE}[grid]\nlr = [1e-3, -1.0]\n", "trial t0001 (lr=-1.0): --lr"),
        (
            f"[sweep]\nsamples = 0\n[base]\n{BASE}[sample]\nlr = {{ uniform = [0.1, 0.2] }}\n",
            "[sweep] samples: must be an integer >= 1",
        ),
        ("[base\n", "not valid TOML"),
        (f"[sweep]\nstop_at_target = true\n[base]\n{BASE}", "stop_at_target: needs a target"),
        (f"[sweep]\nstop_at_target = 1\n[base]\n{BASE}", "stop_at_target: must be true or"),
        (
            f"[sweep]\ntarget = 50\nstop_at_target = true\n[base]\n{BASE}stop_return = 9\n",
            "[base] stop_return: stop_at_target sets it",
        ),
        (f"[base]\n{BASE}stop_window = 0\n", "trial t0000: --stop-window: must be at least 1"),
    ],
)
def test_bad_spec_is_one_line_exit_2(tmp_path, capsys, text, fragment):
    spec = write_spec(tmp_path / "spec.toml", text)
    code = sweep_main([str(spec), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert fragment in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing was started


def test_missing_spec_and_other_sweep_in_out(tmp_path, capsys):
    assert sweep_main([str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "sweep spec not found" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    spec = write_spec(tmp_path / "s.toml", f"[base]\n{BASE}")
    assert sweep_main([str(spec), "--out", str(tmp_path / "busy")]) == 2
    assert "not empty and holds no sweep" in capsys.readouterr().err


# -- running sweeps -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """Two seeds x two sampled learning rates of A3C on CartPole, 2 trials at a time."""
    tmp = tmp_path_factory.mktemp("sweep")
    spec = write_spec(
        tmp / "spec.toml",
        "[sweep]\nname = 'tiny'\nsamples = 2\nseed = 3\ntarget = 15\nwindow = 10\n"
        f"[base]\n{BASE}[grid]\nseed = [0, 1]\n"
        "[sample]\nlr = { loguniform = [1e-4, 1e-2] }\n",
    )
    out = tmp / "out"
    result = run_sweep(load_spec(spec), out, LocalExecutor(cores=2), quiet=True)
    return spec, out, result


def test_local_sweep_writes_a_run_per_trial_and_the_summary(finished_sweep):
    _, out, result = finished_sweep
    assert result.counts[FINISHED] == 4 and result.counts[FAILED] == 0
    spec_json, records = read_state(out)
    with open(out / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    with h5py.File(out / "summary.h5", "r") as f:
        h5 = {k: f["trials"][k][()] for k in f["trials"]}
        assert json.loads(f.attrs["spec"])["name"] == "tiny"
    assert [r["trial"] for r in rows] == [r.id for r in records] == [f"t{i:04d}" for i in range(4)]
    for i, (row, record) in enumerate(zip(rows, records, strict=True)):
        run = RunFile.open(out / record.id)  # an ordinary run directory
        config = run.config()
        assert config["lr"] == pytest.approx(float(row["lr"])) == record.settings["lr"]
        assert config["seed"] == int(row["seed"]) and config["out"] == str(out / record.id)
        returns = run.episodes()["return"]
        # the scores are the run file's, recomputed here independently
        assert float(row["final_mean"]) == pytest.approx(returns[-10:].mean())
        windows = [returns[j : j + 10].mean() for j in range(len(returns) - 9)]
        assert float(row["best_mean"]) == pytest.approx(max(windows))
        first = next(j for j, m in enumerate(windows) if m >= 15) + 9
        assert float(row["steps_to_target"]) == run.episodes()["global_step"][first]
        assert row["status"] == "finished" and row["exit_code"] == "0"
        assert h5["final_mean"][i] == pytest.approx(float(row["final_mean"]))
        assert h5["status"][i].decode() == "finished"
        assert run.latest_checkpoint().step >= 2000
    assert len({r.settings["lr"] for r in records}) == 2


def test_a_finished_sweep_is_not_run_again(finished_sweep):
    spec, out, _ = finished_sweep
    before = {p: p.stat().st_mtime_ns for p in out.glob("t*/run.h5")}
    started = []
    run_sweep(load_spec(spec), out, LocalExecutor(cores=2), quiet=True, on_record=started.append)
    assert started == []
    assert {p: p.stat().st_mtime_ns for p in out.glob("t*/run.h5")} == before


def test_a_trial_is_an_ordinary_run_for_eval_and_plot(finished_sweep, tmp_path, capsys):
    _, out, _ = finished_sweep
    assert eval_main([str(out / "t0000"), "--episodes", "2"]) == 0
    assert "mean" in capsys.readouterr().out
    png = tmp_path / "runs.png"
    assert plot_main([str(out / "t0000"), str(out / "t0001"), "-o", str(png)]) == 0
    assert png.stat().st_size > 5000


def test_plots_of_a_sweep(finished_sweep, tmp_path, capsys):
    _, out, _ = finished_sweep
    for extra in (["--x", "lr"], ["--by", "seed"], ["--speedup"]):
        png = tmp_path / f"{extra[0][2:]}.png"
        assert plot_main([str(out), "-o", str(png), "--window", "10", *extra]) == 0
        assert png.stat().st_size > 5000
    text = capsys.readouterr().out
    assert "| 1 | " in text and "speed-up" in text  # one worker count: its own baseline
    code = plot_main([str(out), "-o", str(tmp_path / "x.png"), "--x", "gamma"])
    assert code == 2 and "no trial" in capsys.readouterr().err


def test_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    spec = write_spec(
        tmp_path / "spec.toml",
        '[base]\nalgo = "a3c"\nworkers = 1\nsteps = 1000\n'
        '[grid]\nenv = ["NoSuchEnv-v0", "CartPole-v1"]\n',
    )
    out = tmp_path / "out"
    result = run_sweep(load_spec(spec), out, LocalExecutor(cores=1), quiet=True)
    _, records = read_state(out)
    bad, good = records
    assert bad.status == FAILED and bad.exit_code == 2
    assert bad.reason.startswith("bad input: unknown environment id 'NoSuchEnv-v0'")
    assert "\n" not in bad.reason and "NoSuchEnv-v0" in (out / bad.id / "trial.log").read_text()
    assert good.status == FINISHED and RunFile.open(out / good.id).episodes().size > 0
    assert result.counts[FAILED] == 1 and result.counts[FINISHED] == 1
    # a re-run keeps the failure (it is a result) unless asked to retry it
    seen = []
    run_sweep(load_spec(spec), out, LocalExecutor(cores=1), quiet=True, on_record=seen.append)
    assert seen == []
    run_sweep(
        load_spec(spec), out, LocalExecutor(cores=1), retry_failed=True, quiet=True,
        on_record=seen.append,
    )  # fmt: skip
    assert [r.id for r in seen] == [bad.id] and seen[0].status == FAILED


def test_only_runs_the_chosen_trials_and_the_rest_later(tmp_path, capsys):
    spec = write_spec(
        tmp_path / "spec.toml",
        '[base]\nalgo = "a3c"\nworkers = 1\nsteps = 1000\n'
        '[grid]\nenv = ["NoSuchEnv-v0", "CartPole-v1"]\nseed = [0, 1]\n',
    )
    out = tmp_path / "out"
    args = [str(spec), "--out", str(out), "--quiet", "--cores", "1"]
    assert sweep_main([*args, "--only", "seed=1", "--only", "env=NoSuchEnv-v0"]) == 0
    assert "1 failed of 4 trials (3 not run: --only)" in capsys.readouterr().out
    status = {r.id: r.status for r in read_state(out)[1]}
    assert status == {"t0000": PENDING, "t0001": FAILED, "t0002": PENDING, "t0003": PENDING}
    assert sweep_main([*args, "--only", "sed=1"]) == 2
    assert "--only: unknown setting 'sed'" in capsys.readouterr().err


class KillingExecutor(LocalExecutor):
    """Sends SIGKILL to each trial's process once its run file exists (a crash)."""

    killed: list[int] = []

    def start(self, trial, trial_dir):
        super().start(trial, trial_dir)
        proc = self.running[trial.id].process
        self.killed.append(proc.pid)

        def kill_when_running():
            deadline = time.time() + 120
            while not (trial_dir / "run.h5").exists() and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            os.kill(proc.pid, signal.SIGKILL)

        threading.Thread(target=kill_when_running, daemon=True).start()


@pytest.mark.slow
def test_a_killed_trial_is_a_failure_with_its_reason(tmp_path):
    spec = write_spec(
        tmp_path / "spec.toml",
        f"[base]\n{BASE.replace('2000', '10000000')}time_limit = 60.0\n[grid]\nseed = [0]\n",
    )
    out = tmp_path / "out"
    result = run_sweep(load_spec(spec), out, KillingExecutor(cores=1), quiet=True)
    (record,) = read_state(out)[1]
    assert record.status == FAILED and record.exit_code == -9
    assert record.reason == "the trial's process killed by SIGKILL"
    assert result.counts[FAILED] == 1
    assert (out / "summary.csv").read_text().count("killed by SIGKILL") == 1
    # the killed trial could not unlink its shared memory: the sweep reclaimed it
    for pid in KillingExecutor.killed:
        assert not list(Path("/dev/shm").glob(f"nbasync_{pid}_*"))


def sweep_command(spec: Path, out: Path) -> list[str]:
    code = "import sys; from nbasync.cli import sweep_main; sys.exit(sweep_main())"
    return [sys.executable, "-c", code, str(spec), "--out", str(out), "--cores", "1"]


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def trial_status(out: Path) -> dict[str, str]:
    try:
        return {
            r["id"]: r["status"] for r in json.loads((out / "sweep.json").read_text())["trials"]
        }
    except (OSError, ValueError):
        return {}


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_sweep_resumes_with_the_same_command(tmp_path, signum):
    """Trial 0 is short; trial 1 would run for 4 s of training: stop the sweep while it
    runs, then the same command skips trial 0 and runs trial 1 again from the start."""
    spec = write_spec(
        tmp_path / "spec.toml",
        f"[base]\n{BASE.replace('steps = 2000', 'time_limit = 4.0')}"
        "[grid]\nsteps = [1500, 10000000]\n",
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(sweep_command(spec, out), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while trial_status(out).get("t0001") != "running" or not (out / "t0001" / "run.h5").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.1)
    first_run = (out / "t0000" / "run.h5").stat().st_mtime_ns
    trial_pids = [pid for pid in children(proc.pid) if "spawn_main" in cmdline(pid)]
    assert len(trial_pids) == 1  # --cores 1: one trial at a time
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (143 if signum == signal.SIGTERM else 130), err
    assert "Traceback" not in err
    status = trial_status(out)
    assert status == {"t0000": FINISHED, "t0001": INTERRUPTED}
    # the interrupted trial stopped cleanly: its process is gone, its shared memory unlinked
    for pid in trial_pids:
        assert not Path(f"/proc/{pid}").exists()
        assert not list(Path("/dev/shm").glob(f"nbasync_{pid}_*"))

    again = subprocess.run(sweep_command(spec, out), capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr
    assert trial_status(out) == {"t0000": FINISHED, "t0001": FINISHED}
    assert (out / "t0000" / "run.h5").stat().st_mtime_ns == first_run  # not run again
    run = RunFile.open(out / "t0001")
    assert run.episodes().size > 0 and run.latest_checkpoint().step < 10_000_000
    assert "2 finished, 0 failed of 2 trials" in again.stdout


# -- Ray ------------------------------------------------------------------------------------


def test_ray_sweep_brings_the_run_files_back(tmp_path):
    """Each trial is a Ray task that runs in a temporary directory of its node and returns
    its run file; the driver writes it under --out (nodes share no file system)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'nbasync[ray]')")
    from nbasync.sweep import RayExecutor

    spec = write_spec(
        tmp_path / "spec.toml", f"[sweep]\nwindow = 10\n[base]\n{BASE}[grid]\nseed = [0, 1]\n"
    )
    out = tmp_path / "out"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_sweep(load_spec(spec), out, RayExecutor(None), quiet=True)
        with pytest.raises(Exception, match="needs 3 CPUs; the largest node of the Ray"):
            big = load_spec(
                write_spec(
                    tmp_path / "big.toml", f"[base]\n{BASE.replace('workers = 1', 'workers = 3')}"
                )
            )
            run_sweep(big, tmp_path / "big", RayExecutor(None), quiet=True)
    finally:
        ray.shutdown()
    assert result.counts[FINISHED] == 2, [(r.status, r.reason) for r in read_state(out)[1]]
    for record in read_state(out)[1]:
        run = RunFile.open(out / record.id)
        assert run.config()["seed"] == record.settings["seed"]
        # written by the task elsewhere (its node's temporary directory), not into --out
        assert not run.config()["out"].startswith(str(out))
        assert not Path(run.config()["out"]).exists()
        assert run.episodes().size > 0 and record.final_mean == pytest.approx(
            run.episodes()["return"][-10:].mean()
        )
        assert "done:" in (out / record.id / "trial.log").read_text()


def test_ray_missing_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    spec = write_spec(tmp_path / "s.toml", f"[base]\n{BASE}")
    assert sweep_main([str(spec), "--out", str(tmp_path / "o"), "--ray", "auto"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'nbasync[ray]'" in err and len(err.strip().splitlines()) == 1


# -- the speed-up table ---------------------------------------------------------------------


def test_speedup_is_the_mean_over_seeds_of_paired_time_ratios():
    def record(workers, seed, seconds, algo="a3c"):
        settings = {"workers": workers, "seed": seed, "algo": algo}
        return TrialRecord(
            f"t{workers}{seed}", settings, status=FINISHED, seconds_to_target=seconds,
            steps_to_target=seconds * 100,
        )  # fmt: skip

    spec_json = {"grid": {"workers": [1, 2], "seed": [0, 1, 2]}, "target": 475.0}
    records = [
        record(1, 0, 10.0), record(1, 1, 20.0), record(1, 2, math.nan),
        record(2, 0, 4.0), record(2, 1, 10.0), record(2, 2, 9.0),
    ]  # fmt: skip
    rows = speedup_table(spec_json, records)
    assert [(r.workers, r.reached, r.runs) for r in rows] == [(1, 2, 3), (2, 3, 3)]
    assert rows[0].speedup == pytest.approx(1.0)
    assert rows[1].speedup == pytest.approx((10 / 4 + 20 / 10) / 2)  # seed 2 has no pair
    assert rows[1].paired_seeds == 2
    assert rows[1].mean_seconds == pytest.approx((4 + 10 + 9) / 3)
    text = format_speedup_table(rows, 475.0)
    assert "| 2 | 3/3 | 7.7 | 767 | 2.25 (2 seeds) |" in text
    with pytest.raises(Exception, match="names no target"):
        speedup_table({"grid": {}}, records)


def test_stop_at_target_stops_each_trial_at_the_target():
    spec = parse_spec(
        {
            "sweep": {"target": 15.0, "window": 10, "stop_at_target": True},
            "base": {"algo": "a3c", "steps": 1_000_000, "workers": 1},
            "grid": {"seed": [0, 1]},
        }
    )
    for trial in expand(spec):
        assert trial.settings["stop_return"] == 15.0 and trial.settings["stop_window"] == 10
    plain = parse_spec({"sweep": {"target": 15.0}, "base": {"steps": 1000}})
    assert "stop_return" not in expand(plain)[0].settings


def test_bad_trial_settings_name_the_trial():
    spec = parse_spec({"base": {"env": "CartPole-v1"}, "grid": {"workers": [1, 0]}})
    with pytest.raises(SweepSpecError, match=r"trial t0001 \(workers=0\): --workers"):
        expand(spec)
