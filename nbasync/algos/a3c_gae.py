"""A3C with generalised advantage estimation (Schulman et al. 2016), ``--gae-lambda``.

The paper's conclusion names better advantage estimates as a next step. This is A3C's loop
(``a3c.actor_critic``: the same rollout, bootstrap, loss and update, FF, LSTM and
continuous) with the n-step returns replaced by lambda-returns::

    theta' <- theta
    act for up to t_max steps (or until the episode ends), a_t ~ pi(.|s_t; theta')
    G = 0 if s_t is terminal, else V(s_t; theta')       (a time-limit cut bootstraps too)
    for i = t-1 .. t_start:  G <- r_i + gamma ((1 - lambda) V(s_{i+1}) + lambda G)
        policy:  -log pi(a_i|s_i) (G - V(s_i)) - beta H(pi(.|s_i))   (advantage held constant)
        value:   value_weight (G - V(s_i))^2
    one asynchronous update of theta with the summed gradient

G - V(s_i) is the GAE advantage sum_l (gamma lambda)^l delta_{i+l} over the rollout (the
sum stops at the rollout's end, where the bootstrap stands in). lambda = 1 is A3C exactly
(the same bits: ``targets.lambda_returns``); lambda = 0 uses the one-step TD error
delta_i = r_i + gamma V(s_{i+1}) - V(s_i): less variance, more bias. The V(s_i) are the
values the rollout's own forward passes computed (row i of ``w.outputs``), so no pass more.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import a3c
from .base import ActorLearner
from .targets import lambda_returns


def gae_returns(w: ActorLearner, n: int, bootstrap: float) -> np.ndarray:
    """lambda-returns G_i over rows [0, n) (``targets.lambda_returns``)."""
    values = w.outputs[:n, w.net.n_outputs - 1]  # V(s_i), from acting
    cfg = w.config
    return lambda_returns(
        w.rewards[:n], values, bootstrap, cfg.gamma, cfg.gae_lambda, w.targets[:n]
    )


def run(w: ActorLearner) -> None:
    """A3C's loop with lambda-returns."""
    a3c.actor_critic(w, gae_returns)


SPEC = dataclasses.replace(
    a3c.SPEC,
    name="a3c_gae",
    summary="A3C with generalised advantage estimation (--gae-lambda; 1 = a3c exactly)",
    run=run,
    settings=("gae_lambda",),
)
