"""Running normalisation statistics against NumPy on known streams (one and two workers),
the checkpoint round trip of the moments, the observation normaliser and the return scaler."""

import numpy as np
import pytest

from nbasync.normalise import (
    ObsNormaliser,
    ReturnScaler,
    RunningMoments,
    merge_moments,
    moments_width,
)


def stream(n=1000, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(loc=[5.0, -2.0, 0.0][:d], scale=[1.0, 30.0, 1e-3][:d], size=(n, d))


def feed(moments, x, seed=1):
    """Observe x in batches of random sizes (1 to 40 rows), as rollouts would."""
    rng = np.random.default_rng(seed)
    i = 0
    while i < len(x):
        k = int(rng.integers(1, 41))
        moments.observe(x[i : i + k])
        i += k


def test_one_worker_matches_numpy():
    x = stream()
    rows = np.zeros((2, moments_width(3)))
    m = RunningMoments(rows, slot=1)
    feed(m, x)
    saved = m.merged(prior=False)
    assert saved[0] == len(x)
    np.testing.assert_allclose(saved[1:4], x.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(saved[4:] / saved[0], x.var(axis=0), rtol=1e-10)


def test_two_workers_merged_match_numpy_on_the_joined_stream():
    x = stream(1500)
    rows = np.zeros((3, moments_width(3)))
    a, b = RunningMoments(rows, slot=1), RunningMoments(rows, slot=2)
    feed(a, x[:400], seed=2)
    feed(b, x[400:], seed=3)
    reader = RunningMoments(rows, slot=None)
    saved = reader.merged(prior=False)
    assert saved[0] == len(x)
    np.testing.assert_allclose(saved[1:4], x.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(saved[4:] / saved[0], x.var(axis=0), rtol=1e-10)


def test_the_prior_is_one_pseudo_observation_of_mean_0_variance_1():
    rows = np.zeros((2, moments_width(2)))
    m = RunningMoments(rows, slot=1)
    mean, var, count = m.mean_var()
    assert count == 1 and (mean == 0).all() and (var == 1).all()
    x = stream(50, 2)
    m.observe(x)
    mean, var, count = m.mean_var()
    n = len(x)
    mu = x.mean(axis=0)
    assert count == n + 1
    np.testing.assert_allclose(mean, mu * n / (n + 1), rtol=1e-12)
    m2 = x.var(axis=0) * n + 1 + mu * mu * n / (n + 1)
    np.testing.assert_allclose(var, m2 / (n + 1), rtol=1e-12)


def test_checkpoint_round_trip_and_a_resumed_run_keeps_counting():
    x = stream(900)
    rows = np.zeros((3, moments_width(3)))
    feed(RunningMoments(rows, slot=1), x[:300])
    feed(RunningMoments(rows, slot=2), x[300:600])
    saved = merge_moments(rows, prior=False)  # what a checkpoint stores
    resumed_rows = np.zeros((2, moments_width(3)))  # resumed with one worker
    resumed = RunningMoments(resumed_rows, slot=1)
    resumed.restore(saved)
    np.testing.assert_array_equal(resumed.merged(prior=False), saved)
    feed(resumed, x[600:])
    after = resumed.merged(prior=False)
    np.testing.assert_allclose(after[1:4], x.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(after[4:] / after[0], x.var(axis=0), rtol=1e-10)
    with pytest.raises(ValueError, match="shape"):
        resumed.restore(saved[:-1])


def test_rows_and_slots_are_checked():
    with pytest.raises(ValueError, match="float64"):
        RunningMoments(np.zeros((2, 7), np.float32), slot=1)
    with pytest.raises(ValueError, match="slot"):
        RunningMoments(np.zeros((2, 7)), slot=0)  # row 0 is the restored one
    with pytest.raises(ValueError, match="reader"):
        RunningMoments(np.zeros((2, 7)), slot=None).observe(np.zeros(3))


def test_obs_normaliser_matches_numpy_and_clips():
    x = stream(400)
    rows = np.zeros((2, moments_width(3)))
    m = RunningMoments(rows, slot=1)
    m.observe(x)
    norm = ObsNormaliser(m, clip=10.0, eps=1e-8)  # refreshes on creation
    mean, var, _ = m.mean_var()
    for obs in (x[0], x[-1], np.array([5.0, -2.0, 1.0])):  # the last one clips at +10
        expect = np.clip((obs - mean) / np.sqrt(var + 1e-8), -10, 10).astype(np.float32)
        got = norm(obs.astype(np.float32))
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expect, rtol=1e-6, atol=1e-6)
    assert norm(np.array([5.0, -2.0, 1.0]))[2] == 10.0
    m.observe(x + 100)  # stale until refreshed
    before = norm(x[0]).copy()
    np.testing.assert_array_equal(norm(x[0]), before)
    norm.refresh()
    assert not np.array_equal(norm(x[0]), before)


def test_return_scaler_tracks_discounted_returns_and_resets_at_episode_end():
    rows = np.zeros((2, moments_width(1)))
    scaler = ReturnScaler(RunningMoments(rows, slot=1), gamma=0.5)
    assert scaler.scale == pytest.approx(1.0 / np.sqrt(1 + 1e-8))  # the prior: variance 1
    rewards = [1.0, 2.0, 4.0, -1.0, 3.0]
    dones = [False, False, True, False, True]
    out = [scaler(r, d) for r, d in zip(rewards, dones, strict=True)]
    assert out == pytest.approx([r / np.sqrt(1 + 1e-8) for r in rewards])  # no refresh yet
    scaler.observe_pending()
    returns = np.array([1.0, 2.5, 5.25, -1.0, 2.5])  # R <- 0.5 R + r, reset after a done
    saved = scaler.moments.merged(prior=False)
    assert saved[0] == 5
    assert saved[1] == pytest.approx(returns.mean())
    scaler.refresh()
    _, var, _ = scaler.moments.mean_var()
    assert scaler.scale == pytest.approx(1 / np.sqrt(var[0] + 1e-8))
    assert scaler(2.0, False) == pytest.approx(2.0 * scaler.scale)
