"""The entry of one worker process: a configuration and an algorithm in, the worker's loop run.

Owns what crosses the process boundary into a worker (``WorkerArgs``: the settings as a
dict, the run segment, the algorithm's spec) and turning it back into a running
actor-learner. The runner starts :func:`worker_main` in each spawned process; ``train``
builds the arguments. The spec travels pickled (its functions by reference), so an
algorithm registered only in the parent runs in the workers too.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .algos import AlgorithmSpec, run_worker
from .config import TrainConfig
from .shared import SharedHandle, SharedState


class WorkerArgs(NamedTuple):
    config: dict[str, Any]  # TrainConfig.to_dict()
    segment: int  # the run segment (0, then +1 per resume): fresh random streams
    algo: AlgorithmSpec


def worker_main(index: int, handle: SharedHandle, args: WorkerArgs, events, stop) -> None:
    """Attach the shared state, build the actor-learner, run the algorithm until the run is
    finished (the shared stop flag, polled by the loop, ends it early)."""
    config = TrainConfig.from_dict(args.config)
    with SharedState.attach(handle) as state:
        run_worker(config, args.algo, index, state, events, args.segment)
