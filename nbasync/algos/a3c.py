"""A3C, asynchronous advantage actor-critic (feed-forward), the paper's Algorithm S3.

The network's last layer has n_actions + 1 outputs: policy logits and V(s). One rollout:

    theta' <- theta
    act for up to t_max steps (or until the episode ends), a_t ~ pi(.|s_t; theta')
    R = 0 if s_t is terminal, else V(s_t; theta')    (a time-limit cut bootstraps too)
    for i = t-1 .. t_start:  R <- r_i + gamma R
        policy:  -log pi(a_i|s_i) (R - V(s_i)) - beta H(pi(.|s_i))   (advantage held constant)
        value:   value_weight (R - V(s_i))^2
    one asynchronous update of theta with the summed gradient
"""

from __future__ import annotations

from ..nn import a3c_loss, sample_from_logits
from .base import ActorLearner
from .targets import discounted_returns


def run(w: ActorLearner) -> None:
    cfg = w.config
    A = w.n_actions
    obs = w.reset()
    while not w.finished():
        w.sync()
        t = 0
        terminated = truncated = False
        while True:
            out = w.act_forward(t, obs)
            action = sample_from_logits(out[:A], w.rng.random())
            w.actions[t] = action
            obs, w.rewards[t], terminated, truncated = w.step(action)
            t += 1
            if terminated or truncated or t == cfg.t_max:
                break
        bootstrap = 0.0 if terminated else float(w.act_forward(t, obs)[A])
        returns = discounted_returns(w.rewards[:t], bootstrap, cfg.gamma, w.targets[:t])
        a3c_loss(
            w.outputs[:t], w.actions[:t], returns, cfg.entropy_beta, cfg.value_weight, w.dout[:t]
        )
        w.apply_gradients(t)
        if terminated or truncated:
            obs = w.reset()
