"""Adding a layer to nbasync: a reference in NumPy, a fast numba layer, and the checks.

    python examples/new_layer.py

The layer is layer normalisation over the features of each row, with a learnt gain and
bias (y = gain * (x - mean) / sqrt(var + eps) + bias). Three steps, the order to follow for
any new layer:

1. Write the maths as a plain NumPy forward/backward pair (the style of
   ``nbasync.nn.reference``) and check the backward against central differences.
2. Write the fast layer: numba kernels plus a :class:`~nbasync.nn.Layer` subclass that says
   its parameter shapes, keeps per-row caches, and ADDS its parameter gradients.
3. Put it in a :class:`~nbasync.nn.Network`, check the whole network with
   :func:`~nbasync.nn.gradcheck`, and check the fast layer against the reference.
"""

from __future__ import annotations

import numpy as np

from nbasync.nn import Dense, Layer, Network, ReLU, gradcheck, numerical_grad, reference
from nbasync.nn._jit import jit
from nbasync.nn.gradcheck import rel_error

EPS = 1e-5

# -- 1. the reference ---------------------------------------------------------------------


def layernorm_forward(x, gain, bias):
    mean = x.mean(axis=1, keepdims=True)
    inv_std = 1.0 / np.sqrt(x.var(axis=1, keepdims=True) + EPS)
    xhat = (x - mean) * inv_std
    return gain * xhat + bias, (xhat, inv_std, gain)


def layernorm_backward(dout, cache):
    """xhat depends on every feature of its row through the mean and the variance, so
    dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), per row."""
    xhat, inv_std, gain = cache
    dxhat = dout * gain
    dx = inv_std * (
        dxhat
        - dxhat.mean(axis=1, keepdims=True)
        - xhat * (dxhat * xhat).mean(axis=1, keepdims=True)
    )
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


rng = np.random.default_rng(0)
x, gain, bias = rng.normal(size=(4, 6)), rng.normal(size=6), rng.normal(size=6)
w = rng.normal(size=(4, 6))  # L = sum(w * y): dL/dy = w


def loss() -> float:
    return float((w * layernorm_forward(x, gain, bias)[0]).sum())


analytic = layernorm_backward(w, layernorm_forward(x, gain, bias)[1])
print("1. reference vs central differences (float64; ~1e-7 or below is right)")
for name, array, grad in zip(("x", "gain", "bias"), (x, gain, bias), analytic, strict=True):
    numeric = numerical_grad(loss, array).reshape(array.shape)
    print(f"   d{name:<5} rel. error {rel_error(grad, numeric):.1e}")

# -- 2. the fast layer ----------------------------------------------------------------------


@jit
def layernorm_forward_kernel(x, gain, bias, xhat, inv_std, y, row):
    """Rows row .. row+B-1 of the caches; no allocation."""
    B, F = x.shape
    for k in range(B):
        mean = 0.0
        for j in range(F):
            mean += x[k, j]
        mean /= F
        var = 0.0
        for j in range(F):
            var += (x[k, j] - mean) ** 2
        inv = 1.0 / np.sqrt(var / F + EPS)
        inv_std[row + k] = inv
        for j in range(F):
            xhat[row + k, j] = (x[k, j] - mean) * inv
            y[k, j] = gain[j] * xhat[row + k, j] + bias[j]


@jit
def layernorm_backward_kernel(dy, gain, xhat, inv_std, dgain, dbias, dx, n):
    """Rows 0 .. n-1; ADDS to dgain and dbias (the network zeroes them once per update)."""
    F = dy.shape[1]
    for r in range(n):
        mean_d = 0.0
        mean_dx = 0.0
        for j in range(F):
            d = dy[r, j] * gain[j]
            mean_d += d
            mean_dx += d * xhat[r, j]
            dgain[j] += dy[r, j] * xhat[r, j]
            dbias[j] += dy[r, j]
        mean_d /= F
        mean_dx /= F
        if dx is not None:
            for j in range(F):
                d = dy[r, j] * gain[j]
                dx[r, j] = inv_std[r] * (d - mean_d - xhat[r, j] * mean_dx)


class LayerNorm(Layer):
    """Layer normalisation over the features of each row, learnt gain and bias."""

    needs_input = False  # backward reads only its own caches

    def build(self, in_shape, in_channels_last):
        self.in_shape = self.out_shape = tuple(in_shape)
        self.param_shapes = [("gain", self.in_shape), ("bias", self.in_shape)]
        return self.out_shape, False

    @property
    def fan_in(self) -> int:
        return self.in_shape[0]

    def allocate(self, max_batch, dtype):
        self.xhat = np.zeros((max_batch, *self.in_shape), dtype)
        self.inv_std = np.zeros(max_batch, dtype)

    def bind(self, views):
        self.gain, self.dgain = views["gain"]
        self.bias, self.dbias = views["bias"]

    def forward(self, x, y, row):
        layernorm_forward_kernel(x, self.gain, self.bias, self.xhat, self.inv_std, y, row)

    def backward(self, x, y, dy, dx, n):
        layernorm_backward_kernel(
            dy, self.gain, self.xhat, self.inv_std, self.dgain, self.dbias, dx, n
        )


# -- 3. in a network: gradcheck, and the fast layer against the reference ---------------------

net = Network(
    [Dense("fc1", 6), LayerNorm("norm"), ReLU("relu"), Dense("head", 3)],
    input_shape=(5,),
    max_batch=4,
    dtype=np.float64,
)
net.init_params(seed=0)
net.param("norm.gain")[:] = 1.0 + 0.1 * rng.normal(size=6)
obs = rng.normal(size=(4, 5))
target = rng.normal(size=(4, 3))


def mse(out):
    """(L, dL/dout) of L = 0.5 * sum (out - target)^2."""
    return 0.5 * float(((out - target) ** 2).sum()), out - target


print("\n2-3. the whole network, fast kernels, vs central differences")
for name, err in gradcheck(net, mse, obs, input_grad=True).items():
    print(f"   {name:<10} rel. error {err:.1e}")

h = reference.dense_forward(obs, net.param("fc1.weight"), net.param("fc1.bias"))[0]
ref_y, ref_cache = layernorm_forward(h, net.param("norm.gain"), net.param("norm.bias"))
dy = rng.normal(size=ref_y.shape)
layer = net.layers[1]
fast_y = np.empty_like(ref_y)
layer.forward(h, fast_y, 0)
fast_dx = np.empty_like(h)
layer.dgain[:] = 0.0
layer.dbias[:] = 0.0
layer.backward(h, fast_y, dy, fast_dx, 4)
ref_dx, ref_dgain, ref_dbias = layernorm_backward(dy, ref_cache)
print("\n   fast layer vs reference (max abs difference):")
print(
    f"   y {np.abs(fast_y - ref_y).max():.1e}  dx {np.abs(fast_dx - ref_dx).max():.1e}  "
    f"dgain {np.abs(layer.dgain - ref_dgain).max():.1e}  "
    f"dbias {np.abs(layer.dbias - ref_dbias).max():.1e}"
)
