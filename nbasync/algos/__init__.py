"""The four asynchronous algorithms of the paper, one module each, and the worker entry.

``ALGORITHMS`` maps an algorithm name to its ``run(actor_learner)`` loop. ``worker_main`` is
the top-level function the runner starts in each process.
"""

from __future__ import annotations

from collections.abc import Callable

from . import a3c, nstep_q, onestep_q, onestep_sarsa
from .base import ActorLearner

ALGORITHMS: dict[str, Callable[[ActorLearner], None]] = {
    "onestep_q": onestep_q.run,
    "onestep_sarsa": onestep_sarsa.run,
    "nstep_q": nstep_q.run,
    "a3c": a3c.run,
}


def worker_main(index: int, handle, args, events, stop) -> None:
    """Entry of one worker process: attach the shared state, build the actor-learner, run."""
    from ..config import TrainConfig
    from ..shared import SharedState

    config_dict, segment = args
    config = TrainConfig.from_dict(config_dict)
    state = SharedState.attach(handle)
    try:
        learner = ActorLearner(config, index, state, events, stop, segment)
        ALGORITHMS[config.algo](learner)
        learner.close()
    finally:
        state.close()
