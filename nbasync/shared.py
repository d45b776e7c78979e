"""SharedState: the one owner of every shared-memory segment of a run.

Owns: the segment (parameters theta, shared RMSProp statistics g, target parameters
theta_minus, per-worker step counters, the stop flag, the target-update bookkeeping), its
lifecycle (create in the parent, attach in workers, close/unlink exactly once), and the
SIGTERM -> clean-exit conversion that makes that lifecycle hold on every kind of ending.

Layout: ONE POSIX shared-memory segment named ``nbasync_<parent pid>_<random hex>``:

    control  (n_workers + 3) slots of 64 bytes (one cache line each, no false sharing):
             [0, n_workers)  worker i's slot (int64s; only worker i writes it):
                             [0] steps done, [1] updates skipped (non-finite gradient),
                             [2] updates skipped in a row since the last applied one,
                             [3] updates applied (counted only with telemetry on: the
                             Hogwild staleness of an update is the growth of the sum of
                             [3] over all workers between its sync and its write)
             STOP            1 once a stop was requested
             LAST_TARGET     global step of the last target copy, rounded down to a multiple
                             of the interval ("steps since last target update", paper notes)
             N_TARGET        number of target copies made so far
    params   n_params floats   (page-aligned)
    opt_stats n_params floats  (optional: shared RMSProp g, zeros at start)
    target   n_params floats   (optional: Q methods' theta_minus)
    obs_moments    (n_workers + 1) x (1 + 2 d) float64 (optional: running moments of the
                   observations, ``nbasync.normalise``; row 0 restored from a checkpoint,
                   row i + 1 written only by worker i)
    return_moments (n_workers + 1) x 3 float64 (optional: the same for the discounted return)

Global step T = sum of the per-worker slots: workers never contend on one counter; reading T
costs a sum over n_workers int64 (aligned 8-byte loads are atomic on the supported CPUs).

Target copy exactly once per interval: ``maybe_update_target(interval)`` first reads T and
LAST_TARGET without any lock (the hot path: two loads and a compare). Only when
T - LAST_TARGET >= interval does it take an exclusive ``flock`` on the segment's file, check
again (another worker may have just copied), copy theta -> theta_minus, and set LAST_TARGET to
(T // interval) * interval. So each crossing of a multiple of the interval produces exactly
one copy, however many workers see it. flock is released by the kernel if its holder dies
(SIGKILL), so a killed worker can never wedge the others. Within one process a threading
lock guards the same section (flock does not exclude threads sharing one file descriptor).

Lifecycle rules:
- ``SharedState.create`` (parent) creates the segment, registers an atexit hook and, when
  called from the main thread while SIGTERM has its default action, turns SIGTERM into
  ``SystemExit(143)`` so ``finally``/``with`` blocks and atexit run. Ctrl-C raises
  KeyboardInterrupt as usual. Either way ``close()`` unlinks the segment exactly once.
- ``SharedState.attach(handle)`` (worker) maps the segment WITHOUT registering it with
  multiprocessing's resource_tracker (Python < 3.13 registers on attach, which makes the
  tracker unlink or warn about a segment the worker does not own; 3.13+ has track=False).
- Only the creating process unlinks; everybody else only closes. A worker killed by SIGKILL
  leaves nothing behind (its mapping dies with it); if the PARENT is SIGKILLed, the
  resource_tracker it registered the segment with unlinks it, silently (``create`` adds a
  warning filter for the tracker's module to the options its interpreter starts with).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import secrets
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from .normalise import moments_width

__all__ = [
    "SharedState",
    "SharedHandle",
    "install_sigterm_exit",
    "unlink_segments_of",
    "SEGMENT_PREFIX",
]

SEGMENT_PREFIX = "nbasync_"
_SLOT = 8  # int64 per control slot = 64 bytes = one cache line
_N_CTRL = 3  # STOP, LAST_TARGET, N_TARGET after the per-worker slots
_ALIGN = 4096


@dataclass(frozen=True)
class SharedHandle:
    """Picklable description of a SharedState: everything a worker needs to attach."""

    name: str
    lock_path: str
    n_params: int
    n_workers: int
    target: bool
    optimizer_stats: bool
    dtype: str
    owner_pid: int
    obs_norm_dim: int = 0  # > 0: running moments of the observations (nbasync.normalise)
    return_norm: bool = False  # running moments of the discounted return


def _round_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _norm_shapes(n_workers: int, obs_norm_dim: int, return_norm: bool) -> dict:
    """Row 0: moments restored from a checkpoint; row i + 1: worker i's own (normalise.py)."""
    shapes = {}
    if obs_norm_dim > 0:
        shapes["obs_moments"] = (n_workers + 1, moments_width(obs_norm_dim))
    if return_norm:
        shapes["return_moments"] = (n_workers + 1, moments_width(1))
    return shapes


def _layout(
    n_params: int,
    n_workers: int,
    target: bool,
    stats: bool,
    itemsize: int,
    obs_norm_dim: int = 0,
    return_norm: bool = False,
):
    ctrl_bytes = (n_workers + _N_CTRL) * _SLOT * 8
    off = _round_up(ctrl_bytes, _ALIGN)
    vec = _round_up(n_params * itemsize, _ALIGN)
    offsets = {"params": off}
    off += vec
    if stats:
        offsets["opt_stats"] = off
        off += vec
    if target:
        offsets["target"] = off
        off += vec
    for key, shape in _norm_shapes(n_workers, obs_norm_dim, return_norm).items():
        offsets[key] = off
        off += _round_up(shape[0] * shape[1] * 8, _ALIGN)
    return ctrl_bytes, offsets, max(off, _ALIGN)


def _attach_untracked(name: str) -> SharedMemory:
    if sys.version_info >= (3, 13):
        return SharedMemory(name=name, create=False, track=False)
    original = resource_tracker.register

    def register(rname, rtype):  # skip only this segment's registration
        if rtype == "shared_memory" and rname.lstrip("/") == name.lstrip("/"):
            return None
        return original(rname, rtype)

    resource_tracker.register = register
    try:
        return SharedMemory(name=name, create=False)
    finally:
        resource_tracker.register = original


#: Passed to the interpreters multiprocessing starts (the resource tracker among them,
#: through ``sys.warnoptions``): when the parent is SIGKILLed, the tracker unlinks the
#: segment it was told about, and says nothing.
_TRACKER_QUIET = "ignore::UserWarning:multiprocessing.resource_tracker"


def _quiet_resource_tracker() -> None:
    """Before the tracker starts: a SIGKILLed parent's segment is still unlinked by the
    tracker (that is its job), without its four 'leaked shared_memory objects' lines."""
    if _TRACKER_QUIET not in sys.warnoptions:
        sys.warnoptions.append(_TRACKER_QUIET)


# ----------------------------------------------------------------------------- signals

_sigterm_installed = False


def _sigterm_to_exit(signum, frame):
    # A second SIGTERM during clean-up must not interrupt it; SIGKILL still works.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def install_sigterm_exit() -> bool:
    """Make SIGTERM raise ``SystemExit(143)`` in the main thread (so clean-up code runs).

    Only installs when called from the main thread and SIGTERM still has its default action
    (a handler the application set is left alone). Returns True if the handler is in place.
    """
    global _sigterm_installed
    if threading.current_thread() is not threading.main_thread():
        return _sigterm_installed
    current = signal.getsignal(signal.SIGTERM)
    if current is _sigterm_to_exit:
        return True
    if current in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _sigterm_to_exit)
        _sigterm_installed = True
        return True
    return False


_OWNED: dict[int, SharedState] = {}


def _close_all_owned() -> None:
    for state in list(_OWNED.values()):
        state.close()


atexit.register(_close_all_owned)


def unlink_segments_of(pid: int) -> list[str]:
    """Unlink every segment created by process ``pid``, which must be dead; returns their
    names. A creator killed by a signal cannot close its own segment: for a process that
    is not the session's parent (e.g. a sweep's trial), the supervisor that saw it die
    reclaims its segment at once instead of leaving it to the resource tracker's exit."""
    shm_dir = "/dev/shm"
    if not os.path.isdir(shm_dir):  # not Linux: the resource tracker is the only net
        return []
    prefix = f"{SEGMENT_PREFIX}{int(pid)}_"
    removed = []
    for name in os.listdir(shm_dir):
        if name.startswith(prefix):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(shm_dir, name))
                removed.append(name)
    return removed


# ----------------------------------------------------------------------------- state


class SharedState:
    """Shared parameters, optimiser statistics, target network and counters of one run.

    Parent::

        with SharedState.create(n_params, n_workers, target=True) as state:
            net.bind(state.params); net.init_params(seed); state.copy_target()
            run_workers(..., state, ...)
        # segment unlinked here (and on any exception, Ctrl-C, SIGTERM, via atexit)

    Worker (inside ``worker_fn(index, handle, args, events, stop)``)::

        with SharedState.attach(handle) as state:   # closes, never unlinks
            ...
            state.add_steps(index, k)
            state.maybe_update_target(I_target)
    """

    def __init__(self, shm: SharedMemory, handle: SharedHandle, owner: bool):
        self._shm = shm
        self._handle = handle
        self._owner = owner
        self._closed = False
        self._lock_fd: int | None = None
        self._tlock = threading.Lock()
        dtype = np.dtype(handle.dtype)
        ctrl_bytes, offsets, _ = _layout(
            handle.n_params,
            handle.n_workers,
            handle.target,
            handle.optimizer_stats,
            dtype.itemsize,
            handle.obs_norm_dim,
            handle.return_norm,
        )
        buf = shm.buf
        self._ctrl = np.ndarray(
            (handle.n_workers + _N_CTRL, _SLOT), dtype=np.int64, buffer=buf, offset=0
        )
        self._steps = self._ctrl[: handle.n_workers, 0]
        self._applied = self._ctrl[: handle.n_workers, 3]
        self._stop_i = handle.n_workers
        self._last_i = handle.n_workers + 1
        self._ntarget_i = handle.n_workers + 2
        n = handle.n_params

        def view(key):
            if key not in offsets:
                return None
            return np.ndarray((n,), dtype=dtype, buffer=buf, offset=offsets[key])

        self.params: np.ndarray = view("params")
        self.opt_stats: np.ndarray | None = view("opt_stats")
        self.target: np.ndarray | None = view("target")
        norm = _norm_shapes(handle.n_workers, handle.obs_norm_dim, handle.return_norm)

        def rows(key):
            if key not in norm:
                return None
            return np.ndarray(norm[key], dtype=np.float64, buffer=buf, offset=offsets[key])

        self.obs_moments: np.ndarray | None = rows("obs_moments")
        self.return_moments: np.ndarray | None = rows("return_moments")

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(
        cls,
        n_params: int,
        n_workers: int,
        target: bool = True,
        optimizer_stats: bool = True,
        dtype=np.float32,
        obs_norm_dim: int = 0,
        return_norm: bool = False,
    ) -> SharedState:
        """Create the segment (parent only). Every array starts at zero; counters at zero."""
        if n_params <= 0 or n_workers <= 0:
            raise ValueError(f"need n_params > 0 and n_workers > 0, got {n_params}, {n_workers}")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        if obs_norm_dim < 0:
            raise ValueError(f"obs_norm_dim must be >= 0, got {obs_norm_dim}")
        _, _, size = _layout(
            n_params,
            n_workers,
            target,
            optimizer_stats,
            dtype.itemsize,
            int(obs_norm_dim),
            bool(return_norm),
        )
        install_sigterm_exit()
        _quiet_resource_tracker()
        name = f"{SEGMENT_PREFIX}{os.getpid()}_{secrets.token_hex(6)}"
        shm = SharedMemory(name=name, create=True, size=size)
        try:
            lock_path = os.path.join("/dev/shm", shm.name.lstrip("/"))
            if not os.path.exists(lock_path):  # not Linux: a separate lock file
                lock_path = os.path.join(tempfile.gettempdir(), f"{shm.name.lstrip('/')}.lock")
                open(lock_path, "a").close()
            handle = SharedHandle(
                name=shm.name,
                lock_path=lock_path,
                n_params=int(n_params),
                n_workers=int(n_workers),
                target=bool(target),
                optimizer_stats=bool(optimizer_stats),
                dtype=dtype.str,
                owner_pid=os.getpid(),
                obs_norm_dim=int(obs_norm_dim),
                return_norm=bool(return_norm),
            )
            state = cls(shm, handle, owner=True)
            state._ctrl[:] = 0
        except BaseException:
            shm.close()
            shm.unlink()
            raise
        _OWNED[id(state)] = state
        return state

    @classmethod
    def attach(cls, handle: SharedHandle) -> SharedState:
        """Map an existing segment (worker side). Never registers it for unlinking."""
        return cls(_attach_untracked(handle.name), handle, owner=False)

    def handle(self) -> SharedHandle:
        return self._handle

    @property
    def name(self) -> str:
        return self._handle.name

    @property
    def n_params(self) -> int:
        return self._handle.n_params

    @property
    def n_workers(self) -> int:
        return self._handle.n_workers

    @property
    def is_owner(self) -> bool:
        return self._owner and os.getpid() == self._handle.owner_pid

    def close(self) -> None:
        """Unmap; the owner (creating process) also unlinks. Idempotent, never raises."""
        if self._closed:
            return
        self._closed = True
        _OWNED.pop(id(self), None)
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None
        self.params = self.opt_stats = self.target = None
        self._ctrl = self._steps = self._applied = None
        # BufferError: someone still holds a view; the mapping then goes with the process.
        with contextlib.suppress(BufferError):
            self._shm.close()
        if self.is_owner:
            with contextlib.suppress(FileNotFoundError):
                self._shm.unlink()
            if not self._handle.lock_path.startswith("/dev/shm/"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._handle.lock_path)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> SharedState:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):
        raise TypeError("pass SharedState.handle() to other processes, not the state itself")

    # ------------------------------------------------------------------ counters

    def add_steps(self, worker: int, k: int = 1) -> None:
        """Worker ``worker`` did ``k`` more steps. Only that worker may write its slot."""
        self._steps[worker] += k

    def worker_steps(self, worker: int) -> int:
        return int(self._steps[worker])

    def record_update(self, worker: int, applied: bool) -> None:
        """Worker ``worker`` applied an update, or skipped one whose gradient was not finite.
        Only that worker may write its slot; the parent reads ``skipped_updates``."""
        slot = self._ctrl[worker]
        if applied:
            if slot[2]:
                slot[2] = 0
        else:
            slot[1] += 1
            slot[2] += 1

    def skipped_updates(self, worker: int) -> tuple[int, int]:
        """(skipped in all, skipped in a row now) for ``worker``."""
        slot = self._ctrl[worker]
        return int(slot[1]), int(slot[2])

    def count_applied(self, worker: int) -> None:
        """Worker ``worker`` has just written an update to theta (telemetry only: the
        counter behind ``applied_updates``). Only that worker may write its slot."""
        self._ctrl[worker, 3] += 1

    def applied_updates(self) -> int:
        """U: updates written to theta so far, summed over workers (lock-free, like T).
        Counted only by workers that record telemetry (``count_applied``)."""
        # tolist + sum: 0.2 us for a few workers against 1.7 us for ndarray.sum() on this
        # strided view; it runs twice per update when telemetry is on.
        return sum(self._applied.tolist())

    def global_step(self) -> int:
        """T: the sum of every worker's steps (lock-free; may lag in-flight increments)."""
        return int(self._steps.sum())

    def request_stop(self) -> None:
        self._ctrl[self._stop_i, 0] = 1

    def stop_requested(self) -> bool:
        return bool(self._ctrl[self._stop_i, 0])

    # ------------------------------------------------------------------ target network

    @property
    def target_updates(self) -> int:
        """Number of copies made by ``maybe_update_target`` so far."""
        return int(self._ctrl[self._ntarget_i, 0])

    def copy_target(self) -> None:
        """theta -> theta_minus unconditionally (e.g. right after initialising parameters)."""
        if self.target is None:
            raise RuntimeError("this SharedState was created with target=False")
        np.copyto(self.target, self.params)

    def maybe_update_target(self, interval: int) -> bool:
        """Copy theta -> theta_minus if T crossed a multiple of ``interval`` since the last copy.

        Exactly one caller (any process) copies per crossing; returns True in that caller.
        """
        if self.target is None:
            raise RuntimeError("this SharedState was created with target=False")
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        last = self._ctrl[self._last_i]
        if self.global_step() - int(last[0]) < interval:
            return False  # hot path: no lock
        with self._tlock:
            fd = self._lock_file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                T = self.global_step()
                if T - int(last[0]) < interval:
                    return False  # somebody else copied for this crossing
                np.copyto(self.target, self.params)
                last[0] = (T // interval) * interval
                self._ctrl[self._ntarget_i, 0] += 1
                return True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _lock_file(self) -> int:
        if self._lock_fd is None:
            self._lock_fd = os.open(self._handle.lock_path, os.O_RDWR)
        return self._lock_fd

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        role = "owner" if self._owner else "attached"
        return (
            f"SharedState({self._handle.name!r}, n_params={self.n_params}, "
            f"n_workers={self.n_workers}, {role}, {state})"
        )
