"""The dueling aggregation of a Q head (Wang et al. 2016): Q = V + A - mean(A).

Owns the layer (:class:`Dueling`) and its two kernels. A parameter-free layer after a Dense
of ``n_actions + 1`` outputs: its input row is ``[A_1 .. A_n, V]`` (advantages first, the
state value last, as V is the last column of A3C's head), its output row the n Q values::

    forward    Q_j = V + A_j - (1/n) sum_k A_k
    backward   dV = sum_j dQ_j;   dA_k = dQ_k - (1/n) sum_j dQ_j

Subtracting the mean makes the split identifiable (adding c to every A_k changes no Q) and
lets every update move V, which all actions share; the gradient reaching the advantages
sums to zero in each row. Here the two streams are linear maps of the same trunk (one Dense
with n + 1 outputs); in the paper each stream had a hidden layer of its own. The plain NumPy
version is ``reference.dueling_forward`` / ``dueling_backward``.
"""

from __future__ import annotations

from ._jit import jit
from .layers import Layer


@jit
def dueling_forward(x, y):
    """x (B, n + 1) = [A, V] -> y (B, n) = V + A - mean(A), row by row."""
    B, n = y.shape
    for i in range(B):
        mean = 0.0
        for j in range(n):
            mean += x[i, j]
        mean /= n
        v = x[i, n]
        for j in range(n):
            y[i, j] = v + x[i, j] - mean


@jit
def dueling_backward(dy, dx):
    """dy (m, n) -> dx (m, n + 1): dA_k = dQ_k - mean(dQ), dV = sum(dQ)."""
    m, n = dy.shape
    for i in range(m):
        total = 0.0
        for j in range(n):
            total += dy[i, j]
        mean = total / n
        for j in range(n):
            dx[i, j] = dy[i, j] - mean
        dx[i, n] = total


class Dueling(Layer):
    """Q = V + A - mean(A) over a flat input of n + 1 columns ([A, V]); no parameters."""

    needs_input = False  # backward reads only dQ

    def build(self, in_shape, in_channels_last):
        if len(in_shape) != 1 or in_shape[0] < 2:
            raise ValueError(
                f"{self.name}: Dueling needs a flat input of n_actions + 1 >= 2 columns, "
                f"got {in_shape}"
            )
        self.in_shape = tuple(in_shape)
        self.out_shape = (in_shape[0] - 1,)
        return self.out_shape, False

    def forward(self, x, y, row):
        dueling_forward(x, y)

    def backward(self, x, y, dy, dx, n):
        if dx is not None:
            dueling_backward(dy, dx)
