"""The HDF5 run file: one per training run, at ``<out_dir>/run.h5``.

Owns: the on-disk layout (see docs/runfile.md), the config and parameter layout of a run,
its last ``keep`` checkpoints, and its episode log. A leaf module: numpy, h5py, stdlib
(and the leaf ``errors``).

Every write is atomic. ``save()`` and ``write_checkpoint()`` write the WHOLE file to
``run.h5.tmp`` in the same directory, fsync it, then ``os.replace`` it onto ``run.h5`` (and
fsync the directory). A process killed at any instant therefore leaves either the previous
``run.h5`` or the new one, never a half-written file; a stray ``run.h5.tmp`` left by such a
crash is ignored by ``open`` and overwritten by the next write. Old checkpoints are copied
group-by-group from the previous file (``h5py`` ``copy``), so only the new checkpoint and the
episode log are held in memory.

Episodes appended with ``append_episode`` are buffered in memory until the next ``save()``,
``write_checkpoint()`` or ``close()``: a crash loses at most the episodes since then.

Every failure to read or write the file is a ``RunFileError`` with a one-line message; no
h5py traceback escapes. Bad arguments (wrong parameter count, ...) are ``ValueError``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import UserInputError

__all__ = [
    "FILE_NAME",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "DEFAULT_KEEP",
    "MAY_DIFFER_ON_RESUME",
    "EPISODE_DTYPE",
    "Checkpoint",
    "RunFile",
    "RunFileError",
]

FILE_NAME = "run.h5"
FORMAT_NAME = "nbasync-run"
FORMAT_VERSION = 1
DEFAULT_KEEP = 5

#: Config keys that may change between a run and its resumption; every other key must be
#: equal (``check_compatible``). Names absent from a config are simply not compared.
MAY_DIFFER_ON_RESUME = frozenset(
    {
        "steps",
        "total_steps",
        "out_dir",
        "resume",
        "checkpoint_every",
        "checkpoint_interval",
        "keep_checkpoints",
        "log_every",
        "log_interval",
        "progress",
        "verbose",
        "quiet",
    }
)

#: One row of the episode log. ``wall_time`` is seconds since the run started (continuing
#: across resumes), not a Unix time.
EPISODE_DTYPE = np.dtype(
    [
        ("worker", np.int64),
        ("global_step", np.int64),
        ("wall_time", np.float64),
        ("return", np.float64),
        ("length", np.int64),
    ]
)

_CKPT_GROUP = "checkpoints"
_STEP_WIDTH = 12


class RunFileError(UserInputError):
    """A run file is missing, unreadable, corrupt, incompatible or cannot be written."""


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


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


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


def _fsync_path(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # some filesystems refuse fsync on a directory: not fatal
            raise
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    _fsync_path(path)


def _write_string(group: h5py.Group, name: str, text: str) -> None:
    group.create_dataset(name, data=text, dtype=h5py.string_dtype("utf-8"))


def _read_string(group: h5py.Group, name: str) -> str:
    value = group[name][()]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class RunFile:
    """One run's HDF5 file. Create with ``RunFile.create``, reopen with ``RunFile.open``.

    The object holds the config, layout and episode log in memory; checkpoints are read
    from disk on demand. It is meant for one writer (the training parent process); readers
    (plots, evaluation) may open the file at any time, even during training.
    """

    def __init__(
        self,
        path: Path,
        config: dict,
        layout: list[tuple[str, int, tuple[int, ...]]],
        keep: int,
        episodes: np.ndarray,
        created_at: float,
    ) -> None:
        self.path = Path(path)
        self._config = config
        self._layout = layout
        self.keep = keep
        self._episodes = episodes
        self._pending: list[tuple] = []
        self._created_at = created_at

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
        """Create ``out_dir`` (and parents) and a fresh ``out_dir/run.h5``; write it now.

        ``param_layout`` is ``net.layout``: a list of ``(name, offset, shape)``. An existing
        run file is an error unless ``overwrite`` (resume with ``RunFile.open`` instead).
        """
        if int(keep) < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        try:
            _to_json(config)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"config is not JSON serialisable: {_one_line(exc)}") from None
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFileError(f"cannot create run directory {out}: {_one_line(exc)}") from None
        if not out.is_dir():
            raise RunFileError(f"cannot create run directory {out}: not a directory")
        path = out / FILE_NAME
        if path.exists() and not overwrite:
            raise RunFileError(
                f"a run file already exists at {path} (resume it, or choose another out dir)"
            )
        rf = cls(
            path,
            json.loads(_to_json(config)),
            _normalise_layout(param_layout),
            int(keep),
            np.zeros(0, EPISODE_DTYPE),
            time.time(),
        )
        rf._write(new_ckpt=None, fresh=True)
        return rf

    @classmethod
    def open(cls, out_dir_or_file, keep: int | None = None) -> RunFile:
        """Open an existing run (a run directory or the ``run.h5`` itself) for reading
        and continuing. ``keep`` overrides the number of checkpoints kept from now on."""
        p = Path(out_dir_or_file)
        path = p / FILE_NAME if p.is_dir() else p
        if not path.is_file():
            raise RunFileError(f"no run file at {path}")
        try:
            with h5py.File(path, "r") as f:
                fmt = f.attrs.get("format")
                if isinstance(fmt, bytes):
                    fmt = fmt.decode()
                if fmt != FORMAT_NAME:
                    raise RunFileError(f"{path} is not an nbasync run file")
                version = int(f.attrs.get("format_version", -1))
                if version != FORMAT_VERSION:
                    raise RunFileError(
                        f"{path} has run-file format version {version}; "
                        f"this nbasync reads version {FORMAT_VERSION}"
                    )
                config = json.loads(_read_string(f, "config"))
                layout = _normalise_layout(json.loads(_read_string(f, "param_layout")))
                episodes = np.asarray(f["episodes"][()], dtype=EPISODE_DTYPE)
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
        return cls(
            path,
            config,
            layout,
            int(keep) if keep is not None else stored_keep,
            episodes,
            created_at,
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
        may_differ: frozenset[str] | set[str] = MAY_DIFFER_ON_RESUME,
    ) -> None:
        """Raise ``RunFileError`` naming the first differing setting if a run with
        ``config`` (and ``param_layout``, when given) cannot continue this run.

        Keys in ``may_differ`` are not compared; a key present on one side only differs.
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
    def append_episode(
        self, worker: int, global_step: int, wall_time: float, ret: float, length: int
    ) -> None:
        """Buffer one finished episode; persisted by the next save/checkpoint/close."""
        self._pending.append(
            (int(worker), int(global_step), float(wall_time), float(ret), int(length))
        )

    def episodes(self) -> np.ndarray:
        """All episodes (saved and buffered), a structured array of ``EPISODE_DTYPE``
        (fields worker, global_step, wall_time, return, length) in append order."""
        if not self._pending:
            return self._episodes.copy()
        return np.concatenate([self._episodes, np.array(self._pending, dtype=EPISODE_DTYPE)])

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
        )

    def write_checkpoint(
        self,
        step: int,
        params: np.ndarray,
        opt_stats: dict[str, np.ndarray] | None = None,
        worker_steps: np.ndarray | None = None,
        elapsed_s: float = 0.0,
        rng_state: dict[str, Any] | None = None,
    ) -> Checkpoint:
        """Add a checkpoint at global step ``step`` (replacing one at the same step), drop
        all but the newest ``keep``, and atomically rewrite the file (buffered episodes
        included). Arrays are copied at the call, so the caller may keep training.

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
        n_episodes = len(self._episodes) + len(self._pending)
        ckpt = Checkpoint(
            step=int(step),
            params=params,
            opt_stats=stats,
            worker_steps=ws.reshape(-1),
            elapsed_s=float(elapsed_s),
            rng_state=rng,
            n_episodes=n_episodes,
            saved_at=time.time(),
        )
        self._write(new_ckpt=ckpt)
        ckpt.rng_state = {k: (json.loads(v) if isinstance(v, str) else v) for k, v in rng.items()}
        return ckpt

    # ------------------------------------------------------------------ writing
    def save(self) -> None:
        """Atomically persist buffered episodes (checkpoints are untouched)."""
        self._write(new_ckpt=None)

    def close(self) -> None:
        """Persist buffered episodes, if any. The object stays usable."""
        if self._pending:
            self.save()

    def __enter__(self) -> RunFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _write(self, new_ckpt: Checkpoint | None, fresh: bool = False) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        episodes = self.episodes()
        try:
            with h5py.File(tmp, "w") as dst:
                self._write_contents(dst, episodes, new_ckpt, fresh)
            _fsync_file(tmp)
            os.replace(tmp, self.path)
            _fsync_path(self.path.parent, directory=True)
        except Exception as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise RunFileError(f"cannot write run file {self.path}: {_one_line(exc)}") from None
        self._episodes = episodes
        self._pending = []

    def _write_contents(
        self,
        dst: h5py.File,
        episodes: np.ndarray,
        new_ckpt: Checkpoint | None,
        fresh: bool,
    ) -> None:
        dst.attrs["format"] = FORMAT_NAME
        dst.attrs["format_version"] = FORMAT_VERSION
        dst.attrs["keep"] = self.keep
        dst.attrs["created_at"] = self._created_at
        _write_string(dst, "config", _to_json(self._config))
        _write_string(dst, "param_layout", json.dumps([list(e) for e in self._layout]))
        dst.create_dataset("episodes", data=episodes, dtype=EPISODE_DTYPE)
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
        g.create_dataset("params", data=ckpt.params)
        g.create_dataset("worker_steps", data=ckpt.worker_steps)
        stats = g.create_group("opt_stats")
        for k, v in ckpt.opt_stats.items():
            stats.create_dataset(k, data=v)
        rng = g.create_group("rng_state")
        for k, v in ckpt.rng_state.items():
            if isinstance(v, str):
                _write_string(rng, k, v)
                rng[k].attrs["json"] = True
            else:
                rng.create_dataset(k, data=v)

    def __repr__(self) -> str:
        return f"RunFile({str(self.path)!r}, n_params={self.n_params}, keep={self.keep})"
