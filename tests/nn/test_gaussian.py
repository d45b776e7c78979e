"""Gaussian policy head: loss vs a NumPy reference, its gradient by finite differences,
sampling/clipping, and the policy+value NetworkPair over one flat vector."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nbasync.nn import (
    VAR_FLOOR,
    NetworkPair,
    gaussian_a3c_loss,
    gaussian_mean,
    gaussian_sample,
    gradcheck,
    mlp_network,
)
from nbasync.nn.gaussian import pre_variance_for_std
from nbasync.nn.gradcheck import numerical_grad, rel_error


def _softplus(s):
    return np.logaddexp(0.0, s)


def reference_loss(out, actions, returns, beta, value_weight):
    """Plain NumPy: L = sum -log N(a; mu, var) A - beta H + value_weight (R - V)^2."""
    D = actions.shape[1]
    mu, s, v = out[:, :D], out[:, D : 2 * D], out[:, 2 * D]
    var = _softplus(s) + VAR_FLOOR
    logp = (-0.5 * (actions - mu) ** 2 / var - 0.5 * np.log(2 * np.pi * var)).sum(1)
    H = (0.5 * np.log(2 * np.pi * np.e * var)).sum(1)
    adv = returns - v
    return float(-(logp * adv).sum()), float((value_weight * adv**2).sum()), float(H.sum())


def check_grad(a, num):
    """Entry by entry (rel_error) to 1e-5, and every entry's error relative to the largest
    entry to 1e-8: with losses ~1e3 the smallest entries (~1e-3) sit at the rounding noise
    of central differences (eps = 1e-5)."""
    assert rel_error(a, num) < 1e-5
    assert np.abs(a - num).max() / (np.abs(a) + np.abs(num)).max() < 1e-8


def _case(seed, n=None, D=None):
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(1, 7))
    D = D or int(rng.integers(1, 4))
    out = rng.normal(size=(n, 2 * D + 1)) * 2.0
    actions = rng.normal(size=(n, D)) * 2.0
    returns = rng.normal(size=n) * 3.0
    return out, actions, returns


@pytest.mark.parametrize("seed", range(10))
def test_loss_matches_reference_and_finite_differences(seed):
    out, actions, returns = _case(seed)
    beta, vw = 0.3, 0.5
    dout = np.zeros_like(out)
    got = gaussian_a3c_loss(out, actions, returns, beta, vw, dout)
    want = reference_loss(out, actions, returns, beta, vw)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)

    # advantage held constant in the policy term: the numerical gradient of the policy part
    # uses the advantage of the unperturbed V, the value part is differentiated in full
    adv = returns - out[:, -1]

    def total():
        pl, _, ent = reference_loss(out, actions, out[:, -1] + adv, beta, vw)
        _, vl, _ = reference_loss(out, actions, returns, beta, vw)
        return pl + vl - beta * ent

    num = numerical_grad(total, out).reshape(out.shape)
    # the V column: the policy term's V enters only through adv (held constant)
    check_grad(dout, num)


def test_entropy_and_log_prob_gradients_separately():
    """beta alone (A = 0) checks dH/ds; A alone (beta = 0) checks dlog pi / d(mu, s)."""
    out, actions, _ = _case(3, n=4, D=2)
    for beta, adv in ((0.7, 0.0), (0.0, 1.3)):
        returns = out[:, -1] + adv
        dout = np.zeros_like(out)
        gaussian_a3c_loss(out, actions, returns, beta, 0.0, dout)

        def f(beta=beta, adv=adv):
            pl, _, ent = reference_loss(out, actions, out[:, -1] + adv, beta, 0.0)
            return pl - beta * ent

        num = numerical_grad(f, out).reshape(out.shape)
        num[:, -1] = 0.0  # V does not enter with value_weight = 0 and adv held constant
        check_grad(dout, num)


def test_mean_bound_penalty_matches_finite_differences_and_is_zero_inside():
    """The penalty w (mu - clip(mu, low, high))^2 adds exactly its own gradient to dL/dmu,
    nothing inside the bounds, and a pull toward the nearer bound outside them."""
    out, actions, returns = _case(5, n=6, D=3)
    low, high = np.array([-1.0, -0.5, -2.0]), np.array([1.0, 0.5, 0.0])
    w = 0.8
    plain, bounded = np.zeros_like(out), np.zeros_like(out)
    pl0, vl0, ent0 = gaussian_a3c_loss(out, actions, returns, 0.1, 0.5, plain)
    pl, vl, ent = gaussian_a3c_loss(out, actions, returns, 0.1, 0.5, bounded, low, high, w)
    D = 3
    mu = out[:, :D].copy()

    def penalty():
        return w * float(((mu - np.clip(mu, low, high)) ** 2).sum())

    assert (vl, ent) == (vl0, ent0)
    assert pl == pytest.approx(pl0 + penalty(), rel=1e-12)
    num = numerical_grad(penalty, mu).reshape(mu.shape)
    np.testing.assert_allclose(bounded[:, :D] - plain[:, :D], num, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(bounded[:, D:], plain[:, D:])
    inside = (mu >= low) & (mu <= high)
    assert inside.any() and (~inside).any()
    np.testing.assert_array_equal(bounded[:, :D][inside], plain[:, :D][inside])
    pull = (bounded - plain)[:, :D][~inside]
    assert np.all(np.sign(pull) == np.sign((mu - np.clip(mu, low, high))[~inside]))
    with pytest.raises(ValueError, match="bounds"):
        gaussian_a3c_loss(out, actions, returns, 0.1, 0.5, bounded, bound_weight=w)


def test_variance_floor_and_large_pre_variance():
    out = np.array([[0.0, -50.0, 0.0], [0.0, 50.0, 0.0]])
    dout = np.zeros_like(out)
    _, _, ent = gaussian_a3c_loss(out, np.zeros((2, 1)), np.zeros(2), 0.01, 0.5, dout)
    want = 0.5 * math.log(2 * math.pi * math.e * VAR_FLOOR) + 0.5 * math.log(
        2 * math.pi * math.e * (50.0 + VAR_FLOOR)
    )
    assert ent == pytest.approx(want, rel=1e-9)
    assert np.all(np.isfinite(dout))


def test_sample_clips_for_the_env_but_keeps_the_raw_sample():
    out = np.array([1.5, -3.0, 0.0, math.log(math.e - 1.0)])  # D = 2: mu0 mu1 s0 s1
    noise = np.array([2.0, -1.0])
    low, high = np.array([-2.0, -2.0], np.float32), np.array([2.0, 2.0], np.float32)
    a, c = np.zeros(2, np.float32), np.zeros(2, np.float32)
    gaussian_sample(out, noise, low, high, a, c)
    sd0 = math.sqrt(math.log(2.0) + VAR_FLOOR)  # softplus(0) = log 2
    sd1 = math.sqrt(1.0 + VAR_FLOOR)  # softplus(log(e - 1)) = 1
    np.testing.assert_allclose(a, [1.5 + 2.0 * sd0, -3.0 - sd1], rtol=1e-6)
    np.testing.assert_allclose(c, [2.0, -2.0])
    gaussian_mean(out, low, high, c)
    np.testing.assert_allclose(c, [1.5, -2.0])


def test_bad_shapes():
    out = np.zeros((3, 4))
    with pytest.raises(ValueError, match="2D \\+ 1"):
        gaussian_a3c_loss(out, np.zeros((3, 1)), np.zeros(3), 0.0, 0.5, np.zeros_like(out))
    out = np.zeros((3, 5))
    with pytest.raises(ValueError, match="actions"):
        gaussian_a3c_loss(out, np.zeros((3, 1)), np.zeros(3), 0.0, 0.5, np.zeros_like(out))


def _pair(dtype=np.float64, lstm_size=0, seed=0):
    policy = mlp_network(3, 4, hidden=(5,), max_batch=6, dtype=dtype, lstm_size=lstm_size)
    value = mlp_network(3, 1, hidden=(6,), max_batch=6, dtype=dtype, lstm_size=lstm_size)
    pair = NetworkPair(policy, value)
    pair.init_params(seed)
    return pair


def test_pair_is_one_flat_vector_policy_first():
    pair = _pair()
    policy, value = pair.nets
    assert pair.n_params == policy.n_params + value.n_params
    assert np.shares_memory(policy.params, pair.params[: policy.n_params])
    assert np.shares_memory(value.params, pair.params[policy.n_params :])
    assert pair.layout[0][0] == "policy.fc1.weight" and pair.layout[0][1] == 0
    first_value = [row for row in pair.layout if row[0].startswith("value.")][0]
    assert first_value == ("value.fc1.weight", policy.n_params, (6, 3))
    shared = np.zeros(pair.n_params)
    pair.bind(shared, np.zeros(pair.n_params))
    shared[:] = 1.0
    assert np.all(pair.param("value.head.bias") == 1.0)
    x = np.ones((2, 3))
    out = pair.forward(x, 0)
    np.testing.assert_allclose(out[:, :4], policy.forward(x, 0))
    np.testing.assert_allclose(out[:, 4:], value.forward(x, 0))


def _shared(dtype=np.float64, lstm_size=0, seed=0):
    """One net with all 2D + 1 = 5 columns (``--shared-trunk``)."""
    net = mlp_network(3, 5, hidden=(5,), max_batch=6, dtype=dtype, lstm_size=lstm_size)
    net.init_params(seed)
    return net


@pytest.mark.parametrize("make", [_pair, _shared], ids=["pair", "shared_trunk"])
@pytest.mark.parametrize("lstm_size", [0, 3])
def test_gaussian_loss_gradcheck_through_the_nets(make, lstm_size):
    """The whole continuous A3C objective through both nets of the pair, or through one
    shared trunk where the value and policy gradients meet (BPTT too with an LSTM)."""
    net = make(lstm_size=lstm_size, seed=1)
    net.reset_state()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 3))
    actions = rng.normal(size=(5, 2))
    out0 = net.forward(x, 0).copy()
    adv = rng.normal(size=5)
    returns_fixed = out0[:, -1] + adv

    def loss_fn(out):
        dout = np.zeros_like(out)
        # advantage held constant: returns chosen so that R - V(theta0) = adv, and the
        # value term's own R is returns_fixed (a constant target)
        gaussian_a3c_loss(out, actions, returns_fixed, 0.05, 0.5, dout)
        pl, _, ent = reference_loss(out, actions, out[:, -1] + adv, 0.05, 0.5)
        _, vl, _ = reference_loss(out, actions, returns_fixed, 0.05, 0.5)
        return pl + vl - 0.05 * ent, dout

    errors = gradcheck(net, loss_fn, x)
    assert max(errors.values()) < 1e-5, errors


@pytest.mark.parametrize("std", [0.011, 0.135, 0.83, 3.0])
def test_pre_variance_for_std_inverts_the_softplus(std):
    s = pre_variance_for_std(std)
    assert _softplus(s) + VAR_FLOOR == pytest.approx(std**2, rel=1e-9)


@pytest.mark.parametrize("std", [math.sqrt(VAR_FLOOR), 0.0, -0.135])
def test_pre_variance_for_std_refuses_a_std_at_or_under_the_floor(std):
    with pytest.raises(ValueError, match="std must be positive and exceed"):
        pre_variance_for_std(std)
