"""Losses with their gradients written out, and action selection from network outputs.

Owns the objective each algorithm minimises. The optimiser DESCENDS the loss L, so every
ascent direction of the paper (policy gradient, entropy bonus) appears here with a minus
sign. Losses are SUMS over the rows (the rollout), not means, as in the paper's
accumulated gradients. Each fills ``dout = dL/dout`` for :meth:`Network.backward`.

Also the allocation-free numba helpers the algorithms call per step:
``sample_from_logits(logits_row, u)`` and ``argmax(row)``.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit


def _as_rows(a, n, dtype, what):
    a = np.asarray(a, dtype=dtype)
    if a.shape != (n,):
        raise ValueError(f"{what} must have shape ({n},), got {a.shape}")
    return a


def a3c_loss(out, actions, returns, entropy_beta, value_weight, dout):
    """A3C loss over n rows; fills dout (n, A+1); returns (policy_loss, value_loss, entropy).

    ``out`` (n, A+1): columns [:A] are policy logits z, column A is V(s). With
    log pi = log_softmax(z) (stable: shifted by max z), p = pi, H = -sum_j p_j log p_j and the
    advantage A_i = R_i - V(s_i) HELD CONSTANT in the policy term (no gradient through it)::

        L = sum_i [ -log pi(a_i|s_i) * A_i  -  beta * H_i  +  value_weight * (R_i - V_i)^2 ]

    Returned: policy_loss = sum_i -log pi(a_i|s_i) A_i,
              value_loss  = sum_i value_weight (R_i - V_i)^2   (the weight is applied once),
              entropy     = sum_i H_i;
    so L = policy_loss + value_loss - entropy_beta * entropy.

    Gradient written to dout (descending L ascends log pi * A and H, as in the paper):

        dL/dz_ij = -A_i (1[j = a_i] - p_ij)  +  beta * p_ij (log p_ij + H_i)
        dL/dV_i  = -2 value_weight (R_i - V_i)       (= V_i - R_i for value_weight = 0.5)

    (dH/dz_j = -p_j (log p_j + H), so the -beta*H term contributes +beta*p_j(log p_j + H).)
    """
    out = np.asarray(out)
    n, m = out.shape
    if dout.shape != out.shape:
        raise ValueError(f"dout must have shape {out.shape}, got {dout.shape}")
    actions = _as_rows(actions, n, np.int64, "actions")
    returns = _as_rows(returns, n, out.dtype, "returns")
    if np.any(actions < 0) or np.any(actions >= m - 1):
        raise ValueError(f"actions must be in [0, {m - 1})")
    pl, vl, ent = _a3c_loss(out, actions, returns, float(entropy_beta), float(value_weight), dout)
    return float(pl), float(vl), float(ent)


@jit
def _a3c_loss(out, actions, returns, beta, value_weight, dout):
    n, m = out.shape
    A = m - 1
    policy_loss = 0.0
    value_loss = 0.0
    entropy = 0.0
    for i in range(n):
        zmax = out[i, 0]
        for j in range(1, A):
            if out[i, j] > zmax:
                zmax = out[i, j]
        s = 0.0
        for j in range(A):
            s += math.exp(out[i, j] - zmax)
        lse = zmax + math.log(s)
        H = 0.0
        for j in range(A):
            logp = out[i, j] - lse
            H -= math.exp(logp) * logp
        v = out[i, A]
        adv = returns[i] - v
        a = actions[i]
        policy_loss -= (out[i, a] - lse) * adv
        value_loss += value_weight * adv * adv
        entropy += H
        for j in range(A):
            logp = out[i, j] - lse
            p = math.exp(logp)
            g = adv * p + beta * p * (logp + H)
            if j == a:
                g -= adv
            dout[i, j] = g
        dout[i, A] = -2.0 * value_weight * adv
    return policy_loss, value_loss, entropy


def td_loss(q, actions, targets, dout):
    """One-step / n-step Q loss over n rows; fills dout (n, A); returns the loss.

    ``q`` (n, A) = Q(s_i, .), ``targets`` y_i (held constant: from the target network or
    the n-step return)::

        L = sum_i 0.5 * (y_i - Q(s_i, a_i))^2
        dL/dq_ij = (Q(s_i, a_i) - y_i) if j == a_i else 0
    """
    q = np.asarray(q)
    n, m = q.shape
    if dout.shape != q.shape:
        raise ValueError(f"dout must have shape {q.shape}, got {dout.shape}")
    actions = _as_rows(actions, n, np.int64, "actions")
    targets = _as_rows(targets, n, q.dtype, "targets")
    if np.any(actions < 0) or np.any(actions >= m):
        raise ValueError(f"actions must be in [0, {m})")
    return float(_td_loss(q, actions, targets, dout))


@jit
def _td_loss(q, actions, targets, dout):
    n, m = q.shape
    loss = 0.0
    for i in range(n):
        for j in range(m):
            dout[i, j] = 0.0
        a = actions[i]
        err = q[i, a] - targets[i]
        loss += 0.5 * err * err
        dout[i, a] = err
    return loss


@jit
def sample_from_logits(logits_row, u):
    """Sample j ~ softmax(logits_row) by inverse CDF with u ~ U[0, 1); no allocation.

    Callable from Python and from other numba code. Returns the last index with non-zero
    probability if rounding leaves u*sum beyond the cumulative sum.
    """
    n = logits_row.shape[0]
    zmax = logits_row[0]
    for j in range(1, n):
        if logits_row[j] > zmax:
            zmax = logits_row[j]
    s = 0.0
    for j in range(n):
        s += math.exp(logits_row[j] - zmax)
    threshold = u * s
    c = 0.0
    last = 0
    for j in range(n):
        e = math.exp(logits_row[j] - zmax)
        if e > 0.0:
            last = j
        c += e
        if threshold < c:
            return j
    return last


@jit
def argmax(row):
    """Index of the first maximum of a 1-D array (greedy action); no allocation."""
    best = 0
    v = row[0]
    for j in range(1, row.shape[0]):
        if row[j] > v:
            v = row[j]
            best = j
    return best
