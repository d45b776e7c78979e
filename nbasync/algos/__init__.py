"""The asynchronous algorithms, one module each, and the registry built from their specs.

Each module reads like the paper's pseudocode and ends with its ``SPEC``
(:class:`~nbasync.algos.registry.AlgorithmSpec`); they are registered here, in the order
``--help`` lists them. A new algorithm is a module with a ``SPEC`` added to this list (or
``register(spec)`` from outside the package).
"""

from __future__ import annotations

from . import a3c, a3c_gae, nstep_q, onestep_q, onestep_sarsa
from .base import ActorLearner, run_worker
from .registry import (
    ALGORITHMS,
    AlgorithmSpec,
    algorithm_names,
    check_config,
    get_algorithm,
    register,
)

for _module in (onestep_q, onestep_sarsa, nstep_q, a3c, a3c_gae):
    register(_module.SPEC)

__all__ = [
    "ALGORITHMS",
    "ActorLearner",
    "AlgorithmSpec",
    "algorithm_names",
    "check_config",
    "get_algorithm",
    "register",
    "run_worker",
]
