"""The dueling Q head: kernels vs the NumPy reference, finite differences of the layer and of
whole dueling nets (with the TD loss), and the properties that make it dueling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbasync.nn import Dense, Dueling, Network, atari_network, gradcheck, mlp_network, reference
from nbasync.nn.dueling import dueling_backward, dueling_forward

from .helpers import LayerRig, numerical_grad, rel_error

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
TOL = 1e-6  # float64 central differences, as the other layers


@SETTINGS
@given(st.integers(1, 7), st.integers(1, 9), st.integers(0, 2**16))
def test_kernels_match_the_reference(B, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, n + 1))
    dq = rng.normal(size=(B, n))
    q = np.zeros((B, n))
    dueling_forward(x, q)
    ref_q, cache = reference.dueling_forward(x)
    np.testing.assert_allclose(q, ref_q, rtol=1e-12, atol=1e-12)
    dx = np.zeros((B, n + 1))
    dueling_backward(dq, dx)
    np.testing.assert_allclose(dx, reference.dueling_backward(dq, cache), rtol=1e-12, atol=1e-12)
    # float32 runs the same arithmetic
    q32 = np.zeros((B, n), np.float32)
    dueling_forward(x.astype(np.float32), q32)
    np.testing.assert_allclose(q32, ref_q, rtol=1e-5, atol=1e-5)


def test_q_is_v_plus_centred_advantages_by_hand():
    x = np.array([[1.0, 2.0, 6.0, 10.0]])  # A = (1, 2, 6), V = 10, mean(A) = 3
    q, _ = reference.dueling_forward(x)
    np.testing.assert_array_equal(q, [[8.0, 9.0, 13.0]])
    y = np.zeros((1, 3))
    dueling_forward(x, y)
    np.testing.assert_array_equal(y, q)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_layer_backward_finite_differences(n):
    rng = np.random.default_rng(n)
    rig = LayerRig(Dueling("dueling"), (n + 1,))
    assert rig.layer.out_shape == (n,) and rig.layer.param_shapes == []
    x = rng.normal(size=(3, n + 1))
    G = rng.normal(size=(3, n))
    dx = rig.backward(x, rig.forward(x), G)

    def loss():
        return float((rig.forward(x) * G).sum())

    assert rel_error(dx.ravel(), numerical_grad(loss, x)) < TOL


def test_advantages_are_identifiable_and_their_gradient_sums_to_zero():
    """Shifting every advantage by c changes no Q (the mean is subtracted), so the gradient
    reaching the advantages sums to zero in each row; V gets every dQ."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6))
    shifted = x.copy()
    shifted[:, :5] += rng.normal(size=(4, 1))
    q, q_shifted = np.zeros((4, 5)), np.zeros((4, 5))
    dueling_forward(x, q)
    dueling_forward(shifted, q_shifted)
    np.testing.assert_allclose(q, q_shifted, rtol=1e-12, atol=1e-12)
    dq = rng.normal(size=(4, 5))
    dx = np.zeros((4, 6))
    dueling_backward(dq, dx)
    np.testing.assert_allclose(dx[:, :5].sum(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(dx[:, 5], dq.sum(axis=1), rtol=1e-12)


def test_layer_refuses_inputs_without_advantages():
    with pytest.raises(ValueError, match="n_actions \\+ 1 >= 2"):
        Network([Dense("head", 1), Dueling("dueling")], (3,))


def _td_loss(actions, targets):
    def loss_fn(q):
        return reference.td_loss(q, actions, targets)

    return loss_fn


@pytest.mark.parametrize("seed", range(4))
def test_dueling_mlp_matches_reference_and_gradchecks_with_the_td_loss(seed):
    rng = np.random.default_rng(seed)
    n_actions = int(rng.integers(2, 6))
    net = mlp_network(5, n_actions, hidden=(7, 6), max_batch=6, dtype=np.float64, dueling=True)
    net.init_params(seed)
    assert net.n_outputs == n_actions and net.param("head.weight").shape == (n_actions + 1, 6)
    assert [layer.name for layer in net.layers][-2:] == ["head", "dueling"]
    x = rng.normal(size=(4, 5))
    out = net.forward(x, row=0).copy()
    ref, caches = reference.network_forward(net, x)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    actions = rng.integers(n_actions, size=4)
    targets = rng.normal(size=4)
    _, dout = reference.td_loss(out, actions, targets)
    net.zero_grad()
    net.backward(dout, 4)
    _, grads = reference.network_backward(dout, caches)
    for name, g in grads.items():
        np.testing.assert_allclose(net.grad(name), g, rtol=1e-10, atol=1e-12, err_msg=name)
    errors = gradcheck(net, _td_loss(actions, targets), x, input_grad=True)
    assert max(errors.values()) < TOL, errors


def test_dueling_conv_net_gradchecks_sampled():
    net = atari_network(3, in_channels=2, max_batch=2, dtype=np.float64, input_size=(24, 24),
                        dueling=True)  # fmt: skip
    net.init_params(1)
    assert net.n_outputs == 3 and net.param("head.bias").shape == (4,)
    x = np.random.default_rng(2).random((2, 2, 24, 24))
    actions, targets = np.array([0, 2]), np.array([0.5, -1.0])
    errors = gradcheck(net, _td_loss(actions, targets), x, max_entries=40)
    assert max(errors.values()) < TOL, errors
