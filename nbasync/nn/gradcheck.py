"""Finite-difference gradient check of any Network + loss (public).

Owns the numerical side of the gradient tests: central differences in float64,
relative error per named parameter tensor (and for the input, if asked)::

    rel_error = max_k |a_k - n_k| / max(1e-8, |a_k| + |n_k|)

with a = analytic gradient (``net.grad(name)`` after ``backward``), n = numerical gradient
(L(theta + eps) - L(theta - eps)) / (2 eps). Around 1e-7 or below is right in float64; 1e-2
or above is a bug (unless a ReLU kink lies within eps of an entry).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def rel_error(a, b) -> float:
    """max |a - b| / max(1e-8, |a| + |b|) over all entries (0.0 for empty arrays)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def numerical_grad(f: Callable[[], float], a: np.ndarray, eps: float = 1e-5, index=None):
    """Central-difference gradient of the scalar f() w.r.t. the array a, perturbed in place.

    ``index``: flat indices of a to probe (default all); returns the gradient at those
    indices, flat. a is restored exactly after each probe.
    """
    flat = a.reshape(-1)  # a view: a must be contiguous
    if not np.shares_memory(flat, a):
        raise ValueError("a must be contiguous (perturbed in place)")
    index = np.arange(flat.size) if index is None else np.asarray(index)
    g = np.empty(index.size, dtype=np.float64)
    for k, i in enumerate(index):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        g[k] = (fp - fm) / (2.0 * eps)
    return g


def gradcheck(
    net,
    loss_fn: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x: np.ndarray,
    eps: float = 1e-5,
    *,
    input_grad: bool = False,
    max_entries: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Relative error of ``net``'s analytic gradient per named tensor (+ "input").

    net: a float64 :class:`Network`; loss_fn(out) -> (loss, dL/dout) for out (B, n_outputs);
    x: (B, *input_shape). ``max_entries`` probes a random (seeded) subset of each tensor
    (big convolution nets have ~10^6 parameters). The net's params are left as they were;
    its grads hold the analytic gradient of one backward afterwards.
    """
    if net.dtype != np.float64:
        raise ValueError("gradcheck needs a float64 network (build it with dtype=np.float64)")
    x = np.array(x, dtype=np.float64, copy=True, order="C")
    B = x.shape[0]
    rng = np.random.default_rng(seed)

    net.zero_grad()
    out = net.forward(x, row=0).copy()
    _, dout = loss_fn(out)
    dx = net.backward(np.ascontiguousarray(dout, dtype=np.float64), B, input_grad=input_grad)
    dx = None if dx is None else dx.copy()

    def loss() -> float:
        return float(loss_fn(net.forward(x, row=0).copy())[0])

    def probe(size):
        if max_entries is None or size <= max_entries:
            return np.arange(size)
        return np.sort(rng.choice(size, size=max_entries, replace=False))

    errors: dict[str, float] = {}
    for name in net.param_names:
        p = net.param(name)
        idx = probe(p.size)
        num = numerical_grad(loss, p, eps, idx)
        errors[name] = rel_error(net.grad(name).reshape(-1)[idx], num)
    if input_grad:
        idx = probe(x.size)
        num = numerical_grad(loss, x, eps, idx)
        errors["input"] = rel_error(dx.reshape(-1)[idx], num)
    return errors
