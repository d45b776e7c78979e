"""The algorithm registry: every algorithm declared once, a new name needs no other file,
and a trained agent acts the way its head says (written once, in ``algos.acting``)."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from nbasync.algos import ALGORITHMS, a3c, get_algorithm, register
from nbasync.algos.acting import PolicyActing, QActing
from nbasync.build import HEADS, POLICY_VALUE, Q_VALUES
from nbasync.config import ConfigError, build_config
from nbasync.envs import EnvInfo
from nbasync.evaluate import evaluate_run
from nbasync.runfile import RunFile
from nbasync.train import train


def test_the_registered_algorithms_and_what_they_declare():
    assert list(ALGORITHMS) == ["onestep_q", "onestep_sarsa", "nstep_q", "a3c", "a3c_gae"]
    declared = {
        name: (s.head, s.target_network, s.continuous, s.recurrent, s.settings)
        for name, s in ALGORITHMS.items()
    }
    q = (Q_VALUES, True, False, False, ())
    assert declared == {
        "onestep_q": q,
        "onestep_sarsa": q,
        "nstep_q": q,
        "a3c": (POLICY_VALUE, False, True, True, ()),
        "a3c_gae": (POLICY_VALUE, False, True, True, ("gae_lambda",)),
    }
    for spec in ALGORITHMS.values():
        assert spec.head in HEADS and spec.summary
        assert pickle.loads(pickle.dumps(spec)) == spec  # workers receive it pickled


def test_unknown_and_duplicate_names():
    with pytest.raises(ConfigError, match="--algo: unknown algorithm 'dqn' \\(choose from"):
        get_algorithm("dqn")
    register(a3c.SPEC)  # the same spec again: nothing changes
    with pytest.raises(ValueError, match="'a3c' is already registered"):
        register(dataclasses.replace(a3c.SPEC, summary="another"))
    with pytest.raises(ValueError, match="head must be one of"):
        dataclasses.replace(a3c.SPEC, name="x", head="logits")


@pytest.fixture
def a3c_copy():
    """A3C registered under a new name for the test (the registry is the only place it
    is added to), removed afterwards."""
    spec = register(dataclasses.replace(a3c.SPEC, name="test_a3c_copy", summary="A3C again"))
    yield spec
    del ALGORITHMS[spec.name]


def test_a_copy_of_a3c_under_a_new_name_trains_and_evaluates(a3c_copy, tmp_path):
    """Everything asks the spec, never the name: the parent's warm-up, the spawned worker
    (which gets the spec pickled, the name being unknown to its own registry), the run file
    and nbasync-eval's path."""
    config = build_config(
        {"algo": a3c_copy.name, "env": "CartPole-v1", "workers": 1, "steps": 300,
         "quiet": True, "eval_episodes": 2, "out": str(tmp_path / "run")}
    )  # fmt: skip
    summary = train(config)
    assert summary.steps >= 300 and summary.evaluation.lengths.size == 2
    assert RunFile.open(tmp_path / "run").config()["algo"] == a3c_copy.name
    assert evaluate_run(tmp_path / "run", episodes=1).protocol == "greedy policy (argmax pi)"


def _discrete(n_actions: int) -> EnvInfo:
    return EnvInfo((4,), np.dtype(np.float32), True, n_actions, None, None, False, 1)


def test_acting_by_head():
    rng = np.random.default_rng(0)
    out = np.array([0.1, 2.0, -1.0, 50.0], np.float32)  # A3C: 3 logits, then V
    policy = get_algorithm("a3c").acting(_discrete(3), rng)
    assert isinstance(policy, PolicyActing) and policy(out) == 1  # V is not an action
    sampled = get_algorithm("a3c_gae").acting(_discrete(3), rng, greedy=False)
    draws = np.bincount([sampled(out) for _ in range(2000)], minlength=3) / 2000
    p = np.exp(out[:3] - out[:3].max())
    np.testing.assert_allclose(draws, p / p.sum(), atol=0.03)
    q = get_algorithm("nstep_q").acting(_discrete(4), rng)
    assert isinstance(q, QActing) and q(out) == 3 and q.description == "greedy on Q"
    explore = get_algorithm("onestep_q").acting(_discrete(4), rng, epsilon=1.0)
    assert set(explore(out) for _ in range(200)) == {0, 1, 2, 3}


def test_continuous_acting_is_the_clipped_mean_or_a_sample():
    info = EnvInfo((3,), np.dtype(np.float32), False, None, np.array([-1.0], np.float32),
                   np.array([1.0], np.float32), False, 1)  # fmt: skip
    out = np.array([3.0, 0.0, 7.0], np.float32)  # mean 3 (clipped to 1), pre-variance, V
    greedy = get_algorithm("a3c").acting(info, np.random.default_rng(0))
    assert greedy(out).tolist() == [1.0] and greedy.description == "mean action"
    sampled = get_algorithm("a3c").acting(info, np.random.default_rng(0), greedy=False)
    actions = [float(sampled(np.array([0.0, 0.0, 0.0], np.float32))[0]) for _ in range(50)]
    assert len(set(actions)) > 25 and all(-1.0 <= a <= 1.0 for a in actions)  # some clip
