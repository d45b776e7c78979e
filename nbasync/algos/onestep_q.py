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

from ..nn import td_loss
from .base import ActorLearner
from .targets import onestep_q_targets


def run(w: ActorLearner) -> None:
    cfg = w.config
    obs = w.reset()
    while not w.finished():
        w.sync()
        t = 0
        terminated = truncated = False
        while True:
            q = w.act_forward(t, obs)
            action = w.epsilon_greedy(q)
            w.actions[t] = action
            obs, w.rewards[t], terminated, truncated = w.step(action)
            w.terminated[t] = terminated
            t += 1
            if terminated or truncated or t == cfg.t_max:
                break
        w.load(t, obs)  # s' of the last transition; s'_i = s_{i+1} for the others
        next_q = w.target_forward(1, t)
        targets = onestep_q_targets(
            w.rewards[:t], w.terminated[:t], next_q, cfg.gamma, w.targets[:t]
        )
        td_loss(w.outputs[:t], w.actions[:t], targets, w.dout[:t])
        w.apply_gradients(t)
        if terminated or truncated:
            obs = w.reset()
