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
                                     (``w.next_start``, after the update: BPTT needs the
                                     rollout's own initial state; no gradient crosses)
    the bootstrap V(s_t) at row t -> reads h after row t-1 and changes nothing carried

Continuous actions (:func:`gaussian_policy`): a Gaussian policy net and a separate value net
(:class:`~nbasync.nn.NetworkPair`, one flat vector, one shared RMSProp; one net over a
shared trunk with ``--shared-trunk``), a ~ N(mu, var)
clipped to the action bounds for the environment; the loss uses the unclipped sample
(:func:`~nbasync.nn.gaussian_a3c_loss`). Entropy beta 1e-4 in the paper's MuJoCo runs
(the 'continuous' preset).

:func:`actor_critic` is the loop; it takes the returns R_i as a function, so A3C with
generalised advantage estimation (``a3c_gae.py``) is this loop with lambda-returns.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..build import POLICY_VALUE
from ..nn import a3c_loss, gaussian_a3c_loss, gaussian_sample, sample_from_logits
from .base import ActorLearner
from .registry import AlgorithmSpec
from .targets import discounted_returns

#: ``returns(w, n, bootstrap) -> R`` (n,): the targets of the value and the policy's
#: advantage R_i - V(s_i), over the rollout's rows [0, n).
Returns = Callable[[ActorLearner, int, float], np.ndarray]


def n_step_returns(w: ActorLearner, n: int, bootstrap: float) -> np.ndarray:
    """R_i = r_i + gamma R_{i+1}, R_n = bootstrap: the paper's n-step returns."""
    return discounted_returns(w.rewards[:n], bootstrap, w.config.gamma, w.targets[:n])


def run(w: ActorLearner) -> None:
    """Algorithm S3."""
    actor_critic(w, n_step_returns)


def actor_critic(w: ActorLearner, returns: Returns) -> None:
    """The A3C loop with the returns R_i given by ``returns``."""
    cfg = w.config
    if w.env_info.discrete:
        choose, loss = softmax_policy(w), a3c_loss
    else:
        choose, loss = gaussian_policy(w), bounded_gaussian_loss(w)
    value = w.net.n_outputs - 1  # the column of V(s)
    obs = w.reset()
    while not w.finished():
        w.sync()
        r = w.rollout(obs, choose)  # a_t ~ pi(.|s_t; theta') for up to t_max steps
        n = r.n
        bootstrap = 0.0 if r.terminated else float(w.act_forward(n, r.obs)[value])
        R = returns(w, n, bootstrap)
        loss(w.outputs[:n], w.actions[:n], R, cfg.entropy_beta, cfg.value_weight, w.dout[:n])
        w.apply_gradients(n)
        obs = w.next_start(r)  # a new episode, or the LSTM state carried on


def softmax_policy(w: ActorLearner) -> Callable[[int, np.ndarray], int]:
    """a_t ~ softmax(logits of s_t) (discrete actions)."""
    A = w.n_actions

    def choose(t: int, out: np.ndarray) -> int:
        return sample_from_logits(out[:A], w.rng.random())

    return choose


def bounded_gaussian_loss(w: ActorLearner) -> Callable[..., tuple[float, float, float]]:
    """The Gaussian A3C loss with ``--mean-bound-weight``'s pull on mu toward the bounds."""
    low, high = w.env_info.action_low, w.env_info.action_high
    weight = w.config.mean_bound_weight

    def loss(out, actions, returns, beta, value_weight, dout):
        return gaussian_a3c_loss(out, actions, returns, beta, value_weight, dout, low, high, weight)

    return loss


def gaussian_policy(w: ActorLearner) -> Callable[[int, np.ndarray], np.ndarray]:
    """a_t ~ N(mu, var) recorded unclipped in ``w.actions[t]``; the env gets it clipped."""
    low, high = w.env_info.action_low, w.env_info.action_high
    noise = np.zeros(w.action_dim)
    clipped = np.zeros(w.action_dim, dtype=np.float32)

    def choose(t: int, out: np.ndarray) -> np.ndarray:
        w.rng.standard_normal(out=noise)
        gaussian_sample(out, noise, low, high, w.actions[t], clipped)
        return clipped

    return choose


SPEC = AlgorithmSpec(
    name="a3c",
    summary="asynchronous advantage actor-critic (Algorithm S3): FF, LSTM, continuous",
    head=POLICY_VALUE,
    run=run,
    continuous=True,
    recurrent=True,
)
