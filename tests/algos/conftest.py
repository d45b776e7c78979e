"""Shared fixture of the algorithm tests: actor-learners over a fresh shared state."""

from __future__ import annotations

import queue

import pytest

from nbasync.algos.base import ActorLearner, build_network
from nbasync.config import build_config
from nbasync.shared import SharedState
from nbasync.train import probe_env


@pytest.fixture
def make_learners():
    """``make_learners(n_workers=1, **settings)``: that many ActorLearners (A3C unless the
    settings say else) on one SharedState with seeded parameters; closed after the test."""
    held: list[SharedState] = []

    def make(n_workers: int = 1, **settings) -> list[ActorLearner]:
        config = build_config({"algo": "a3c", "workers": n_workers, **settings})
        spec = probe_env(config)
        net = build_network(config, spec, max_batch=config.t_max + 1)
        state = SharedState.create(net.n_params, n_workers, target=False, optimizer_stats=True)
        held.append(state)
        net.bind(state.params, net.grads)
        net.init_params(0)
        return [ActorLearner(config, i, state, queue.SimpleQueue(), None) for i in range(n_workers)]

    yield make
    for state in held:
        state.close()
