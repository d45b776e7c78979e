"""Asynchronous one-step Q-learning, the paper's Algorithm 1.

    act epsilon-greedily on Q(s; theta'), observe r, s'
    y = r if s' is terminal, else r + gamma max_a' Q(s', a'; theta-)
    accumulate grad of 0.5 (y - Q(s, a; theta'))^2
    every I_AsyncUpdate (= t_max) steps or at the end of an episode: one asynchronous update
    every I_target global steps: theta- <- theta      (SharedState, exactly once per interval)

The targets of one accumulation window are computed in one batched forward of the target
network at update time (the same values as one forward per step, fewer calls).
"""

from __future__ import annotations

import numpy as np

from ..build import Q_VALUES
from ..nn import td_loss
from .base import ActorLearner
from .registry import AlgorithmSpec
from .targets import onestep_q_targets


def run(w: ActorLearner) -> None:
    cfg = w.config

    def choose(t: int, q: np.ndarray) -> int:
        return w.epsilon_greedy(q)

    obs = w.reset()
    while not w.finished():
        w.sync()
        r = w.rollout(obs, choose)  # one accumulation window
        n = r.n
        w.load(n, r.obs)  # s' of the last transition; s'_i = s_{i+1} for the others
        next_q = w.target_forward(1, n)
        targets = onestep_q_targets(
            w.rewards[:n], w.terminated[:n], next_q, cfg.gamma, w.targets[:n]
        )
        td_loss(w.outputs[:n], w.actions[:n], targets, w.dout[:n])
        w.apply_gradients(n)
        obs = w.next_start(r)


SPEC = AlgorithmSpec(
    name="onestep_q",
    summary="asynchronous one-step Q-learning (Algorithm 1)",
    head=Q_VALUES,
    run=run,
    target_network=True,
)
