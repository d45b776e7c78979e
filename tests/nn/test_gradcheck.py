"""gradcheck itself: finds wrong gradients, leaves the parameters alone."""

from __future__ import annotations

import numpy as np
import pytest

from nbasync.nn import gradcheck, mlp_network
from nbasync.nn.gradcheck import rel_error


def test_rel_error_formula():
    assert rel_error([1.0, 0.0], [1.0, 0.0]) == 0.0
    assert np.isclose(rel_error([1.0, 2.0], [1.0, 1.0]), 1 / 3)
    assert np.isclose(rel_error([1e-9], [0.0]), 1e-9 / 1e-8)  # the 1e-8 floor


def test_gradcheck_detects_a_wrong_gradient_and_restores_params():
    net = mlp_network(3, 2, hidden=(4,), max_batch=2, dtype=np.float64)
    net.init_params(0)
    before = net.params.copy()
    x = np.random.default_rng(0).normal(size=(2, 3))

    def good(out):
        return float((out**2).sum()), 2 * out

    def bad(out):
        return float((out**2).sum()), 2.2 * out

    assert max(gradcheck(net, good, x).values()) < 1e-7
    assert min(gradcheck(net, bad, x).values()) > 1e-2
    np.testing.assert_array_equal(net.params, before)


def test_gradcheck_needs_float64():
    net = mlp_network(3, 2, hidden=(4,))
    with pytest.raises(ValueError):
        gradcheck(net, lambda out: (0.0, out), np.zeros((1, 3)))
