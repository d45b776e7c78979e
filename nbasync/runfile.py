"""The run directory's files: ``run.h5`` (checkpoints), ``episodes.bin`` (the episode log),
``telemetry.bin`` (gradient telemetry, only with ``--telemetry-every``) and ``run.lock``
(who is running it).

Owns: the on-disk layout (see docs/runfile.md), the config and parameter layout of a run,
its last ``keep`` checkpoints, its episode log, and the lock that keeps a second process
off a directory in use. A leaf module: numpy, h5py, stdlib (and the leaves ``errors`` and
``machine``).

``run.h5`` is replaced atomically at every write (``create``, ``write_checkpoint``): the new
file is built in memory (h5py on a BytesIO), written to ``run.h5.tmp`` with plain
``os.write``, fsynced, and ``os.replace``d onto ``run.h5``. A process killed at any instant
leaves the previous ``run.h5`` or the new one, never a half-written file; a full disk is an
``OSError`` from ``os.write`` (never an h5py error inside the HDF5 library), reported as
``RunWriteError`` with the previous file intact. It holds no episodes, so it stays small.

The episode log is appended, never rewritten: ``append_episode`` buffers a few rows and
writes them at the end of ``episodes.bin`` (at least every second, and at every checkpoint);
nothing of the log is kept in memory. Rows are stored in arrival order; ``episodes()``
returns them sorted by global step. ``telemetry.bin`` follows the same pattern
(``append_telemetry``, ``telemetry()``); its rows have one column per parameter tensor of
the run's layout, so the row size is fixed per run and written in the file's header.

Failures to read a file, or to write one for a reason the user controls (permissions, a
path that is a file), are ``RunFileError`` (bad input, exit 2); a write that fails for any
other reason (disk full, I/O error) is ``RunWriteError`` (a run failure, exit 3). No h5py
traceback escapes. Bad arguments (wrong parameter count, ...) are ``ValueError``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import RunFailedError, UserInputError
from .machine import describe_machine

__all__ = [
    "FILE_NAME",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "DEFAULT_KEEP",
    "EPISODE_DTYPE",
    "Checkpoint",
    "RunFile",
    "RunFileError",
    "RunLock",
    "RunLockedError",
    "RunWriteError",
    "lock_run_dir",
    "make_run_dir",
    "read_episode_log",
    "read_telemetry_log",
    "telemetry_dtype",
    "TELEMETRY_LOG_NAME",
]

FILE_NAME = "run.h5"
EPISODE_LOG_NAME = "episodes.bin"
LOCK_NAME = "run.lock"
FORMAT_NAME = "nbasync-run"
FORMAT_VERSION = 2
#: Versions ``open`` reads. Version 1 kept the episode log inside run.h5 (rewritten at
#: every write); the first write of a version-1 run moves it to episodes.bin.
READABLE_VERSIONS = (1, 2)
DEFAULT_KEEP = 5

#: One row of the episode log. ``wall_time`` is seconds since the run started (continuing
#: across resumes), not a Unix time.
EPISODE_DTYPE = np.dtype(
    [
        ("worker", "<i8"),
        ("global_step", "<i8"),
        ("wall_time", "<f8"),
        ("return", "<f8"),
        ("length", "<i8"),
    ]
)
#: First bytes of episodes.bin; rows of EPISODE_DTYPE (40 bytes, little-endian) follow.
EPISODE_LOG_MAGIC = b"nbasync-episodes v1\n".ljust(64, b"\0")
#: ``append_episode`` writes its buffer once it holds this many rows or is this old.
_FLUSH_ROWS = 256
_FLUSH_S = 1.0

TELEMETRY_LOG_NAME = "telemetry.bin"
_TELEMETRY_MAGIC = b"nbasync-telemetry v1"
_TELEMETRY_HEADER = 64


def telemetry_dtype(n_layers: int) -> np.dtype:
    """One row of ``telemetry.bin``: one recorded update of one worker (see docs/runfile.md).

    ``grad_norm``/``update_ratio`` hold one value per parameter tensor, in the order of the
    run's ``param_layout``; the ``window_*`` fields summarise every update of this worker
    since its previous row (this one included), so rates stay exact when K > 1.
    """
    L = int(n_layers)
    if L < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    return np.dtype(
        [
            ("global_step", "<i8"),  # T when the update was written (or skipped)
            ("worker", "<i4"),
            ("skipped", "u1"),  # 1: the gradient was not finite, nothing was written
            ("clipped", "u1"),  # 1: global_norm > grad_clip, the gradient was scaled
            ("_pad", "u1", (2,)),
            ("update", "<i8"),  # this worker's update count (applied + skipped), from 1
            ("wall_time", "<f8"),  # seconds since the run started (across resumes)
            ("staleness", "<i8"),  # updates by other workers between sync and write
            ("global_norm", "<f8"),  # pre-clip L2 norm of the whole gradient
            ("lr", "<f8"),  # learning rate of this update
            ("window_updates", "<i4"),
            ("window_clipped", "<i4"),
            ("window_skipped", "<i4"),
            ("window_staleness_max", "<i4"),
            ("window_staleness_mean", "<f8"),
            ("grad_norm", "<f4", (L,)),  # per tensor, pre-clip
            ("update_ratio", "<f4", (L,)),  # per tensor ||delta theta|| / ||theta'||
        ]
    )


def _telemetry_header(n_layers: int) -> bytes:
    line = _TELEMETRY_MAGIC + f" layers={int(n_layers)}\n".encode()
    return line.ljust(_TELEMETRY_HEADER, b"\0")


def read_telemetry_log(path) -> np.ndarray | None:
    """The rows of a ``telemetry.bin`` in the order they were written, or None when the run
    recorded none (no file). A partial last row (a crash mid-write) is ignored."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunFileError(f"cannot read telemetry log {path}: {_one_line(exc)}") from None
    head = data[:_TELEMETRY_HEADER]
    try:
        if not head.startswith(_TELEMETRY_MAGIC) or len(head) < _TELEMETRY_HEADER:
            raise ValueError
        n_layers = int(head.split(b"layers=")[1].split(b"\n")[0])
    except (ValueError, IndexError):
        raise RunFileError(f"{path} is not an nbasync telemetry log") from None
    dtype = telemetry_dtype(n_layers)
    body = data[_TELEMETRY_HEADER:]
    return np.frombuffer(body, dtype, count=len(body) // dtype.itemsize).copy()


_CKPT_GROUP = "checkpoints"
_STEP_WIDTH = 12


class RunFileError(UserInputError):
    """A run file is missing, unreadable, corrupt, incompatible, or cannot be written for a
    reason the user controls (permissions, a path that is not a directory)."""


class RunLockedError(RunFileError):
    """The run directory is in use by another process (bad input: exit 2)."""


class RunWriteError(RunFailedError):
    """A write to the run directory failed (disk full, I/O error): the run stops with one
    line and exit code 3; the previous ``run.h5`` and the episodes logged so far are kept."""


#: errno values of a write the user can fix by choosing another path (RunFileError).
_INPUT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR})


def _write_error(what: str, exc: BaseException) -> Exception:
    """RunFileError for a path the user chose badly, RunWriteError for anything else."""
    message = f"cannot write {what}: {_one_line(exc)}"
    if isinstance(exc, OSError) and exc.errno in _INPUT_ERRNOS:
        return RunFileError(message)
    return RunWriteError(message)


@dataclass
class Checkpoint:
    """Everything needed to continue a run from global step ``step``.

    ================  ==========================================================
    step              global agent-step counter T at the checkpoint
    params            flat parameter vector (dtype as written, usually float32)
    opt_stats         named flat optimiser arrays, e.g. {"g": shared RMSProp g}
    worker_steps      per-worker step counters, int64, shape (n_workers,)
    elapsed_s         training wall time so far, seconds (summed over resumes)
    rng_state         named arrays or JSON values (e.g. bit-generator states)
    n_episodes        episodes in the log when the checkpoint was written
    saved_at          Unix time of the write
    norm_moments      named running moments [count, mean, M2] of the observations
                      ("obs") and the discounted return ("return") when the run
                      normalises them (``nbasync.normalise``); empty otherwise
    machine           the machine that wrote it (``nbasync.machine``); "" in files
                      written before it was recorded
    ================  ==========================================================
    """

    step: int
    params: np.ndarray
    opt_stats: dict[str, np.ndarray] = field(default_factory=dict)
    worker_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    elapsed_s: float = 0.0
    rng_state: dict[str, Any] = field(default_factory=dict)
    n_episodes: int = 0
    saved_at: float = 0.0
    norm_moments: dict[str, np.ndarray] = field(default_factory=dict)
    machine: str = ""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _step_name(step: int) -> str:
    return f"{int(step):0{_STEP_WIDTH}d}"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


def _layout_n_params(layout: list[tuple[str, int, tuple[int, ...]]]) -> int:
    return max((off + math.prod(shape) for _, off, shape in layout), default=0)


def _normalise_layout(param_layout) -> list[tuple[str, int, tuple[int, ...]]]:
    out = []
    for entry in param_layout:
        name, offset, shape = entry
        out.append((str(name), int(offset), tuple(int(s) for s in shape)))
    return out


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable; some filesystems refuse fsync on a directory."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is out (a short write is retried, an error raised)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path.tmp``, fsync, rename onto ``path``: all or nothing.
    Raises OSError (the tmp file removed, ``path`` untouched)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _write_string(group: h5py.Group, name: str, text: str) -> None:
    group.create_dataset(name, data=text, dtype=h5py.string_dtype("utf-8"))


def _read_string(group: h5py.Group, name: str) -> str:
    value = group[name][()]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_episode_log(path) -> np.ndarray:
    """The rows of an ``episodes.bin`` in the order they were written (a missing file is an
    empty log; a partial last row, left by a crash mid-write, is ignored)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return np.zeros(0, EPISODE_DTYPE)
    except OSError as exc:
        raise RunFileError(f"cannot read episode log {path}: {_one_line(exc)}") from None
    if not data:
        return np.zeros(0, EPISODE_DTYPE)
    if not data.startswith(EPISODE_LOG_MAGIC):
        raise RunFileError(f"{path} is not an nbasync episode log")
    body = data[len(EPISODE_LOG_MAGIC) :]
    n = len(body) // EPISODE_DTYPE.itemsize
    return np.frombuffer(body, EPISODE_DTYPE, count=n).copy()


def make_run_dir(out_dir) -> Path:
    """Create ``out_dir`` and its parents (``RunFileError`` naming it when impossible)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFileError(f"cannot create run directory {out}: {_one_line(exc)}") from None
    if not out.is_dir():
        raise RunFileError(f"cannot create run directory {out}: not a directory")
    return out


# ------------------------------------------------------------------------- run lock


class RunLock:
    """An exclusive ``flock`` on ``<run dir>/run.lock``, held while a run uses the directory.

    The kernel releases it when its process ends in any way (SIGKILL included), so a dead
    run never leaves a stale lock; the file itself stays and holds the last holder's pid.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def lock_run_dir(run_dir) -> RunLock:
    """Claim ``run_dir`` (which must exist) for this process, or raise ``RunLockedError``
    naming the pid of the process that holds it. Never waits."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise _write_error(f"lock file {path}", exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise RunLockedError(
            f"{run_dir} is in use by another run (pid {holder}); wait for it to end, or "
            f"stop it, then try again"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the lock holds without the pid; the message then says "unknown"
    return RunLock(path, fd)


class RunFile:
    """One run's files. Create with ``RunFile.create``, reopen with ``RunFile.open``.

    The object holds the config and layout; checkpoints and episodes are read from disk on
    demand, so its memory does not grow with the run. It is meant for one writer (the
    training parent, holding the directory's ``RunLock``); readers (plots, evaluation) may
    open the files at any time, even during training.
    """

    def __init__(
        self,
        path: Path,
        config: dict,
        layout: list[tuple[str, int, tuple[int, ...]]],
        keep: int,
        created_at: float,
        n_logged: int,
        legacy_episodes: np.ndarray | None = None,
    ) -> None:
        self.path = Path(path)
        self._config = config
        self._layout = layout
        self.keep = keep
        self._created_at = created_at
        self._n_logged = n_logged  # rows in episodes.bin
        self._legacy = legacy_episodes  # a version-1 file's log, until it is migrated
        self._pending: list[tuple] = []
        self._last_flush = time.monotonic()
        self._log_fd: int | None = None
        self._tele_pending: list[bytes] = []
        self._tele_fd: int | None = None

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(
        cls,
        out_dir,
        config: dict,
        param_layout,
        keep: int = DEFAULT_KEEP,
        overwrite: bool = False,
    ) -> RunFile:
        """Create ``out_dir`` (and parents), a fresh ``run.h5`` and an empty episode log.

        ``param_layout`` is ``net.layout``: a list of ``(name, offset, shape)``. An existing
        run file is an error unless ``overwrite``, or unless it holds no checkpoint and no
        episode (a run killed before anything was saved: nothing to lose, reuse it).
        """
        if int(keep) < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        try:
            _to_json(config)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"config is not JSON serialisable: {_one_line(exc)}") from None
        out = Path(out_dir)
        if not overwrite:
            cls.check_creatable(out)
        make_run_dir(out)
        path = out / FILE_NAME
        rf = cls(
            path,
            json.loads(_to_json(config)),
            _normalise_layout(param_layout),
            int(keep),
            time.time(),
            n_logged=0,
        )
        try:
            _replace_atomically(out / EPISODE_LOG_NAME, EPISODE_LOG_MAGIC)
            with contextlib.suppress(FileNotFoundError):  # left by a run that saved nothing
                (out / TELEMETRY_LOG_NAME).unlink()
        except OSError as exc:
            raise _write_error(f"episode log {out / EPISODE_LOG_NAME}", exc) from None
        rf._write(new_ckpt=None, fresh=True)
        return rf

    @classmethod
    def check_creatable(cls, out_dir) -> None:
        """Raise ``RunFileError`` if ``out_dir`` holds a run file with a checkpoint or an
        episode (or one that cannot be read). A run file holding neither, left by a run
        killed before anything was saved, may be replaced: nothing is lost."""
        path = Path(out_dir) / FILE_NAME
        if not path.exists():
            return
        try:
            rf = cls.open(path)
            if not rf.checkpoint_steps() and rf.n_episodes == 0:
                return
        except RunFileError:
            pass
        raise RunFileError(
            f"a run file already exists at {path} (resume it, or choose another out dir)"
        )

    @classmethod
    def open(cls, out_dir_or_file, keep: int | None = None) -> RunFile:
        """Open an existing run (a run directory or the ``run.h5`` itself) for reading
        and continuing. ``keep`` overrides the number of checkpoints kept from now on."""
        p = Path(out_dir_or_file)
        path = p / FILE_NAME if p.is_dir() else p
        if not path.is_file():
            raise RunFileError(f"no run file at {path}")
        legacy = None
        try:
            with h5py.File(path, "r") as f:
                fmt = f.attrs.get("format")
                if isinstance(fmt, bytes):
                    fmt = fmt.decode()
                if fmt != FORMAT_NAME:
                    raise RunFileError(f"{path} is not an nbasync run file")
                version = int(f.attrs.get("format_version", -1))
                if version not in READABLE_VERSIONS:
                    raise RunFileError(
                        f"{path} has run-file format version {version}; "
                        f"this nbasync reads versions {', '.join(map(str, READABLE_VERSIONS))}"
                    )
                config = json.loads(_read_string(f, "config"))
                layout = _normalise_layout(json.loads(_read_string(f, "param_layout")))
                if version == 1:
                    legacy = np.asarray(f["episodes"][()], dtype=EPISODE_DTYPE)
                stored_keep = int(f.attrs["keep"])
                created_at = float(f.attrs["created_at"])
                for name in f[_CKPT_GROUP]:  # touch every checkpoint's metadata
                    int(f[_CKPT_GROUP][name].attrs["step"])
        except RunFileError:
            raise
        except Exception as exc:  # h5py raises OSError/KeyError/ValueError/... on bad files
            raise RunFileError(f"cannot read run file {path}: {_one_line(exc)}") from None
        if keep is not None and int(keep) < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        n_logged = 0
        if legacy is None:
            log = path.parent / EPISODE_LOG_NAME
            with contextlib.suppress(FileNotFoundError):
                size = log.stat().st_size - len(EPISODE_LOG_MAGIC)
                n_logged = max(size, 0) // EPISODE_DTYPE.itemsize
        return cls(
            path,
            config,
            layout,
            int(keep) if keep is not None else stored_keep,
            created_at,
            n_logged,
            legacy,
        )

    # ------------------------------------------------------------------ metadata
    def config(self) -> dict:
        """The run's config, as the dict given to ``create`` (after a JSON round trip:
        tuples come back as lists)."""
        return json.loads(json.dumps(self._config))

    def param_layout(self) -> list[tuple[str, int, tuple[int, ...]]]:
        """``[(name, offset, shape), ...]`` as given to ``create``."""
        return list(self._layout)

    @property
    def n_params(self) -> int:
        return _layout_n_params(self._layout)

    @property
    def out_dir(self) -> Path:
        return self.path.parent

    def check_compatible(
        self,
        config: dict,
        param_layout=None,
        may_differ: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        """Raise ``RunFileError`` naming the first differing setting if a run with
        ``config`` (and ``param_layout``, when given) cannot continue this run.

        Keys in ``may_differ`` are not compared (which settings a resumed run may change is
        ``config.RESUMABLE``'s business); a key present on one side only differs.
        """
        stored = self._config
        new = json.loads(_to_json(config))
        for key in sorted(set(stored) | set(new)):
            if key in may_differ:
                continue
            if key not in stored:
                raise RunFileError(f"cannot resume {self.out_dir}: setting {key!r} is new")
            if key not in new:
                raise RunFileError(f"cannot resume {self.out_dir}: setting {key!r} is missing")
            if stored[key] != new[key]:
                raise RunFileError(
                    f"cannot resume {self.out_dir}: {key} differs "
                    f"(run file {stored[key]!r}, now {new[key]!r})"
                )
        if param_layout is None:
            return
        layout = _normalise_layout(param_layout)
        n_new = _layout_n_params(layout)
        if n_new != self.n_params:
            raise RunFileError(
                f"cannot resume {self.out_dir}: n_params differs "
                f"(run file {self.n_params}, now {n_new})"
            )
        if layout != self._layout:
            for old_e, new_e in zip(self._layout, layout, strict=False):
                if old_e != new_e:
                    raise RunFileError(
                        f"cannot resume {self.out_dir}: network shape differs at "
                        f"{old_e[0]!r} (run file {old_e[1:]}, now {new_e[0]!r} {new_e[1:]})"
                    )
            raise RunFileError(
                f"cannot resume {self.out_dir}: network has {len(layout)} parameter tensors, "
                f"run file has {len(self._layout)}"
            )

    # ------------------------------------------------------------------ episodes
    @property
    def log_path(self) -> Path:
        return self.path.parent / EPISODE_LOG_NAME

    @property
    def n_episodes(self) -> int:
        """Episodes logged so far (on disk and buffered)."""
        stored = len(self._legacy) if self._legacy is not None else self._n_logged
        return stored + len(self._pending)

    def append_episode(
        self, worker: int, global_step: int, wall_time: float, ret: float, length: int
    ) -> None:
        """Log one finished episode. It is appended to ``episodes.bin`` with the next
        ``_FLUSH_ROWS`` rows or within about a second (and by every checkpoint, ``save``
        and ``close``). A failed write raises ``RunWriteError`` (or ``RunFileError``)."""
        self._pending.append(
            (int(worker), int(global_step), float(wall_time), float(ret), int(length))
        )
        if len(self._pending) >= _FLUSH_ROWS or time.monotonic() - self._last_flush >= _FLUSH_S:
            self.flush_episodes()

    def episodes(self, by_step: bool = True) -> np.ndarray:
        """All episodes (on disk and buffered), a structured array of ``EPISODE_DTYPE``
        (fields worker, global_step, wall_time, return, length). ``by_step``: sorted by
        global step (stable); else in the order they were logged. Workers report episodes
        as they end, so the logged order has small decreases of the global step."""
        legacy = self._legacy
        stored = legacy if legacy is not None else read_episode_log(self.log_path)
        rows = stored
        if self._pending:
            rows = np.concatenate([stored, np.array(self._pending, dtype=EPISODE_DTYPE)])
        elif self._legacy is not None:
            rows = stored.copy()
        if by_step:
            rows = rows[np.argsort(rows["global_step"], kind="stable")]
        return rows

    def flush_episodes(self, sync: bool = False) -> None:
        """Append the buffered episodes to ``episodes.bin`` (and fsync with ``sync``)."""
        self._last_flush = time.monotonic()
        if self._legacy is not None:
            self._migrate_legacy()
        self._flush_telemetry(sync)  # the same rhythm for the telemetry log
        if not self._pending and not sync:
            return
        fd = self._open_log()
        data = np.array(self._pending, dtype=EPISODE_DTYPE).tobytes()
        end = len(EPISODE_LOG_MAGIC) + self._n_logged * EPISODE_DTYPE.itemsize
        try:
            _write_all(fd, data)
            if sync:
                os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)  # no partial row stays behind a failed append
            raise _write_error(f"episode log {self.log_path}", exc) from None
        self._n_logged += len(self._pending)
        self._pending = []

    def _open_log(self) -> int:
        """The log's descriptor, opened for appending once; cuts a partial last row (a
        crash mid-append) so that new rows stay aligned."""
        if self._log_fd is not None:
            return self._log_fd
        path = self.log_path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            size = os.fstat(fd).st_size
            if size < len(EPISODE_LOG_MAGIC):
                os.ftruncate(fd, 0)
                _write_all(fd, EPISODE_LOG_MAGIC)
                self._n_logged = 0
            else:
                rows = (size - len(EPISODE_LOG_MAGIC)) // EPISODE_DTYPE.itemsize
                os.ftruncate(fd, len(EPISODE_LOG_MAGIC) + rows * EPISODE_DTYPE.itemsize)
                self._n_logged = rows
        except OSError as exc:
            raise _write_error(f"episode log {path}", exc) from None
        self._log_fd = fd
        return fd

    def _migrate_legacy(self) -> None:
        """Version 1 -> 2: the log goes to episodes.bin (written whole, atomically), then
        run.h5 is rewritten without it. A crash in between leaves a readable version 1."""
        rows = self._legacy
        try:
            _replace_atomically(self.log_path, EPISODE_LOG_MAGIC + rows.tobytes())
        except OSError as exc:
            raise _write_error(f"episode log {self.log_path}", exc) from None
        self._legacy = None
        self._n_logged = len(rows)
        self._write(new_ckpt=None)

    # ------------------------------------------------------------------ telemetry
    @property
    def telemetry_path(self) -> Path:
        return self.path.parent / TELEMETRY_LOG_NAME

    def layer_names(self) -> list[str]:
        """Names of the parameter tensors, the order of telemetry's per-layer columns."""
        return [name for name, _, _ in self._layout]

    def append_telemetry(self, rows: np.ndarray) -> None:
        """Log telemetry rows (``telemetry_dtype(len(layout))``). Appended to
        ``telemetry.bin`` within about a second, and by every checkpoint, ``save``, ``close``."""
        rows = np.asarray(rows)
        if rows.dtype != telemetry_dtype(len(self._layout)):
            raise ValueError(f"telemetry rows have dtype {rows.dtype}, not this run's row type")
        self._tele_pending.append(rows.tobytes())
        if time.monotonic() - self._last_flush >= _FLUSH_S:
            self.flush_episodes()

    def telemetry(self) -> np.ndarray | None:
        """Every telemetry row (on disk and buffered) in the order logged, or None when the
        run recorded no telemetry. Fields: see ``telemetry_dtype``; per-layer columns are
        2-D, ordered as ``layer_names()``."""
        rows = read_telemetry_log(self.telemetry_path)
        if self._tele_pending:
            dtype = telemetry_dtype(len(self._layout))
            buffered = np.frombuffer(b"".join(self._tele_pending), dtype)
            rows = buffered.copy() if rows is None else np.concatenate([rows, buffered])
        return rows

    def _flush_telemetry(self, sync: bool) -> None:
        if not self._tele_pending and self._tele_fd is None:
            return
        dtype = telemetry_dtype(len(self._layout))
        path = self.telemetry_path
        try:
            if self._tele_fd is None:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                self._tele_fd = fd
                size = os.fstat(fd).st_size
                if size < _TELEMETRY_HEADER:
                    os.ftruncate(fd, 0)
                    _write_all(fd, _telemetry_header(len(self._layout)))
                else:  # cut a partial last row so new rows stay aligned
                    rows = (size - _TELEMETRY_HEADER) // dtype.itemsize
                    os.ftruncate(fd, _TELEMETRY_HEADER + rows * dtype.itemsize)
            fd = self._tele_fd
            end = os.fstat(fd).st_size
            data = b"".join(self._tele_pending)
            try:
                _write_all(fd, data)
                if sync:
                    os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, end)
                raise
        except OSError as exc:
            raise _write_error(f"telemetry log {path}", exc) from None
        self._tele_pending = []

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_steps(self) -> list[int]:
        """Steps of the stored checkpoints, ascending."""
        try:
            with h5py.File(self.path, "r") as f:
                return sorted(int(f[_CKPT_GROUP][n].attrs["step"]) for n in f[_CKPT_GROUP])
        except Exception as exc:
            raise RunFileError(f"cannot read run file {self.path}: {_one_line(exc)}") from None

    def latest_checkpoint(self) -> Checkpoint | None:
        """The checkpoint with the highest step, or None if there is none yet."""
        steps = self.checkpoint_steps()
        return self.load_checkpoint(steps[-1]) if steps else None

    def load_checkpoint(self, step: int | None = None) -> Checkpoint:
        """The checkpoint at ``step`` (default: the latest). Missing → ``RunFileError``."""
        if step is None:
            steps = self.checkpoint_steps()
            if not steps:
                raise RunFileError(f"no checkpoint in {self.path}")
            step = steps[-1]
        try:
            with h5py.File(self.path, "r") as f:
                name = _step_name(step)
                if name not in f[_CKPT_GROUP]:
                    have = sorted(int(n) for n in f[_CKPT_GROUP])
                    raise RunFileError(f"no checkpoint at step {step} in {self.path} (have {have})")
                return self._read_checkpoint(f[_CKPT_GROUP][name])
        except RunFileError:
            raise
        except Exception as exc:
            raise RunFileError(
                f"cannot read checkpoint {step} from {self.path}: {_one_line(exc)}"
            ) from None

    @staticmethod
    def _read_checkpoint(g: h5py.Group) -> Checkpoint:
        rng: dict[str, Any] = {}
        for key, ds in g["rng_state"].items():
            if ds.attrs.get("json", False):
                rng[key] = json.loads(_read_string(g["rng_state"], key))
            else:
                rng[key] = ds[()]
        return Checkpoint(
            step=int(g.attrs["step"]),
            params=g["params"][()],
            opt_stats={k: v[()] for k, v in g["opt_stats"].items()},
            worker_steps=np.asarray(g["worker_steps"][()], dtype=np.int64),
            elapsed_s=float(g.attrs["elapsed_s"]),
            rng_state=rng,
            n_episodes=int(g.attrs["n_episodes"]),
            saved_at=float(g.attrs["saved_at"]),
            norm_moments={k: v[()] for k, v in g["norm"].items()} if "norm" in g else {},
            machine=_as_str(g.attrs.get("machine", "")),
        )

    def write_checkpoint(
        self,
        step: int,
        params: np.ndarray,
        opt_stats: dict[str, np.ndarray] | None = None,
        worker_steps: np.ndarray | None = None,
        elapsed_s: float = 0.0,
        rng_state: dict[str, Any] | None = None,
        norm_moments: dict[str, np.ndarray] | None = None,
    ) -> Checkpoint:
        """Add a checkpoint at global step ``step`` (replacing one at the same step), drop
        all but the newest ``keep``, and atomically replace run.h5 (buffered episodes are
        appended to the log first). Arrays are copied at the call, so the caller may keep
        training. A failed write raises ``RunWriteError``; the previous run.h5 stays.

        ``rng_state`` values that are numpy arrays are stored as datasets; anything else
        must be JSON-serialisable (bit-generator state dicts are) and comes back as JSON
        (tuples as lists).
        """
        params = np.array(params, copy=True)
        if params.ndim != 1 or params.size != self.n_params:
            raise ValueError(
                f"params must be a flat array of {self.n_params} values, got shape {params.shape}"
            )
        stats = {str(k): np.array(v, copy=True) for k, v in (opt_stats or {}).items()}
        ws = np.array(worker_steps if worker_steps is not None else [], dtype=np.int64)
        rng = {}
        for k, v in (rng_state or {}).items():
            if isinstance(v, np.ndarray):
                rng[str(k)] = np.array(v, copy=True)
            else:
                try:
                    rng[str(k)] = _to_json(v)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"rng_state[{k!r}]: {_one_line(exc)}") from None
        self.flush_episodes(sync=True)  # the log holds every episode the checkpoint counts
        n_episodes = self.n_episodes
        ckpt = Checkpoint(
            step=int(step),
            params=params,
            opt_stats=stats,
            worker_steps=ws.reshape(-1),
            elapsed_s=float(elapsed_s),
            rng_state=rng,
            n_episodes=n_episodes,
            saved_at=time.time(),
            norm_moments={
                str(k): np.array(v, dtype=np.float64, copy=True)
                for k, v in (norm_moments or {}).items()
            },
            machine=describe_machine(),
        )
        self._write(new_ckpt=ckpt)
        ckpt.rng_state = {k: (json.loads(v) if isinstance(v, str) else v) for k, v in rng.items()}
        return ckpt

    # ------------------------------------------------------------------ writing
    def save(self) -> None:
        """Append buffered episodes to the log and fsync it (checkpoints are untouched)."""
        self.flush_episodes(sync=True)

    def close(self) -> None:
        """Persist buffered episodes and close the log. The object stays usable."""
        try:
            if self._pending or self._tele_pending or self._legacy is not None:
                self.save()
        finally:
            for attr in ("_log_fd", "_tele_fd"):
                if getattr(self, attr) is not None:
                    with contextlib.suppress(OSError):
                        os.close(getattr(self, attr))
                    setattr(self, attr, None)

    def __enter__(self) -> RunFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        for attr in ("_log_fd", "_tele_fd"):
            if getattr(self, attr, None) is not None:
                with contextlib.suppress(OSError):
                    os.close(getattr(self, attr))

    def _write(self, new_ckpt: Checkpoint | None, fresh: bool = False) -> None:
        """Replace run.h5 atomically: build the new file in memory, then write it with
        ``os.write`` (a full disk fails there, cleanly, not inside the HDF5 library)."""
        if self._legacy is not None and not fresh:
            self._migrate_legacy()  # a version-2 run.h5 must not lose the v1 log
        try:
            image = io.BytesIO()
            with h5py.File(image, "w") as dst:
                self._write_contents(dst, new_ckpt, fresh)
            data = image.getvalue()
        except Exception as exc:
            raise RunFileError(f"cannot update run file {self.path}: {_one_line(exc)}") from None
        try:
            _replace_atomically(self.path, data)
        except OSError as exc:
            raise _write_error(f"run file {self.path} (the previous one is kept)", exc) from None

    def _write_contents(self, dst: h5py.File, new_ckpt: Checkpoint | None, fresh: bool) -> None:
        dst.attrs["format"] = FORMAT_NAME
        dst.attrs["format_version"] = FORMAT_VERSION
        dst.attrs["keep"] = self.keep
        dst.attrs["created_at"] = self._created_at
        _write_string(dst, "config", _to_json(self._config))
        _write_string(dst, "param_layout", json.dumps([list(e) for e in self._layout]))
        ckpts = dst.create_group(_CKPT_GROUP)

        old_steps: list[int] = []
        src = None if fresh else h5py.File(self.path, "r")
        try:
            if src is not None:
                old_steps = [int(n) for n in src[_CKPT_GROUP]]
            steps = set(old_steps)
            if new_ckpt is not None:
                steps.add(new_ckpt.step)
            kept = sorted(steps)[-self.keep :]
            for step in kept:
                if new_ckpt is not None and step == new_ckpt.step:
                    self._write_checkpoint_group(ckpts, new_ckpt)
                else:
                    src.copy(src[_CKPT_GROUP][_step_name(step)], ckpts, name=_step_name(step))
        finally:
            if src is not None:
                src.close()

    @staticmethod
    def _write_checkpoint_group(parent: h5py.Group, ckpt: Checkpoint) -> None:
        g = parent.create_group(_step_name(ckpt.step))
        g.attrs["step"] = ckpt.step
        g.attrs["elapsed_s"] = ckpt.elapsed_s
        g.attrs["n_episodes"] = ckpt.n_episodes
        g.attrs["saved_at"] = ckpt.saved_at
        g.attrs["machine"] = ckpt.machine
        g.create_dataset("params", data=ckpt.params)
        g.create_dataset("worker_steps", data=ckpt.worker_steps)
        stats = g.create_group("opt_stats")
        for k, v in ckpt.opt_stats.items():
            stats.create_dataset(k, data=v)
        if ckpt.norm_moments:
            norm = g.create_group("norm")
            for k, v in ckpt.norm_moments.items():
                norm.create_dataset(k, data=v)
        rng = g.create_group("rng_state")
        for k, v in ckpt.rng_state.items():
            if isinstance(v, str):
                _write_string(rng, k, v)
                rng[k].attrs["json"] = True
            else:
                rng.create_dataset(k, data=v)

    def __repr__(self) -> str:
        return f"RunFile({str(self.path)!r}, n_params={self.n_params}, keep={self.keep})"
