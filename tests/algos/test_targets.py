"""Exact returns, TD targets and epsilon schedules on hand-made rollouts."""

import numpy as np
import pytest

from nbasync.algos.targets import (
    discounted_returns,
    draw_final_epsilon,
    epsilon_at,
    gae_reference,
    lambda_returns,
    onestep_q_targets,
    sarsa_targets,
)

F32 = np.float32


def test_discounted_returns_walk_back_from_bootstrap():
    rewards = np.array([1.0, 0.0, 2.0], dtype=F32)
    out = np.zeros(3, dtype=F32)
    discounted_returns(rewards, 10.0, 0.5, out)
    # R3 = 10; R2 = 2 + 5 = 7; R1 = 0 + 3.5 = 3.5; R0 = 1 + 1.75 = 2.75
    np.testing.assert_allclose(out, [2.75, 3.5, 7.0])


def test_discounted_returns_terminal_bootstraps_zero():
    rewards = np.array([1.0, 1.0], dtype=F32)
    out = np.zeros(2, dtype=F32)
    discounted_returns(rewards, 0.0, 0.9, out)
    np.testing.assert_allclose(out, [1.9, 1.0], rtol=1e-6)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.95, 1.0])
@pytest.mark.parametrize("bootstrap", [0.0, 1.7])  # terminated / cut by t_max or a time limit
def test_lambda_returns_give_the_gae_advantage(lam, bootstrap):
    rng = np.random.default_rng(int(lam * 100) + int(bootstrap))
    rewards = rng.normal(size=7)
    values = rng.normal(size=7)
    out = np.zeros(7)
    lambda_returns(rewards, values, bootstrap, 0.9, lam, out)
    adv, targets = gae_reference(rewards, values, bootstrap, 0.9, lam)
    np.testing.assert_allclose(out, targets, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out - values, adv, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bootstrap", [0.0, -2.5])
def test_lambda_one_is_the_n_step_return_bit_for_bit(dtype, bootstrap):
    """lambda = 1 must leave A3C unchanged: the same bits as discounted_returns."""
    rng = np.random.default_rng(3)
    rewards = rng.normal(size=5).astype(dtype)
    values = rng.normal(size=5).astype(dtype)
    gae, n_step = np.zeros(5, dtype), np.zeros(5, dtype)
    lambda_returns(rewards, values, bootstrap, 0.99, 1.0, gae)
    discounted_returns(rewards, bootstrap, 0.99, n_step)
    np.testing.assert_array_equal(gae, n_step)


def test_lambda_zero_is_the_one_step_td_target():
    rewards = np.array([1.0, 0.0, 2.0], dtype=F32)
    values = np.array([5.0, 3.0, 4.0], dtype=F32)
    out = np.zeros(3, dtype=F32)
    lambda_returns(rewards, values, 10.0, 0.5, 0.0, out)
    # r_i + gamma V(s_{i+1}); the last bootstraps from V(s_3) = 10
    np.testing.assert_allclose(out, [1.0 + 0.5 * 3.0, 0.0 + 0.5 * 4.0, 2.0 + 0.5 * 10.0])
    lambda_returns(rewards, values, 0.0, 0.5, 0.0, out)  # terminal: nothing after r_2
    assert out[2] == 2.0


def test_onestep_q_target_uses_max_and_cuts_at_terminal():
    rewards = np.array([1.0, -1.0, 0.5], dtype=F32)
    terminated = np.array([False, False, True])
    next_q = np.array([[0.0, 2.0, 1.0], [-3.0, -1.0, -2.0], [100.0, 100.0, 100.0]], dtype=F32)
    out = np.zeros(3, dtype=F32)
    onestep_q_targets(rewards, terminated, next_q, 0.9, out)
    np.testing.assert_allclose(out, [1.0 + 0.9 * 2.0, -1.0 - 0.9, 0.5], rtol=1e-6)


def test_sarsa_target_uses_the_next_action_taken():
    rewards = np.array([1.0, 2.0], dtype=F32)
    terminated = np.array([False, True])
    next_q = np.array([[5.0, 7.0], [9.0, 9.0]], dtype=F32)
    next_actions = np.array([0, 1], dtype=np.int64)
    out = np.zeros(2, dtype=F32)
    sarsa_targets(rewards, terminated, next_q, next_actions, 0.5, out)
    np.testing.assert_allclose(out, [1.0 + 0.5 * 5.0, 2.0])


def test_epsilon_anneals_linearly_then_stays():
    assert epsilon_at(0, 0.1, 1000) == 1.0
    assert epsilon_at(500, 0.1, 1000) == pytest.approx(0.55)
    assert epsilon_at(1000, 0.1, 1000) == pytest.approx(0.1)
    assert epsilon_at(10**9, 0.01, 1000) == pytest.approx(0.01)
    assert epsilon_at(5, 0.5, 0) == 0.5


def test_final_epsilon_distribution_matches_paper():
    rng = np.random.default_rng(0)
    draws = [draw_final_epsilon(rng, (0.1, 0.01, 0.5), (0.4, 0.3, 0.3)) for _ in range(20000)]
    values, counts = np.unique(draws, return_counts=True)
    freq = dict(zip(values.tolist(), (counts / len(draws)).tolist(), strict=True))
    assert set(freq) == {0.01, 0.1, 0.5}
    assert freq[0.1] == pytest.approx(0.4, abs=0.02)
    assert freq[0.01] == pytest.approx(0.3, abs=0.02)
    assert freq[0.5] == pytest.approx(0.3, abs=0.02)
