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
    net.recurrent                                 # any layer with state (LSTM)?
    net.reset_state()                             # episode start: initial state = zeros
    net.carry_state(n)                            # next rollout starts after row n-1
    net.get_state(); net.set_state(state)         # the initial state (copies), e.g. for eval

Cache rows are time steps for recurrent layers: row t of a forward reads the state of row
t-1, row 0 reads the initial state; ``carry_state(n)`` makes the state after row n-1 the new
initial state (call it after ``backward``: BPTT needs the old one). Gradients stop at the
rollout boundary. Feed-forward networks have no state: these calls are no-ops.

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

        self._stateful = [layer for layer in self.layers if getattr(layer, "stateful", False)]
        # forward plans, built on first use per (row, batch): (input view or None, layer
        # callables). Views and bound calls made once; only the buffers' views, never the
        # parameters (bind() moves those), so they stay valid for the network's lifetime.
        self._plans: dict[tuple[int, int], tuple] = {}

        self.head_bias_init: dict[int, float] = {}
        """Output columns whose bias in the last (Dense) layer :meth:`init_params` sets to a
        value instead of drawing it: the Gaussian's pre-variance under ``--init-std``."""

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

        Then the last layer's biases named in :attr:`head_bias_init` take their values.

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
        if self.head_bias_init:
            last = self.layers[-1]
            if not isinstance(last, Dense):
                raise ValueError(f"head_bias_init needs a Dense last layer, got {last.name}")
            bias = self._param_views[f"{last.name}.bias"]
            for column, value in self.head_bias_init.items():
                bias[column] = value

    def zero_grad(self) -> None:
        self.grads[...] = 0.0

    # ------------------------------------------------------------------ recurrent state
    @property
    def recurrent(self) -> bool:
        """True when a layer keeps state across rows/rollouts (an LSTM)."""
        return bool(self._stateful)

    def reset_state(self) -> None:
        """Initial state <- zeros (an episode starts). No-op for feed-forward networks."""
        for layer in self._stateful:
            layer.reset_state()

    def carry_state(self, n: int) -> None:
        """Initial state <- the state after cache row n-1 (the next rollout goes on from it).

        Call after :meth:`backward` over the rollout (BPTT reads the old initial state). A
        bootstrap forward at row n does not change what is carried. The carried state is a
        value: no gradient flows into the previous rollout.
        """
        for layer in self._stateful:
            layer.carry_state(n)

    def get_state(self) -> list:
        """Copies of every stateful layer's initial state ([] for feed-forward networks)."""
        return [layer.get_state() for layer in self._stateful]

    def set_state(self, state) -> None:
        """Set the initial state from :meth:`get_state`'s result."""
        if len(state) != len(self._stateful):
            raise ValueError(f"state has {len(state)} entries, expected {len(self._stateful)}")
        for layer, s in zip(self._stateful, state, strict=True):
            layer.set_state(s)

    # ------------------------------------------------------------------ compute
    def forward(self, x: np.ndarray, row: int = 0) -> np.ndarray:
        """Forward x (B, *input_shape) into cache rows [row, row+B); returns (B, n_outputs).

        The result is a view into the cache, valid until the next forward touching those
        rows. x of another dtype (e.g. uint8 frames) is cast into the input buffer.
        """
        B = x.shape[0]
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"x must have shape (B, {self.input_shape}), got {x.shape}")
        plan = self._plans.get((row, B))
        if plan is None:
            plan = self._plan(row, B)
        h0, fns = plan
        if h0 is not None or x.dtype != self.dtype or not x.flags.c_contiguous:
            h = self._acts[0][row : row + B] if h0 is None else h0
            np.copyto(h, x, casting="unsafe")
        else:
            h = x
        for f in fns:
            h = f(h)
        return h

    def _plan(self, row: int, B: int) -> tuple:
        if row < 0 or B < 1 or row + B > self.max_batch:
            raise ValueError(
                f"rows [{row}, {row + B}) outside the cache (max_batch={self.max_batch})"
            )
        h0 = self._acts[0][row : row + B] if self._copy_input else None
        fns = []
        for i, layer in enumerate(self.layers):
            if getattr(layer, "fused", False):  # in place, max applied by the previous layer:
                continue  # its output is the previous output's buffer, already rectified
            fns.append(layer.forward_fn(self._acts[i + 1][row : row + B], row))
        plan = (h0, tuple(fns))
        self._plans[(row, B)] = plan
        return plan

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


class NetworkPair:
    """Two networks over ONE flat parameter vector, presented as one net (the paper's
    continuous-action set-up: separate policy and value networks, no sharing).

    ``params[:first.n_params]`` are the first net's, the rest the second's; ``layout`` names
    are prefixed ``policy.`` / ``value.`` (the ``names``). ``forward`` runs both on the same
    input and returns their outputs side by side, (B, first.n_outputs + second.n_outputs);
    ``backward`` splits dout by columns. One optimiser steps the whole vector. The state API
    (:meth:`Network.reset_state` ...) acts on both.
    """

    def __init__(self, first: Network, second: Network, names=("policy", "value")):
        if first.input_shape != second.input_shape or first.dtype != second.dtype:
            raise ValueError("both networks need the same input shape and dtype")
        if first.max_batch != second.max_batch:
            raise ValueError("both networks need the same max_batch")
        self.nets = (first, second)
        self.names = tuple(names)
        self.dtype, self.input_shape = first.dtype, first.input_shape
        self.max_batch = first.max_batch
        self.split = first.n_params
        self.n_params = first.n_params + second.n_params
        self.n_outputs = first.n_outputs + second.n_outputs
        self.layout = [(f"{self.names[0]}.{n}", o, s) for n, o, s in first.layout] + [
            (f"{self.names[1]}.{n}", o + self.split, s) for n, o, s in second.layout
        ]
        self.param_names = [name for name, _, _ in self.layout]
        self._out = np.zeros((self.max_batch, self.n_outputs), self.dtype)
        self.params = np.zeros(self.n_params, self.dtype)
        self.grads = np.zeros(self.n_params, self.dtype)
        self.bind(self.params, self.grads)

    def bind(self, params: np.ndarray, grads: np.ndarray | None = None) -> None:
        grads = self.grads if grads is None else grads
        for a, what in ((params, "params"), (grads, "grads")):
            if a.shape != (self.n_params,) or a.dtype != self.dtype or not a.flags.c_contiguous:
                raise ValueError(
                    f"{what} must be a C-contiguous {self.dtype} array of shape "
                    f"({self.n_params},), got {a.dtype} {a.shape}"
                )
        k = self.split
        self.nets[0].bind(params[:k], grads[:k])
        self.nets[1].bind(params[k:], grads[k:])
        self.params, self.grads = params, grads

    def _which(self, name: str):
        prefix, _, rest = name.partition(".")
        return self.nets[self.names.index(prefix)], rest

    def param(self, name: str) -> np.ndarray:
        net, rest = self._which(name)
        return net.param(rest)

    def grad(self, name: str) -> np.ndarray:
        net, rest = self._which(name)
        return net.grad(rest)

    def init_params(self, seed: int) -> None:
        """Each net's PyTorch default init, seeded from (seed, 0) and (seed, 1)."""
        s0, s1 = np.random.SeedSequence(seed).spawn(2)
        self.nets[0].init_params(int(s0.generate_state(1)[0]))
        self.nets[1].init_params(int(s1.generate_state(1)[0]))

    def zero_grad(self) -> None:
        self.grads[...] = 0.0

    @property
    def recurrent(self) -> bool:
        return self.nets[0].recurrent or self.nets[1].recurrent

    def reset_state(self) -> None:
        for net in self.nets:
            net.reset_state()

    def carry_state(self, n: int) -> None:
        for net in self.nets:
            net.carry_state(n)

    def get_state(self) -> list:
        return [self.nets[0].get_state(), self.nets[1].get_state()]

    def set_state(self, state) -> None:
        self.nets[0].set_state(state[0])
        self.nets[1].set_state(state[1])

    def forward(self, x: np.ndarray, row: int = 0) -> np.ndarray:
        """Both nets on x (B, *input_shape); (B, n_outputs) view, first net's columns first."""
        B = x.shape[0]
        k = self.nets[0].n_outputs
        out = self._out[row : row + B]
        out[:, :k] = self.nets[0].forward(x, row)
        out[:, k:] = self.nets[1].forward(x, row)
        return out

    def backward(self, dout: np.ndarray, n: int, *, input_grad: bool = False):
        """dout (n, n_outputs) split by columns into both nets; ADDS into grads."""
        if dout.shape != (n, self.n_outputs):
            raise ValueError(f"dout must have shape ({n}, {self.n_outputs}), got {dout.shape}")
        k = self.nets[0].n_outputs
        d0 = self.nets[0].backward(dout[:, :k], n, input_grad=input_grad)
        d1 = self.nets[1].backward(dout[:, k:], n, input_grad=input_grad)
        return d0 + d1 if input_grad else None

    def __repr__(self) -> str:
        return f"NetworkPair({self.names[0]}={self.nets[0]!r},\n{self.names[1]}={self.nets[1]!r})"
