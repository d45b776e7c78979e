"""Asynchronous one-step SARSA: Algorithm 1 with the on-policy target

    y = r if s' is terminal, else r + gamma Q(s', a'; theta-),  a' the action taken in s'.

a' is chosen epsilon-greedily on Q(s'; theta') when s' is reached, and it IS the action the
worker takes next, also across an update boundary (it is carried into the next window).
When an episode is cut by a time limit, a' is chosen the same way but never executed.
"""

from __future__ import annotations

from ..nn import td_loss
from .base import ActorLearner
from .targets import sarsa_targets


def run(w: ActorLearner) -> None:
    cfg = w.config
    obs = w.reset()
    pending = -1  # the action already chosen for the current state, if any
    while not w.finished():
        w.sync()
        t = 0
        terminated = truncated = False
        while True:
            q = w.act_forward(t, obs)
            action = pending if pending >= 0 else w.epsilon_greedy(q)
            pending = -1
            w.actions[t] = action
            obs, w.rewards[t], terminated, truncated = w.step(action)
            w.terminated[t] = terminated
            t += 1
            if terminated or truncated or t == cfg.t_max:
                break
        if not terminated:
            # a' for the last transition, chosen on theta' as the next action will be.
            w.actions[t] = w.epsilon_greedy(w.act_forward(t, obs))
            pending = -1 if truncated else int(w.actions[t])
        else:
            w.load(t, obs)
        next_q = w.target_forward(1, t)
        targets = sarsa_targets(
            w.rewards[:t],
            w.terminated[:t],
            next_q,
            w.actions[1 : t + 1],
            cfg.gamma,
            w.targets[:t],
        )
        td_loss(w.outputs[:t], w.actions[:t], targets, w.dout[:t])
        w.apply_gradients(t)
        if terminated or truncated:
            obs = w.reset()
