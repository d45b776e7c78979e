"""Optimisers over flat parameter vectors: shared RMSProp, per-worker RMSProp, momentum SGD.

Owns: the update kernels (numba, lock-free, in place), global-norm gradient clipping and the
linear learning-rate schedule. Knows nothing about processes: "shared" only means that the
statistics array handed in may be a view into shared memory (see ``nbasync.shared``), which
other workers update at the same time without locks (Hogwild). Races on one element lose an
update now and then; that is the paper's design, not a bug.

Update rules (elementwise, d = gradient of the loss being minimised):

    RMSProp (shared or per-worker g):   g     <- alpha * g + (1 - alpha) * d^2
                                        theta <- theta - lr * d / sqrt(g + eps)   (eps INSIDE)
    momentum SGD (paper's form):        m     <- mu * m + (1 - mu) * d
                                        theta <- theta - lr * m

Arithmetic in the parameters' dtype: a float32 update computes in float32 (``1 - alpha`` is
formed as a float32, not from the int 1, which made numba promote every element's g, square
root and division to float64). Measured on the 2-core Xeon (AVX-512) at the Atari network's
677,943 parameters: the step 1,045 -> 283 us, at 40k parameters 57 -> 16 us (float64 vector
square roots and divisions cost about 3.5x float32's). The results differ from the float64
intermediates by float32 rounding only (the tests' NumPy references compute in float32 too).

Subnormal statistics become 0. A parameter whose gradient stays 0 (a dead ReLU's incoming
weights) sees its g decay by alpha each update, into float32's subnormal range (below
1.2e-38) after some 8,000 updates; x86 cores do arithmetic on subnormals in microcode, about
100x slower. In a 2-worker Pong run 43 % of g was subnormal after 2M steps and training ran
at 1,790 steps/s instead of about 2,450. The kernels write 0 instead: the step does not
change (g + eps == eps in float32 for any g below eps * 2^-25), and neither does g once
another real gradient arrives. Momentum's m gets the same treatment.

Cost model: the RMSProp step reads d, g, theta and writes g, theta, i.e. 5 * n * itemsize
bytes (20 bytes per parameter in float32). For the Atari network that is 13.6 MB per step.
The worker's whole update path (``ActorLearner.apply_gradients``) is one norm pass over d
and ONE fused pass (``step_and_copy``: the clip's scale, the step, and theta' <- theta),
24 bytes per parameter instead of 36 for clip + step + copy as three passes.
``bench/scaling.py`` measures both paths and the machine's bandwidth; ``bench/hogwild.py``
the step alone.

JIT: fastmath comes from ``nbasync/nn/_jit.py`` (the one place where it is chosen; OFF).
The decorator adds ``error_model="numpy"`` to it: with numba's default ("python") every
division carries a zero check that raises ZeroDivisionError, which stops LLVM from vectorising
the update loop; measured 3.2 ms -> 0.8 ms per Atari-sized step. The norm's float64 sum is
compiled with nn/_jit.py's REDUCE_FASTMATH (reassociation), so that it vectorises.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .nn._jit import FASTMATH, REDUCE_FASTMATH

__all__ = [
    "RMSProp",
    "MomentumSGD",
    "clip_grad_norm",
    "clip_scale",
    "rmsprop_step_and_copy",
    "momentum_step_and_copy",
    "global_norm",
    "linear_lr",
    "make_optimizer",
    "rmsprop_step",
    "momentum_step",
    "OPTIMIZER_KINDS",
]

OPTIMIZER_KINDS = ("shared_rmsprop", "rmsprop", "momentum")

# error_model="numpy": a division by zero gives inf/nan instead of a per-element Python check,
# which is what lets LLVM vectorise the update loop (about 4x faster here).
_jit = njit(cache=True, fastmath=FASTMATH, error_model="numpy")
# The norm's sum only: nn/_jit.py's reduction flags (reassociation lets the sum vectorise).
_jit_reduce = njit(cache=True, fastmath=REDUCE_FASTMATH, error_model="numpy")


# ----------------------------------------------------------------------------- kernels


@_jit
def _rmsprop_kernel(params, grads, g, lr, alpha, eps, tiny):
    one_minus_alpha = np.float32(1) - alpha  # float32 params: all float32 (see module doc)
    for i in range(params.shape[0]):
        d = grads[i]
        gi = alpha * g[i] + one_minus_alpha * d * d
        if gi < tiny:  # a subnormal g: 0 (see module doc; g + eps is eps either way)
            gi = np.float32(0)  # (an int 0 would make gi, and the loop, float64)
        g[i] = gi
        params[i] -= lr * d / np.sqrt(gi + eps)


@_jit
def _rmsprop_fused_kernel(params, grads, g, local, lr, alpha, eps, scale, tiny):
    # The whole update path in one pass over memory: the clip's scaling of d, the RMSProp step
    # and the theta' <- theta refresh. Bit for bit _scale_kernel (a scale of 1 changes no
    # bit: x * 1 == x), _rmsprop_kernel and a copy: the same float ops in the same order.
    one_minus_alpha = np.float32(1) - alpha  # float32 params: all float32 (see module doc)
    for i in range(params.shape[0]):
        d = grads[i] * scale
        gi = alpha * g[i] + one_minus_alpha * d * d
        if gi < tiny:
            gi = np.float32(0)  # (an int 0 would make gi, and the loop, float64)
        g[i] = gi
        p = params[i] - lr * d / np.sqrt(gi + eps)
        params[i] = p
        local[i] = p


@_jit
def _momentum_fused_kernel(params, grads, m, local, lr, mu, scale, tiny):
    one_minus_mu = np.float32(1) - mu
    for i in range(params.shape[0]):
        mi = mu * m[i] + one_minus_mu * (grads[i] * scale)
        if abs(mi) < tiny:
            mi = np.float32(0)
        m[i] = mi
        p = params[i] - lr * mi
        params[i] = p
        local[i] = p


@_jit
def _momentum_kernel(params, grads, m, lr, mu, tiny):
    one_minus_mu = np.float32(1) - mu
    for i in range(params.shape[0]):
        mi = mu * m[i] + one_minus_mu * grads[i]
        if abs(mi) < tiny:
            mi = np.float32(0)
        m[i] = mi
        params[i] -= lr * mi


@_jit_reduce
def _sum_squares_kernel(x):
    # One float64 accumulator; reassociation (see _jit_reduce) lets LLVM vectorise it into
    # several independent vector accumulators. Measured on the Atari
    # network's 677,943 grads, in cache: 0.077 ms against 0.245 ms for the eight scalar
    # accumulators it replaced.
    acc = 0.0
    for i in range(x.shape[0]):
        v = np.float64(x[i])
        acc += v * v
    return acc


@_jit
def _scale_kernel(x, s):
    for i in range(x.shape[0]):
        x[i] *= s


# ----------------------------------------------------------------------------- checks


def _tiny(params: np.ndarray):
    """The smallest normal number of the parameters' dtype (statistics below it become 0)."""
    return np.finfo(params.dtype).tiny


def _check_flat(name: str, a: np.ndarray) -> None:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.ndim != 1 or not a.flags.c_contiguous:
        raise ValueError(f"{name} must be a flat contiguous 1-D array, got shape {a.shape}")
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")


def _check_same(params: np.ndarray, *others: tuple[str, np.ndarray]) -> None:
    _check_flat("params", params)
    for name, a in others:
        _check_flat(name, a)
        if a.shape != params.shape or a.dtype != params.dtype:
            raise ValueError(
                f"{name} {a.dtype}{a.shape} does not match params {params.dtype}{params.shape}"
            )
    if not params.flags.writeable:
        raise ValueError("params is read-only")


# ----------------------------------------------------------------------------- public kernels


def rmsprop_step(params, grads, g, lr, alpha=0.99, eps=0.1) -> None:
    """One non-centred RMSProp step, in place on ``params`` and ``g`` (eps inside the root).

    All three arrays are flat, contiguous, of one dtype (float32 or float64). ``g`` may be a
    shared-memory view updated by other processes at the same time (shared RMSProp).
    """
    _check_same(params, ("grads", grads), ("g", g))
    t = params.dtype.type
    _rmsprop_kernel(params, grads, g, t(lr), t(alpha), t(eps), _tiny(params))


def rmsprop_step_and_copy(
    params, grads, g, local, lr, alpha=0.99, eps=0.1, grad_scale: float = 1.0
) -> None:
    """``rmsprop_step`` on ``grads * grad_scale``, then ``local[:] = params``, in ONE pass.

    The fused form of clip (given its scale, see ``clip_scale``) + step + the worker's
    theta' <- theta refresh: it reads d, g and theta and writes g, theta and theta' once
    (24 bytes per float32 parameter instead of 36 for the three passes). The result is bit
    for bit that of the three passes, except that theta' gets this worker's own new theta
    rather than a re-read of the shared vector a moment later (which may already hold another
    worker's update: either is a valid Hogwild snapshot; with one worker they are equal).
    """
    _check_same(params, ("grads", grads), ("g", g), ("local", local))
    if not local.flags.writeable:
        raise ValueError("local is read-only")
    t = params.dtype.type
    _rmsprop_fused_kernel(
        params, grads, g, local, t(lr), t(alpha), t(eps), t(grad_scale), _tiny(params)
    )


def momentum_step_and_copy(params, grads, m, local, lr, momentum=0.9, grad_scale=1.0) -> None:
    """``momentum_step`` on ``grads * grad_scale``, then ``local[:] = params``, in one pass
    (see ``rmsprop_step_and_copy``)."""
    _check_same(params, ("grads", grads), ("m", m), ("local", local))
    if not local.flags.writeable:
        raise ValueError("local is read-only")
    t = params.dtype.type
    _momentum_fused_kernel(
        params, grads, m, local, t(lr), t(momentum), t(grad_scale), _tiny(params)
    )


def momentum_step(params, grads, m, lr, momentum=0.9) -> None:
    """One momentum-SGD step in the paper's form: m <- mu m + (1 - mu) d; theta -= lr m."""
    _check_same(params, ("grads", grads), ("m", m))
    t = params.dtype.type
    _momentum_kernel(params, grads, m, t(lr), t(momentum), _tiny(params))


def global_norm(grads: np.ndarray) -> float:
    """The L2 norm of a flat gradient (float64 sum); inf or nan when an element is."""
    _check_flat("grads", grads)
    return math.sqrt(_sum_squares_kernel(grads))


def clip_grad_norm(grads: np.ndarray, max_norm: float = 40.0) -> float:
    """Scale ``grads`` in place so that its global L2 norm is at most ``max_norm``.

    Returns the norm BEFORE clipping (as a Python float). A non-finite norm is returned
    unchanged and the gradient is left alone, so the caller can detect and skip it.
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    norm = global_norm(grads)
    scale = clip_scale(norm, max_norm)
    if scale != 1.0:
        if not grads.flags.writeable:
            raise ValueError("grads is read-only")
        _scale_kernel(grads, grads.dtype.type(scale))
    return norm


def clip_scale(norm: float, max_norm: float) -> float:
    """The factor global-norm clipping multiplies a gradient of L2 norm ``norm`` by: 1.0 when
    ``max_norm`` is 0 (off), the norm is within it, or the norm is not finite (the caller
    skips such an update), else ``max_norm / (norm + 1e-6)``."""
    if max_norm > 0 and math.isfinite(norm) and norm > max_norm:
        return max_norm / (norm + 1e-6)
    return 1.0


def linear_lr(lr0: float, global_step: int, total_steps: int) -> float:
    """Learning rate annealed linearly from ``lr0`` at step 0 to 0 at ``total_steps``.

    Never negative: steps past ``total_steps`` (workers overshoot T a little) give 0.0.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    frac = 1.0 - float(global_step) / float(total_steps)
    return float(lr0) * min(1.0, max(0.0, frac))


# ----------------------------------------------------------------------------- optimisers


class RMSProp:
    """RMSProp over flat vectors; ``g`` is either shared (handed in) or owned by this worker."""

    def __init__(self, g: np.ndarray, alpha: float = 0.99, eps: float = 0.1):
        _check_flat("g", g)
        self.g = g
        self.alpha = float(alpha)
        self.eps = float(eps)

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        rmsprop_step(params, grads, self.g, lr, self.alpha, self.eps)

    def step_and_copy(
        self,
        params: np.ndarray,
        grads: np.ndarray,
        lr: float,
        local: np.ndarray,
        grad_scale: float = 1.0,
    ) -> None:
        """The step on ``grads * grad_scale``, then ``local[:] = params``, in one pass."""
        rmsprop_step_and_copy(params, grads, self.g, local, lr, self.alpha, self.eps, grad_scale)


class MomentumSGD:
    """Momentum SGD with per-worker momentum ``m`` (paper's form, see module docstring)."""

    def __init__(self, m: np.ndarray, momentum: float = 0.9):
        _check_flat("m", m)
        self.m = m
        self.momentum = float(momentum)

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        momentum_step(params, grads, self.m, lr, self.momentum)

    def step_and_copy(
        self,
        params: np.ndarray,
        grads: np.ndarray,
        lr: float,
        local: np.ndarray,
        grad_scale: float = 1.0,
    ) -> None:
        """The step on ``grads * grad_scale``, then ``local[:] = params``, in one pass."""
        momentum_step_and_copy(params, grads, self.m, local, lr, self.momentum, grad_scale)


def make_optimizer(
    kind: str,
    n_params: int,
    shared_stats: np.ndarray | None = None,
    alpha: float = 0.99,
    eps: float = 0.1,
    momentum: float = 0.9,
    dtype=np.float32,
):
    """Build an optimiser with ``.step(params, grads, lr)``.

    kind:
      "shared_rmsprop"  RMSProp whose g is ``shared_stats`` (e.g. ``SharedState.opt_stats``),
                        updated lock-free by every worker. Required, length ``n_params``.
      "rmsprop"         RMSProp with this worker's own g (zeros, ``dtype``).
      "momentum"        momentum SGD with this worker's own momentum (zeros, ``dtype``).
    The state's dtype must match the params passed to ``step``.
    """
    if kind not in OPTIMIZER_KINDS:
        raise ValueError(f"unknown optimizer kind {kind!r}; expected one of {OPTIMIZER_KINDS}")
    n_params = int(n_params)
    if kind == "shared_rmsprop":
        if shared_stats is None:
            raise ValueError("kind 'shared_rmsprop' needs shared_stats (SharedState.opt_stats)")
        if shared_stats.shape != (n_params,):
            raise ValueError(f"shared_stats has shape {shared_stats.shape}, expected ({n_params},)")
        return RMSProp(shared_stats, alpha=alpha, eps=eps)
    if shared_stats is not None:
        raise ValueError(f"kind {kind!r} keeps per-worker state; do not pass shared_stats")
    if kind == "rmsprop":
        return RMSProp(np.zeros(n_params, dtype=dtype), alpha=alpha, eps=eps)
    return MomentumSGD(np.zeros(n_params, dtype=dtype), momentum=momentum)
