"""Shared observation and return normalisation inside the workers: what a rollout feeds the
network and the statistics, off by default and then nothing changes, checkpoints and
resume, evaluation, and learning CartPole with both on."""

from __future__ import annotations

import numpy as np
import pytest

from nbasync.config import build_config
from nbasync.evaluate import evaluate_run
from nbasync.normalise import RunningMoments
from nbasync.runfile import RunFile
from nbasync.train import resume, train


def choose_first(t, out):
    return 0


def test_off_nothing_is_normalised(make_learners):
    (w,) = make_learners(env="CartPole-v1", seed=1, return_norm=False)  # classic: on
    assert w.obs_norm is None and w.return_scaler is None
    assert w.state.obs_moments is None and w.state.return_moments is None
    obs = w.reset()
    w.sync()
    r = w.rollout(obs, choose_first)
    assert r.n > 0
    np.testing.assert_array_equal(w.obs[0], obs.astype(np.float32))  # the raw observation
    assert set(np.unique(w.rewards[: r.n])) == {1.0}  # CartPole's reward, untouched


def test_a_rollout_normalises_with_the_shared_moments_and_adds_to_them(make_learners):
    w0, w1 = make_learners(2, env="CartPole-v1", obs_norm=True, return_norm=True, t_max=5)
    rows = w0.state.obs_moments
    assert rows.shape == (3, 9) and w0.state.return_moments.shape == (3, 3)
    seen = []
    for w in (w0, w1):
        obs = w.reset()
        for _ in range(4):
            w.sync()  # fixes the statistics for the rollout
            mean, inv_std = w.obs_norm.mean.copy(), w.obs_norm.inv_std.copy()
            first = obs.astype(np.float64)
            r = w.rollout(obs, choose_first)
            expect = np.clip((first - mean) * inv_std, -10, 10)
            np.testing.assert_allclose(w.obs[0], expect, rtol=1e-6, atol=1e-6)
            seen.append(w.raw_obs[: r.n].astype(np.float64).copy())
            obs = w.next_start(r)
    # each worker wrote its own row; merged, they are the moments of everything acted on
    assert rows[0, 0] == 0  # row 0: nothing restored
    merged = RunningMoments(rows, slot=None).merged(prior=False)
    everything = np.concatenate(seen)
    assert merged[0] == len(everything) == rows[1, 0] + rows[2, 0]
    np.testing.assert_allclose(merged[1:5], everything.mean(axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(merged[5:] / merged[0], everything.var(axis=0), rtol=1e-6)
    # rewards: CartPole's 1.0 divided by the return std as of the rollout's sync
    returns = w1.state.return_moments  # one discounted return per step, in the same rows
    assert (returns[1, 0], returns[2, 0]) == (rows[1, 0], rows[2, 0])
    assert 0 < w1.rewards[0] < 1.0


def test_obs_norm_refuses_image_observations():
    from nbasync.build import normalisation_layout, probe_env
    from nbasync.errors import ConfigError

    config = build_config({"env": "nbasync/Labyrinth-v0", "obs_norm": True})
    with pytest.raises(ConfigError, match="--obs-norm: needs vector observations"):
        normalisation_layout(config, probe_env(config, True))


@pytest.mark.slow
def test_checkpoint_resume_and_eval_carry_the_moments(tmp_path):
    out = tmp_path / "run"
    config = build_config(
        {
            "env": "Pendulum-v1",
            "workers": 2,
            "steps": 6000,
            "obs_norm": True,
            "return_norm": True,
            "quiet": True,
            "out": str(out),
        }
    )
    train(config)
    first = RunFile.open(out).latest_checkpoint()
    assert first.norm_moments.keys() == {"obs", "return"}
    count = first.norm_moments["obs"][0]
    assert count >= 6000 - 2 * 20  # every step but the last rollouts' bootstrap states
    assert abs(first.norm_moments["obs"][3] - 0.0) < 8.0  # Pendulum's angular velocity mean
    resume(out, {"steps": 12000})
    second = RunFile.open(out).latest_checkpoint()
    assert second.norm_moments["obs"][0] >= count + 6000 - 2 * 20  # counted on, not anew
    assert second.norm_moments["return"][0] > first.norm_moments["return"][0]
    result = evaluate_run(out, episodes=2)
    assert np.isfinite(result.returns).all()


@pytest.mark.slow
def test_learns_cartpole_with_both_normalisations(tmp_path):
    """The a3c learning test's bar and budget (2 workers, 150k steps, greedy mean >= 195
    over 20 episodes), with both normalisations on; evaluation applies the run's moments."""
    config = build_config(
        {
            "algo": "a3c",
            "env": "CartPole-v1",
            "workers": 2,
            "steps": 150_000,
            "seed": 0,
            "obs_norm": True,
            "return_norm": True,
            "quiet": True,
            "eval_episodes": 20,
            "out": str(tmp_path / "run"),
        }
    )
    summary = train(config)
    assert summary.evaluation.mean >= 195.0, summary.evaluation.describe()
