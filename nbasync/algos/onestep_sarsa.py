"""Asynchronous one-step SARSA: Algorithm 1 with the on-policy target

    y = r if s' is terminal, else r + gamma Q(s', a'; theta-),  a' the action taken in s'.

a' is chosen epsilon-greedily on Q(s'; theta') when s' is reached, and it IS the action the
worker takes next, also across an update boundary (it is carried into the next window).
When an episode is cut by a time limit, a' is chosen the same way but never executed.
"""

from __future__ import annotations

import numpy as np

from ..build import Q_VALUES
from ..nn import td_loss
from .base import ActorLearner
from .registry import AlgorithmSpec
from .targets import sarsa_targets


def run(w: ActorLearner) -> None:
    cfg = w.config
    pending = -1  # the action already chosen for the current state, if any

    def choose(t: int, q: np.ndarray) -> int:
        nonlocal pending
        action = pending if pending >= 0 else w.epsilon_greedy(q)
        pending = -1
        return action

    obs = w.reset()
    while not w.finished():
        w.sync()
        r = w.rollout(obs, choose)  # one accumulation window
        n = r.n
        if not r.terminated:
            # a' for the last transition, chosen on theta' as the next action will be.
            w.actions[n] = w.epsilon_greedy(w.act_forward(n, r.obs))
            pending = -1 if r.truncated else int(w.actions[n])
        else:
            w.load(n, r.obs)
        next_q = w.target_forward(1, n)
        targets = sarsa_targets(
            w.rewards[:n],
            w.terminated[:n],
            next_q,
            w.actions[1 : n + 1],
            cfg.gamma,
            w.targets[:n],
        )
        td_loss(w.outputs[:n], w.actions[:n], targets, w.dout[:n])
        w.apply_gradients(n)
        obs = w.next_start(r)


SPEC = AlgorithmSpec(
    name="onestep_sarsa",
    summary="asynchronous one-step SARSA (Algorithm 1, on-policy target)",
    head=Q_VALUES,
    run=run,
    target_network=True,
)
