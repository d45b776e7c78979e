"""Asynchronous one-step SARSA: Algorithm 1 with the on-policy target

    y = r if s' is terminal, else r + gamma Q(s', a'; theta-),  a' the action taken in s'.

A transition is learned once its a' is known. Each rollout's last transition (when the
episode goes on) waits for the next rollout: it is carried over as row 0, its a' is the
action chosen in s' by the next rollout's first step, and its state goes through the
updated theta' in one batch with s' (``ActorLearner.rollout(carried=1)``). So a' is always
chosen when the worker acts in s', on the theta' it acts with, and costs no forward of its
own. An update covers t_max transitions (t_max - 1 in an episode's first rollout, fewer
when the episode ends). When an episode is cut by a time limit, a' is chosen on theta' as
if the worker acted, and never executed.
"""

from __future__ import annotations

import numpy as np

from ..build import Q_VALUES
from ..nn import td_loss
from .base import ActorLearner
from .registry import AlgorithmSpec
from .targets import sarsa_targets


def run(w: ActorLearner) -> None:
    def choose(t: int, q: np.ndarray) -> int:
        return w.epsilon_greedy(q)

    carried = 0  # 1 when row 0 holds the last transition of the previous rollout
    obs = w.reset()
    while not w.finished():
        w.sync()
        r = w.rollout(obs, choose, carried=carried)
        n = r.n
        if r.terminated:
            w.load(n, r.obs)  # the target forward reads row n; y = r ignores its value
            learn(w, n)
            carried = 0
        elif r.truncated:
            w.actions[n] = w.epsilon_greedy(w.act_forward(n, r.obs))
            learn(w, n)
            carried = 0
        else:  # the last transition's a' is chosen by the next rollout's first step
            learn(w, n - 1)
            w.carry(n - 1)
            carried = 1
        obs = w.next_start(r)


def learn(w: ActorLearner, n: int) -> None:
    """One update on transitions [0, n): their a' are actions [1, n], their s' obs [1, n]."""
    if n == 0:  # t_max 1: an episode's first rollout carries its only transition
        return
    next_q = w.target_forward(1, n)
    targets = sarsa_targets(
        w.rewards[:n],
        w.terminated[:n],
        next_q,
        w.actions[1 : n + 1],
        w.config.gamma,
        w.targets[:n],
    )
    td_loss(w.outputs[:n], w.actions[:n], targets, w.dout[:n])
    w.apply_gradients(n)


SPEC = AlgorithmSpec(
    name="onestep_sarsa",
    summary="asynchronous one-step SARSA (Algorithm 1, on-policy target)",
    head=Q_VALUES,
    run=run,
    target_network=True,
)
