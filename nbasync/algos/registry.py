"""What an algorithm is: its declaration (:class:`AlgorithmSpec`) and the one registry.

Owns the registry of algorithms and every decision that depends on which algorithm runs:
the head its network needs, a target network, continuous actions, an LSTM, the settings
only it reads, its worker loop, and how a trained agent acts (``algos.acting``). Each
algorithm module declares its ``SPEC`` once; ``nbasync.algos`` registers them. Nothing
else in nbasync compares algorithm names: it asks the spec (Gymnasium's ``EnvSpec`` +
``register`` pattern)::

    algo = get_algorithm(config.algo)        # ConfigError (one line) for an unknown name
    algo.head, algo.target_network, algo.continuous, algo.recurrent, algo.settings
    algo.run(actor_learner)                  # the worker's loop (a top-level function)
    act = algo.acting(info, rng, greedy=True, epsilon=0.0); action = act(net_output_row)
    register(dataclasses.replace(a3c.SPEC, name="my_a3c"))   # a new name, same method

A spec travels to the worker processes pickled (its functions by reference), so an
algorithm registered in the parent only (a test, a notebook) runs in spawned workers too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..build import HEADS, Q_VALUES
from ..envs import EnvInfo
from ..errors import ConfigError
from .acting import acting_for

if TYPE_CHECKING:
    from ..config import TrainConfig
    from .acting import Acting
    from .base import ActorLearner


@dataclass(frozen=True)
class AlgorithmSpec:
    """One algorithm, declared once in its module.

    name            the ``--algo`` value
    summary         one line for ``nbasync-train --help``
    head            ``build.POLICY_VALUE`` (policy logits + V) or ``build.Q_VALUES`` (one Q
                    per action); also decides how a trained agent acts (:meth:`acting`)
    run             ``run(actor_learner)``: the worker's loop, until the run is finished
    target_network  keeps theta-, copied from theta every ``--target-interval`` steps
    continuous      takes continuous (1-D Box) actions (a Gaussian policy)
    recurrent       has an LSTM variant (``--recurrent``)
    settings        settings only this algorithm reads (e.g. ``gae_lambda``): any other
                    algorithm refuses them when they differ from the default. (``dueling``
                    belongs to the Q head: every algorithm with that head takes it.)
    """

    name: str
    summary: str
    head: str
    run: Callable[[ActorLearner], None]
    target_network: bool = False
    continuous: bool = False
    recurrent: bool = False
    settings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"{self.name}: head must be one of {HEADS}, got {self.head!r}")
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"algorithm names are identifiers, got {self.name!r}")

    def acting(
        self, info: EnvInfo, rng: np.random.Generator, greedy: bool = True, epsilon: float = 0.0
    ) -> Acting:
        """How a trained agent of this algorithm picks actions from its network's output
        (evaluation): argmax / sample of the policy, or epsilon-greedy on Q."""
        return acting_for(self.head, info, rng, greedy, epsilon)


ALGORITHMS: dict[str, AlgorithmSpec] = {}
"""name -> spec, in registration order (the order ``--help`` lists them)."""


def register(spec: AlgorithmSpec) -> AlgorithmSpec:
    """Add ``spec`` under ``spec.name``; ValueError when another spec has that name."""
    if not isinstance(spec, AlgorithmSpec):
        raise TypeError(f"register() takes an AlgorithmSpec, got {type(spec).__name__}")
    held = ALGORITHMS.get(spec.name)
    if held is not None and held != spec:
        raise ValueError(f"an algorithm named {spec.name!r} is already registered")
    ALGORITHMS[spec.name] = spec
    return spec


def algorithm_names() -> tuple[str, ...]:
    return tuple(ALGORITHMS)


def get_algorithm(name: str) -> AlgorithmSpec:
    """The spec registered as ``name``; ConfigError (one line, exit 2) otherwise."""
    spec = ALGORITHMS.get(name)
    if spec is None:
        raise ConfigError(
            f"--algo: unknown algorithm {name!r} (choose from {', '.join(ALGORITHMS)})"
        )
    return spec


def check_config(config: TrainConfig) -> AlgorithmSpec:
    """What ``config`` asks of its algorithm, against what the algorithm declares: an
    LSTM, a dueling head, settings only other algorithms read. Returns the spec;
    ConfigError otherwise.
    (Continuous actions are checked against the environment, in ``build.env_info``.)"""
    algo = get_algorithm(config.algo)
    if config.recurrent and not algo.recurrent:
        able = [s.name for s in ALGORITHMS.values() if s.recurrent]
        raise ConfigError(
            f"--recurrent: only {_listing(able)} {'has' if len(able) == 1 else 'have'} a "
            f"recurrent variant (A3C LSTM), not {algo.name}"
        )
    if config.dueling and algo.head != Q_VALUES:
        _refuse("dueling", algo, [s.name for s in ALGORITHMS.values() if s.head == Q_VALUES])
    defaults = _defaults(config)
    for name in sorted({s for spec in ALGORITHMS.values() for s in spec.settings}):
        if name not in algo.settings and getattr(config, name) != defaults[name]:
            _refuse(name, algo, [s.name for s in ALGORITHMS.values() if name in s.settings])
    return algo


def _refuse(setting: str, algo: AlgorithmSpec, users: list[str]) -> None:
    raise ConfigError(
        f"--{setting.replace('_', '-')}: {algo.name} does not use it (only "
        f"{_listing(users)} {'does' if len(users) == 1 else 'do'})"
    )


def _defaults(config: Any) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(config)}


def _listing(names: list[str]) -> str:
    return ", ".join(names) if names else "none"
