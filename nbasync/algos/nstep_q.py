"""Asynchronous n-step Q-learning, the paper's Algorithm S2.

theta' <- theta
act epsilon-greedily on Q(s; theta') for up to t_max steps (or until the episode ends)
R = 0 if s_t is terminal, else max_a Q(s_t, a; theta-)   (a time-limit cut bootstraps too)
for i = t-1 .. t_start:  R <- r_i + gamma R;  accumulate grad of 0.5 (R - Q(s_i, a_i; theta'))^2
one asynchronous update of theta
"""

from __future__ import annotations

import numpy as np

from ..build import Q_VALUES
from ..nn import td_loss
from .base import ActorLearner
from .registry import AlgorithmSpec
from .targets import discounted_returns


def run(w: ActorLearner) -> None:
    cfg = w.config

    def choose(t: int, q: np.ndarray) -> int:
        return w.epsilon_greedy(q)

    obs = w.reset()
    while not w.finished():
        w.sync()
        r = w.rollout(obs, choose)
        if r.terminated:
            bootstrap = 0.0
        else:
            w.load(r.n, r.obs)
            bootstrap = float(w.target_forward(r.n, 1)[0].max())
        n = r.n
        returns = discounted_returns(w.rewards[:n], bootstrap, cfg.gamma, w.targets[:n])
        td_loss(w.outputs[:n], w.actions[:n], returns, w.dout[:n])
        w.apply_gradients(n)
        obs = w.next_start(r)


SPEC = AlgorithmSpec(
    name="nstep_q",
    summary="asynchronous n-step Q-learning (Algorithm S2)",
    head=Q_VALUES,
    run=run,
    target_network=True,
)
