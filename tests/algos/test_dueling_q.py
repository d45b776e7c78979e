"""``--dueling``: the Q methods' networks (theta' and theta-) end in the dueling head, the
other methods refuse it, and a dueling n-step Q-learner learns CartPole."""

from __future__ import annotations

import pytest

from nbasync.config import ConfigError, build_config
from nbasync.evaluate import evaluate
from nbasync.nn import Dueling


@pytest.mark.parametrize("algo", ["onestep_q", "onestep_sarsa", "nstep_q"])
def test_q_methods_build_dueling_nets(make_learners, algo):
    (w,) = make_learners(algo=algo, dueling=True)
    for net in (w.net, w.target_net):
        assert isinstance(net.layers[-1], Dueling) and net.n_outputs == w.n_actions
        assert net.param("head.weight").shape[0] == w.n_actions + 1  # advantages and V
    (plain,) = make_learners(algo=algo)
    assert not isinstance(plain.net.layers[-1], Dueling)
    assert plain.net.n_params < w.net.n_params


@pytest.mark.parametrize("algo", ["a3c", "a3c_gae"])
def test_policy_methods_refuse_it(algo):
    with pytest.raises(ConfigError, match=f"--dueling: {algo} does not use it"):
        build_config({"algo": algo, "dueling": True})


def test_dueling_nstep_q_learns_cartpole_in_seconds(learn_in_process):
    """One worker in process (deterministic for the seed), 60,000 agent steps, classic
    preset; greedy evaluation over 20 episodes must reach 100 (a random policy scores about
    22). Measured here, seeds 0-4: 479.1 / 179.1 / 177.8 / 366.6 / 162.0 (~2 s each)."""
    config, theta = learn_in_process(algo="nstep_q", dueling=True, steps=60_000, seed=0)
    result = evaluate(config, theta, episodes=20, seed=10_000)
    assert result.mean >= 100.0, result.describe()
