"""The one place where the numba decorator (and fastmath) is chosen for ``nbasync.nn``.

Every kernel in ``nbasync.nn`` is decorated with :data:`jit` (``@njit(cache=True)``), so the
compiled machine code is cached on disk next to the source and later processes (workers,
test runs) only pay the load, not the compile.

fastmath: OFF (:data:`FASTMATH`) for every kernel but the dot-product reductions
(:data:`jit_reduce`). The copy, bias and accumulate loops vectorise across independent
elements without it; IEEE semantics keep NaN/inf visible (``nnan``/``ninf`` would let a
diverging run hide them). Not measured: whether ``contract`` (FMA fusion) alone would speed
up those loops; the big products go through BLAS anyway.
"""

from __future__ import annotations

from numba import njit

FASTMATH = False
"""fastmath flags of every kernel except the reductions (False: IEEE semantics)."""

jit = njit(cache=True, fastmath=FASTMATH)
"""Decorator for every numba kernel in ``nbasync.nn``."""

REDUCE_FASTMATH = {"reassoc", "contract"}
"""Only for dot-product reductions: LLVM vectorises a float sum only when it may reorder it.
Measured safe: it changes the summation order (rounding at the 1e-7 level in float32) and
nothing else, keeps NaN/inf (no nnan/ninf), and the float64 gradient checks run through it.
Measured faster: the 2..6-row Dense forward (kernels.dense_forward_dot, see layers.Dense)."""

jit_reduce = njit(cache=True, fastmath=REDUCE_FASTMATH)
"""Decorator for the dot-product kernels (see REDUCE_FASTMATH)."""

FMA_FASTMATH = {"contract"}
"""For the multiply-add loops whose inner loop runs across independent elements
(kernels.gemm_nn_small): lets LLVM fuse ``a * b + c`` into one FMA (one rounding instead of
two) and nothing else; no reassociation (the loop vectorises without it), NaN and inf kept.
Checked by the float64 reference tests (1e-12) and the finite-difference gradient checks."""

jit_fma = njit(cache=True, fastmath=FMA_FASTMATH)
"""Decorator for the multiply-add kernels (see FMA_FASTMATH)."""

__all__ = ["FASTMATH", "FMA_FASTMATH", "REDUCE_FASTMATH", "jit", "jit_fma", "jit_reduce"]
