"""LSTM layer: forward one time step per cache row, backpropagation through time over a rollout.

Owns the recurrent layer and its kernels. The :class:`~nbasync.nn.network.Network`'s cache
rows ARE the time steps of a rollout: acting calls ``forward(obs[None], row=t)`` for
t = 0, 1, ..., and the update calls ``backward(dout, n)`` over rows [0, n). So the LSTM at
row t reads the state of row t-1, and at row 0 the state carried in from before the rollout
(zeros at an episode start). A batched forward (B > 1 rows) runs the rows one after the
other through time.

Equations (PyTorch's ``nn.LSTM``, gate order i, f, g, o; one bias instead of PyTorch's two)::

    a_t = W_ih x_t + W_hh h_{t-1} + b                 a_t = [a_i, a_f, a_g, a_o], (4H,)
    i = sigmoid(a_i)  f = sigmoid(a_f)  g = tanh(a_g)  o = sigmoid(a_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)                                (the layer's output, (H,))

Backward through time over rows n-1 .. 0 (dh, dc flow from row t to row t-1; they are zero
after the last row, and the gradient into the carried state before row 0 is dropped: the
gradient stops at the rollout boundary, truncated BPTT as in the paper)::

    dh   = dy_t + dh_next                 dc = dh * o * (1 - tanh(c_t)^2) + dc_next
    da_o = dh * tanh(c_t) * o (1 - o)     da_i = dc * g * i (1 - i)
    da_f = dc * c_{t-1} * f (1 - f)       da_g = dc * i * (1 - g^2)
    dc_next = dc * f                      dh_next = W_hh^T da_t
    dW_ih += sum_t da_t x_t^T     dW_hh += sum_t da_t h_{t-1}^T
    db += sum_t da_t              dx_t = W_ih^T da_t

State storage: ``hs``/``cs`` have ``max_batch + 1`` rows; row r + 1 holds (h, c) after cache
row r and row 0 the state the next forward at row 0 starts from (the *initial* state).
"""

from __future__ import annotations

import math

import numpy as np

from . import kernels as K  # noqa: N812
from ._jit import jit, jit_reduce
from .kernels import sigmoid
from .layers import Layer


@jit_reduce
def lstm_forward(x, Wih, Whh, b, hs, cs, gates, tcs, y, row):
    """Rows row .. row+B-1 in order. x (B, I); Wih (4H, I); Whh (4H, H); b (4H,).

    hs, cs (max_batch+1, H): reads hs[r], cs[r] (state before row r), writes hs[r+1],
    cs[r+1]. gates (max_batch, 4H): activated i, f, g, o of each row; tcs (max_batch, H):
    tanh(c_r); y (B, H) = h_r. Both weight matrices are streamed once per row (a GEMV each).
    """
    B, n_in = x.shape
    H = Whh.shape[1]
    zero = x.dtype.type(0)
    for k in range(B):
        r = row + k
        xr = x[k]
        hp = hs[r]
        a = gates[r]
        for j in range(4 * H):
            s = zero
            w = Wih[j]
            for m in range(n_in):
                s += w[m] * xr[m]
            u = Whh[j]
            for m in range(H):
                s += u[m] * hp[m]
            a[j] = s + b[j]
        for m in range(H):
            ig = sigmoid(a[m])
            fg = sigmoid(a[H + m])
            gg = math.tanh(a[2 * H + m])
            og = sigmoid(a[3 * H + m])
            a[m] = ig
            a[H + m] = fg
            a[2 * H + m] = gg
            a[3 * H + m] = og
            c = fg * cs[r, m] + ig * gg
            cs[r + 1, m] = c
            tc = math.tanh(c)
            tcs[r, m] = tc
            h = og * tc
            hs[r + 1, m] = h
            y[k, m] = h


@jit
def lstm_backward(dy, gates, cs, tcs, Whh, n, da, dh, dc):
    """Pre-activation gradients da (n, 4H) of rows n-1 .. 0, backpropagated through time.

    dy (n, H) = dL/dh_t from above; gates, cs, tcs as written by :func:`lstm_forward`;
    dh, dc (H,) scratch. The gradient into the initial state (before row 0) is not formed.
    """
    H = Whh.shape[1]
    for m in range(H):
        dh[m] = 0.0
        dc[m] = 0.0
    for r in range(n - 1, -1, -1):
        g_r = gates[r]
        d_r = da[r]
        for m in range(H):
            ig = g_r[m]
            fg = g_r[H + m]
            gg = g_r[2 * H + m]
            og = g_r[3 * H + m]
            tc = tcs[r, m]
            dhm = dy[r, m] + dh[m]
            dcm = dhm * og * (1.0 - tc * tc) + dc[m]
            d_r[m] = dcm * gg * ig * (1.0 - ig)
            d_r[H + m] = dcm * cs[r, m] * fg * (1.0 - fg)
            d_r[2 * H + m] = dcm * ig * (1.0 - gg * gg)
            d_r[3 * H + m] = dhm * tc * og * (1.0 - og)
            dc[m] = dcm * fg
        if r == 0:
            break
        for m in range(H):
            dh[m] = 0.0
        for j in range(4 * H):
            aj = d_r[j]
            u = Whh[j]
            for m in range(H):
                dh[m] += aj * u[m]


class LSTM(Layer):
    """LSTM with ``hidden_size`` cells over a flat input; one cache row = one time step.

    Parameters: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias`` (4H,), gate order
    i, f, g, o (PyTorch's; its two biases are summed into one). Init: U(-1/sqrt(H), 1/sqrt(H))
    for all three (PyTorch's LSTM init), so ``fan_in`` is H.

    State (see the module docstring): :meth:`reset_state` (zeros), :meth:`carry_state`,
    :meth:`get_state` / :meth:`set_state` act on the initial state the next rollout starts
    from. Forward at row r needs rows [0, r) computed since the last reset/carry (checked).
    """

    stateful = True

    def __init__(self, name: str, hidden_size: int):
        super().__init__(name)
        self.hidden_size = int(hidden_size)
        if self.hidden_size < 1:
            raise ValueError(f"{name}: hidden_size must be >= 1")

    def build(self, in_shape, in_channels_last):
        if len(in_shape) != 1:
            raise ValueError(f"{self.name}: LSTM needs a flat input, got shape {in_shape}")
        H = self.hidden_size
        self.in_shape = tuple(in_shape)
        self.out_shape = (H,)
        self.param_shapes = [
            ("weight_ih", (4 * H, in_shape[0])),
            ("weight_hh", (4 * H, H)),
            ("bias", (4 * H,)),
        ]
        return self.out_shape, False

    @property
    def fan_in(self) -> int:
        return self.hidden_size

    def allocate(self, max_batch, dtype):
        H = self.hidden_size
        self.max_batch = max_batch
        self.hs = np.zeros((max_batch + 1, H), dtype)
        self.cs = np.zeros((max_batch + 1, H), dtype)
        self.gates = np.zeros((max_batch, 4 * H), dtype)
        self.tcs = np.zeros((max_batch, H), dtype)
        self.da = np.zeros((max_batch, 4 * H), dtype)
        self.dh = np.zeros(H, dtype)
        self.dc = np.zeros(H, dtype)
        self.filled = 0  # rows [0, filled) hold this rollout's forward

    def bind(self, views):
        self.Wih, self.dWih = views["weight_ih"]
        self.Whh, self.dWhh = views["weight_hh"]
        self.b, self.db = views["bias"]

    # state --------------------------------------------------------------------------------
    def reset_state(self) -> None:
        self.hs[0] = 0.0
        self.cs[0] = 0.0
        self.filled = 0

    def carry_state(self, n: int) -> None:
        if not 1 <= n <= self.filled:
            raise ValueError(
                f"{self.name}: carry_state({n}) needs rows [0, {n}) forwarded "
                f"(rows [0, {self.filled}) are)"
            )
        self.hs[0] = self.hs[n]
        self.cs[0] = self.cs[n]
        self.filled = 0

    def get_state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.hs[0].copy(), self.cs[0].copy()

    def set_state(self, state) -> None:
        h, c = state
        self.hs[0] = h
        self.cs[0] = c
        self.filled = 0

    # math ---------------------------------------------------------------------------------
    def forward(self, x, y, row):
        if row > self.filled:
            raise ValueError(
                f"{self.name}: forward at row {row} needs rows [0, {row}) of this rollout "
                f"first (rows [0, {self.filled}) are there)"
            )
        lstm_forward(x, self.Wih, self.Whh, self.b, self.hs, self.cs, self.gates, self.tcs, y, row)
        self.filled = row + x.shape[0]

    def backward(self, x, y, dy, dx, n):
        if n > self.filled:
            raise ValueError(f"{self.name}: backward over {n} rows, {self.filled} forwarded")
        da = self.da[:n]
        lstm_backward(dy, self.gates, self.cs, self.tcs, self.Whh, n, da, self.dh, self.dc)
        K.gemm_tn_acc(da, x, self.dWih)
        K.gemm_tn_acc(da, self.hs[:n], self.dWhh)
        K.bias_backward(da, self.db)
        if dx is not None:
            np.matmul(da, self.Wih, out=dx)
