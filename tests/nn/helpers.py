"""Test helpers: run one layer through its protocol, numerical gradients."""

from __future__ import annotations

import numpy as np

from nbasync.nn.gradcheck import numerical_grad, rel_error  # noqa: F401


class LayerRig:
    """One layer with its own parameters and buffers (float64 unless told)."""

    def __init__(self, layer, in_shape, channels_last=False, max_batch=4, dtype=np.float64, seed=0):
        self.layer = layer
        self.dtype = dtype
        layer.build(in_shape, channels_last)
        layer.allocate(max_batch, dtype)
        rng = np.random.default_rng(seed)
        self.params = {s: rng.normal(size=shape).astype(dtype) for s, shape in layer.param_shapes}
        self.grads = {s: np.zeros(shape, dtype) for s, shape in layer.param_shapes}
        layer.bind({s: (self.params[s], self.grads[s]) for s in self.params})
        self.in_storage = _storage(in_shape, channels_last)
        self.out_storage = layer.storage_shape

    def forward(self, x, row=0):
        y = np.zeros((x.shape[0], *self.out_storage), self.dtype)
        self.layer.forward(np.ascontiguousarray(x, self.dtype), y, row)
        return y

    def backward(self, x, y, dy, want_dx=True):
        n = dy.shape[0]
        dx = np.full((n, *self.in_storage), np.nan, self.dtype) if want_dx else None
        self.layer.backward(x, y, np.ascontiguousarray(dy, self.dtype), dx, n)
        return dx


def _storage(shape, channels_last):
    if channels_last and len(shape) == 3:
        c, h, w = shape
        return (h, w, c)
    return tuple(shape)


def nchw(x_nhwc):
    return np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))


def nhwc(x_nchw):
    return np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))
