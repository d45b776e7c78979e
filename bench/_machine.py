"""What machine a benchmark ran on: one description shared by every script in bench/.

Benchmarks print it beside their figures (CPU model, cores, Python, 1-minute load), since
other jobs on the machine skew every timing. The CPU model comes from ``nbasync.machine``,
which the run file also stores with each checkpoint.
"""

from __future__ import annotations

import os
import platform

from nbasync.machine import cpu_model

__all__ = ["cpu_model", "load_average", "machine"]


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return float("nan")


def machine() -> str:
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load {load_average():.1f}"
    )
