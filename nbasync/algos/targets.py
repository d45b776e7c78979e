"""Returns, TD targets and exploration schedules: the small pieces of the paper's pseudocode.

Pure functions over arrays, shared by the algorithms and tested exactly on hand-made
rollouts (:func:`gae_reference` is the plain NumPy definition the lambda-returns kernel is
tested against). Nothing here knows of processes or environments.
"""

from __future__ import annotations

import numpy as np

from ..nn._jit import jit


@jit
def discounted_returns(rewards, bootstrap, gamma, out):
    """n-step "forward view" returns of one rollout, walked backwards as in Algorithm S2/S3.

    ``R <- bootstrap``; for i = t-1 .. 0: ``R <- r_i + gamma * R``; ``out[i] = R``. The last
    state gets a 1-step return, the one before a 2-step return, and so on. ``bootstrap`` is
    0 when the rollout ended in a terminal state and V(s_t) / max_a Q(s_t, a; theta-)
    otherwise (a rollout cut by t_max or by a time limit).
    """
    running = bootstrap
    for i in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[i] + gamma * running
        out[i] = running
    return out


@jit
def lambda_returns(rewards, values, bootstrap, gamma, lam, out):
    """lambda-returns of one rollout: the value targets of generalised advantage estimation
    (Schulman et al. 2016), walked backwards like :func:`discounted_returns`.

    ``values[i]`` = V(s_i) for i < n; ``bootstrap`` stands for V(s_n) and is 0 when the
    rollout ended in a terminal state (a rollout cut by t_max or a time limit bootstraps,
    exactly as the n-step returns). With G_n = bootstrap, for i = n-1 .. 0::

        G_i = r_i + gamma ((1 - lam) V(s_{i+1}) + lam G_{i+1})       out[i] = G_i

    and G_i - V(s_i) = sum_l (gamma lam)^l delta_{i+l}, delta_j = r_j + gamma V(s_{j+1}) -
    V(s_j): the GAE advantage. lam = 1 gives the n-step returns bit for bit ((1 - 1) V = 0
    and 1 G = G exactly), so A3C's advantage R_i - V(s_i); lam = 0 gives the one-step TD
    target r_i + gamma V(s_{i+1}), so the advantage delta_i.
    """
    running = bootstrap
    next_value = bootstrap
    for i in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[i] + gamma * ((1.0 - lam) * next_value + lam * running)
        out[i] = running
        next_value = values[i]
    return out


def gae_reference(rewards, values, bootstrap, gamma, lam):
    """Generalised advantage estimation as defined (Schulman et al. 2016), plain NumPy in
    float64: delta_j = r_j + gamma V(s_{j+1}) - V(s_j) with V(s_n) = ``bootstrap``, and
    A_i = sum_{k < n-i} (gamma lam)^k delta_{i+k}. Returns (A, A + V): the advantages and
    the value targets :func:`lambda_returns` computes."""
    n = len(rewards)
    v = np.append(np.asarray(values, np.float64), bootstrap)
    delta = np.asarray(rewards, np.float64) + gamma * v[1:] - v[:-1]
    adv = np.array([sum((gamma * lam) ** k * delta[i + k] for k in range(n - i)) for i in range(n)])
    return adv, adv + v[:-1]


@jit
def onestep_q_targets(rewards, terminated, next_q, gamma, out):
    """Algorithm 1: ``y = r`` at a terminal s', else ``r + gamma * max_a' Q(s', a'; theta-)``."""
    for i in range(rewards.shape[0]):
        y = rewards[i]
        if not terminated[i]:
            best = next_q[i, 0]
            for j in range(1, next_q.shape[1]):
                if next_q[i, j] > best:
                    best = next_q[i, j]
            y += gamma * best
        out[i] = y
    return out


@jit
def sarsa_targets(rewards, terminated, next_q, next_actions, gamma, out):
    """One-step SARSA: ``y = r + gamma * Q(s', a'; theta-)``, a' the action actually taken next."""
    for i in range(rewards.shape[0]):
        y = rewards[i]
        if not terminated[i]:
            y += gamma * next_q[i, next_actions[i]]
        out[i] = y
    return out


def draw_final_epsilon(rng: np.random.Generator, epsilons, probs) -> float:
    """Each worker's final epsilon: 0.1, 0.01 or 0.5 with probabilities 0.4, 0.3, 0.3 (paper)."""
    return float(epsilons[int(rng.choice(len(epsilons), p=np.asarray(probs, dtype=np.float64)))])


def epsilon_at(global_step: int, final_epsilon: float, anneal_steps: int) -> float:
    """Linear anneal from 1.0 at T = 0 to ``final_epsilon`` at T = anneal_steps, then flat.

    T is the GLOBAL agent-step counter, so all workers anneal together over the first
    ``anneal_steps`` steps of the run (the paper: 4M frames = 1M agent steps on Atari).
    """
    if anneal_steps <= 0 or global_step >= anneal_steps:
        return final_epsilon
    return 1.0 + (final_epsilon - 1.0) * (global_step / anneal_steps)
