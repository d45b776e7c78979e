"""Many runs as one experiment: where a sweep's trials run, its state, and its results.

Owns ``nbasync-sweep``'s work below the command line (the spec and its trials are
``nbasync.sweep_spec``'s): running the trials, each an ordinary training run with its own
run directory, locally (as many at once as the cores allow, each reserving ``workers``
cores) or as Ray tasks on a cluster (``ray`` is an optional extra, imported only then); the
sweep's state file (``sweep.json``, written atomically, so a stopped sweep resumes with the
same command); and the summary table (``summary.csv`` and ``summary.h5``). Sits above
``train`` (imported only inside a trial's process) and below ``cli``.

Every trial runs in a process of its own: a trial that crashes, fails or is killed is
recorded with its exit code and one-line reason, and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import build_config
from .errors import EXIT_RUN_FAILED, EXIT_USAGE, RunFailedError, UserInputError
from .runfile import FILE_NAME, LOCK_NAME, RunFile, RunFileError
from .shared import install_sigterm_exit, unlink_segments_of
from .sweep_spec import SweepSpec, Trial, check_only, expand, selected

STATE_FILE = "sweep.json"
SUMMARY_CSV = "summary.csv"
SUMMARY_H5 = "summary.h5"
LOG_FILE = "trial.log"
OUTCOME_FILE = "outcome.json"
STATE_FORMAT = "nbasync-sweep"
STATE_VERSION = 1

# Trial statuses in the state file.
PENDING, RUNNING, FINISHED, FAILED, INTERRUPTED = (
    "pending", "running", "finished", "failed", "interrupted",
)  # fmt: skip


# -- results of one trial -------------------------------------------------------------------


@dataclass
class TrialRecord:
    """A trial's line in the state file and the summary table. NaN = not measured."""

    id: str
    settings: dict[str, Any]
    status: str = PENDING
    exit_code: int | None = None
    reason: str = ""
    final_mean: float = math.nan
    best_mean: float = math.nan
    steps_to_target: float = math.nan
    seconds_to_target: float = math.nan
    steps: float = math.nan
    episodes: float = math.nan
    train_s: float = math.nan
    wall_s: float = math.nan
    host: str = ""

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TrialRecord:
        names = {f.name: f for f in dataclasses.fields(cls)}
        kw = {}
        for k, v in values.items():
            if k in names:
                kw[k] = math.nan if v is None and names[k].type == "float" else v
        return cls(**kw)


@dataclass(frozen=True)
class Outcome:
    """How a trial's process ended (a typed message from the executors to the sweep)."""

    exit_code: int | None
    reason: str
    wall_s: float
    host: str


def measure(run_dir: str | Path, window: int, target: float | None) -> dict[str, float]:
    """Scores of a finished run from its run file: the mean return of the last ``window``
    episodes (``final_mean``), the best such mean over the run (``best_mean``; over all
    episodes when there are fewer than ``window``), and the agent steps and training
    seconds (the episode log's clock: from the workers' start, compilation excluded) at the
    episode whose window first reaches ``target``."""
    rf = RunFile.open(run_dir)
    ep = rf.episodes()
    ckpt = rf.latest_checkpoint()
    returns = ep["return"].astype(np.float64)
    out = {
        "episodes": float(len(ep)),
        "steps": float(ckpt.step) if ckpt else math.nan,
        "train_s": float(ckpt.elapsed_s) if ckpt else math.nan,
        "final_mean": math.nan,
        "best_mean": math.nan,
        "steps_to_target": math.nan,
        "seconds_to_target": math.nan,
    }
    if len(returns) == 0:
        return out
    out["final_mean"] = float(returns[-window:].mean())
    if len(returns) < window:
        out["best_mean"] = float(returns.mean())
        return out
    means = np.convolve(returns, np.ones(window) / window, mode="valid")
    out["best_mean"] = float(means.max())
    if target is not None:
        hit = np.flatnonzero(means >= target)
        if hit.size:
            i = hit[0] + window - 1
            out["steps_to_target"] = float(ep["global_step"][i])
            out["seconds_to_target"] = float(ep["wall_time"][i])
    return out


# -- one trial's process --------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _train_trial(settings: dict[str, Any], trial_dir: str) -> tuple[int, str]:
    """Run one trial in this process; (exit code, one-line reason) as nbasync-train would
    end (see ``nbasync.errors``), a bug's traceback printed to the trial's log."""
    from .runner import WorkerError
    from .train import train

    try:
        config = build_config({**settings, "out": trial_dir, "quiet": True})
        print(train(config).describe(), flush=True)
        return 0, ""
    except KeyboardInterrupt:
        return 130, "interrupted (SIGINT)"
    except SystemExit as exc:
        if exc.code == 143:
            return 143, "terminated (SIGTERM)"
        raise
    except WorkerError as exc:
        if exc.kind == "bug":
            print(exc.traceback, file=sys.stderr)
            return 1, f"bug: {_one_line(exc)}"
        if exc.kind == "input":
            return EXIT_USAGE, f"bad input: {_one_line(exc)}"
        return exc.exit_code, _one_line(exc)
    except UserInputError as exc:
        return EXIT_USAGE, f"bad input: {_one_line(exc)}"
    except RunFailedError as exc:
        return exc.exit_code, _one_line(exc)
    except Exception as exc:  # noqa: BLE001 - a bug in nbasync: traceback to the log
        traceback.print_exc()
        return 1, f"bug: {type(exc).__name__}: {_one_line(exc)}"


def _exit_with_parent(parent_pid: int) -> None:
    """A trial whose sweep is gone (killed, or its Ray worker cancelled) stops too: SIGTERM
    to itself, which a run turns into a clean stop (workers reaped, checkpoint written)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _trial_process(settings: dict[str, Any], trial_dir: str, parent_pid: int) -> None:
    """Entry point of a trial's process: output to ``trial.log``, then the outcome to
    ``outcome.json`` and the exit code."""
    with open(Path(trial_dir) / LOG_FILE, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    install_sigterm_exit()  # SIGTERM at any point (even before the run's shared state) is clean
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    code, reason = _train_trial(settings, trial_dir)
    if reason:
        print(f"trial: {reason}", file=sys.stderr, flush=True)
    _write_json(Path(trial_dir) / OUTCOME_FILE, {"exit_code": code, "reason": reason})
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown to hang on: the run file is closed already


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "did not finish"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class TrialProcess:
    """One trial in a spawned process (a crash or kill cannot take the sweep down)."""

    def __init__(self, trial: Trial, trial_dir: Path):
        self.trial = trial
        self.trial_dir = trial_dir
        self.started = time.time()
        ctx = mp.get_context("spawn")
        self.process = ctx.Process(
            target=_trial_process,
            args=(trial.settings, str(trial_dir), os.getpid()),
            name=f"nbasync-trial-{trial.id}",
        )
        self.process.start()

    def poll(self) -> Outcome | None:
        code = self.process.exitcode
        return None if code is None else self.outcome()

    def outcome(self) -> Outcome:
        code = self.process.exitcode
        if code is not None and code < 0:  # killed: its shared memory is ours to reclaim
            unlink_segments_of(self.process.pid)
        reason = ""
        with contextlib.suppress(OSError, ValueError):
            reason = json.loads((self.trial_dir / OUTCOME_FILE).read_text())["reason"]
        if code not in (0, None) and not reason:
            reason = f"the trial's process {_describe_exit(code)}"
        return Outcome(code, reason, time.time() - self.started, socket.gethostname())

    def signal(self, signum: int) -> None:
        if self.process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signum)


def run_trial_blocking(trial: Trial, trial_dir: Path) -> Outcome:
    """Run a trial to its end (the Ray task's body); stopped with the caller."""
    proc = TrialProcess(trial, trial_dir)
    try:
        proc.process.join()
    except BaseException:
        _stop_processes([proc], signal.SIGTERM)
        raise
    return proc.outcome()


def _stop_processes(procs: list[TrialProcess], first: int, grace_s: float = 20.0) -> None:
    """Stop trial processes: ``first`` (SIGINT's own delivery waits a little, SIGTERM is
    forwarded at once), then SIGTERM, then SIGKILL after ``grace_s``."""
    alive = [p for p in procs if p.process.exitcode is None]
    if first == signal.SIGTERM:
        for p in alive:
            p.signal(signal.SIGTERM)
    deadline = time.time() + (5.0 if first == signal.SIGINT else 0.0)
    for p in alive:
        p.process.join(max(0.0, deadline - time.time()))
    for p in alive:
        p.signal(signal.SIGTERM)
    deadline = time.time() + grace_s
    for p in alive:
        p.process.join(max(0.0, deadline - time.time()))
    for p in alive:
        if p.process.exitcode is None:
            p.signal(signal.SIGKILL)
            p.process.join(5.0)


# -- where trials run -----------------------------------------------------------------------


class LocalExecutor:
    """Trials as processes on this machine, as many at once as ``cores`` allow: each trial
    reserves ``workers`` cores (a trial wider than the machine runs alone). Trials start in
    order."""

    label = "running"

    def __init__(self, cores: int | None = None):
        self.cores = int(cores or os.cpu_count() or 1)
        self.running: dict[str, TrialProcess] = {}

    def check(self, trials: list[Trial]) -> None:
        """Nothing to check: a trial wider than the machine runs alone."""

    def can_start(self, trial: Trial) -> bool:
        used = sum(_workers(p.trial) for p in self.running.values())
        return not self.running or used + _workers(trial) <= self.cores

    def start(self, trial: Trial, trial_dir: Path) -> None:
        self.running[trial.id] = TrialProcess(trial, trial_dir)

    def wait(self, timeout: float) -> list[tuple[str, Outcome]]:
        deadline = time.time() + timeout
        while True:
            done = [(tid, p.poll()) for tid, p in self.running.items()]
            done = [(tid, o) for tid, o in done if o is not None]
            if done or time.time() >= deadline:
                for tid, _ in done:
                    self.running.pop(tid).process.join()
                return done
            time.sleep(0.1)

    def stop(self, first: int) -> list[str]:
        ids = list(self.running)
        _stop_processes(list(self.running.values()), first)
        self.running.clear()
        return ids

    def close(self) -> None:
        pass


def _workers(trial: Trial) -> int:
    return int(build_config({**trial.settings, "quiet": True}).workers)


def _ray_trial(trial: Trial) -> dict[str, Any]:
    """A trial as a Ray task: run it in a temporary directory on the node that got it, and
    return the outcome with the run directory's files (``run.h5``, ``episodes.bin``,
    ``telemetry.bin``, ...: nodes share no file system). The lock file stays behind."""
    tmp = Path(tempfile.mkdtemp(prefix=f"nbasync-{trial.id}-"))
    try:
        outcome = run_trial_blocking(trial, tmp)
        log = tmp / LOG_FILE
        files = {
            f.name: f.read_bytes()
            for f in sorted(tmp.iterdir())
            if f.is_file() and f.name not in (LOCK_NAME, LOG_FILE)
        }
        return {
            "outcome": dataclasses.asdict(outcome),
            "files": files,
            "log": log.read_bytes()[-65536:] if log.is_file() else b"",
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RayExecutor:
    """Trials as Ray tasks, each reserving ``workers`` CPUs; Ray places them. ``address``:
    "auto", "HOST:PORT", or None to use a Ray instance this process already started."""

    label = "in flight"

    def __init__(self, address: str | None):
        try:
            import ray
        except ImportError:
            raise UserInputError(
                "--ray: Ray is not installed; install the extra: pip install 'nbasync[ray]'"
            ) from None
        self.ray = ray
        self.owns_connection = not ray.is_initialized()
        if self.owns_connection:
            try:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            except Exception as exc:  # noqa: BLE001 - ConnectionError and Ray's own
                raise RunFailedError(
                    f"cannot connect to the Ray cluster at {address}: {_one_line(exc)}"
                ) from None
        self.task = ray.remote(_ray_trial)
        self.in_flight: dict[Any, tuple[Trial, Path]] = {}
        cpus = [n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
        self.widest_node = int(max(cpus, default=0))

    def check(self, trials: list[Trial]) -> None:
        """Before anything starts: a trial no node can hold would wait forever."""
        for trial in trials:
            if _workers(trial) > self.widest_node:
                raise UserInputError(
                    f"trial {trial.id} needs {_workers(trial)} CPUs; the largest node of the "
                    f"Ray cluster has {self.widest_node}"
                )

    def can_start(self, trial: Trial) -> bool:
        return True

    def start(self, trial: Trial, trial_dir: Path) -> None:
        ref = self.task.options(num_cpus=_workers(trial), name=f"nbasync-{trial.id}").remote(trial)
        self.in_flight[ref] = (trial, trial_dir)

    def wait(self, timeout: float) -> list[tuple[str, Outcome]]:
        if not self.in_flight:
            time.sleep(timeout)
            return []
        ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=timeout)
        done = []
        for ref in ready:
            trial, trial_dir = self.in_flight.pop(ref)
            try:
                result = self.ray.get(ref)
            except self.ray.exceptions.RayTaskError as exc:  # the task itself raised (e.g.
                # nbasync missing on that node): it would again, so the trial failed
                cause = getattr(exc, "cause", None) or exc
                reason = f"Ray task raised {type(cause).__name__}: {_one_line(cause)}"
                done.append((trial.id, Outcome(1, reason, math.nan, "")))
                continue
            except Exception as exc:  # noqa: BLE001 - a lost node, a cancelled task: run again
                done.append((trial.id, Outcome(None, f"Ray: {_one_line(exc)}", math.nan, "")))
                continue
            for name, data in result["files"].items():
                _write_bytes(trial_dir / name, data)
            _write_bytes(trial_dir / LOG_FILE, result["log"])
            done.append((trial.id, Outcome(**result["outcome"])))
        return done

    def stop(self, first: int) -> list[str]:
        ids = [trial.id for trial, _ in self.in_flight.values()]
        for ref in self.in_flight:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref)
        self.in_flight.clear()
        return ids

    def close(self) -> None:
        if self.owns_connection:
            self.ray.shutdown()


# -- the state file and the summary ---------------------------------------------------------


def _write_bytes(path: Path, data: bytes) -> None:
    """Atomic: a temporary file in the same directory, fsynced, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, data: Any) -> None:
    _write_bytes(path, json.dumps(data, indent=1, sort_keys=True).encode())


@dataclass
class SweepState:
    """``sweep.json``: the spec and one record per trial; rewritten atomically on every
    change, so a sweep killed at any moment resumes from it."""

    out_dir: Path
    spec: SweepSpec
    records: dict[str, TrialRecord] = field(default_factory=dict)

    @classmethod
    def open(cls, out_dir: Path, spec: SweepSpec, trials: list[Trial]) -> SweepState:
        """The state in ``out_dir`` (created when new). A directory that holds a different
        sweep is refused rather than mixed."""
        path = out_dir / STATE_FILE
        fresh = {t.id: TrialRecord(t.id, _jsonable(t.settings)) for t in trials}
        if not path.exists():
            if out_dir.exists() and any(out_dir.iterdir()):
                raise UserInputError(f"--out {out_dir}: not empty and holds no sweep")
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserInputError(f"--out {out_dir}: cannot create: {_one_line(exc)}") from None
            state = cls(out_dir, spec, fresh)
            state.save()
            return state
        try:
            data = json.loads(path.read_text())
            if data.get("format") != STATE_FORMAT or data.get("version") != STATE_VERSION:
                raise ValueError("not an nbasync sweep state file of this version")
            stored = {r["id"]: TrialRecord.from_json(r) for r in data["trials"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserInputError(f"cannot read {path}: {_one_line(exc)}") from None
        if list(stored) != list(fresh):
            raise UserInputError(
                f"--out {out_dir} holds another sweep ({len(stored)} trials, this spec has "
                f"{len(fresh)}); use another --out"
            )
        for tid, record in stored.items():
            if record.settings != fresh[tid].settings:
                diff = sorted(
                    k for k in {*record.settings, *fresh[tid].settings}
                    if record.settings.get(k) != fresh[tid].settings.get(k)
                )  # fmt: skip
                raise UserInputError(
                    f"--out {out_dir} holds another sweep (trial {tid}: {diff[0]} differs); "
                    f"use another --out"
                )
        return cls(out_dir, spec, stored)

    def save(self) -> None:
        _write_json(
            self.out_dir / STATE_FILE,
            {
                "format": STATE_FORMAT,
                "version": STATE_VERSION,
                "spec": self.spec.to_json(),
                "trials": [r.to_json() for r in self.records.values()],
            },
        )

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys((PENDING, RUNNING, FINISHED, FAILED, INTERRUPTED), 0)
        for r in self.records.values():
            out[r.status] += 1
        return out

    def best(self) -> TrialRecord | None:
        scored = [
            r for r in self.records.values()
            if r.status == FINISHED and not math.isnan(r.final_mean)
        ]  # fmt: skip
        return max(scored, key=lambda r: r.final_mean, default=None)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def read_state(out_dir: str | Path) -> tuple[dict[str, Any], list[TrialRecord]]:
    """(spec as JSON, trial records) of the sweep in ``out_dir``, for reports and plots."""
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        raise UserInputError(f"no sweep at {out_dir} (no {STATE_FILE})")
    try:
        data = json.loads(path.read_text())
        return data["spec"], [TrialRecord.from_json(r) for r in data["trials"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserInputError(f"cannot read {path}: {_one_line(exc)}") from None


SUMMARY_METRICS = (
    "final_mean", "best_mean", "steps_to_target", "seconds_to_target", "steps", "episodes",
    "train_s", "wall_s",
)  # fmt: skip


def summary_rows(spec_json: dict[str, Any], records: list[TrialRecord]) -> list[dict[str, Any]]:
    """One flat row per trial: id, status, exit code, reason, every swept setting, the
    scores and times, and all settings as JSON."""
    swept = [*spec_json.get("grid", {}), *spec_json.get("sample", {})]
    if spec_json.get("repeats", 1) > 1 and "seed" not in swept:
        swept.append("seed")
    rows = []
    for r in records:
        row: dict[str, Any] = {"trial": r.id, "status": r.status}
        row["exit_code"] = r.exit_code if r.exit_code is not None else ""
        row["reason"] = r.reason
        for key in swept:
            row[key] = r.settings.get(key, "")
        for key in SUMMARY_METRICS:
            row[key] = getattr(r, key)
        row["host"] = r.host
        row["settings"] = json.dumps(r.settings, sort_keys=True)
        rows.append(row)
    return rows


def write_summary(out_dir: Path, spec_json: dict[str, Any], records: list[TrialRecord]) -> None:
    """``summary.csv`` and ``summary.h5`` (group ``trials``: one dataset per column, strings
    as UTF-8; attrs ``spec`` (JSON), ``target``, ``window``); both written atomically."""
    import h5py

    rows = summary_rows(spec_json, records)
    columns = list(rows[0]) if rows else ["trial"]
    tmp = out_dir / (SUMMARY_CSV + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    os.replace(tmp, out_dir / SUMMARY_CSV)

    tmp = out_dir / (SUMMARY_H5 + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["spec"] = json.dumps(spec_json, sort_keys=True)
        f.attrs["target"] = math.nan if spec_json.get("target") is None else spec_json["target"]
        f.attrs["window"] = spec_json.get("window", 100)
        group = f.create_group("trials")
        for col in columns:
            values = [row[col] for row in rows]
            group.create_dataset(col, data=_column(values))
    os.replace(tmp, out_dir / SUMMARY_H5)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, list):
        return json.dumps(value)
    return value


def _column(values: list[Any]) -> np.ndarray:
    import h5py

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if values and all(number(v) for v in values):
        return np.asarray(values, dtype=np.float64)
    text = [v if isinstance(v, str) else json.dumps(v) for v in values]
    return np.asarray(text, dtype=h5py.string_dtype())


# -- the sweep ------------------------------------------------------------------------------


@dataclass
class SweepResult:
    out_dir: Path
    counts: dict[str, int]
    best: TrialRecord | None

    def describe(self) -> str:
        c = self.counts
        total = sum(c.values())
        left = total - c[FINISHED] - c[FAILED]
        text = (
            f"sweep done: {c[FINISHED]} finished, {c[FAILED]} failed of {total} trials"
            + (f" ({left} not run: --only)" if left else "")
            + f"; summary {self.out_dir / SUMMARY_CSV} (and {SUMMARY_H5})"
        )
        if self.best is not None:
            text += f"\nbest final mean return {self.best.final_mean:.2f}: {self.best.id}"
        return text


class _Stopped(BaseException):
    """Ctrl-C or SIGTERM reached the sweep: stop the trials, keep the state, then propagate
    (KeyboardInterrupt, or SystemExit(143))."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Progress:
    """The sweep's live line: trials done / running / failed, and the best so far."""

    def __init__(self, state: SweepState, label: str, quiet: bool):
        self.state, self.label, self.quiet = state, label, quiet
        self._last = ""
        self._last_time = 0.0
        self._width = 0

    def line(self) -> str:
        c = self.state.counts()
        total = sum(c.values())
        text = f"sweep: {c[FINISHED]}/{total} done, {c[RUNNING]} {self.label}, {c[FAILED]} failed"
        best = self.state.best()
        if best is not None:
            swept = "".join(f" {k}={_short(best.settings.get(k))}" for k in self.state.spec.swept)
            text += f" | best final mean {best.final_mean:.2f} ({best.id}{swept})"
        return text

    def show(self, final: bool = False) -> None:
        """On a terminal: the line rewritten in place whenever it changes. Otherwise (a log
        file): a line when a trial ends, and once a minute as a sign of life."""
        if self.quiet:
            return
        text = self.line()
        tty = sys.stderr.isatty()
        c = self.state.counts()
        key = text if tty else f"{c[FINISHED]} {c[FAILED]}"
        now = time.time()
        if key == self._last and (now - self._last_time < 60 or final) and not (final and tty):
            return
        self._last, self._last_time = key, now
        if tty:
            print("\r" + text.ljust(self._width), end="\n" if final else "", file=sys.stderr)
            self._width = len(text)
        else:
            print(text, file=sys.stderr)
        sys.stderr.flush()


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    executor: LocalExecutor | RayExecutor | None = None,
    retry_failed: bool = False,
    quiet: bool = False,
    on_record: Callable[[TrialRecord], None] | None = None,
    only: dict[str, list[str]] | None = None,
) -> SweepResult:
    """Run every trial of ``spec`` that has no result in ``out_dir`` yet.

    Finished trials (record + run file) are skipped; failed ones too unless
    ``retry_failed``; interrupted, running or pending ones are cleared and run from the
    start. Ctrl-C / SIGTERM stop the running trials (recorded as interrupted), save the
    state and propagate (KeyboardInterrupt / SystemExit(143)). ``only``: run just the
    trials whose settings take one of the given values (``{"workers": ["1", "2"]}``); the
    others keep their records, so the same ``out_dir`` can be completed later.
    """
    out = Path(out_dir)
    executor = executor or LocalExecutor()
    try:
        return _run_trials(spec, out, executor, retry_failed, quiet, on_record, only or {})
    finally:
        executor.close()


def _run_trials(spec, out, executor, retry_failed, quiet, on_record, only) -> SweepResult:
    trials = expand(spec)
    check_only(only)
    state = SweepState.open(out, spec, trials)
    todo = []
    for trial in trials:
        record = state.records[trial.id]
        if not selected(trial, only):
            continue
        done = record.status == FINISHED and (out / trial.id / FILE_NAME).is_file()
        if done or (record.status == FAILED and not retry_failed):
            continue
        record.status = PENDING
        todo.append(trial)
    executor.check(todo)
    state.save()
    progress = Progress(state, executor.label, quiet)
    # The handlers only note the signal; the loop acts on it between two short waits. An
    # exception raised inside a signal handler could land inside Ray's compiled wait.
    signals: list[int] = []
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    if in_main:
        for sig in previous:
            signal.signal(sig, lambda signum, frame: signals.append(signum))
    try:
        pending = list(todo)
        running = 0
        while pending or running:
            if signals:
                raise _Stopped(signals[0])
            while pending and executor.can_start(pending[0]):
                trial = pending.pop(0)
                trial_dir = out / trial.id
                shutil.rmtree(trial_dir, ignore_errors=True)
                trial_dir.mkdir(parents=True)
                executor.start(trial, trial_dir)
                state.records[trial.id].status = RUNNING
                running += 1
                state.save()
            progress.show()
            for tid, outcome in executor.wait(timeout=1.0):
                running -= 1
                record = _record_outcome(state.records[tid], out / tid, outcome, spec)
                state.save()
                write_summary(out, spec.to_json(), list(state.records.values()))
                if on_record is not None:
                    on_record(record)
                progress.show()
        if signals:
            raise _Stopped(signals[0])
    except (KeyboardInterrupt, _Stopped) as exc:
        first = exc.signum if isinstance(exc, _Stopped) else signal.SIGINT
        for tid in executor.stop(first):
            record = state.records[tid]
            record.status, record.reason = INTERRUPTED, "the sweep was stopped"
        state.save()
        write_summary(out, spec.to_json(), list(state.records.values()))
        progress.show(final=True)
        if first == signal.SIGTERM:
            raise SystemExit(143) from None
        raise KeyboardInterrupt from None
    finally:
        if in_main:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    write_summary(out, spec.to_json(), list(state.records.values()))
    progress.show(final=True)
    return SweepResult(out, state.counts(), state.best())


def _record_outcome(
    record: TrialRecord, trial_dir: Path, outcome: Outcome, spec: SweepSpec
) -> TrialRecord:
    record.exit_code = outcome.exit_code
    record.reason = outcome.reason
    record.wall_s = outcome.wall_s
    record.host = outcome.host
    if outcome.exit_code is None:  # the task never reported (a lost Ray node): run again
        record.status = INTERRUPTED
    elif outcome.exit_code == 0:
        record.status = FINISHED
    else:
        record.status = FAILED
    if (trial_dir / FILE_NAME).is_file():
        try:
            for key, value in measure(trial_dir, spec.window, spec.target).items():
                setattr(record, key, value)
        except RunFileError as exc:
            record.status = FAILED
            record.reason = record.reason or f"unreadable run file: {_one_line(exc)}"
    elif record.status == FINISHED:
        record.status, record.reason = FAILED, "the trial wrote no run file"
    if record.status == FAILED and record.exit_code == 0:
        record.exit_code = EXIT_RUN_FAILED
    return record
