"""nbasync.nn: hand-written numba networks with explicit forward/backward, losses, gradcheck.

Pure math: no processes, no environments; imports nothing else of nbasync.
See docs/architecture.md for the contract.
"""

from .gradcheck import gradcheck, numerical_grad
from .layers import Conv2d, Dense, Flatten, Layer, ReLU
from .losses import a3c_loss, argmax, sample_from_logits, td_loss
from .models import atari_network, mlp_network
from .network import Network

__all__ = [
    "Conv2d",
    "Dense",
    "Flatten",
    "Layer",
    "Network",
    "ReLU",
    "a3c_loss",
    "argmax",
    "atari_network",
    "gradcheck",
    "mlp_network",
    "numerical_grad",
    "sample_from_logits",
    "td_loss",
]
