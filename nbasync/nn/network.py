"""Network: a stack of layers over ONE flat parameter vector and ONE flat gradient vector.

Owns the parameter layout, the named views, the activation cache and the forward/backward
drivers. Contract (docs/architecture.md)::

    net.n_params; net.params, net.grads           # flat 1-D, same layout
    net.bind(params, grads=None)                  # views over external buffers, no copy
    net.init_params(seed)                         # PyTorch default init, deterministic
    net.param(name), net.grad(name); net.layout   # [(name, offset, shape)]
    out = net.forward(x, row=0)                   # cache rows [row, row+B), (B, n_outputs)
    net.backward(dout, n)                         # rows [0, n), ADDS into grads
    net.zero_grad()

Nothing on the forward/backward path allocates: activation and gradient buffers have
``max_batch`` rows, allocated here once. A ReLU that follows a Dense/Conv2d is fused into
that layer's bias pass (its backward still runs on its own).
"""

from __future__ import annotations

import math

import numpy as np

from .layers import Conv2d, Dense, Layer, ReLU

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class Network:
    """A feed-forward stack of :class:`~nbasync.nn.layers.Layer` over flat parameters.

    Parameters
    ----------
    layers: the layers, each with a unique ``name`` (parameter names are ``name.suffix``).
    input_shape: per-sample input shape, e.g. (4, 84, 84) or (obs_dim,).
    max_batch: capacity of the activation cache, in rows.
    dtype: float32 (training) or float64 (gradient checks).
    """

    def __init__(self, layers: list[Layer], input_shape, max_batch: int = 8, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        if self.dtype not in _FLOATS:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        if int(max_batch) < 1:
            raise ValueError("max_batch must be >= 1")
        self.max_batch = int(max_batch)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.layers = list(layers)
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be unique: {names}")

        shape, channels_last = self.input_shape, False
        for layer in self.layers:
            shape, channels_last = layer.build(shape, channels_last)
        if len(shape) != 1:
            raise ValueError(f"the last layer must output a flat vector, got {shape}")
        self.n_outputs = int(shape[0])

        # fuse ReLU into the preceding Dense / Conv2d bias pass
        for prev, layer in zip(self.layers[:-1], self.layers[1:], strict=True):
            if isinstance(layer, ReLU) and isinstance(prev, (Dense, Conv2d)):
                prev.relu = True
                layer.fused = True

        self.layout: list[tuple[str, int, tuple[int, ...]]] = []
        offset = 0
        for layer in self.layers:
            for suffix, pshape in layer.param_shapes:
                self.layout.append((f"{layer.name}.{suffix}", offset, tuple(pshape)))
                offset += math.prod(pshape)
        self.n_params = offset
        self.param_names = [name for name, _, _ in self.layout]

        # activation buffers: _acts[0] is the input, _acts[i + 1] the output of layer i;
        # _dacts likewise for gradients. In-place layers share their input's buffers.
        mb, dt = self.max_batch, self.dtype
        self._acts = [np.zeros((mb, *self.input_shape), dt)]
        self._dacts = [np.zeros((mb, *self.input_shape), dt)]
        for layer in self.layers:
            if layer.in_place:
                self._acts.append(self._acts[-1])
                self._dacts.append(self._dacts[-1])
            else:
                self._acts.append(np.zeros((mb, *layer.storage_shape), dt))
                self._dacts.append(np.zeros((mb, *layer.storage_shape), dt))
            layer.allocate(mb, dt)
        # The first layer reads x straight from the caller when its backward does not need it.
        self._copy_input = self.layers[0].needs_input or self.layers[0].in_place

        self.params = np.zeros(self.n_params, dt)
        self.grads = np.zeros(self.n_params, dt)
        self.bind(self.params, self.grads)

    # ------------------------------------------------------------------ parameters
    def bind(self, params: np.ndarray, grads: np.ndarray | None = None) -> None:
        """Point every named view at ``params`` (and ``grads``, if given); no copy.

        Both must be 1-D, C-contiguous, of length ``n_params`` and of ``self.dtype`` (e.g.
        float32 views into shared memory). With ``grads=None`` the current grads are kept.
        """
        params = self._check_flat(params, "params")
        grads = self.grads if grads is None else self._check_flat(grads, "grads")
        self.params, self.grads = params, grads
        self._param_views: dict[str, np.ndarray] = {}
        self._grad_views: dict[str, np.ndarray] = {}
        for name, offset, shape in self.layout:
            size = math.prod(shape)
            self._param_views[name] = params[offset : offset + size].reshape(shape)
            self._grad_views[name] = grads[offset : offset + size].reshape(shape)
        for layer in self.layers:
            layer.bind(
                {
                    suffix: (
                        self._param_views[f"{layer.name}.{suffix}"],
                        self._grad_views[f"{layer.name}.{suffix}"],
                    )
                    for suffix, _ in layer.param_shapes
                }
            )

    def _check_flat(self, a, what):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{what} must be a numpy array")
        if a.shape != (self.n_params,) or a.dtype != self.dtype or not a.flags.c_contiguous:
            raise ValueError(
                f"{what} must be a C-contiguous {self.dtype} array of shape ({self.n_params},),"
                f" got {a.dtype} {a.shape}"
            )
        return a

    def param(self, name: str) -> np.ndarray:
        """Named view into ``params`` (writes go to the flat vector)."""
        return self._param_views[name]

    def grad(self, name: str) -> np.ndarray:
        """Named view into ``grads``."""
        return self._grad_views[name]

    def init_params(self, seed: int) -> None:
        """PyTorch's default init, in place (works on bound shared memory too).

        Weights: kaiming_uniform(a=sqrt(5)), i.e. U(-b, b) with b = gain*sqrt(3/fan_in),
        gain = sqrt(2/(1+a^2)) = sqrt(1/3), so b = 1/sqrt(fan_in). Biases: U(-1/sqrt(fan_in),
        1/sqrt(fan_in)). fan_in = in_features (Dense) or in_channels*kh*kw (Conv2d). Drawn in
        float64 from ``np.random.default_rng(seed)`` in layout order, then cast: the same
        seed gives the same network in float32 and float64 (up to rounding).
        """
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            for suffix, _shape in layer.param_shapes:
                view = self._param_views[f"{layer.name}.{suffix}"]
                bound = 1.0 / math.sqrt(layer.fan_in)
                view[...] = rng.uniform(-bound, bound, size=view.shape)

    def zero_grad(self) -> None:
        self.grads[...] = 0.0

    # ------------------------------------------------------------------ compute
    def forward(self, x: np.ndarray, row: int = 0) -> np.ndarray:
        """Forward x (B, *input_shape) into cache rows [row, row+B); returns (B, n_outputs).

        The result is a view into the cache, valid until the next forward touching those
        rows. x of another dtype (e.g. uint8 frames) is cast into the input buffer.
        """
        B = x.shape[0]
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"x must have shape (B, {self.input_shape}), got {x.shape}")
        if row < 0 or B < 1 or row + B > self.max_batch:
            raise ValueError(
                f"rows [{row}, {row + B}) outside the cache (max_batch={self.max_batch})"
            )
        if self._copy_input or x.dtype != self.dtype or not x.flags.c_contiguous:
            h = self._acts[0][row : row + B]
            np.copyto(h, x, casting="unsafe")
        else:
            h = x
        acts = self._acts
        for i, layer in enumerate(self.layers):
            y = acts[i + 1][row : row + B]
            layer.forward(h, y, row)
            h = y
        return h

    def backward(self, dout: np.ndarray, n: int, *, input_grad: bool = False):
        """Backpropagate dout = dL/dout (n, n_outputs) through cache rows [0, n).

        ADDS the parameter gradients into ``grads`` (call :meth:`zero_grad` to start over).
        With ``input_grad=True`` also returns dL/dx (n, *input_shape) (a view into a buffer,
        needs the input kept: valid only while rows [0, n) hold the matching forward).
        """
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"n must be in [1, {self.max_batch}], got {n}")
        if dout.shape != (n, self.n_outputs):
            raise ValueError(f"dout must have shape ({n}, {self.n_outputs}), got {dout.shape}")
        if dout.dtype != self.dtype or not dout.flags.c_contiguous:
            dy = self._dacts[-1][:n]
            np.copyto(dy, dout, casting="same_kind")
        else:
            dy = dout
        acts, dacts = self._acts, self._dacts
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            dx = dacts[i][:n] if (i > 0 or input_grad) else None
            layer.backward(acts[i][:n], acts[i + 1][:n], dy, dx, n)
            dy = dx
        return dy if input_grad else None

    def __repr__(self) -> str:
        lines = [f"Network(input={self.input_shape}, n_params={self.n_params}, {self.dtype})"]
        lines += [f"  {layer!r}" for layer in self.layers]
        return "\n".join(lines)
