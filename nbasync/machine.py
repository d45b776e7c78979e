"""Which machine a run or a benchmark ran on, in one line (CPU model, cores, Python, numpy and
numba versions): timings and learning curves are only comparable between runs that say it.

A leaf module (stdlib only). The run file stores it with every checkpoint, since a run
resumed later may continue on another machine; the benchmarks in ``bench/`` print it.
"""

from __future__ import annotations

import functools
import os
import platform
from importlib import metadata


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


@functools.lru_cache(maxsize=1)
def describe_machine() -> str:
    """E.g. 'AMD EPYC, 2 cores, Linux, Python 3.11.7, numpy 2.1.3, numba 0.61.0'."""
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()}, "
        f"Python {platform.python_version()}, numpy {_version('numpy')}, "
        f"numba {_version('numba')}"
    )
