"""LSTM: forward vs a plain NumPy reference, BPTT by finite differences, the state API."""

from __future__ import annotations

import numpy as np
import pytest

from nbasync.nn import LSTM, Dense, Network, ReLU, atari_network, gradcheck, mlp_network
from nbasync.nn.gradcheck import numerical_grad

# float64 central differences (eps = 1e-5). Per tensor, the error of every entry relative to
# the tensor's largest entry, max|a - n| / max(|a| + |n|), is held to SCALED_TOL (measured
# worst 5e-9 over 40 random nets). Entry by entry (the library's rel_error) the tiniest
# gradients (~1e-7 of the largest, deep in saturated gates) are at the rounding noise of L
# over 2 eps, so the per-entry bound is ENTRY_TOL (measured worst 3e-6).
SCALED_TOL = 1e-7
ENTRY_TOL = 1e-5


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference_lstm(x, Wih, Whh, b, h0, c0):
    """Plain NumPy LSTM over the rows of x (time steps); gate order i, f, g, o."""
    H = Whh.shape[1]
    h, c = h0.copy(), c0.copy()
    hs = []
    for t in range(x.shape[0]):
        a = Wih @ x[t] + Whh @ h + b
        i, f = _sig(a[:H]), _sig(a[H : 2 * H])
        g, o = np.tanh(a[2 * H : 3 * H]), _sig(a[3 * H :])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    return np.array(hs), h, c


def _lstm_net(seed, dtype=np.float64, max_batch=6):
    rng = np.random.default_rng(seed)
    n_in, width = int(rng.integers(1, 7)), int(rng.integers(1, 9))
    H, n_out = int(rng.integers(1, 10)), int(rng.integers(1, 5))
    layers = [Dense("fc1", width), ReLU("relu1"), LSTM("lstm", H), Dense("head", n_out)]
    net = Network(layers, (n_in,), max_batch=max_batch, dtype=dtype)
    net.init_params(seed)
    # larger weights than the init so the gates leave their linear range
    net.params[:] *= 1.5
    return net, rng


def _net_reference(net, x, state):
    """The whole net (fc1 + ReLU -> LSTM -> head) in NumPy, from the initial state."""
    z = np.maximum(x @ net.param("fc1.weight").T + net.param("fc1.bias"), 0.0)
    (h0, c0) = state[0]
    hs, h, c = reference_lstm(
        z, net.param("lstm.weight_ih"), net.param("lstm.weight_hh"), net.param("lstm.bias"), h0, c0
    )
    return hs @ net.param("head.weight").T + net.param("head.bias"), (h, c)


@pytest.mark.parametrize("seed", range(6))
def test_forward_matches_numpy_reference_batched_and_stepwise(seed):
    net, rng = _lstm_net(seed)
    T = int(rng.integers(1, 7))
    x = rng.normal(size=(T, *net.input_shape))
    H = net.param("lstm.weight_hh").shape[1]
    state = [(rng.normal(size=H), rng.normal(size=H))]
    want, (h_end, c_end) = _net_reference(net, x, state)

    net.set_state(state)
    np.testing.assert_allclose(net.forward(x, row=0), want, rtol=1e-12, atol=1e-12)
    net.set_state(state)
    for t in range(T):  # acting: one row per step
        np.testing.assert_allclose(net.forward(x[t : t + 1], row=t)[0], want[t], atol=1e-12)
    net.carry_state(T)
    h, c = net.get_state()[0]
    np.testing.assert_allclose(h, h_end, atol=1e-12)
    np.testing.assert_allclose(c, c_end, atol=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_bptt_finite_differences(seed):
    net, rng = _lstm_net(seed)
    T = int(rng.integers(1, 7))
    x = rng.normal(size=(T, *net.input_shape))
    H = net.param("lstm.weight_hh").shape[1]
    net.set_state([(rng.normal(size=H), rng.normal(size=H))])
    G = rng.normal(size=(T, net.n_outputs))

    def loss_fn(out):
        return float((out * G).sum() + 0.5 * (out**2).sum()), G + out

    errors = gradcheck(net, loss_fn, x, input_grad=True)
    assert max(errors.values()) < ENTRY_TOL, errors
    net.zero_grad()
    net.backward(loss_fn(net.forward(x, row=0).copy())[1], T)
    for name in net.param_names:
        a = net.grad(name).reshape(-1)
        num = numerical_grad(lambda: loss_fn(net.forward(x, row=0).copy())[0], net.param(name))
        scaled = np.abs(a - num).max() / max(1e-12, (np.abs(a) + np.abs(num)).max())
        assert scaled < SCALED_TOL, (name, scaled)


@pytest.mark.parametrize("seed", range(4))
def test_bptt_directional_derivative(seed):
    """g . v against (L(theta + eps v) - L(theta - eps v)) / (2 eps) for random v."""
    net, rng = _lstm_net(100 + seed)
    x = rng.normal(size=(5, *net.input_shape))
    net.reset_state()
    G = rng.normal(size=(5, net.n_outputs))
    net.zero_grad()
    net.forward(x, row=0)
    net.backward(G, 5)
    g = net.grads.copy()
    theta = net.params.copy()
    for _ in range(3):
        v = rng.normal(size=theta.size)
        net.params[:] = theta + 1e-5 * v
        lp = float((net.forward(x, row=0) * G).sum())
        net.params[:] = theta - 1e-5 * v
        lm = float((net.forward(x, row=0) * G).sum())
        num, ana = (lp - lm) / 2e-5, float(g @ v)
        assert abs(num - ana) / max(1e-8, abs(num) + abs(ana)) < 1e-8
    net.params[:] = theta


def test_float32_matches_float64():
    net64, rng = _lstm_net(3)
    net32 = Network(
        [Dense("fc1", net64.layers[0].out_features), ReLU("relu1"),
         LSTM("lstm", net64.layers[2].hidden_size), Dense("head", net64.n_outputs)],
        net64.input_shape, max_batch=6, dtype=np.float32,
    )  # fmt: skip
    net32.params[:] = net64.params
    x = rng.normal(size=(5, *net64.input_shape))
    np.testing.assert_allclose(net32.forward(x, 0), net64.forward(x, 0), rtol=1e-4, atol=1e-5)
    dout = rng.normal(size=(5, net64.n_outputs))
    net32.zero_grad()
    net64.zero_grad()
    net32.backward(dout.astype(np.float32), 5)
    net64.backward(dout, 5)
    np.testing.assert_allclose(net32.grads, net64.grads, rtol=1e-3, atol=1e-4)


def test_state_carry_reset_and_bootstrap_row():
    net, rng = _lstm_net(11)
    x = rng.normal(size=(6, *net.input_shape))
    net.reset_state()
    full = net.forward(x, row=0).copy()  # one rollout of 6 steps from zeros
    # the same 6 steps as two rollouts of 3, carrying the state, with a bootstrap forward
    # at row 3 in between (it must not change what is carried)
    net.reset_state()
    a = net.forward(x[:3], row=0).copy()
    net.forward(x[3:4], row=3)  # bootstrap V(s_3) reads h after row 2
    net.zero_grad()
    net.backward(np.ones((3, net.n_outputs)), 3)
    net.carry_state(3)
    b = net.forward(x[3:], row=0).copy()
    np.testing.assert_allclose(np.vstack([a, b]), full, atol=1e-12)
    # reset: back to zeros
    net.reset_state()
    assert all(np.all(h == 0) and np.all(c == 0) for h, c in net.get_state())
    np.testing.assert_allclose(net.forward(x[:1], row=0), full[:1], atol=1e-12)


def test_gradient_stops_at_the_rollout_boundary():
    """After carry_state, the new rollout's gradient treats the carried state as a constant."""
    net, rng = _lstm_net(5)
    x = rng.normal(size=(4, *net.input_shape))
    net.reset_state()
    net.forward(x[:2], row=0)
    net.carry_state(2)
    state = net.get_state()
    net.forward(x[2:], row=0)
    net.zero_grad()
    net.backward(np.ones((2, net.n_outputs)), 2)
    g_carried = net.grads.copy()
    net.set_state(state)  # the same state, set by hand: same gradient
    net.forward(x[2:], row=0)
    net.zero_grad()
    net.backward(np.ones((2, net.n_outputs)), 2)
    np.testing.assert_allclose(net.grads, g_carried, atol=1e-12)


def test_misuse_is_reported():
    net, rng = _lstm_net(2)
    net.reset_state()
    with pytest.raises(ValueError, match="rows \\[0, 2\\)"):
        net.forward(rng.normal(size=(1, *net.input_shape)), row=2)
    net.forward(rng.normal(size=(2, *net.input_shape)), row=0)
    with pytest.raises(ValueError, match="carry_state"):
        net.carry_state(3)
    with pytest.raises(ValueError, match="entries"):
        net.set_state([])


def test_feed_forward_networks_have_no_state():
    net = mlp_network(3, 2, hidden=(4,), dtype=np.float64)
    assert not net.recurrent and net.get_state() == []
    net.reset_state()
    net.carry_state(1)
    net.set_state([])


def test_models_with_lstm():
    net = mlp_network(2, 3, hidden=(64,), lstm_size=64, max_batch=6)
    assert net.recurrent
    assert [n for n, _, _ in net.layout][2:5] == ["lstm.weight_ih", "lstm.weight_hh", "lstm.bias"]
    assert net.param("lstm.weight_ih").shape == (256, 64)
    atari = atari_network(7, lstm_size=256, max_batch=6)
    assert atari.recurrent and atari.param("head.weight").shape == (7, 256)
    assert atari.param("lstm.weight_hh").shape == (1024, 256)
    x = np.random.default_rng(0).random((5, 4, 84, 84), dtype=np.float32)
    atari.init_params(0)
    atari.reset_state()
    out = atari.forward(x, row=0)
    assert out.shape == (5, 7) and np.all(np.isfinite(out))
    atari.backward(np.ones((5, 7), np.float32), 5)
    assert np.all(np.isfinite(atari.grads))
