"""Asynchronous n-step Q-learning, the paper's Algorithm S2.

theta' <- theta
act epsilon-greedily on Q(s; theta') for up to t_max steps (or until the episode ends)
R = 0 if s_t is terminal, else max_a Q(s_t, a; theta-)   (a time-limit cut bootstraps too)
for i = t-1 .. t_start:  R <- r_i + gamma R;  accumulate grad of 0.5 (R - Q(s_i, a_i; theta'))^2
one asynchronous update of theta
"""

from __future__ import annotations

from ..nn import td_loss
from .base import ActorLearner
from .targets import discounted_returns


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
            t += 1
            if terminated or truncated or t == cfg.t_max:
                break
        if terminated:
            bootstrap = 0.0
        else:
            w.load(t, obs)
            bootstrap = float(w.target_forward(t, 1)[0].max())
        returns = discounted_returns(w.rewards[:t], bootstrap, cfg.gamma, w.targets[:t])
        td_loss(w.outputs[:t], w.actions[:t], returns, w.dout[:t])
        w.apply_gradients(t)
        if terminated or truncated:
            obs = w.reset()
