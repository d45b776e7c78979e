"""A3C, asynchronous advantage actor-critic, the paper's Algorithm S3: FF, LSTM, continuous.

Discrete actions: the network's last layer has n_actions + 1 outputs, policy logits and
V(s). One rollout:

    theta' <- theta
    act for up to t_max steps (or until the episode ends), a_t ~ pi(.|s_t; theta')
    R = 0 if s_t is terminal, else V(s_t; theta')    (a time-limit cut bootstraps too)
    for i = t-1 .. t_start:  R <- r_i + gamma R
        policy:  -log pi(a_i|s_i) (R - V(s_i)) - beta H(pi(.|s_i))   (advantage held constant)
        value:   value_weight (R - V(s_i))^2
    one asynchronous update of theta with the summed gradient

A3C LSTM (``config.recurrent``): the same loop; cache row t is time step t, so the update's
backward over rows [0, t) is backpropagation through time over the rollout. The LSTM state:

    episode start                 -> zeros                       (``w.reset()``)
    rollout cut by t_max          -> the next rollout starts from h, c after row t-1
                                     (``net.carry_state(t)``, after the update: BPTT needs
                                     the rollout's own initial state; no gradient crosses)
    the bootstrap V(s_t) at row t -> reads h after row t-1 and changes nothing carried

Continuous actions (:func:`run_continuous`): a Gaussian policy net and a separate value net
(:class:`~nbasync.nn.NetworkPair`, one flat vector, one shared RMSProp), a ~ N(mu, var)
clipped to the action bounds for the environment; the loss uses the unclipped sample
(:func:`~nbasync.nn.gaussian_a3c_loss`). Entropy beta 1e-4 in the paper's MuJoCo runs
(the 'continuous' preset).
"""

from __future__ import annotations

import numpy as np

from ..nn import a3c_loss, gaussian_a3c_loss, gaussian_sample, sample_from_logits
from .base import ActorLearner
from .targets import discounted_returns


def run(w: ActorLearner) -> None:
    if not w.spec.discrete:
        run_continuous(w)
        return
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
            obs = w.reset()  # LSTM state back to zeros
        else:
            w.net.carry_state(t)  # no-op for feed-forward nets


def run_continuous(w: ActorLearner) -> None:
    """A3C with a Gaussian policy; the same rollout/update structure as :func:`run`."""
    cfg = w.config
    D = w.action_dim
    low, high = w.spec.action_low, w.spec.action_high
    noise = np.zeros(D)
    clipped = np.zeros(D, dtype=np.float32)
    obs = w.reset()
    while not w.finished():
        w.sync()
        t = 0
        terminated = truncated = False
        while True:
            out = w.act_forward(t, obs)
            w.rng.standard_normal(out=noise)
            gaussian_sample(out, noise, low, high, w.actions[t], clipped)
            obs, w.rewards[t], terminated, truncated = w.step(clipped)
            t += 1
            if terminated or truncated or t == cfg.t_max:
                break
        bootstrap = 0.0 if terminated else float(w.act_forward(t, obs)[2 * D])
        returns = discounted_returns(w.rewards[:t], bootstrap, cfg.gamma, w.targets[:t])
        gaussian_a3c_loss(
            w.outputs[:t], w.actions[:t], returns, cfg.entropy_beta, cfg.value_weight, w.dout[:t]
        )
        w.apply_gradients(t)
        if terminated or truncated:
            obs = w.reset()
        else:
            w.net.carry_state(t)
