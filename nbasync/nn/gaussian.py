"""Gaussian policy head for continuous actions: sampling, log-prob, entropy, A3C loss.

Owns the continuous-action side of A3C (the paper's MuJoCo set-up). The policy net's last
Dense layer has 2D outputs per row, read as (D = action dimensions)::

    mu      = out[:, :D]                                  (mean: linear)
    var     = softplus(out[:, D:2D]) + VAR_FLOOR          (variance: softplus of linear)

and A3C's value comes from a SEPARATE value net (no parameter sharing, as in the paper);
:class:`~nbasync.nn.network.NetworkPair` puts both over one flat vector and presents them as
one net with ``2D + 1`` outputs, column 2D being V(s). Per dimension d (diagonal Gaussian)::

    log pi(a|s) = sum_d [ -(a_d - mu_d)^2 / (2 var_d) - 0.5 log(2 pi var_d) ]
    H(pi(.|s))  = sum_d 0.5 log(2 pi e var_d)

Actions are sampled a = mu + sqrt(var) * eps, eps ~ N(0, 1); the ENVIRONMENT gets a
clipped to the action space's bounds, the log-prob uses the unclipped a (so the gradient is
that of the distribution actually sampled from).

Outside the bounds the return no longer depends on mu (the env sees the clipped action), so
the policy gradient there is noise and the mean can drift off for good. An optional penalty
``bound_weight * e^2``, e = mu - clip(mu, low, high), pulls it back (zero inside the bounds).
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit
from .kernels import sigmoid

VAR_FLOOR = 1e-4
"""Added to softplus(.) so the variance (and 1/var in the gradients) stays bounded."""

_LOG_2PI = math.log(2.0 * math.pi)


def pre_variance_for_std(std: float) -> float:
    """The pre-variance s with softplus(s) + VAR_FLOOR = std^2: the policy head's bias that
    starts the Gaussian at ``std`` (``--init-std``); std^2 must exceed VAR_FLOOR."""
    target = float(std) ** 2 - VAR_FLOOR
    if not (std > 0 and target > 0):
        floor = math.sqrt(VAR_FLOOR)
        raise ValueError(f"std must be positive and exceed sqrt(VAR_FLOOR) = {floor:g}, got {std}")
    return math.log(math.expm1(target))  # the inverse of softplus


@jit
def _softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@jit
def gaussian_sample(out_row, noise, low, high, action, clipped):
    """a = mu + sqrt(var) * noise into ``action`` (unclipped), and a clipped to [low, high]
    into ``clipped`` (what the environment gets). ``out_row`` is one row of the net's output
    (at least 2D columns); ``noise`` (D,) standard normal draws. No allocation."""
    D = noise.shape[0]
    for d in range(D):
        var = _softplus(out_row[D + d]) + VAR_FLOOR
        a = out_row[d] + math.sqrt(var) * noise[d]
        action[d] = a
        clipped[d] = min(max(a, low[d]), high[d])


@jit
def gaussian_mean(out_row, low, high, clipped):
    """The greedy action: mu clipped to [low, high] (evaluation)."""
    for d in range(clipped.shape[0]):
        clipped[d] = min(max(out_row[d], low[d]), high[d])


def gaussian_a3c_loss(
    out, actions, returns, entropy_beta, value_weight, dout, low=None, high=None, bound_weight=0.0
):
    """A3C loss with a Gaussian policy over n rows; fills dout (n, 2D+1).

    ``out`` (n, 2D+1): mu = out[:, :D], s = out[:, D:2D] (var = softplus(s) + VAR_FLOOR),
    V = out[:, 2D]. ``actions`` (n, D): the UNCLIPPED samples. With the advantage
    A_i = R_i - V_i held constant in the policy term::

        L = sum_i [ -log pi(a_i|s_i) A_i  -  beta H_i  +  value_weight (R_i - V_i)^2 ]

    Returns (policy_loss, value_loss, entropy) as :func:`~nbasync.nn.losses.a3c_loss`.
    Gradients (per dimension, u = a - mu; dvar/ds = sigmoid(s))::

        dlogpi/dmu  = u / var                 dlogpi/dvar = 0.5 (u^2 / var^2 - 1 / var)
        dH/dvar     = 0.5 / var
        dL/dmu = -A u / var
        dL/ds  = [ -A 0.5 (u^2/var^2 - 1/var)  -  beta 0.5 / var ] sigmoid(s)
        dL/dV  = -2 value_weight (R - V)

    With ``bound_weight`` > 0 (``low``, ``high`` (D,) the action bounds) the loss gains
    ``bound_weight * sum_d e_d^2``, e = mu - clip(mu, low, high), counted in policy_loss, and
    dL/dmu gains 2 bound_weight e.
    """
    out = np.asarray(out)
    n, m = out.shape
    if m < 3 or m % 2 != 1:
        raise ValueError(f"out must have 2D + 1 columns, got {m}")
    D = (m - 1) // 2
    if dout.shape != out.shape:
        raise ValueError(f"dout must have shape {out.shape}, got {dout.shape}")
    actions = np.asarray(actions, dtype=out.dtype)
    if actions.shape != (n, D):
        raise ValueError(f"actions must have shape ({n}, {D}), got {actions.shape}")
    returns = np.asarray(returns, dtype=out.dtype)
    if returns.shape != (n,):
        raise ValueError(f"returns must have shape ({n},), got {returns.shape}")
    bound_weight = float(bound_weight)
    if low is None or high is None:
        if bound_weight:
            raise ValueError("bound_weight needs the action bounds low and high")
        low = high = np.zeros(D, dtype=out.dtype)  # unused with bound_weight 0
    low = np.asarray(low, dtype=out.dtype)  # no copy when the dtypes agree (training)
    high = np.asarray(high, dtype=out.dtype)
    if low.shape != (D,) or high.shape != (D,):
        raise ValueError(f"low and high must have shape ({D},)")
    pl, vl, ent = _gaussian_a3c_loss(
        out, actions, returns, float(entropy_beta), float(value_weight), dout,
        low, high, bound_weight,
    )  # fmt: skip
    return float(pl), float(vl), float(ent)


@jit
def _gaussian_a3c_loss(out, actions, returns, beta, value_weight, dout, low, high, bound_weight):
    n = out.shape[0]
    D = actions.shape[1]
    policy_loss = 0.0
    value_loss = 0.0
    entropy = 0.0
    for i in range(n):
        v = out[i, 2 * D]
        adv = returns[i] - v
        logp = 0.0
        H = 0.0
        for d in range(D):
            mu = out[i, d]
            s = out[i, D + d]
            var = _softplus(s) + VAR_FLOOR
            u = actions[i, d] - mu
            logp += -0.5 * u * u / var - 0.5 * (_LOG_2PI + math.log(var))
            H += 0.5 * (_LOG_2PI + 1.0 + math.log(var))
            dlogp_dvar = 0.5 * (u * u / (var * var) - 1.0 / var)
            dout[i, d] = -adv * u / var
            dout[i, D + d] = (-adv * dlogp_dvar - beta * 0.5 / var) * sigmoid(s)
            if bound_weight != 0.0:
                excess = mu - min(max(mu, low[d]), high[d])
                policy_loss += bound_weight * excess * excess
                dout[i, d] += 2.0 * bound_weight * excess
        policy_loss -= logp * adv
        value_loss += value_weight * adv * adv
        entropy += H
        dout[i, 2 * D] = -2.0 * value_weight * adv
    return policy_loss, value_loss, entropy


__all__ = ["VAR_FLOOR", "gaussian_a3c_loss", "gaussian_mean", "gaussian_sample"]
