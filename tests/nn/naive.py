"""Plain NumPy references for the nbasync.nn kernels: slow, obvious, logical layouts.

Images are (B, C, H, W); weights are PyTorch's (O, C, kh, kw) / (out, in).
"""

from __future__ import annotations

import numpy as np

from nbasync.nn.layers import Conv2d, Dense, Flatten, ReLU


def conv2d(x, W, b, stride):
    B, C, H, Wd = x.shape
    n_out, _, kh, kw = W.shape
    OH = (H - kh) // stride + 1
    OW = (Wd - kw) // stride + 1
    y = np.zeros((B, n_out, OH, OW), dtype=np.result_type(x, W))
    for oh in range(OH):
        for ow in range(OW):
            patch = x[:, :, oh * stride : oh * stride + kh, ow * stride : ow * stride + kw]
            y[:, :, oh, ow] = np.einsum("bcij,ocij->bo", patch, W) + b
    return y


def dense(x, W, b):
    return x @ W.T + b


def relu(x):
    return np.maximum(x, 0)


def flatten(x):
    return x.reshape(x.shape[0], -1)


def network_forward(net, x):
    """The net's function computed layer by layer from its named parameters."""
    h = np.asarray(x, dtype=np.float64)
    for layer in net.layers:
        if isinstance(layer, Conv2d):
            W, b = net.param(f"{layer.name}.weight"), net.param(f"{layer.name}.bias")
            h = conv2d(h, W, b, layer.stride)
        elif isinstance(layer, Dense):
            W, b = net.param(f"{layer.name}.weight"), net.param(f"{layer.name}.bias")
            h = dense(h, W, b)
        elif isinstance(layer, ReLU):
            h = relu(h)
        elif isinstance(layer, Flatten):
            h = flatten(h)
        else:
            raise TypeError(layer)
    return h


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def a3c_terms(out, actions, returns, beta, value_weight, advantages=None):
    """(policy_loss, value_loss, entropy, L); advantages default R - V (pass fixed ones for FD)."""
    A = out.shape[1] - 1
    lp = log_softmax(out[:, :A])
    H = -(np.exp(lp) * lp).sum(axis=1)
    V = out[:, A]
    adv = returns - V if advantages is None else advantages
    policy = float(-(lp[np.arange(len(actions)), actions] * adv).sum())
    value = float((value_weight * (returns - V) ** 2).sum())
    entropy = float(H.sum())
    return policy, value, entropy, policy + value - beta * entropy


def td(q, actions, targets):
    return float((0.5 * (targets - q[np.arange(len(actions)), actions]) ** 2).sum())
