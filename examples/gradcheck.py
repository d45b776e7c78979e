"""Gradient check of a small A3C MLP in float64: per-tensor relative errors.

    python examples/gradcheck.py

Builds mlp_network(obs_dim=4, n_outputs=3 actions + 1 value) in float64, takes the A3C loss
of a fake 5-step rollout and compares backprop with central differences. The advantage
A = R - V is held constant in the policy term (as in the paper), so the finite-difference
loss freezes it at the unperturbed output too.
"""

from __future__ import annotations

import numpy as np

from nbasync.nn import a3c_loss, gradcheck, mlp_network

N_ACTIONS, OBS_DIM, T = 3, 4, 5
BETA, VALUE_WEIGHT = 0.01, 0.5

net = mlp_network(OBS_DIM, N_ACTIONS + 1, hidden=(16, 16), max_batch=T, dtype=np.float64)
net.init_params(seed=0)
rng = np.random.default_rng(0)
obs = rng.normal(size=(T, OBS_DIM))
actions = rng.integers(0, N_ACTIONS, size=T)
returns = rng.normal(size=T)
advantages = returns - net.forward(obs)[:, N_ACTIONS]  # frozen copy of A = R - V


def loss_fn(out):
    """L with A frozen (for the differences) and dL/dout from a3c_loss (for backprop)."""
    dout = np.empty_like(out)
    a3c_loss(out, actions, returns, BETA, VALUE_WEIGHT, dout)
    z = out[:, :N_ACTIONS] - out[:, :N_ACTIONS].max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    entropy = -(np.exp(logp) * logp).sum()
    policy = -(logp[np.arange(T), actions] * advantages).sum()
    value = VALUE_WEIGHT * ((returns - out[:, N_ACTIONS]) ** 2).sum()
    return policy + value - BETA * entropy, dout


errors = gradcheck(net, loss_fn, obs, input_grad=True)
print(f"{'tensor':<12} {'shape':<10} rel. error")
for name, err in errors.items():
    shape = net.param(name).shape if name != "input" else obs.shape
    print(f"{name:<12} {str(shape):<10} {err:.2e}")
print("\nhead.bias gradient (3 logits, then V):", net.grad("head.bias"))
print("worst:", max(errors.values()), "(float64: ~1e-7 or below is right)")
