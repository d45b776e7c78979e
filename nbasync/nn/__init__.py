"""nbasync.nn: hand-written numba networks with explicit forward/backward, losses, gradcheck.

Pure math: no processes, no environments; imports nothing else of nbasync.
See docs/architecture.md for the contract.
"""

from . import reference
from .dueling import Dueling
from .gaussian import VAR_FLOOR, gaussian_a3c_loss, gaussian_mean, gaussian_sample
from .gradcheck import gradcheck, numerical_grad
from .layers import Conv2d, Dense, Flatten, Layer, ReLU
from .losses import a3c_loss, argmax, sample_from_logits, td_loss
from .lstm import LSTM
from .models import atari_network, mlp_network
from .network import Network, NetworkPair

__all__ = [
    "Conv2d",
    "Dense",
    "Dueling",
    "Flatten",
    "LSTM",
    "Layer",
    "Network",
    "NetworkPair",
    "VAR_FLOOR",
    "ReLU",
    "a3c_loss",
    "argmax",
    "atari_network",
    "gaussian_a3c_loss",
    "gaussian_mean",
    "gaussian_sample",
    "gradcheck",
    "mlp_network",
    "numerical_grad",
    "reference",
    "sample_from_logits",
    "td_loss",
]
