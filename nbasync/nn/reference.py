"""Reference layers and losses in plain NumPy: read these first.

Owns the readable version of every piece of math in ``nbasync.nn``: each layer is a pair
``out, cache = <layer>_forward(...)`` / ``grads = <layer>_backward(dout, cache)`` of a few
lines (the cs231n layout), each loss returns ``(loss, dL/dout)``. They are slow (Python loops
over output positions and time steps) and allocate freely; the fast numba kernels in
``kernels.py`` / ``layers.py`` / ``lstm.py`` / ``losses.py`` / ``gaussian.py`` compute the
same numbers, and the tests check them against these (and these against finite differences).

Shapes are the logical PyTorch ones: images (B, C, H, W); Dense weights (out, in); Conv2d
weights (out, in, kh, kw); LSTM weights (4H, in) and (4H, H) with gate order i, f, g, o and
one bias. Rows of a batch are independent samples, except in :func:`lstm_forward`, where
they are consecutive time steps.

Putting them together, :func:`network_forward` / :func:`network_backward` run any
:class:`~nbasync.nn.Network` layer by layer from its named parameters, so a student can
print every intermediate array and every gradient of a real model.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "a3c_loss",
    "conv2d_backward",
    "conv2d_forward",
    "dense_backward",
    "dense_forward",
    "dueling_backward",
    "dueling_forward",
    "flatten_backward",
    "flatten_forward",
    "gaussian_a3c_loss",
    "log_softmax",
    "lstm_backward",
    "lstm_forward",
    "network_backward",
    "network_forward",
    "relu_backward",
    "relu_forward",
    "td_loss",
]

# -- layers -----------------------------------------------------------------------------


def dense_forward(x, W, b):
    """y = x W^T + b for x (B, in), W (out, in), b (out,)."""
    return x @ W.T + b, (x, W)


def dense_backward(dout, cache):
    """-> dx (B, in), dW (out, in), db (out,): the chain rule for y = x W^T + b."""
    x, W = cache
    return dout @ W, dout.T @ x, dout.sum(axis=0)


def relu_forward(x):
    return np.maximum(x, 0), x


def relu_backward(dout, x):
    """The gradient passes where the input was positive (0 at the kink, as the kernels)."""
    return dout * (x > 0)


def flatten_forward(x):
    """(B, C, H, W) -> (B, C*H*W) in C order (channel slowest), as PyTorch's flatten."""
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(dout, shape):
    return dout.reshape(shape)


def conv2d_forward(x, W, b, stride):
    """Valid cross-correlation: y[n, o, i, j] = b[o] + sum_{c,u,v} W[o, c, u, v] *
    x[n, c, i*stride + u, j*stride + v]. One output position at a time."""
    B, C, H, Wd = x.shape
    n_out, _, kh, kw = W.shape
    OH, OW = (H - kh) // stride + 1, (Wd - kw) // stride + 1
    y = np.zeros((B, n_out, OH, OW), dtype=np.result_type(x, W))
    for i in range(OH):
        for j in range(OW):
            patch = x[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            y[:, :, i, j] = np.einsum("bcuv,ocuv->bo", patch, W) + b
    return y, (x, W, stride)


def conv2d_backward(dout, cache):
    """-> dx, dW, db. Each output position used one input patch: its gradient flows back to
    that patch (dx) and to every weight (dW), summed over positions and the batch."""
    x, W, stride = cache
    _, _, kh, kw = W.shape
    OH, OW = dout.shape[2], dout.shape[3]
    dx = np.zeros_like(x, dtype=np.result_type(x, dout))
    dW = np.zeros_like(W, dtype=np.result_type(W, dout))
    for i in range(OH):
        for j in range(OW):
            rows = slice(i * stride, i * stride + kh)
            cols = slice(j * stride, j * stride + kw)
            d = dout[:, :, i, j]  # (B, out)
            dW += np.einsum("bo,bcuv->ocuv", d, x[:, :, rows, cols])
            dx[:, :, rows, cols] += np.einsum("bo,ocuv->bcuv", d, W)
    return dx, dW, dout.sum(axis=(0, 2, 3))


def dueling_forward(x):
    """x (B, n + 1) = [A, V] -> Q = V + A - mean(A) (B, n): the dueling Q head."""
    adv, V = x[:, :-1], x[:, -1:]
    return V + adv - adv.mean(axis=1, keepdims=True), x.shape


def dueling_backward(dout, shape):
    """-> dx (B, n + 1): V receives every dQ_j; A_k receives dQ_k less its share of the
    mean, which every Q_j subtracted (1/n each)."""
    n = shape[1] - 1
    dx = np.zeros(shape, dtype=np.result_type(dout, np.float64))
    dx[:, :n] = dout - dout.sum(axis=1, keepdims=True) / n
    dx[:, n] = dout.sum(axis=1)
    return dx


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def lstm_forward(xs, W_ih, W_hh, b, h0, c0):
    """Rows of ``xs`` (T, in) are time steps; (h0, c0) (H,) the state before step 0.

    a = W_ih x_t + W_hh h_{t-1} + b = [a_i, a_f, a_g, a_o]
    i, f, o = sigmoid(a_i, a_f, a_o);  g = tanh(a_g)
    c_t = f c_{t-1} + i g;             h_t = o tanh(c_t)       (the output row t)
    """
    H = W_hh.shape[1]
    h, c = h0, c0
    hs, steps = [], []
    for x in xs:
        a = W_ih @ x + W_hh @ h + b
        i, f = _sigmoid(a[:H]), _sigmoid(a[H : 2 * H])
        g, o = np.tanh(a[2 * H : 3 * H]), _sigmoid(a[3 * H :])
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        steps.append((x, h, c, i, f, g, o, c_new))
        h, c = h_new, c_new
        hs.append(h)
    return np.array(hs), (steps, W_ih, W_hh)


def lstm_backward(dhs, cache):
    """Backpropagation through time, last step first -> dxs, dW_ih, dW_hh, db.

    The gradient reaching h_{t-1} and c_{t-1} from step t is added to the one from the
    output at t-1; none flows into (h0, c0): truncated BPTT, as the paper's rollouts.
    """
    steps, W_ih, W_hh = cache
    H = W_hh.shape[1]
    dW_ih, dW_hh = np.zeros_like(W_ih), np.zeros_like(W_hh)
    db = np.zeros(4 * H, dtype=W_ih.dtype)
    dxs = np.zeros((len(steps), W_ih.shape[1]), dtype=W_ih.dtype)
    dh_next, dc_next = np.zeros(H), np.zeros(H)
    for t in reversed(range(len(steps))):
        x, h_prev, c_prev, i, f, g, o, c = steps[t]
        dh = dhs[t] + dh_next
        tc = np.tanh(c)
        dc = dh * o * (1 - tc**2) + dc_next
        da_i, da_f = dc * g * i * (1 - i), dc * c_prev * f * (1 - f)
        da_g, da_o = dc * i * (1 - g**2), dh * tc * o * (1 - o)
        da = np.concatenate([da_i, da_f, da_g, da_o])
        dW_ih += np.outer(da, x)
        dW_hh += np.outer(da, h_prev)
        db += da
        dxs[t] = W_ih.T @ da
        dh_next, dc_next = W_hh.T @ da, dc * f
    return dxs, dW_ih, dW_hh, db


# -- losses: each returns (L, dL/dout) ----------------------------------------------------


def log_softmax(z):
    """log pi for each row of logits z, shifted by the row's max so exp cannot overflow."""
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def a3c_loss(out, actions, returns, beta, value_weight):
    """A3C over n rows of ``out`` = [logits z (A columns), V]; the advantage R - V is held
    constant in the policy term::

        L = sum_i  -log pi(a_i|s_i) (R_i - V_i)  -  beta H_i  +  value_weight (R_i - V_i)^2
    """
    n, A = out.shape[0], out.shape[1] - 1
    logp = log_softmax(out[:, :A])
    p = np.exp(logp)
    H = -(p * logp).sum(axis=1)
    V = out[:, A]
    adv = returns - V
    rows = np.arange(n)
    L = -(logp[rows, actions] * adv).sum() - beta * H.sum() + (value_weight * adv**2).sum()
    onehot = np.zeros_like(p)
    onehot[rows, actions] = 1.0
    dout = np.zeros_like(out, dtype=np.float64)
    # d(-log pi_a)/dz = p - onehot; dH/dz = -p (log p + H)
    dout[:, :A] = adv[:, None] * (p - onehot) + beta * p * (logp + H[:, None])
    dout[:, A] = -2.0 * value_weight * adv
    return float(L), dout


def td_loss(q, actions, targets):
    """L = sum_i 0.5 (y_i - Q(s_i, a_i))^2 with the targets y held constant."""
    rows = np.arange(q.shape[0])
    err = q[rows, actions] - targets
    dout = np.zeros_like(q, dtype=np.float64)
    dout[rows, actions] = err
    return float(0.5 * (err**2).sum()), dout


def gaussian_a3c_loss(
    out, actions, returns, beta, value_weight, var_floor=1e-4, low=None, high=None,
    bound_weight=0.0,
):  # fmt: skip
    """A3C with a diagonal Gaussian policy: ``out`` = [mu (D), s (D), V], var = softplus(s) +
    var_floor; ``actions`` (n, D) the unclipped samples. Same L as :func:`a3c_loss` with

        log pi = sum_d -(a_d - mu_d)^2 / (2 var_d) - 0.5 log(2 pi var_d)
        H      = sum_d 0.5 log(2 pi e var_d)

    plus ``bound_weight * sum (mu - clip(mu, low, high))^2`` when bound_weight > 0.
    """
    D = actions.shape[1]
    mu, s, V = out[:, :D], out[:, D : 2 * D], out[:, 2 * D]
    var = np.logaddexp(0.0, s) + var_floor  # softplus, stable
    u = actions - mu
    logp = (-(u**2) / (2 * var) - 0.5 * np.log(2 * np.pi * var)).sum(axis=1)
    H = (0.5 * np.log(2 * np.pi * np.e * var)).sum(axis=1)
    adv = returns - V
    L = -(logp * adv).sum() - beta * H.sum() + (value_weight * adv**2).sum()
    dvar = -adv[:, None] * 0.5 * (u**2 / var**2 - 1 / var) - beta * 0.5 / var
    dout = np.zeros_like(out, dtype=np.float64)
    dout[:, :D] = -adv[:, None] * u / var
    dout[:, D : 2 * D] = dvar * _sigmoid(s)  # d softplus(s) / ds = sigmoid(s)
    dout[:, 2 * D] = -2.0 * value_weight * adv
    if bound_weight:
        excess = mu - np.clip(mu, low, high)
        L += bound_weight * (excess**2).sum()
        dout[:, :D] += 2.0 * bound_weight * excess
    return float(L), dout


# -- a whole network, layer by layer --------------------------------------------------------


def network_forward(net, x):
    """Run ``net`` (a :class:`~nbasync.nn.Network`) on x from its named parameters, in
    float64. Returns (out, caches). A recurrent net starts from zero state and takes the rows
    of x as consecutive time steps (as a rollout's cache rows)."""
    h = np.asarray(x, dtype=np.float64)
    caches = []
    for layer in net.layers:
        kind = type(layer).__name__
        p = {short: net.param(f"{layer.name}.{short}") for short, _ in layer.param_shapes}
        if kind == "Conv2d":
            h, cache = conv2d_forward(h, p["weight"], p["bias"], layer.stride)
        elif kind == "Dense":
            h, cache = dense_forward(h, p["weight"], p["bias"])
        elif kind == "ReLU":
            h, cache = relu_forward(h)
        elif kind == "Flatten":
            h, cache = flatten_forward(h)
        elif kind == "Dueling":
            h, cache = dueling_forward(h)
        elif kind == "LSTM":
            zeros = np.zeros(layer.hidden_size)
            h, cache = lstm_forward(h, p["weight_ih"], p["weight_hh"], p["bias"], zeros, zeros)
        else:
            raise TypeError(f"no reference for layer {layer.name!r} ({kind})")
        caches.append((layer, cache))
    return h, caches


def network_backward(dout, caches):
    """Backward through the caches of :func:`network_forward`, last layer first.
    Returns (dx, {"<layer>.<param>": gradient}) with the network's parameter names."""
    grads = {}
    d = np.asarray(dout, dtype=np.float64)
    for layer, cache in reversed(caches):
        kind = type(layer).__name__
        if kind == "Conv2d":
            d, grads[f"{layer.name}.weight"], grads[f"{layer.name}.bias"] = conv2d_backward(
                d, cache
            )
        elif kind == "Dense":
            d, grads[f"{layer.name}.weight"], grads[f"{layer.name}.bias"] = dense_backward(d, cache)
        elif kind == "ReLU":
            d = relu_backward(d, cache)
        elif kind == "Flatten":
            d = flatten_backward(d, cache)
        elif kind == "Dueling":
            d = dueling_backward(d, cache)
        elif kind == "LSTM":
            d, dW_ih, dW_hh, db = lstm_backward(d, cache)
            grads.update(
                {
                    f"{layer.name}.weight_ih": dW_ih,
                    f"{layer.name}.weight_hh": dW_hh,
                    f"{layer.name}.bias": db,
                }
            )
    return d, grads
