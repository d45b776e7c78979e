"""Optimiser kernels against plain NumPy references; clipping; learning-rate annealing."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbasync.optim import (
    clip_grad_norm,
    clip_scale,
    global_norm,
    linear_lr,
    make_optimizer,
    momentum_step,
    rmsprop_step,
)

TOL = {np.float32: dict(rtol=2e-6, atol=1e-7), np.float64: dict(rtol=1e-13, atol=1e-15)}


def ref_rmsprop(theta, d, g, lr, alpha, eps):
    g = alpha * g + (1 - alpha) * d * d
    return theta - lr * d / np.sqrt(g + eps), g  # eps inside the square root


def ref_momentum(theta, d, m, lr, mu):
    m = mu * m + (1 - mu) * d
    return theta - lr * m, m


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


def arrays(dtype, n=1031, seed=0):
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(n).astype(dtype)
    d = (3 * rng.standard_normal(n)).astype(dtype)
    g = rng.random(n).astype(dtype)
    return theta, d, g


def test_rmsprop_matches_numpy(dtype):
    theta, d, g = arrays(dtype)
    want_theta, want_g = theta.copy(), g.copy()
    for k in range(3):
        want_theta, want_g = ref_rmsprop(
            want_theta, d, want_g, dtype(1e-2), dtype(0.99), dtype(0.1)
        )
        rmsprop_step(theta, d, g, 1e-2, 0.99, 0.1)
        assert theta.dtype == dtype and g.dtype == dtype, k
    np.testing.assert_allclose(g, want_g, **TOL[dtype])
    np.testing.assert_allclose(theta, want_theta, **TOL[dtype])


def test_eps_is_inside_the_root(dtype):
    theta = np.zeros(1, dtype)
    g = np.zeros(1, dtype)
    rmsprop_step(theta, np.zeros(1, dtype) + 1e-3, g, 1.0, alpha=0.0, eps=0.1)
    # eps inside: 1e-3 / sqrt(1e-6 + 0.1) ~ 3.16e-3 ; outside would be 1e-3 / (1e-3 + 0.1)
    assert theta[0] == pytest.approx(-1e-3 / math.sqrt(1e-6 + 0.1), rel=1e-5)


def test_momentum_matches_numpy(dtype):
    theta, d, m = arrays(dtype, seed=1)
    want_theta, want_m = theta.copy(), m.copy()
    for _ in range(3):
        want_theta, want_m = ref_momentum(want_theta, d, want_m, dtype(0.05), dtype(0.9))
        momentum_step(theta, d, m, 0.05, 0.9)
    np.testing.assert_allclose(m, want_m, **TOL[dtype])
    np.testing.assert_allclose(theta, want_theta, **TOL[dtype])


def test_make_optimizer_kinds(dtype):
    n = 257
    theta, d, g0 = arrays(dtype, n=n, seed=2)
    shared = np.zeros(n, dtype)
    a = make_optimizer("shared_rmsprop", n, shared_stats=shared)
    b = make_optimizer("rmsprop", n, dtype=dtype)
    c = make_optimizer("momentum", n, dtype=dtype)
    ta, tb, tc = theta.copy(), theta.copy(), theta.copy()
    a.step(ta, d, 1e-2)
    b.step(tb, d, 1e-2)
    c.step(tc, d, 1e-2)
    assert a.g is shared and np.any(shared != 0)  # statistics went to the shared array
    np.testing.assert_array_equal(ta, tb)  # same rule, both start at g = 0
    want, _ = ref_momentum(theta, d, np.zeros(n, dtype), dtype(1e-2), dtype(0.9))
    np.testing.assert_allclose(tc, want, **TOL[dtype])


def test_two_optimizers_on_one_shared_stats_see_each_other():
    n = 64
    shared = np.zeros(n, np.float32)
    w0 = make_optimizer("shared_rmsprop", n, shared_stats=shared)
    w1 = make_optimizer("shared_rmsprop", n, shared_stats=shared)
    own = make_optimizer("rmsprop", n)
    p = np.zeros(n, np.float32)
    d = np.ones(n, np.float32)
    w0.step(p, d, 0.1)
    w1.step(p, d, 0.1)
    own.step(np.zeros(n, np.float32), d, 0.1)
    np.testing.assert_allclose(shared, 0.99 * 0.01 + 0.01, rtol=1e-6)
    np.testing.assert_allclose(own.g, 0.01, rtol=1e-6)


def test_make_optimizer_errors():
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("adam", 3)
    with pytest.raises(ValueError, match="needs shared_stats"):
        make_optimizer("shared_rmsprop", 3)
    with pytest.raises(ValueError, match="shape"):
        make_optimizer("shared_rmsprop", 3, shared_stats=np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="per-worker"):
        make_optimizer("rmsprop", 3, shared_stats=np.zeros(3, np.float32))
    opt = make_optimizer("rmsprop", 3)
    with pytest.raises(ValueError, match="does not match"):
        opt.step(np.zeros(3, np.float64), np.zeros(3, np.float64), 0.1)  # state is float32
    with pytest.raises(ValueError, match="contiguous"):
        opt.step(np.zeros(6, np.float32)[::2], np.zeros(3, np.float32), 0.1)


@pytest.mark.parametrize("scale", [0.1, 1.0, 1e3])
def test_clip_grad_norm(dtype, scale):
    rng = np.random.default_rng(3)
    d = (scale * rng.standard_normal(10_007)).astype(dtype)
    before = d.copy()
    ref = float(np.sqrt(np.sum(before.astype(np.float64) ** 2)))
    norm = clip_grad_norm(d, max_norm=40.0)
    assert norm == pytest.approx(ref, rel=1e-10)
    if ref > 40:
        np.testing.assert_allclose(d, before * (40.0 / ref), rtol=1e-5)
        assert np.linalg.norm(d.astype(np.float64)) == pytest.approx(40.0, rel=1e-5)
    else:
        np.testing.assert_array_equal(d, before)


def test_clip_grad_norm_non_finite_left_alone():
    d = np.array([1.0, np.inf, 2.0], np.float32)
    assert clip_grad_norm(d, 1.0) == math.inf
    assert d[0] == 1.0 and d[2] == 2.0


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=40),
    st.floats(1e-3, 1e3),
)
def test_clip_property(values, max_norm):
    d = np.array(values, np.float64)
    norm = clip_grad_norm(d, max_norm)
    assert np.linalg.norm(d) <= max_norm * (1 + 1e-9) or norm <= max_norm


def test_linear_lr():
    assert linear_lr(7e-4, 0, 100) == pytest.approx(7e-4)
    assert linear_lr(7e-4, 25, 100) == pytest.approx(7e-4 * 0.75)
    assert linear_lr(7e-4, 100, 100) == 0.0
    assert linear_lr(7e-4, 150, 100) == 0.0  # workers overshoot T: never negative
    with pytest.raises(ValueError):
        linear_lr(1e-3, 0, 0)


@pytest.mark.parametrize("kind", ["rmsprop", "momentum"])
@pytest.mark.parametrize("max_norm", [0.0, 1e9, 5.0], ids=["off", "within", "clips"])
def test_fused_step_and_copy_is_bit_for_bit_the_three_passes(dtype, kind, max_norm):
    """clip (in place) + step + theta' <- theta equals step_and_copy with the clip's scale."""
    theta, d, _ = arrays(dtype)
    opt_a = make_optimizer(kind, d.size, dtype=dtype)
    opt_b = make_optimizer(kind, d.size, dtype=dtype)
    theta_a, theta_b = theta.copy(), theta.copy()
    local_a, local_b = np.zeros_like(theta), np.zeros_like(theta)
    for step in range(3):  # several steps, so the statistics carry over too
        grads = (d * (step + 1)).astype(dtype)
        grads_a, grads_b = grads.copy(), grads.copy()
        if max_norm > 0:
            clip_grad_norm(grads_a, max_norm)
        opt_a.step(theta_a, grads_a, 1e-2)
        np.copyto(local_a, theta_a)
        scale = clip_scale(global_norm(grads_b), max_norm)
        opt_b.step_and_copy(theta_b, grads_b, 1e-2, local_b, grad_scale=scale)
        assert (max_norm == 5.0) == (scale != 1.0)
        np.testing.assert_array_equal(theta_b, theta_a)
        np.testing.assert_array_equal(local_b, local_a)
        np.testing.assert_array_equal(grads_b, grads)  # the fused form leaves d untouched
    state_a = opt_a.g if kind == "rmsprop" else opt_a.m
    state_b = opt_b.g if kind == "rmsprop" else opt_b.m
    np.testing.assert_array_equal(state_b, state_a)


def test_fused_step_and_copy_checks_its_arrays():
    theta = np.zeros(8, np.float32)
    opt = make_optimizer("rmsprop", 8)
    with pytest.raises(ValueError, match="local"):
        opt.step_and_copy(theta, np.zeros(8, np.float32), 0.1, np.zeros(7, np.float32))
    with pytest.raises(ValueError, match="local float64"):
        opt.step_and_copy(theta, np.zeros(8, np.float32), 0.1, np.zeros(8, np.float64))


def test_clip_scale():
    assert clip_scale(10.0, 0.0) == 1.0
    assert clip_scale(10.0, 40.0) == 1.0
    assert clip_scale(float("nan"), 40.0) == 1.0
    assert clip_scale(float("inf"), 40.0) == 1.0
    assert clip_scale(80.0, 40.0) == pytest.approx(0.5)


@pytest.mark.parametrize("kind", ["rmsprop", "momentum"])
def test_subnormal_statistics_become_zero_and_the_step_does_not_change(dtype, kind):
    """A statistic decaying below the smallest normal number is stored as 0 (arithmetic on
    subnormals runs in microcode, ~100x slower); theta moves exactly as the reference says."""
    n = 64
    tiny = np.finfo(dtype).tiny
    theta = np.linspace(-1, 1, n).astype(dtype)
    d = np.zeros(n, dtype)
    d[::2] = 1e-3  # half the parameters get a gradient, half none
    opt = make_optimizer(kind, n, dtype=dtype)
    state = opt.g if kind == "rmsprop" else opt.m
    state[:] = tiny * 1.005  # decays below tiny this update where d = 0
    expect_theta, expect_state = (
        ref_rmsprop(theta, d, state.copy(), 0.1, 0.99, 0.1)
        if kind == "rmsprop"
        else ref_momentum(theta, d, state.copy(), 0.1, 0.9)
    )
    opt.step(theta, d, 0.1)
    assert (state[1::2] == 0).all()  # flushed, not subnormal
    np.testing.assert_allclose(state[::2], expect_state[::2], **TOL[dtype])
    np.testing.assert_allclose(theta, expect_theta, **TOL[dtype])
    assert not ((state != 0) & (np.abs(state) < tiny)).any()
