"""Layer specs: parameter names and shapes, shape inference, forward/backward over views.

Owns what one layer computes. A layer holds no parameters of its own: :class:`Network`
hands it views into the one flat parameter vector and the one flat gradient vector
(:meth:`Layer.bind`), and preallocated activation buffers. The protocol, per layer::

    out_shape, out_channels_last = layer.build(in_shape, in_channels_last)   # once
    layer.param_shapes            # [("weight", shape), ("bias", shape)] in layout order
    layer.allocate(max_batch, dtype)                                         # caches, once
    layer.bind({"weight": (W, dW), "bias": (b, db)})                         # cheap, no copy
    layer.forward(x, y, row)      # x (B, *in) -> writes y (B, *out); caches rows [row, row+B)
    layer.backward(x, y, dy, dx, n)  # rows [0, n): ADDS parameter gradients, writes dx
                                     # (dx is None when the input gradient is not needed)

Shapes are logical PyTorch shapes ((C, H, W) for images). Storage of a convolution's output
is channels-last (H, W, C) (see kernels.py): ``storage_shape`` gives the per-row buffer
shape. ``in_place`` layers (ReLU) write their output into their input buffer.

Later layers with state (LSTM) fit the same protocol: they keep their per-row state in
buffers from ``allocate`` (indexed by ``row``) and expose ``reset_state``.
"""

from __future__ import annotations

import math

import numpy as np

from . import kernels as K  # noqa: N812


class Layer:
    """Base class: a parameter-free identity-shaped layer."""

    in_place = False
    needs_input = True  # does backward read its input rows?
    param_shapes: list[tuple[str, tuple[int, ...]]] = []

    def __init__(self, name: str):
        self.name = name
        self.in_shape: tuple[int, ...] = ()
        self.out_shape: tuple[int, ...] = ()
        self.in_channels_last = False
        self.out_channels_last = False

    # shape ------------------------------------------------------------------
    def build(self, in_shape, in_channels_last):
        self.in_shape = tuple(in_shape)
        self.in_channels_last = in_channels_last
        self.out_shape = self.in_shape
        self.out_channels_last = in_channels_last
        return self.out_shape, self.out_channels_last

    @property
    def storage_shape(self) -> tuple[int, ...]:
        """Per-row shape of the output buffer."""
        return _storage(self.out_shape, self.out_channels_last)

    @property
    def fan_in(self) -> int:
        return 1

    # buffers and parameters ---------------------------------------------------
    def allocate(self, max_batch: int, dtype) -> None:
        pass

    def bind(self, views: dict) -> None:
        pass

    # math -----------------------------------------------------------------------
    def forward(self, x, y, row: int) -> None:
        raise NotImplementedError

    def forward_fn(self, y, row: int):
        """A callable ``f(x) -> y`` doing ``forward(x, y, row)`` for this output view.

        Network builds these once per (row, batch) and reuses them, so a layer can slice and
        reshape its buffers once instead of on every call (at batch 1 the Atari forward paid
        ~10 us of views and calls around 0.14 ms of kernels). Parameters are read at call
        time (``bind`` may have moved them). Default: wraps :meth:`forward`.
        """
        fwd = self.forward

        def f(x):
            fwd(x, y, row)
            return y

        return f

    def backward(self, x, y, dy, dx, n: int) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.in_shape} -> {self.out_shape})"


def _storage(shape, channels_last):
    if channels_last and len(shape) == 3:
        c, h, w = shape
        return (h, w, c)
    return tuple(shape)


class Dense(Layer):
    """y = x @ W^T + b.  W: (out_features, in_features) as in PyTorch's Linear.

    Backward: dW += dy^T x, db += sum_rows dy, dx = dy W.
    ``relu=True`` fuses a following ReLU into the bias pass (set by Network, not by users).
    """

    def __init__(self, name: str, out_features: int):
        super().__init__(name)
        self.out_features = int(out_features)
        self.relu = False

    def build(self, in_shape, in_channels_last):
        if len(in_shape) != 1:
            raise ValueError(f"{self.name}: Dense needs a flat input, got shape {in_shape}")
        self.in_shape = tuple(in_shape)
        self.out_shape = (self.out_features,)
        self.param_shapes = [
            ("weight", (self.out_features, in_shape[0])),
            ("bias", (self.out_features,)),
        ]
        return self.out_shape, False

    @property
    def fan_in(self) -> int:
        return self.in_shape[0]

    def bind(self, views):
        self.W, self.dW = views["weight"]
        self.b, self.db = views["bias"]

    # batches of 1..SMALL_BATCH rows use numba kernels, others BLAS. Measured on the Atari
    # fc1 (thread CPU time, min of repeats, loaded machine): forward dense_forward_dot 0.05 /
    # 0.13 ms vs BLAS 0.05 / 0.29 ms at 1 / 5 rows (the 7x256 head: 0.6 vs 1.5 us at 1 row);
    # backward dx = dy W by gemm_nn_small 0.18 ms vs BLAS 0.45 ms at 5 rows, BLAS ahead
    # from 8 rows; dW += dy^T x by gemm_tn_acc_small 0.15 ms vs gemm_tn_acc 0.19 at 5 rows.
    SMALL_BATCH = 6

    def forward(self, x, y, row):
        self.forward_fn(y, row)(x)

    def forward_fn(self, y, row):
        if y.shape[0] <= self.SMALL_BATCH:
            small = K.dense_forward_small  # dot + bias (+ ReLU): one dispatch

            def f(x):
                small(x, self.W, self.b, self.relu, y)
                return y
        else:
            matmul, bias_forward = np.matmul, K.bias_forward

            def f(x):
                matmul(x, self.W.T, out=y)
                bias_forward(y, self.b, self.relu)
                return y

        return f

    def backward(self, x, y, dy, dx, n):
        small = n <= self.SMALL_BATCH
        (K.gemm_tn_acc_small if small else K.gemm_tn_acc)(dy, x, self.dW)
        K.bias_backward(dy, self.db)
        if dx is not None:
            if small and n > 1:  # one row: BLAS GEMV is ahead (fc1 0.041 vs 0.056 ms)
                K.gemm_nn_small(dy, self.W, dx)
            else:
                np.matmul(dy, self.W, out=dx)


class Conv2d(Layer):
    """Valid (unpadded) 2-D convolution, any kernel size and stride.

    Input (C, H, W) (stored channels-first for the network input, channels-last after another
    convolution); output (O, OH, OW) with OH = (H - kh) // stride + 1, stored channels-last.
    W: (O, C, kh, kw) as in PyTorch's Conv2d. As a GEMM over the im2col matrix
    cols (B*P, K), K = C*kh*kw, P = OH*OW:

        forward   y = cols W^T + b                 (one GEMM for the whole batch)
        backward  dW += dy^T cols, db += sum dy;   dx = col2im(dy W)  only when needed

    cols is cached per row in forward, so backward needs neither the input nor a 2nd im2col.
    The column order of cols follows the input's memory order: (c, i, j) for channels-first
    input (W used as a view), (i, j, c) for channels-last (a permuted copy Wk of W, redone by a
    forward only when W's bits changed since the last one, ``kernels.weights_changed``;
    backward uses the weights of the latest forward).

    Channels-first input with a kernel that is a multiple of the stride (the Atari conv1,
    8x8 / 4) takes the space-to-depth path instead (``self.s2d``, see kernels.py): S, the
    input cut into stride x stride blocks, is cached per row instead of cols (4x smaller for
    conv1), forward is one GEMM S @ Wall and a gather, backward its exact adjoint (Wall, like
    Wk, is redone when W changed).
    """

    needs_input = False

    def __init__(self, name: str, out_channels: int, kernel_size, stride: int = 1):
        super().__init__(name)
        self.out_channels = int(out_channels)
        kh, kw = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
        self.kh, self.kw, self.stride = int(kh), int(kw), int(stride)
        self.relu = False

    def build(self, in_shape, in_channels_last):
        if len(in_shape) != 3:
            raise ValueError(f"{self.name}: Conv2d needs (C, H, W) input, got {in_shape}")
        c, h, w = in_shape
        oh = (h - self.kh) // self.stride + 1
        ow = (w - self.kw) // self.stride + 1
        if oh < 1 or ow < 1:
            raise ValueError(f"{self.name}: kernel {self.kh}x{self.kw} larger than input {h}x{w}")
        self.in_shape = tuple(in_shape)
        self.in_channels_last = in_channels_last
        self.out_shape = (self.out_channels, oh, ow)
        self.out_channels_last = True
        self.P = oh * ow
        self.K = c * self.kh * self.kw
        self.param_shapes = [
            ("weight", (self.out_channels, c, self.kh, self.kw)),
            ("bias", (self.out_channels,)),
        ]
        self._im2col = K.im2col_nhwc if in_channels_last else K.im2col_nchw
        self._col2im = K.col2im_nhwc if in_channels_last else K.col2im_nchw
        # space-to-depth (kernels.py): channels-first input, kernel a multiple of the stride
        s = self.stride
        self.s2d = not in_channels_last and s > 1 and self.kh % s == 0 and self.kw % s == 0
        if self.s2d:
            self.nbh, self.nbw = self.kh // s, self.kw // s
            self.Hs, self.Ws = oh + self.nbh - 1, ow + self.nbw - 1
            self.G = self.Hs * self.Ws
            self.Cs = c * s * s
            self.nk = self.nbh * self.nbw
        return self.out_shape, True

    @property
    def fan_in(self) -> int:
        return self.K

    def allocate(self, max_batch, dtype):
        if self.s2d or self.in_channels_last:  # W is reordered (Wall / Wk), not a view:
            # the W behind it (kernels.weights_changed), to reorder only when W changed
            self.W_seen = np.zeros((self.out_channels, self.K), dtype)
            self.W_seen_ok = np.zeros(1, np.uint8)
        if self.s2d:
            n_out, G, Cs, nk = self.out_channels, self.G, self.Cs, self.nk
            self.S = np.zeros((max_batch, G, Cs), dtype)  # the input, cached per row
            self.Z = np.zeros((max_batch, G, nk * n_out), dtype)  # GEMM out / dZ in backward
            self.Wall = np.zeros((Cs, nk * n_out), dtype)  # W reordered when W changed
            self.dWall = np.zeros((Cs, nk * n_out), dtype)
            self.dS = np.zeros((max_batch, G, Cs), dtype)
            return
        self.cols = np.zeros((max_batch, self.P, self.K), dtype)
        self.dcols = np.zeros((max_batch, self.P, self.K), dtype)
        self.dWk = np.zeros((self.out_channels, self.K), dtype)  # dW before adding
        if self.in_channels_last:  # the weight in the (i, j, c) column order of im2col_nhwc
            self.Wk = np.zeros((self.out_channels, self.K), dtype)

    def bind(self, views):
        self.W, self.dW = views["weight"]
        self.b, self.db = views["bias"]
        if not self.in_channels_last:
            self.Wk = self.W.reshape(self.out_channels, self.K)  # a view: (c, i, j) order

    def forward(self, x, y, row):
        self.forward_fn(y, row)(x)

    def forward_fn(self, y, row):
        B, n_out = y.shape[0], self.out_channels
        matmul = np.matmul
        if self.s2d:
            S = self.S[row : row + B]
            S4 = S.reshape(B, self.Hs, self.Ws, self.Cs)
            S2 = S.reshape(B * self.G, self.Cs)
            Z = self.Z[:B]  # scratch (backward recomputes dZ from dy)
            Z2 = Z.reshape(B * self.G, self.nk * n_out)
            s, Ws, nbh, nbw = self.stride, self.Ws, self.nbh, self.nbw
            s2d, gather = K.space_to_depth_and_blocks, K.blocks_gather

            def f(x):
                s2d(x, self.W, s, S4, self.Wall, self.W_seen, self.W_seen_ok)
                matmul(S2, self.Wall, out=Z2)
                gather(Z, Ws, nbh, nbw, self.b, self.relu, y)
                return y

            return f
        cols = self.cols[row : row + B]
        cols2 = cols.reshape(B * self.P, self.K)
        y2 = y.reshape(B * self.P, n_out)
        kh, kw, s, im2col, bias_forward = (
            self.kh,
            self.kw,
            self.stride,
            self._im2col,
            K.bias_forward,
        )
        if self.in_channels_last:  # Wk: W in im2col_nhwc's order, redone when W changed
            im2col_w = K.im2col_nhwc_and_weight

            def f(x):
                im2col_w(x, kh, kw, s, cols, self.W, self.Wk, self.W_seen, self.W_seen_ok)
                matmul(cols2, self.Wk.T, out=y2)
                bias_forward(y2, self.b, self.relu)
                return y
        else:

            def f(x):
                im2col(x, kh, kw, s, cols)
                matmul(cols2, self.Wk.T, out=y2)
                bias_forward(y2, self.b, self.relu)
                return y

        return f

    def backward(self, x, y, dy, dx, n):
        if self.s2d:
            M = n * self.G
            dZ = self.Z[:n]
            K.blocks_scatter(dy, self.Ws, self.nbh, self.nbw, dZ)
            dZ2 = dZ.reshape(M, self.nk * self.out_channels)
            np.matmul(self.S[:n].reshape(M, self.Cs).T, dZ2, out=self.dWall)
            K.add_blocks_to_weight(self.dWall, self.stride, self.dW)
            K.bias_backward(dy.reshape(n * self.P, self.out_channels), self.db)
            if dx is not None:
                dS = self.dS[:n]
                np.matmul(dZ2, self.Wall.T, out=dS.reshape(M, self.Cs))
                K.depth_to_space_nchw(dS.reshape(n, self.Hs, self.Ws, self.Cs), self.stride, dx)
            return
        # dW via BLAS into a scratch buffer, then added: measured 2.3x faster than the
        # accumulating numba loop (gemm_tn_acc) for these shapes (M = n*P rows).
        dy2 = dy.reshape(n * self.P, self.out_channels)
        np.matmul(dy2.T, self.cols[:n].reshape(n * self.P, self.K), out=self.dWk)
        if self.in_channels_last:
            K.add_ohwc_to_ochw(self.dWk, self.dW)
        else:
            K.add_into(self.dWk.reshape(-1), self.dW.reshape(-1))
        K.bias_backward(dy2, self.db)
        if dx is not None:
            dcols = self.dcols[:n]
            np.matmul(dy2, self.Wk, out=dcols.reshape(n * self.P, self.K))
            self._col2im(dcols, self.kh, self.kw, self.stride, dx)


class ReLU(Layer):
    """y = max(x, 0), in place on its input buffer; dx = dy * (y > 0)."""

    in_place = True
    needs_input = False

    def __init__(self, name: str):
        super().__init__(name)
        self.fused = False  # set by Network when the previous layer applies the max itself

    def forward(self, x, y, row):
        if not self.fused:
            K.relu_forward(x.reshape(-1), y.reshape(-1))

    def backward(self, x, y, dy, dx, n):
        if dx is not None:
            K.relu_backward(y.reshape(-1), dy.reshape(-1), dx.reshape(-1))


class Flatten(Layer):
    """(C, H, W) -> (C*H*W,) in PyTorch's order (so Dense weights match torch.nn.Flatten)."""

    needs_input = False

    def build(self, in_shape, in_channels_last):
        self.in_shape = tuple(in_shape)
        self.in_channels_last = in_channels_last and len(in_shape) == 3
        self.out_shape = (math.prod(in_shape),)
        return self.out_shape, False

    def forward(self, x, y, row):
        if self.in_channels_last:
            K.flatten_nhwc_forward(x, y)
        else:
            y[...] = x.reshape(y.shape)

    def backward(self, x, y, dy, dx, n):
        if dx is None:
            return
        if self.in_channels_last:
            K.flatten_nhwc_backward(dy, dx)
        else:
            dx[...] = dy.reshape(dx.shape)
