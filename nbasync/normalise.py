"""Running normalisation shared by all workers: observation mean/variance and return scaling.

Owns: running moments (count, mean, M2) of a stream of d-vectors kept as rows of one float64
array, their merge (Chan et al.'s parallel formula), the observation normaliser
``(x - mean) / sqrt(var + eps)`` clipped to +-clip, and return-based reward scaling (rewards
divided by the standard deviation of the discounted return, as in most PPO/A2C code).
Knows only arrays: the rows may be a view into the run's shared segment (``nbasync.shared``)
or a plain array (evaluation, tests).

Sharing without locks and without races: row 0 holds the moments restored from a checkpoint
(never written during a run) and row ``i + 1`` is worker ``i``'s own, written only by it.
A reader merges every row. A reader may see a row half-written by its worker (mean updated,
count not yet): the merged figures are then off by one batch for one refresh, which is the
same kind of benign race as Hogwild's. Statistics start from one pseudo-observation of mean
0 and variance 1 (not stored), so the first few samples cannot give a near-zero variance.

Cost: one ``observe`` per rollout (all its rows in one call) and one ``refresh`` (a merge of
n_workers + 1 rows of 1 + 2 d floats) per rollout; ``normalise`` per step, O(d).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "RunningMoments",
    "ObsNormaliser",
    "ReturnScaler",
    "moments_width",
    "merge_moments",
]

PSEUDO_COUNT = 1.0  # the prior: one observation of mean 0, variance 1


def moments_width(dim: int) -> int:
    """Floats per row for a ``dim``-vector: count, mean (dim), M2 (dim)."""
    return 1 + 2 * dim


@njit(cache=True)
def _observe_kernel(row, x):
    """Merge the batch x (k, d) into row [count, mean (d), M2 (d)] (Chan's formula)."""
    k = x.shape[0]
    d = x.shape[1]
    if k == 0:
        return
    n_a = row[0]
    n = n_a + k
    for j in range(d):
        s = 0.0
        for i in range(k):
            s += x[i, j]
        mean_b = s / k
        m2_b = 0.0
        for i in range(k):
            dev = x[i, j] - mean_b
            m2_b += dev * dev
        delta = mean_b - row[1 + j]
        row[1 + j] += delta * k / n
        row[1 + d + j] += m2_b + delta * delta * n_a * k / n
    row[0] = n  # last, so that a reader sees the count lag its moments, never lead them


@njit(cache=True)
def _merge_rows_kernel(rows, out, prior):
    """out <- every row of rows (count > 0) merged, starting from the pseudo-observation
    (count 1, mean 0, M2 1) when ``prior``, else from nothing."""
    d = (rows.shape[1] - 1) // 2
    out[0] = PSEUDO_COUNT if prior else 0.0
    for j in range(d):
        out[1 + j] = 0.0
        out[1 + d + j] = PSEUDO_COUNT if prior else 0.0  # M2 = variance 1 * count
    for r in range(rows.shape[0]):
        n_b = rows[r, 0]
        if not n_b > 0:
            continue
        n_a = out[0]
        n = n_a + n_b
        for j in range(d):
            delta = rows[r, 1 + j] - out[1 + j]  # n_a = 0: out takes the row as it is
            out[1 + j] += delta * n_b / n
            out[1 + d + j] += rows[r, 1 + d + j] + delta * delta * n_a * n_b / n
        out[0] = n


@njit(cache=True)
def _normalise_kernel(x, mean, inv_std, clip, out):
    for j in range(x.shape[0]):
        v = (x[j] - mean[j]) * inv_std[j]
        if v > clip:
            v = clip
        elif v < -clip:
            v = -clip
        out[j] = v


def merge_moments(rows: np.ndarray, prior: bool = True) -> np.ndarray:
    """Every row merged into one [count, mean, M2] row, with the pseudo-observation when
    ``prior`` (for normalising) or without it (what a checkpoint saves)."""
    out = np.empty(rows.shape[1], np.float64)
    _merge_rows_kernel(rows, out, prior)
    return out


class RunningMoments:
    """Running count, mean and M2 of a d-vector stream over rows ``(n_slots, 1 + 2 d)``.

    ``slot``: the row this process writes (worker i: i + 1); ``None`` for a reader only.
    """

    def __init__(self, rows: np.ndarray, slot: int | None):
        if rows.ndim != 2 or rows.dtype != np.float64 or (rows.shape[1] - 1) % 2:
            raise ValueError(
                f"rows must be float64 (n_slots, 1 + 2 d), got {rows.dtype}{rows.shape}"
            )
        if slot is not None and not 0 < slot < rows.shape[0]:
            raise ValueError(
                f"slot {slot} outside 1..{rows.shape[0] - 1} (row 0 is the restored one)"
            )
        self.rows = rows
        self.slot = slot
        self.dim = (rows.shape[1] - 1) // 2

    def observe(self, batch: np.ndarray) -> None:
        """Add a (k, d) batch (or one d-vector) to this process's row."""
        if self.slot is None:
            raise ValueError("a reader (slot None) cannot observe")
        x = np.asarray(batch, dtype=np.float64).reshape(-1, self.dim)
        _observe_kernel(self.rows[self.slot], x)

    def merged(self, prior: bool = True) -> np.ndarray:
        """Every row merged: [count, mean (d), M2 (d)]; ``prior=False`` for checkpoints."""
        return merge_moments(self.rows, prior)

    def mean_var(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Mean, variance and count of everything observed, the prior included."""
        m = self.merged()
        d = self.dim
        return m[1 : 1 + d].copy(), m[1 + d :] / m[0], float(m[0])

    def restore(self, saved: np.ndarray) -> None:
        """Put a checkpoint's moments (``merged(prior=False)`` of an earlier run) in row 0."""
        saved = np.asarray(saved, np.float64)
        if saved.shape != (self.rows.shape[1],):
            raise ValueError(
                f"saved moments have shape {saved.shape}, expected ({self.rows.shape[1]},)"
            )
        self.rows[0] = saved


class ObsNormaliser:
    """``(x - mean) / sqrt(var + eps)``, clipped to [-clip, clip], with the merged moments as
    of the last ``refresh()`` (a worker refreshes once per rollout; evaluation once)."""

    def __init__(self, moments: RunningMoments, clip: float = 10.0, eps: float = 1e-8):
        self.moments = moments
        self.clip = float(clip)
        self.eps = float(eps)
        self.mean = np.zeros(moments.dim)
        self.inv_std = np.ones(moments.dim)
        self.refresh()

    @classmethod
    def from_saved(cls, saved: np.ndarray) -> ObsNormaliser:
        """Frozen at the merged moments a checkpoint saved (evaluation, inspection)."""
        rows = np.asarray(saved, np.float64).reshape(1, -1)
        return cls(RunningMoments(rows, slot=None))

    def refresh(self) -> None:
        mean, var, _ = self.moments.mean_var()
        self.mean[:] = mean
        self.inv_std[:] = 1.0 / np.sqrt(var + self.eps)

    def __call__(self, obs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        flat = np.asarray(obs).reshape(-1)
        if out is None:
            out = np.empty(flat.shape, np.float32)
        _normalise_kernel(flat, self.mean, self.inv_std, self.clip, out.reshape(-1))
        return out


class ReturnScaler:
    """Rewards divided by the standard deviation of the discounted return (no mean taken
    off: the sign of a reward is kept). Each worker runs its own return R <- gamma R + r,
    reset when an episode ends; the variance is of every worker's R stream."""

    def __init__(self, moments: RunningMoments, gamma: float, eps: float = 1e-8):
        if moments.dim != 1:
            raise ValueError(f"the return's moments are 1-D, got dim {moments.dim}")
        self.moments = moments
        self.gamma = float(gamma)
        self.eps = float(eps)
        self.ret = 0.0
        self.scale = 1.0
        self._pending: list[float] = []
        self.refresh()

    def __call__(self, reward: float, done: bool) -> float:
        """The scaled reward; remembers R for the next ``observe_pending``."""
        self.ret = self.gamma * self.ret + reward
        self._pending.append(self.ret)
        if done:
            self.ret = 0.0
        return reward * self.scale

    def observe_pending(self) -> None:
        """Add the returns seen since the last call to this worker's moments (per rollout)."""
        if self._pending:
            self.moments.observe(np.asarray(self._pending))
            self._pending.clear()

    def refresh(self) -> None:
        _, var, _ = self.moments.mean_var()
        self.scale = float(1.0 / np.sqrt(var[0] + self.eps))
