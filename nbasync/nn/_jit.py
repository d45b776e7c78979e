"""The one place where the numba decorator (and fastmath) is chosen for ``nbasync.nn``.

Every kernel in ``nbasync.nn`` is decorated with :data:`jit` (``@njit(cache=True)``), so the
compiled machine code is cached on disk next to the source and later processes (workers,
test runs) only pay the load, not the compile.

fastmath: OFF everywhere. The GEMM-like loops vectorise across the independent output
column, which needs no reassociation, and Zen 3 issues separate multiply and add on its two
MUL/FMA and two ADD pipes, so ``contract`` (FMA fusion) was measured to give no speed-up on
them (see bench/kernels.py). Without fastmath, float64 kernels are bit-for-bit the same
arithmetic as the float32 ones, which keeps the finite-difference checks meaningful, and
NaN/inf propagate (``nnan``/``ninf`` would let a diverging run hide them).
"""

from __future__ import annotations

from numba import njit

FASTMATH = False
"""fastmath flags used by every kernel (False: IEEE semantics)."""

jit = njit(cache=True, fastmath=FASTMATH)
"""Decorator for every numba kernel in ``nbasync.nn``."""

__all__ = ["FASTMATH", "jit"]
