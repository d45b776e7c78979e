"""nbasync.nn.reference: each readable layer and loss against finite differences, and the
fast numba network (forward AND backward) against the references, layer by layer."""

from __future__ import annotations

import numpy as np
import pytest

from nbasync.nn import (
    a3c_loss,
    atari_network,
    gaussian_a3c_loss,
    mlp_network,
    reference,
    td_loss,
)
from nbasync.nn.gradcheck import numerical_grad, rel_error

RNG = np.random.default_rng(0)
TOL = 1e-6  # float64 central differences


def _check_layer(forward, backward, inputs: list[np.ndarray], seed: int = 0) -> None:
    """L = sum(w * forward(*inputs)) for a fixed random w: backward's gradients of every
    input array must match central differences of L."""
    out, cache = forward(*inputs)
    w = np.random.default_rng(seed).standard_normal(out.shape)
    grads = backward(w, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)

    def loss() -> float:
        return float((w * forward(*inputs)[0]).sum())

    for array, grad in zip(inputs, grads, strict=False):
        assert rel_error(grad, numerical_grad(loss, array).reshape(array.shape)) < TOL


def test_dense():
    x, W, b = RNG.standard_normal((3, 5)), RNG.standard_normal((4, 5)), RNG.standard_normal(4)
    _check_layer(reference.dense_forward, reference.dense_backward, [x, W, b])


def test_relu_and_flatten():
    x = RNG.standard_normal((3, 2, 4, 4))
    x[np.abs(x) < 1e-3] = 0.5  # keep finite differences away from the kink
    _check_layer(reference.relu_forward, reference.relu_backward, [x])
    _check_layer(reference.flatten_forward, reference.flatten_backward, [x])


@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d(stride):
    x = RNG.standard_normal((2, 3, 9, 9))
    W, b = RNG.standard_normal((4, 3, 3, 3)), RNG.standard_normal(4)

    def forward(x, W, b):
        return reference.conv2d_forward(x, W, b, stride)

    _check_layer(forward, reference.conv2d_backward, [x, W, b])


def test_lstm_through_time():
    T, n_in, H = 4, 3, 5
    xs = RNG.standard_normal((T, n_in))
    W_ih, W_hh = RNG.standard_normal((4 * H, n_in)), RNG.standard_normal((4 * H, H))
    b, h0, c0 = RNG.standard_normal(4 * H), RNG.standard_normal(H), RNG.standard_normal(H)

    def forward(xs, W_ih, W_hh, b):
        return reference.lstm_forward(xs, W_ih, W_hh, b, h0, c0)

    _check_layer(forward, reference.lstm_backward, [xs, W_ih, W_hh, b])


def test_losses_gradients_and_the_fast_kernels():
    n, A = 5, 4
    out = RNG.standard_normal((n, A + 1))
    actions, returns = RNG.integers(0, A, n), RNG.standard_normal(n)
    L, dout = reference.a3c_loss(out, actions, returns, 0.01, 0.5)
    fast = np.zeros_like(out)
    pl, vl, ent = a3c_loss(out, actions, returns, 0.01, 0.5, fast)
    np.testing.assert_allclose(fast, dout, rtol=1e-12, atol=1e-12)
    assert pytest.approx(pl + vl - 0.01 * ent, rel=1e-12) == L

    q, targets = RNG.standard_normal((n, A)), RNG.standard_normal(n)
    L, dout = reference.td_loss(q, actions, targets)
    num = numerical_grad(lambda: reference.td_loss(q, actions, targets)[0], q)
    assert rel_error(dout, num.reshape(q.shape)) < TOL
    fast = np.zeros_like(q)
    assert td_loss(q, actions, targets, fast) == pytest.approx(L, rel=1e-12)
    np.testing.assert_allclose(fast, dout, rtol=1e-12, atol=1e-12)

    D = 2
    out = RNG.standard_normal((n, 2 * D + 1))
    acts = RNG.standard_normal((n, D))
    L, dout = reference.gaussian_a3c_loss(out, acts, returns, 1e-4, 0.5)
    fast = np.zeros_like(out)
    pl, vl, ent = gaussian_a3c_loss(out, acts, returns, 1e-4, 0.5, fast)
    np.testing.assert_allclose(fast, dout, rtol=1e-10, atol=1e-12)
    assert pytest.approx(pl + vl - 1e-4 * ent, rel=1e-10) == L

    low, high = np.full(D, -0.5), np.full(D, 0.5)  # most means lie outside
    L, dout = reference.gaussian_a3c_loss(out, acts, returns, 1e-4, 0.5, 1e-4, low, high, 0.7)
    fast = np.zeros_like(out)
    pl, vl, ent = gaussian_a3c_loss(out, acts, returns, 1e-4, 0.5, fast, low, high, 0.7)
    np.testing.assert_allclose(fast, dout, rtol=1e-10, atol=1e-12)
    assert pytest.approx(pl + vl - 1e-4 * ent, rel=1e-10) == L


def test_a3c_loss_gradient_with_the_advantage_held_constant():
    """With V's column frozen inside the advantage, L's finite differences are dout's."""
    n, A = 4, 3
    out = RNG.standard_normal((n, A + 1))
    actions, returns = RNG.integers(0, A, n), RNG.standard_normal(n)
    adv = returns - out[:, A].copy()

    def policy_and_entropy() -> float:
        logp = reference.log_softmax(out[:, :A])
        H = -(np.exp(logp) * logp).sum(axis=1)
        return float(-(logp[np.arange(n), actions] * adv).sum() - 0.01 * H.sum())

    _, dout = reference.a3c_loss(out, actions, returns, 0.01, 0.5)
    num = numerical_grad(policy_and_entropy, out).reshape(out.shape)
    assert rel_error(dout[:, :A], num[:, :A]) < TOL
    np.testing.assert_allclose(dout[:, A], -(returns - out[:, A]))  # value_weight 0.5


@pytest.mark.parametrize(
    "make",
    [
        lambda: mlp_network(6, 3, hidden=(8, 7), max_batch=4, dtype=np.float64),
        lambda: mlp_network(6, 3, hidden=(8,), max_batch=4, dtype=np.float64, lstm_size=5),
        lambda: atari_network(5, in_channels=4, max_batch=3, dtype=np.float64),
        lambda: atari_network(5, in_channels=4, max_batch=3, dtype=np.float64, lstm_size=6),
    ],
    ids=["mlp", "mlp-lstm", "atari", "atari-lstm"],
)
def test_fast_network_equals_the_reference_forward_and_backward(make):
    net = make()
    net.init_params(3)
    B = net.max_batch
    x = RNG.standard_normal((B, *net.input_shape))
    out = net.forward(x, row=0).copy()
    ref_out, caches = reference.network_forward(net, x)
    np.testing.assert_allclose(out, ref_out, rtol=1e-10, atol=1e-12)

    dout = RNG.standard_normal(out.shape)
    net.zero_grad()
    dx = net.backward(dout, B, input_grad=True)
    ref_dx, ref_grads = reference.network_backward(dout, caches)
    assert set(ref_grads) == set(net.param_names)
    for name, grad in ref_grads.items():
        np.testing.assert_allclose(net.grad(name), grad, rtol=1e-9, atol=1e-11, err_msg=name)
    np.testing.assert_allclose(dx.reshape(ref_dx.shape), ref_dx, rtol=1e-9, atol=1e-11)
