"""Losses against the NumPy formulas and central differences; action helpers."""

from __future__ import annotations

import numpy as np
import pytest

from nbasync.nn import a3c_loss, argmax, sample_from_logits, td_loss
from nbasync.nn.gradcheck import numerical_grad, rel_error

from . import naive

TOL = 1e-6


def _a3c_case(seed, n=5, A=4, scale=1.0):
    rng = np.random.default_rng(seed)
    out = rng.normal(scale=scale, size=(n, A + 1))
    actions = rng.integers(0, A, size=n)
    returns = rng.normal(size=n)
    return out, actions, returns


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("beta,vw", [(0.01, 0.5), (0.3, 1.0), (0.0, 0.25)])
def test_a3c_loss_values_and_gradient(seed, beta, vw):
    out, actions, returns = _a3c_case(seed, n=1 + seed, A=2 + seed % 4)
    dout = np.full_like(out, np.nan)
    pl, vl, ent = a3c_loss(out, actions, returns, beta, vw, dout)
    rp, rv, re, _ = naive.a3c_terms(out, actions, returns, beta, vw)
    assert np.allclose([pl, vl, ent], [rp, rv, re], rtol=1e-12, atol=1e-12)
    # the advantage is held constant in the policy term: differentiate with it frozen
    adv = returns - out[:, -1]
    num = numerical_grad(
        lambda: naive.a3c_terms(out, actions, returns, beta, vw, advantages=adv)[3], out
    )
    assert rel_error(dout.ravel(), num) < TOL
    # and the closed form of the docstring, exactly
    p = np.exp(naive.log_softmax(out[:, :-1]))
    H = -(p * np.log(p)).sum(axis=1, keepdims=True)
    onehot = np.eye(out.shape[1] - 1)[actions]
    dz = -adv[:, None] * (onehot - p) + beta * p * (np.log(p) + H)
    np.testing.assert_allclose(dout[:, :-1], dz, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(dout[:, -1], -2 * vw * adv, rtol=1e-14)


def test_a3c_value_gradient_is_v_minus_r_for_half_weight():
    out, actions, returns = _a3c_case(0)
    dout = np.empty_like(out)
    a3c_loss(out, actions, returns, 0.01, 0.5, dout)
    np.testing.assert_allclose(dout[:, -1], out[:, -1] - returns, rtol=1e-14)


def test_a3c_signs_descent_raises_logpi_of_good_actions_and_entropy():
    out, actions, _ = _a3c_case(1, n=3, A=3)
    returns = out[:, -1] + 1.0  # advantage +1 for every taken action
    dout = np.empty_like(out)
    a3c_loss(out, actions, returns, 0.0, 0.5, dout)
    stepped = out - 1e-3 * dout  # what the optimiser does
    lp0 = naive.log_softmax(out[:, :-1])[np.arange(3), actions]
    lp1 = naive.log_softmax(stepped[:, :-1])[np.arange(3), actions]
    assert np.all(lp1 > lp0)
    # entropy bonus only (advantage 0): descent increases H
    returns = out[:, -1].copy()
    a3c_loss(out, actions, returns, 0.5, 0.5, dout)
    assert np.all(dout[:, -1] == 0)
    h0 = naive.a3c_terms(out, actions, returns, 0.5, 0.5)[2]
    h1 = naive.a3c_terms(out - 1e-3 * dout, actions, returns, 0.5, 0.5)[2]
    assert h1 > h0


def test_a3c_loss_numerically_stable_and_float32():
    out = np.array([[1e4, -1e4, 0.0, 3.0], [-800.0, -800.0, -799.0, 0.0]], np.float32)
    dout = np.empty_like(out)
    pl, vl, ent = a3c_loss(out, np.array([1, 2]), np.array([1.0, -1.0]), 0.01, 0.5, dout)
    assert np.isfinite([pl, vl, ent]).all() and np.isfinite(dout).all()
    assert -4.01e4 < pl < -3.99e4  # -log pi(a=1) = 2e4 times advantage (1 - 3): finite
    out64 = np.random.default_rng(0).normal(size=(4, 6))
    d64, d32 = np.empty_like(out64), np.empty((4, 6), np.float32)
    args = (np.array([0, 1, 2, 4]), np.array([0.5, -1.0, 2.0, 0.0]), 0.01, 0.5)
    r64 = a3c_loss(out64, *args[:2], *args[2:], d64)
    r32 = a3c_loss(out64.astype(np.float32), *args[:2], *args[2:], d32)
    np.testing.assert_allclose(r32, r64, rtol=1e-5)
    np.testing.assert_allclose(d32, d64, rtol=1e-5, atol=1e-6)


def test_a3c_loss_rejects_bad_actions():
    out, _, returns = _a3c_case(0, n=2, A=3)
    with pytest.raises(ValueError):
        a3c_loss(out, np.array([0, 3]), returns, 0.01, 0.5, np.empty_like(out))  # 3 is V


@pytest.mark.parametrize("seed", range(4))
def test_td_loss(seed):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(1 + seed, 3))
    actions = rng.integers(0, 3, size=1 + seed)
    targets = rng.normal(size=1 + seed)
    dout = np.full_like(q, np.nan)
    loss = td_loss(q, actions, targets, dout)
    assert np.isclose(loss, naive.td(q, actions, targets), rtol=1e-14)
    num = numerical_grad(lambda: naive.td(q, actions, targets), q)
    assert rel_error(dout.ravel(), num) < TOL
    expect = np.zeros_like(q)
    expect[np.arange(len(actions)), actions] = q[np.arange(len(actions)), actions] - targets
    np.testing.assert_array_equal(dout, expect)


def test_sample_from_logits_matches_softmax():
    logits = np.array([0.5, -1.0, 2.0, 0.0], np.float32)
    p = np.exp(naive.log_softmax(logits[None].astype(np.float64))[0])
    us = (np.arange(20000) + 0.5) / 20000  # stratified: counts are exact up to rounding
    counts = np.bincount([sample_from_logits(logits, u) for u in us], minlength=4)
    np.testing.assert_allclose(counts / len(us), p, atol=2e-4)
    assert sample_from_logits(logits, 0.0) == 0
    assert sample_from_logits(logits, np.nextafter(1.0, 0.0)) == 3
    assert sample_from_logits(np.array([-np.inf, 1.0, -np.inf]), 0.999999) == 1
    assert sample_from_logits(np.array([1e4, -1e4]), 0.5) == 0


def test_argmax_first_maximum():
    assert argmax(np.array([1.0, 3.0, 3.0, -1.0], np.float32)) == 1
    assert argmax(np.array([-2.0])) == 0
