"""Numba kernels for the layers: im2col / col2im, bias, ReLU, flatten, gradient GEMMs.

Owns the element loops of ``nbasync.nn``. Every kernel writes into arrays handed in by the
caller (nothing is allocated here) and runs in float32 or float64 alike. Arrays handed in
must be C-contiguous; the layer code in ``layers.py`` guarantees it, so each kernel compiles
once per dtype.

Layouts:
  * activations of convolutions are stored channels-last, (B, OH, OW, C), so that one
    convolution over the whole batch is one GEMM: ``cols (B*P, K) @ W(O, K)^T``;
  * ``cols`` rows are output positions p = oh*OW + ow, columns are k = (c*kh + i)*kw + j,
    the order of a PyTorch weight (O, C, kh, kw) flattened to (O, K).
The big matrix products that do not accumulate are done with NumPy's BLAS from ``layers.py``,
except Dense at <= 6 rows (``dense_forward_dot``, ``gemm_tn_acc_small``, ``gemm_nn_small``),
where OpenBLAS packs the whole weight every call.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit, jit_fma, jit_reduce


@jit
def sigmoid(x):
    """1 / (1 + exp(-x)) of a scalar (the LSTM gates, the Gaussian head's d softplus)."""
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------- convolution: im2col
# The loops index flat views with unsigned offsets: numba's signed indexing checks every
# access for a negative (wrap-around) index, which kept these copies from vectorising
# (measured 2-3x slower on the Atari conv1 im2col).


@jit
def im2col_nchw(x, kh, kw, stride, cols):
    """cols[b, oh*OW + ow, (c*kh + i)*kw + j] = x[b, c, oh*stride + i, ow*stride + j].

    x: (B, C, H, W); cols: (B, OH*OW, C*kh*kw).
    """
    B, C, H, W = x.shape
    OH = (H - kh) // stride + 1
    OW = (W - kw) // stride + 1
    xf = x.reshape(x.size)
    cf = cols.reshape(cols.size)
    ukw = np.uint64(kw)
    uW = np.uint64(W)
    dst = np.uint64(0)
    for b in range(B):
        for oh in range(OH):
            for ow in range(OW):
                for c in range(C):
                    src = np.uint64(((b * C + c) * H + oh * stride) * W + ow * stride)
                    for _i in range(kh):
                        for j in range(ukw):
                            cf[dst + j] = xf[src + j]
                        dst += ukw
                        src += uW


@jit
def im2col_nhwc(x, kh, kw, stride, cols):
    """cols[b, oh*OW + ow, (i*kw + j)*C + c] = x[b, oh*stride + i, ow*stride + j, c].

    x: (B, H, W, C) channels-last; cols: (B, OH*OW, kh*kw*C). NOTE the column order
    (i, j, c) follows the input's memory order (runs of kw*C contiguous values); the weight
    is permuted to match (:func:`weight_ochw_to_ohwc`).
    """
    B, H, W, C = x.shape
    OH = (H - kh) // stride + 1
    OW = (W - kw) // stride + 1
    xf = x.reshape(x.size)
    cf = cols.reshape(cols.size)
    run = np.uint64(kw * C)
    uWC = np.uint64(W * C)
    dst = np.uint64(0)
    for b in range(B):
        for oh in range(OH):
            for ow in range(OW):
                src = np.uint64(((b * H + oh * stride) * W + ow * stride) * C)
                for _i in range(kh):
                    for r in range(run):
                        cf[dst + r] = xf[src + r]
                    dst += run
                    src += uWC


@jit
def col2im_nchw(dcols, kh, kw, stride, dx):
    """Adjoint of :func:`im2col_nchw`: dx = sum of dcols over the patches (dx is overwritten)."""
    B, C, H, W = dx.shape
    OH = (H - kh) // stride + 1
    OW = (W - kw) // stride + 1
    xf = dx.reshape(dx.size)
    cf = dcols.reshape(dcols.size)
    xf[:] = 0.0
    ukw = np.uint64(kw)
    uW = np.uint64(W)
    src = np.uint64(0)
    for b in range(B):
        for oh in range(OH):
            for ow in range(OW):
                for c in range(C):
                    dst = np.uint64(((b * C + c) * H + oh * stride) * W + ow * stride)
                    for _i in range(kh):
                        for j in range(ukw):
                            xf[dst + j] += cf[src + j]
                        src += ukw
                        dst += uW


@jit
def col2im_nhwc(dcols, kh, kw, stride, dx):
    """Adjoint of :func:`im2col_nhwc` (columns (i, j, c)): dx (B, H, W, C) is overwritten."""
    B, H, W, C = dx.shape
    OH = (H - kh) // stride + 1
    OW = (W - kw) // stride + 1
    xf = dx.reshape(dx.size)
    cf = dcols.reshape(dcols.size)
    xf[:] = 0.0
    run = np.uint64(kw * C)
    uWC = np.uint64(W * C)
    src = np.uint64(0)
    for b in range(B):
        for oh in range(OH):
            for ow in range(OW):
                dst = np.uint64(((b * H + oh * stride) * W + ow * stride) * C)
                for _i in range(kh):
                    for r in range(run):
                        xf[dst + r] += cf[src + r]
                    src += run
                    dst += uWC


@jit
def weight_ochw_to_ohwc(W, Wk):
    """Wk[o, (i*kw + j)*C + c] = W[o, c, i, j]: the weight in im2col_nhwc's column order."""
    n_out, C, kh, kw = W.shape
    khw = kh * kw
    wf = W.reshape(W.size)
    kf = Wk.reshape(Wk.size)
    uC = np.uint64(C)
    # W in memory order: reads sequential, writes strided by C, four loads before their
    # stores (one vector load; xf/kf may alias for LLVM). conv2 32x16x4x4: 0.0031 ms; one
    # element at a time 0.0037-0.0041, writes in order 0.0042, 4-D indexing 0.0051.
    uC4 = uC * np.uint64(4)
    src = np.uint64(0)
    for o in range(n_out):
        base = np.uint64(o * C * khw)
        for c in range(C):
            dst = base + np.uint64(c)
            p = 0
            while p + 4 <= khw:
                a0 = wf[src]
                a1 = wf[src + np.uint64(1)]
                a2 = wf[src + np.uint64(2)]
                a3 = wf[src + np.uint64(3)]
                kf[dst] = a0
                kf[dst + uC] = a1
                kf[dst + uC + uC] = a2
                kf[dst + uC + uC + uC] = a3
                src += np.uint64(4)
                dst += uC4
                p += 4
            while p < khw:
                kf[dst] = wf[src]
                src += np.uint64(1)
                dst += uC
                p += 1


@jit
def weights_changed(W, seen, seen_ok):
    """True when W's bits differ from ``seen`` (or ``seen_ok[0] == 0``); then seen <- W.

    Lets a layer keep a reordered copy of its weight across forwards and redo it only when
    the parameters really changed (a worker changes them once per rollout; a benchmark or
    an evaluation never). Compares bits, not values (-0.0 vs 0.0 and NaNs count as
    changes), so the cached copy is always exactly the reorder of the current W. One
    vectorised pass over W and ``seen`` (unsigned indices: with signed ones numba keeps a
    wraparound test that stops LLVM vectorising); ~0.5 us for the Atari conv weights,
    against 4.5-5.5 us for either reorder.
    """
    n = W.size
    w = W.reshape(n).view(np.uint32)
    c = seen.reshape(n).view(np.uint32)
    m = np.uint64(w.shape[0])
    diff = np.uint32(0)
    for k in range(m):
        diff |= w[k] ^ c[k]
    if diff == 0 and seen_ok[0] != 0:
        return False
    for k in range(m):
        c[k] = w[k]
    seen_ok[0] = 1
    return True


@jit
def im2col_nhwc_and_weight(x, kh, kw, stride, cols, W, Wk, seen, seen_ok):
    """:func:`im2col_nhwc`, and :func:`weight_ochw_to_ohwc` when W changed (see
    :func:`weights_changed`), in one call (one dispatch)."""
    im2col_nhwc(x, kh, kw, stride, cols)
    if weights_changed(W, seen, seen_ok):
        weight_ochw_to_ohwc(W, Wk)


@jit
def add_ohwc_to_ochw(dWk, dW):
    """dW[o, c, i, j] += dWk[o, (i*kw + j)*C + c] (adjoint of weight_ochw_to_ohwc, adding)."""
    n_out, C, kh, kw = dW.shape
    for o in range(n_out):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    dW[o, c, i, j] += dWk[o, (i * kw + j) * C + c]


@jit
def add_into(src, dst):
    """dst += src on flat views."""
    for k in range(dst.shape[0]):
        dst[k] += src[k]


# ---------------------------------------------------------------- convolution: space-to-depth
# A convolution over channels-first input whose kernel is a multiple of its stride s (the
# Atari conv1: 8x8 stride 4) is a stride-1 convolution with an (kh/s) x (kw/s) kernel over
# the input cut into s x s blocks, each block's C*s*s values stacked as channels
# ("space-to-depth"): S (Hs, Ws, Cs), Hs = OH + kh/s - 1, Ws = OW + kw/s - 1, Cs = C*s*s.
# On the flat grid r = hb*Ws + wb the block offset (di, dj) is the constant row shift
# di*Ws + dj, so the whole convolution is ONE GEMM  Z = S (B*G, Cs) @ Wall (Cs, nk*O)
# (G = Hs*Ws, nk = kh/s * kw/s block offsets) and a gather
#     y[oh, ow, o] = b[o] + sum_k Z[(oh + di)*Ws + ow + dj, k*O + o].
# No im2col: S is the input's size (im2col's cols are kh*kw/s^2 = 4x larger for conv1) and
# the GEMM does G/(OH*OW) = 1.10x the rows. Backward is the exact adjoint: dZ = scatter(dy),
# dWall = S^T dZ (one GEMM), dS = dZ Wall^T, dx = depth_to_space(dS).
# Channels of S: ch = (c*s + i)*s + j; block offsets k = di*(kw/s) + dj.


@jit
def space_to_depth_nchw(x, s, S):
    """S[b, hb, wb, (c*s + i)*s + j] = x[b, c, hb*s + i, wb*s + j]. S: (B, Hs, Ws, C*s*s)."""
    B, C, H, W = x.shape
    Hs, Ws = S.shape[1], S.shape[2]
    Cs = S.shape[3]
    xf = x.reshape(x.size)
    sf = S.reshape(S.size)
    us = np.uint64(s)
    ucs = np.uint64(Cs)
    # source rows read in order; each s-run goes to its block (stride Cs). s == 4 (Atari)
    # is spelled out, all four loads before the stores: xf and sf may alias as far as LLVM
    # knows, so load/store/load/store cannot merge into one vector move (0.0094 ms for conv1
    # at batch 1 interleaved, 0.0040 loads first; a plain copy of the 113 KB is 0.0036).
    for b in range(B):
        for c in range(C):
            for hb in range(Hs):
                for i in range(s):
                    src = np.uint64(((b * C + c) * H + hb * s + i) * W)
                    dst = np.uint64((b * Hs + hb) * Ws) * ucs + np.uint64((c * s + i) * s)
                    if s == 4:
                        for _wb in range(Ws):
                            a0 = xf[src]
                            a1 = xf[src + np.uint64(1)]
                            a2 = xf[src + np.uint64(2)]
                            a3 = xf[src + np.uint64(3)]
                            sf[dst] = a0
                            sf[dst + np.uint64(1)] = a1
                            sf[dst + np.uint64(2)] = a2
                            sf[dst + np.uint64(3)] = a3
                            src += us
                            dst += ucs
                    else:
                        for _wb in range(Ws):
                            for j in range(us):
                                sf[dst + j] = xf[src + j]
                            src += us
                            dst += ucs


@jit
def space_to_depth_and_blocks(x, W, s, S, Wall, seen, seen_ok):
    """:func:`space_to_depth_nchw` (x -> S), and :func:`weight_to_blocks` (W -> Wall) when W
    changed (see :func:`weights_changed`), in one call (one numba dispatch)."""
    space_to_depth_nchw(x, s, S)
    if weights_changed(W, seen, seen_ok):
        weight_to_blocks(W, s, Wall)


@jit
def depth_to_space_nchw(S, s, x):
    """Adjoint of :func:`space_to_depth_nchw`: x (B, C, H, W) overwritten, 0 where no block."""
    B, C, H, W = x.shape
    Hs, Ws = S.shape[1], S.shape[2]
    xf = x.reshape(x.size)
    sf = S.reshape(S.size)
    xf[:] = 0.0
    us = np.uint64(s)
    uW = np.uint64(W)
    src = np.uint64(0)
    for b in range(B):
        for hb in range(Hs):
            for wb in range(Ws):
                for c in range(C):
                    dst = np.uint64(((b * C + c) * H + hb * s) * W + wb * s)
                    for _i in range(s):
                        for j in range(us):
                            xf[dst + j] = sf[src + j]
                        src += us
                        dst += uW


@jit
def weight_to_blocks(W, s, Wall):
    """Wall[(c*s + i)*s + j, (di*nbw + dj)*O + o] = W[o, c, di*s + i, dj*s + j]."""
    n_out, C, kh, kw = W.shape
    nbh, nbw = kh // s, kw // s
    wf = W.reshape(W.size)
    af = Wall.reshape(Wall.size)
    ustride = np.uint64(C * kh * kw)
    dst = np.uint64(0)  # Wall written in order, flat unsigned indices
    for c in range(C):
        for i in range(s):
            for j in range(s):
                for di in range(nbh):
                    for dj in range(nbw):
                        src = np.uint64((c * kh + di * s + i) * kw + dj * s + j)
                        for _o in range(n_out):
                            af[dst] = wf[src]
                            dst += np.uint64(1)
                            src += ustride


@jit
def add_blocks_to_weight(dWall, s, dW):
    """dW[o, c, di*s + i, dj*s + j] += dWall[(c*s + i)*s + j, (di*nbw + dj)*O + o]."""
    n_out, C, kh, kw = dW.shape
    nbh, nbw = kh // s, kw // s
    gf = dWall.reshape(dWall.size)
    wf = dW.reshape(dW.size)
    ustride = np.uint64(C * kh * kw)
    src = np.uint64(0)  # dWall read in order
    for c in range(C):
        for i in range(s):
            for j in range(s):
                for di in range(nbh):
                    for dj in range(nbw):
                        dst = np.uint64((c * kh + di * s + i) * kw + dj * s + j)
                        for _o in range(n_out):
                            wf[dst] += gf[src]
                            src += np.uint64(1)
                            dst += ustride


@jit
def blocks_gather(Z, Ws, nbh, nbw, bias, relu, y):
    """y[b, oh, ow, o] = bias[o] + sum_{di,dj} Z[b, (oh + di)*Ws + ow + dj, (di*nbw + dj)*O + o].

    Z: (B, Hs*Ws, nbh*nbw*O); y: (B, OH, OW, O) channels-last; max(., 0) when ``relu``.
    """
    B, OH, OW, n_out = y.shape
    G = Z.shape[1]
    nz = np.uint64(Z.shape[2])
    zf = Z.reshape(Z.size)
    yf = y.reshape(y.size)
    uo = np.uint64(n_out)
    dst = np.uint64(0)
    if nbh == 2 and nbw == 2:  # the Atari conv1 (8x8 / 4): four blocks summed in registers
        k1 = nz + uo
        k2 = np.uint64(Ws) * nz + uo + uo
        k3 = k2 + nz + uo
        for b in range(B):
            for oh in range(OH):
                z0 = np.uint64(b * G + oh * Ws) * nz
                for _ow in range(OW):
                    if relu:
                        for o in range(uo):
                            v = bias[o] + zf[z0 + o] + zf[z0 + k1 + o]
                            v += zf[z0 + k2 + o] + zf[z0 + k3 + o]
                            yf[dst + o] = v if v > 0.0 else 0.0
                    else:
                        for o in range(uo):
                            v = bias[o] + zf[z0 + o] + zf[z0 + k1 + o]
                            yf[dst + o] = v + zf[z0 + k2 + o] + zf[z0 + k3 + o]
                    z0 += nz
                    dst += uo
        return
    for b in range(B):
        for oh in range(OH):
            for ow in range(OW):
                z0 = np.uint64(b * G + oh * Ws + ow) * nz
                for o in range(uo):
                    yf[dst + o] = bias[o]
                for di in range(nbh):
                    zr = z0 + np.uint64(di * Ws) * nz + np.uint64(di * nbw) * uo
                    for _dj in range(nbw):
                        for o in range(uo):
                            yf[dst + o] += zf[zr + o]
                        zr += nz + uo
                if relu:
                    for o in range(uo):
                        v = yf[dst + o]
                        yf[dst + o] = v if v > 0.0 else 0.0
                dst += uo


@jit
def blocks_scatter(dy, Ws, nbh, nbw, dZ):
    """Adjoint of :func:`blocks_gather` (without the bias): dZ overwritten, 0 off the outputs.

    dZ[b, (oh + di)*Ws + ow + dj, (di*nbw + dj)*O + o] = dy[b, oh, ow, o].
    """
    B, OH, OW, n_out = dy.shape
    G = dZ.shape[1]
    nz = np.uint64(dZ.shape[2])
    zf = dZ.reshape(dZ.size)
    df = dy.reshape(dy.size)
    zf[:] = 0.0  # a memset, then one pass over dy (measured faster than writing dZ in order)
    uo = np.uint64(n_out)
    src = np.uint64(0)
    for b in range(B):
        for oh in range(OH):
            for ow in range(OW):
                z0 = np.uint64(b * G + oh * Ws + ow) * nz
                for di in range(nbh):
                    zr = z0 + np.uint64(di * Ws) * nz + np.uint64(di * nbw) * uo
                    for _dj in range(nbw):
                        for o in range(uo):
                            zf[zr + o] = df[src + o]
                        zr += nz + uo
                src += uo


# ---------------------------------------------------------------- bias, ReLU


@jit
def bias_forward(y, bias, relu):
    """y[m, o] += bias[o], then max(y, 0) in place when ``relu``. y: (M, O)."""
    M, n_out = y.shape
    if relu:
        for m in range(M):
            for o in range(n_out):
                v = y[m, o] + bias[o]
                y[m, o] = v if v > 0.0 else 0.0
    else:
        for m in range(M):
            for o in range(n_out):
                y[m, o] += bias[o]


@jit
def bias_backward(dy, dbias):
    """dbias[o] += sum_m dy[m, o] (accumulates). dy: (M, O)."""
    M, n_out = dy.shape
    for m in range(M):
        for o in range(n_out):
            dbias[o] += dy[m, o]


@jit
def relu_forward(x, y):
    """y = max(x, 0) elementwise on flat views (y may be x: in place)."""
    for k in range(x.shape[0]):
        v = x[k]
        y[k] = v if v > 0.0 else 0.0


@jit
def relu_backward(y, dy, dx):
    """dx = dy * (y > 0) on flat views, y the ReLU output (dx may be dy: in place)."""
    for k in range(y.shape[0]):
        dx[k] = dy[k] if y[k] > 0.0 else 0.0


# ---------------------------------------------------------------- flatten


@jit
def flatten_nhwc_forward(x, y):
    """y[b, (c*H + h)*W + w] = x[b, h, w, c]: channels-last to PyTorch's (C, H, W) order."""
    B, H, W, C = x.shape
    P = H * W
    xf = x.reshape(x.size)
    yf = y.reshape(y.size)
    uC = np.uint64(C)
    dst = np.uint64(0)  # y in order, flat unsigned (Atari 9x9x32: 0.0012 vs 0.0016 ms 4-D)
    for b in range(B):
        for c in range(C):
            src = np.uint64(b * P * C + c)
            for _p in range(P):
                yf[dst] = xf[src]
                dst += np.uint64(1)
                src += uC


@jit
def flatten_nhwc_backward(dy, dx):
    """Adjoint of :func:`flatten_nhwc_forward` (a permutation, so dx is overwritten)."""
    B, H, W, C = dx.shape
    for b in range(B):
        for h in range(H):
            for w in range(W):
                for c in range(C):
                    dx[b, h, w, c] = dy[b, (c * H + h) * W + w]


# ---------------------------------------------------------------- gradient GEMM


@jit
def gemm_tn_acc(A, B, C):
    """C += A^T @ B, accumulating. A: (M, P), B: (M, Q), C: (P, Q).

    The weight gradient of Dense (dW += dy^T x) and Conv2d (dW += dy^T cols). Blocked over M
    so that a block of B stays in L2 while every row of C (in L1) takes its rank-``mb``
    update; four rows of B per pass so each load/store of C carries four multiply-adds.
    The inner loop runs over the contiguous Q axis and vectorises.
    """
    M, P = A.shape
    Q = B.shape[1]
    mb = max(4, 16384 // max(Q, 1))
    for m0 in range(0, M, mb):
        m1 = min(M, m0 + mb)
        for p in range(P):
            m = m0
            while m + 4 <= m1:
                a0 = A[m, p]
                a1 = A[m + 1, p]
                a2 = A[m + 2, p]
                a3 = A[m + 3, p]
                for q in range(Q):
                    C[p, q] += a0 * B[m, q] + a1 * B[m + 1, q] + a2 * B[m + 2, q] + a3 * B[m + 3, q]
                m += 4
            while m < m1:
                a0 = A[m, p]
                for q in range(Q):
                    C[p, q] += a0 * B[m, q]
                m += 1


# ---------------------------------------------------------------- small-batch Dense


@jit_reduce
def dense_forward_dot(x, W, y):
    """y[b, o] = dot(x[b], W[o]) for a few rows b (bias added separately).

    OpenBLAS sgemm with 2..6 rows against the Atari fc1 weight (256 x 2592) packs the whole
    weight every call (0.2-0.3 ms at 2..6 rows vs 0.05 ms at 1 row); this streams W once
    and is memory/FMA bound like a GEMV. Blocks of two rows of W by up to three rows of x
    (6 accumulators: 5 loads per 6 multiply-adds; 1x2 blocking did 3 loads per 2 and ran
    0.21 ms at 5 rows, this 0.13). An odd last output is done as the pair (o, o): the same
    value written twice.
    """
    B, n_in = x.shape
    n_out = W.shape[0]
    zero = x.dtype.type(0)
    if B == 1:  # four rows of W per pass over x (fc1: 0.0394 vs 0.0403 ms by pairs)
        x0 = x[0]
        o = 0
        while o + 4 <= n_out:
            w0 = W[o]
            w1 = W[o + 1]
            w2 = W[o + 2]
            w3 = W[o + 3]
            s0 = s1 = s2 = s3 = zero
            for i in range(n_in):
                a = x0[i]
                s0 += a * w0[i]
                s1 += a * w1[i]
                s2 += a * w2[i]
                s3 += a * w3[i]
            y[0, o] = s0
            y[0, o + 1] = s1
            y[0, o + 2] = s2
            y[0, o + 3] = s3
            o += 4
        while o < n_out:
            w0 = W[o]
            s0 = zero
            for i in range(n_in):
                s0 += x0[i] * w0[i]
            y[0, o] = s0
            o += 1
        return
    for o in range(0, n_out, 2):
        o1 = min(o + 1, n_out - 1)
        w0 = W[o]
        w1 = W[o1]
        b = 0
        while b + 3 <= B:
            x0 = x[b]
            x1 = x[b + 1]
            x2 = x[b + 2]
            s00 = s01 = s10 = s11 = s20 = s21 = zero
            for i in range(n_in):
                a = w0[i]
                c = w1[i]
                s00 += x0[i] * a
                s01 += x0[i] * c
                s10 += x1[i] * a
                s11 += x1[i] * c
                s20 += x2[i] * a
                s21 += x2[i] * c
            y[b, o] = s00
            y[b, o1] = s01
            y[b + 1, o] = s10
            y[b + 1, o1] = s11
            y[b + 2, o] = s20
            y[b + 2, o1] = s21
            b += 3
        if b + 2 <= B:
            x0 = x[b]
            x1 = x[b + 1]
            s00 = s01 = s10 = s11 = zero
            for i in range(n_in):
                a = w0[i]
                c = w1[i]
                s00 += x0[i] * a
                s01 += x0[i] * c
                s10 += x1[i] * a
                s11 += x1[i] * c
            y[b, o] = s00
            y[b, o1] = s01
            y[b + 1, o] = s10
            y[b + 1, o1] = s11
            b += 2
        if b < B:
            x0 = x[b]
            s00 = s01 = zero
            for i in range(n_in):
                s00 += x0[i] * w0[i]
                s01 += x0[i] * w1[i]
            y[b, o] = s00
            y[b, o1] = s01


@jit
def dense_forward_small(x, W, bias, relu, y):
    """y = x W^T + bias (max(., 0) when ``relu``) for a few rows: :func:`dense_forward_dot`
    and :func:`bias_forward` in one call (a numba dispatch with array arguments is ~1 us,
    against 0.001 ms for the whole Atari head at batch 1)."""
    dense_forward_dot(x, W, y)
    bias_forward(y, bias, relu)


# ---------------------------------------------------------------- small-batch Dense backward


@jit_fma
def gemm_nn_small(A, B, C):
    """C = A @ B (overwritten) for a few rows of A: the input gradient dx = dy W of Dense.

    A: (M, P), B: (P, Q), C: (M, Q). Four rows of B per pass over a row of C (one load and
    store of C per four multiply-adds: with one row per pass the loop is bound by stores),
    over tiles of Q so that the four B tiles stay in L1 across the M rows of C. Used for M up
    to Dense.SMALL_BATCH, where OpenBLAS packs all of B each call.
    """
    M, P = A.shape
    Q = B.shape[1]
    bf = B.reshape(B.size)
    cf = C.reshape(C.size)
    cf[:] = 0.0
    uq = np.uint64(Q)
    tile = 512
    for t0 in range(0, Q, tile):
        q0 = np.uint64(t0)
        q1 = np.uint64(min(Q, t0 + tile))
        p = 0
        while p + 4 <= P:
            r0 = np.uint64(p) * uq
            r1 = r0 + uq
            r2 = r1 + uq
            r3 = r2 + uq
            for m in range(M):
                a0 = A[m, p]
                a1 = A[m, p + 1]
                a2 = A[m, p + 2]
                a3 = A[m, p + 3]
                c = np.uint64(m) * uq
                for q in range(q0, q1):
                    s = a0 * bf[r0 + q] + a1 * bf[r1 + q] + a2 * bf[r2 + q] + a3 * bf[r3 + q]
                    cf[c + q] += s
            p += 4
        while p < P:
            r0 = np.uint64(p) * uq
            for m in range(M):
                a0 = A[m, p]
                c = np.uint64(m) * uq
                for q in range(q0, q1):
                    cf[c + q] += a0 * bf[r0 + q]
            p += 1


@jit_fma
def gemm_tn_acc_small(A, B, C):
    """C += A^T @ B for a few rows M (the Dense weight gradient dW += dy^T x at batch <= 6).

    A: (M, P), B: (M, Q), C: (P, Q). Two rows of C per pass against up to three rows of B
    (5 loads and 2 stores per 6 multiply-adds; gemm_tn_acc's one row of C against 4 + 1
    rows of B did 7 loads and 2 stores per 5 at M = 5). An odd last row of C: one at a time.
    """
    M, P = A.shape
    Q = B.shape[1]
    bf = B.reshape(B.size)
    cf = C.reshape(C.size)
    uq = np.uint64(Q)
    p = 0
    while p + 2 <= P:
        c0 = np.uint64(p) * uq
        c1 = c0 + uq
        m = 0
        while m + 3 <= M:
            r0 = np.uint64(m) * uq
            r1 = r0 + uq
            r2 = r1 + uq
            a00, a01 = A[m, p], A[m, p + 1]
            a10, a11 = A[m + 1, p], A[m + 1, p + 1]
            a20, a21 = A[m + 2, p], A[m + 2, p + 1]
            for q in range(uq):
                b0 = bf[r0 + q]
                b1 = bf[r1 + q]
                b2 = bf[r2 + q]
                cf[c0 + q] += a00 * b0 + a10 * b1 + a20 * b2
                cf[c1 + q] += a01 * b0 + a11 * b1 + a21 * b2
            m += 3
        if m + 2 <= M:
            r0 = np.uint64(m) * uq
            r1 = r0 + uq
            a00, a01 = A[m, p], A[m, p + 1]
            a10, a11 = A[m + 1, p], A[m + 1, p + 1]
            for q in range(uq):
                b0 = bf[r0 + q]
                b1 = bf[r1 + q]
                cf[c0 + q] += a00 * b0 + a10 * b1
                cf[c1 + q] += a01 * b0 + a11 * b1
            m += 2
        if m < M:
            r0 = np.uint64(m) * uq
            a00, a01 = A[m, p], A[m, p + 1]
            for q in range(uq):
                b0 = bf[r0 + q]
                cf[c0 + q] += a00 * b0
                cf[c1 + q] += a01 * b0
        p += 2
    if p < P:
        c0 = np.uint64(p) * uq
        for m in range(M):
            r0 = np.uint64(m) * uq
            a00 = A[m, p]
            for q in range(uq):
                cf[c0 + q] += a00 * bf[r0 + q]
