"""The messages a worker sends its parent through the runner's event queue, one type each.

Owns their fields. A leaf: the workers (``algos``) build them, the parent (``train``)
dispatches on their type and reads them by name. Each is a NamedTuple whose first field is
its kind, a string tag, so the runner's queue protocol (tagged tuples, see ``runner``)
holds; the runner's own kinds (``runner.WorkerRestarted``, ``runner.WorkerStalled``) are
typed the same way.
"""

from __future__ import annotations

from typing import NamedTuple

EPISODE = "episode"
TELEMETRY = "telemetry"


class EpisodeEvent(NamedTuple):
    """One finished episode: its raw return and length in agent steps, the global step T
    when it ended and ``wall`` (a Unix time; the parent makes it run time)."""

    kind: str
    worker: int
    step: int
    wall: float
    ret: float
    length: int

    @classmethod
    def of(cls, worker: int, step: int, wall: float, ret: float, length: int) -> EpisodeEvent:
        return cls(EPISODE, worker, step, wall, ret, length)


class TelemetryEvent(NamedTuple):
    """Gradient telemetry rows: ``rows`` is the bytes of rows of
    ``runfile.telemetry_dtype(n_layers)`` (``wall_time`` still a Unix time)."""

    kind: str
    worker: int
    rows: bytes

    @classmethod
    def of(cls, worker: int, rows: bytes) -> TelemetryEvent:
        return cls(TELEMETRY, worker, rows)
