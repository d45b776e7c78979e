"""Short names the nn tests use for the plain NumPy references (``nbasync.nn.reference``),
plus the A3C loss split into its terms (for finite differences with a fixed advantage)."""

from __future__ import annotations

import numpy as np

from nbasync.nn import reference
from nbasync.nn.reference import log_softmax


def conv2d(x, W, b, stride):
    return reference.conv2d_forward(x, W, b, stride)[0]


def dense(x, W, b):
    return reference.dense_forward(x, W, b)[0]


def relu(x):
    return reference.relu_forward(x)[0]


def flatten(x):
    return reference.flatten_forward(x)[0]


def network_forward(net, x):
    """The net's function computed layer by layer from its named parameters."""
    return reference.network_forward(net, x)[0]


def a3c_terms(out, actions, returns, beta, value_weight, advantages=None):
    """(policy_loss, value_loss, entropy, L); advantages default R - V (pass fixed ones for FD)."""
    A = out.shape[1] - 1
    lp = log_softmax(out[:, :A])
    H = -(np.exp(lp) * lp).sum(axis=1)
    V = out[:, A]
    adv = returns - V if advantages is None else advantages
    policy = float(-(lp[np.arange(len(actions)), actions] * adv).sum())
    value = float((value_weight * (returns - V) ** 2).sum())
    entropy = float(H.sum())
    return policy, value, entropy, policy + value - beta * entropy


def td(q, actions, targets):
    return reference.td_loss(q, actions, targets)[0]
