"""The paper's networks, built from ``layers`` into a :class:`Network`.

Output columns (shape table)::

    A3C:        n_outputs = n_actions + 1;  out[:, :A] policy logits, out[:, A] = V(s)
    Q methods:  n_outputs = n_actions;      out[:, a] = Q(s, a)
    dueling:    head has n_outputs + 1 columns [A, V], then Dueling: Q = V + A - mean(A)

Parameter names: conv1.*, conv2.*, fc1.*, ..., lstm.* (recurrent nets), head.*
(``*`` is weight or bias; lstm.weight_ih, lstm.weight_hh, lstm.bias). A dueling net's head
has one more row (V, last) and is followed by the parameter-free ``dueling`` layer.

Recurrent variants (``lstm_size > 0``): the LSTM comes after the last hidden layer and
before the head (A3C LSTM: "256 LSTM cells after the final hidden layer").
"""

from __future__ import annotations

import numpy as np

from .dueling import Dueling
from .layers import Conv2d, Dense, Flatten, Layer, ReLU
from .lstm import LSTM
from .network import Network

ATARI_INPUT = (84, 84)


def atari_network(
    n_outputs: int,
    in_channels: int = 4,
    max_batch: int = 8,
    dtype=np.float32,
    lstm_size: int = 0,
    input_size: tuple[int, int] = ATARI_INPUT,
    dueling: bool = False,
):
    """Mnih et al. 2016 Atari net (as DQN 2013): input (in_channels, 84, 84) float.

    conv1 16 8x8 stride 4 + ReLU -> (16, 20, 20); conv2 32 4x4 stride 2 + ReLU -> (32, 9, 9);
    flatten -> 2592; fc1 256 + ReLU; [lstm lstm_size]; head n_outputs (linear).
    ``input_size`` (H, W) sizes it for other images (at least 20 x 20, where conv2's output
    is one pixel); fc1's input grows with the image. ``dueling``: see :func:`head_layers`.
    """
    H, W = (int(v) for v in input_size)
    if H < 20 or W < 20:
        raise ValueError(f"the conv net needs images of at least 20 x 20, got {H} x {W}")
    layers = [
        Conv2d("conv1", 16, 8, stride=4),
        ReLU("relu1"),
        Conv2d("conv2", 32, 4, stride=2),
        ReLU("relu2"),
        Flatten("flatten"),
        Dense("fc1", 256),
        ReLU("relu3"),
    ]
    if lstm_size:
        layers.append(LSTM("lstm", lstm_size))
    layers += head_layers(n_outputs, dueling)
    return Network(layers, (in_channels, H, W), max_batch=max_batch, dtype=dtype)


def mlp_network(
    obs_dim: int,
    n_outputs: int,
    hidden=(64, 64),
    max_batch: int = 8,
    dtype=np.float32,
    lstm_size: int = 0,
    dueling: bool = False,
):
    """Dense + ReLU per hidden width (fc1, fc2, ...), [lstm lstm_size], the linear head
    (``dueling``: see :func:`head_layers`)."""
    layers = []
    for i, width in enumerate(hidden, start=1):
        layers += [Dense(f"fc{i}", width), ReLU(f"relu{i}")]
    if lstm_size:
        layers.append(LSTM("lstm", lstm_size))
    layers += head_layers(n_outputs, dueling)
    return Network(layers, (obs_dim,), max_batch=max_batch, dtype=dtype)


def head_layers(n_outputs: int, dueling: bool = False) -> list[Layer]:
    """The linear head; ``dueling``: a head of n_outputs + 1 columns (advantages, V) and
    the :class:`~nbasync.nn.dueling.Dueling` aggregation, Q = V + A - mean(A)."""
    if dueling:
        return [Dense("head", n_outputs + 1), Dueling("dueling")]
    return [Dense("head", n_outputs)]
