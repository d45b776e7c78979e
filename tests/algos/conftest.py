"""Shared fixture of the algorithm tests: actor-learners over a fresh shared state."""

from __future__ import annotations

import queue

import pytest

from nbasync.algos import ActorLearner, get_algorithm, run_worker
from nbasync.build import build_network, normalisation_layout, probe_env
from nbasync.config import build_config
from nbasync.shared import SharedState


@pytest.fixture
def make_learners():
    """``make_learners(n_workers=1, **settings)``: that many ActorLearners (A3C unless the
    settings say else) on one SharedState with seeded parameters; closed after the test."""
    held: list[SharedState] = []

    def make(n_workers: int = 1, **settings) -> list[ActorLearner]:
        config = build_config({"algo": "a3c", "workers": n_workers, **settings})
        algo = get_algorithm(config.algo)
        info = probe_env(config, algo.continuous)
        net = build_network(config, info, algo.head, max_batch=1)
        obs_dim, return_norm = normalisation_layout(config, info)
        state = SharedState.create(
            net.n_params,
            n_workers,
            target=algo.target_network,
            optimizer_stats=True,
            obs_norm_dim=obs_dim,
            return_norm=return_norm,
        )
        held.append(state)
        net.bind(state.params, net.grads)
        net.init_params(0)
        if state.target is not None:
            state.target[:] = state.params
        return [ActorLearner(config, algo, i, state, queue.SimpleQueue()) for i in range(n_workers)]

    yield make
    for state in held:
        state.close()


@pytest.fixture
def learn_in_process():
    """``learn_in_process(**settings) -> (config, theta)``: one worker runs the algorithm's
    loop in this process (no spawn: deterministic for a seed, seconds on CartPole), from
    ``init_params(seed)``; returns the learned parameters."""

    def learn(**settings):
        config = build_config({"workers": 1, "quiet": True, **settings})
        algo = get_algorithm(config.algo)
        info = probe_env(config, algo.continuous)
        net = build_network(config, info, algo.head, max_batch=1)
        obs_dim, return_norm = normalisation_layout(config, info)
        with SharedState.create(
            net.n_params,
            1,
            target=algo.target_network,
            optimizer_stats=True,
            obs_norm_dim=obs_dim,
            return_norm=return_norm,
        ) as state:
            net.bind(state.params, net.grads)
            net.init_params(config.seed)
            if state.target is not None:
                state.target[:] = state.params
            run_worker(config, algo, 0, state, queue.SimpleQueue())
            return config, state.params.copy()

    return learn
