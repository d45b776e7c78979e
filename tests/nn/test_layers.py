"""Each layer: forward vs the NumPy reference, backward vs central differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbasync.nn import kernels
from nbasync.nn.layers import Conv2d, Dense, Flatten, ReLU

from . import naive
from .helpers import LayerRig, nchw, nhwc, numerical_grad, rel_error

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
TOL = 1e-6  # float64 finite differences


@st.composite
def conv_cases(draw):
    kh = draw(st.integers(1, 4))
    kw = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 3))
    H = draw(st.integers(kh, kh + 7))
    W = draw(st.integers(kw, kw + 7))
    return dict(
        B=draw(st.integers(1, 3)),
        C=draw(st.integers(1, 3)),
        O=draw(st.integers(1, 4)),
        H=H,
        W=W,
        kh=kh,
        kw=kw,
        stride=stride,
        channels_last=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )


def _conv_rig(case, dtype=np.float64):
    layer = Conv2d("conv", case["O"], (case["kh"], case["kw"]), stride=case["stride"])
    rig = LayerRig(
        layer,
        (case["C"], case["H"], case["W"]),
        channels_last=case["channels_last"],
        dtype=dtype,
        seed=case["seed"],
    )
    x = np.random.default_rng(case["seed"] + 1).normal(
        size=(case["B"], case["C"], case["H"], case["W"])
    )
    x_in = nhwc(x) if case["channels_last"] else x
    return rig, x, np.ascontiguousarray(x_in, dtype)


@SETTINGS
@given(conv_cases())
def test_conv_forward_matches_naive(case):
    rig, x, x_in = _conv_rig(case)
    y = nchw(rig.forward(x_in))  # stored channels-last
    ref = naive.conv2d(x, rig.params["weight"], rig.params["bias"], case["stride"])
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(conv_cases())
def test_conv_backward_finite_differences(case):
    rig, _, x_in = _conv_rig(case)
    y = rig.forward(x_in)
    G = np.random.default_rng(case["seed"] + 2).normal(size=y.shape)
    dx = rig.backward(None, y, G)

    def loss():
        return float((rig.forward(x_in) * G).sum())

    for s in ("weight", "bias"):
        num = numerical_grad(loss, rig.params[s])
        assert rel_error(rig.grads[s].ravel(), num) < TOL, s
    assert rel_error(dx.ravel(), numerical_grad(loss, x_in)) < TOL


def test_conv_float32_matches_float64():
    case = dict(B=2, C=4, O=16, H=84, W=84, kh=8, kw=8, stride=4, channels_last=False, seed=3)
    r64, _, x64 = _conv_rig(case)
    r32, _, x32 = _conv_rig(case, np.float32)
    np.testing.assert_allclose(r32.forward(x32), r64.forward(x64), rtol=1e-4, atol=1e-4)


@SETTINGS
@given(
    st.integers(1, 9),  # batch: both sides of Dense.SMALL_BATCH
    st.integers(1, 40),
    st.integers(1, 20),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_dense_forward_backward(B, n_in, n_out, relu, seed):
    layer = Dense("fc", n_out)
    layer.relu = relu  # the fused ReLU (the separate ReLU layer then does the backward)
    rig = LayerRig(layer, (n_in,), seed=seed)
    x = np.random.default_rng(seed + 1).normal(size=(B, n_in))
    y = rig.forward(x)
    ref = naive.dense(x, rig.params["weight"], rig.params["bias"])
    np.testing.assert_allclose(y, naive.relu(ref) if relu else ref, rtol=1e-12, atol=1e-12)
    if relu:
        return
    G = np.random.default_rng(seed + 2).normal(size=y.shape)
    dx = rig.backward(x, y, G)

    def loss():
        return float((rig.forward(x) * G).sum())

    for s in ("weight", "bias"):
        assert rel_error(rig.grads[s].ravel(), numerical_grad(loss, rig.params[s])) < TOL
    assert rel_error(dx.ravel(), numerical_grad(loss, x)) < TOL


def test_relu_forward_backward():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 7))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink for finite differences
    rig = LayerRig(ReLU("r"), (7,))
    y = rig.forward(x.copy())
    np.testing.assert_array_equal(y, naive.relu(x))
    G = rng.normal(size=y.shape)
    dx = rig.backward(None, y, G)
    assert rel_error(dx.ravel(), numerical_grad(lambda: float((naive.relu(x) * G).sum()), x)) < TOL
    np.testing.assert_array_equal(dx, G * (x > 0))


def test_relu_in_place():
    x = np.array([[-1.0, 2.0, 0.0, -3.0]])
    y = x  # the network hands a ReLU the same buffer twice
    ReLU("r").forward(x, y, 0)
    np.testing.assert_array_equal(x, [[0.0, 2.0, 0.0, 0.0]])


@pytest.mark.parametrize("channels_last", [False, True])
def test_flatten_matches_torch_order_and_is_adjoint(channels_last):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4, 5))
    rig = LayerRig(Flatten("f"), (3, 4, 5), channels_last=channels_last)
    x_in = nhwc(x) if channels_last else x
    y = rig.forward(x_in)
    np.testing.assert_array_equal(y, naive.flatten(x))
    G = rng.normal(size=y.shape)
    dx = rig.backward(None, y, G)
    assert np.isclose((y * G).sum(), (x_in * dx).sum())  # <Fx, g> = <x, F^T g>


@pytest.mark.parametrize("M,P,Q", [(1, 1, 1), (5, 256, 2592), (7, 3, 5), (405, 32, 256)])
def test_gemm_tn_acc_accumulates(M, P, Q):
    rng = np.random.default_rng(M)
    A, B = rng.normal(size=(M, P)), rng.normal(size=(M, Q))
    C0 = rng.normal(size=(P, Q))
    C = C0.copy()
    kernels.gemm_tn_acc(A, B, C)
    np.testing.assert_allclose(C, C0 + A.T @ B, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("channels_last", [False, True])
def test_im2col_col2im_adjoint(channels_last):
    rng = np.random.default_rng(2)
    B, C, H, W, kh, kw, s = 2, 3, 9, 8, 3, 2, 2
    P = ((H - kh) // s + 1) * ((W - kw) // s + 1)
    x = rng.normal(size=(B, H, W, C) if channels_last else (B, C, H, W))
    cols = np.zeros((B, P, C * kh * kw))
    (kernels.im2col_nhwc if channels_last else kernels.im2col_nchw)(x, kh, kw, s, cols)
    g = rng.normal(size=cols.shape)
    dx = np.full_like(x, np.nan)
    (kernels.col2im_nhwc if channels_last else kernels.col2im_nchw)(g, kh, kw, s, dx)
    assert np.isclose((cols * g).sum(), (x * dx).sum())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("M,P,Q", [(1, 1, 1), (5, 256, 2592), (3, 7, 5), (6, 9, 33), (4, 2, 17)])
def test_gemm_tn_acc_small_accumulates(M, P, Q, dtype):
    rng = np.random.default_rng(M * P)
    A, B = rng.normal(size=(M, P)), rng.normal(size=(M, Q))
    C0 = rng.normal(size=(P, Q))
    C = C0.astype(dtype)
    kernels.gemm_tn_acc_small(A.astype(dtype), B.astype(dtype), C)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(C, C0 + A.T @ B, rtol=tol, atol=tol * np.sqrt(M))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("M,P,Q", [(1, 1, 1), (5, 256, 2592), (3, 7, 5), (6, 9, 1030), (2, 4, 513)])
def test_gemm_nn_small_overwrites(M, P, Q, dtype):
    rng = np.random.default_rng(P)
    A, B = rng.normal(size=(M, P)), rng.normal(size=(P, Q))
    C = np.full((M, Q), np.nan, dtype)
    kernels.gemm_nn_small(A.astype(dtype), B.astype(dtype), C)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(C, A @ B, rtol=tol, atol=tol * np.sqrt(P))


@pytest.mark.parametrize(
    "kh,kw,stride,H,W", [(8, 8, 4, 20, 23), (4, 6, 2, 9, 10), (6, 3, 3, 12, 7), (2, 2, 2, 5, 5)]
)
def test_conv_space_to_depth_path(kh, kw, stride, H, W):
    """Channels-first input, kernel a multiple of the stride: the space-to-depth path
    (forward vs the reference, backward incl. dx vs finite differences, float64)."""
    case = dict(B=2, C=2, O=3, H=H, W=W, kh=kh, kw=kw, stride=stride, channels_last=False, seed=5)
    rig, x, x_in = _conv_rig(case)
    assert rig.layer.s2d
    y = rig.forward(x_in)
    ref = naive.conv2d(x, rig.params["weight"], rig.params["bias"], stride)
    np.testing.assert_allclose(nchw(y), ref, rtol=1e-12, atol=1e-12)
    G = np.random.default_rng(6).normal(size=y.shape)
    dx = rig.backward(None, y, G)

    def loss():
        return float((rig.forward(x_in) * G).sum())

    for s in ("weight", "bias"):
        assert rel_error(rig.grads[s].ravel(), numerical_grad(loss, rig.params[s])) < TOL, s
    assert rel_error(dx.ravel(), numerical_grad(loss, x_in)) < TOL


@pytest.mark.parametrize("nb", [(2, 2), (1, 3), (3, 2)])
def test_space_to_depth_kernels_are_adjoint(nb):
    rng = np.random.default_rng(7)
    B, C, s, n_out = 2, 3, 2, 5
    nbh, nbw = nb
    OH, OW = 4, 3
    Hs, Ws = OH + nbh - 1, OW + nbw - 1
    x = rng.normal(size=(B, C, Hs * s + 1, Ws * s + 1))  # a last row/column no block covers
    S = np.zeros((B, Hs, Ws, C * s * s))
    kernels.space_to_depth_nchw(x, s, S)
    gS = rng.normal(size=S.shape)
    dx = np.full_like(x, np.nan)
    kernels.depth_to_space_nchw(gS, s, dx)
    assert np.isclose((S * gS).sum(), (x * dx).sum())
    Z = rng.normal(size=(B, Hs * Ws, nbh * nbw * n_out))
    y = np.zeros((B, OH, OW, n_out))
    kernels.blocks_gather(Z, Ws, nbh, nbw, np.zeros(n_out), False, y)
    gy = rng.normal(size=y.shape)
    dZ = np.full_like(Z, np.nan)
    kernels.blocks_scatter(gy, Ws, nbh, nbw, dZ)
    assert np.isclose((y * gy).sum(), (Z * dZ).sum())
    W = rng.normal(size=(n_out, C, nbh * s, nbw * s))
    Wall = np.zeros((C * s * s, nbh * nbw * n_out))
    kernels.weight_to_blocks(W, s, Wall)
    gW = rng.normal(size=Wall.shape)
    dW = np.zeros_like(W)
    kernels.add_blocks_to_weight(gW, s, dW)
    assert np.isclose((Wall * gW).sum(), (W * dW).sum())


def test_network_forward_plans_follow_bind_and_rows():
    """Network.forward reuses per-(row, batch) views: results must follow bind() (params
    read at call time) and land in the requested cache rows."""
    from nbasync.nn import atari_network

    net = atari_network(3, in_channels=2, max_batch=4, dtype=np.float64)
    net.init_params(0)
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 2, 84, 84))
    first = net.forward(x, row=1).copy()
    np.testing.assert_allclose(first, naive.network_forward(net, x), rtol=1e-10, atol=1e-12)
    params = rng.normal(scale=0.05, size=net.n_params)
    net.bind(params)
    again = net.forward(x, row=1)
    np.testing.assert_allclose(again, naive.network_forward(net, x), rtol=1e-10, atol=1e-12)
    assert not np.allclose(again, first)
    one = net.forward(x[1:], row=3).copy()
    np.testing.assert_allclose(one, again[1:], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        net.forward(x, row=3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_weight_reorders_follow_every_change_of_w(dtype):
    """Conv layers keep their reordered weights (Wall, Wk) across forwards and redo them only
    when W's bits changed: any in-place change, a -0.0 for a 0.0, a rebind or a NaN must show
    in the next forward exactly as in a fresh network."""
    from nbasync.nn import atari_network

    def fresh_output(params, x):
        other = atari_network(3, in_channels=2, max_batch=2, dtype=dtype)
        other.bind(params.copy(), other.grads)
        return other.forward(x).copy()

    net = atari_network(3, in_channels=2, max_batch=2, dtype=dtype)
    net.init_params(0)
    x = np.random.default_rng(1).normal(size=(1, 2, 84, 84)).astype(dtype)
    np.testing.assert_array_equal(net.forward(x), fresh_output(net.params, x))
    for name in ("conv1.weight", "conv2.weight"):
        w = net.param(name)
        w[0, 0, 0, 0] += 1.0  # in place, through the named view
        np.testing.assert_array_equal(net.forward(x), fresh_output(net.params, x))
        w[1, 0, 0, 0] = np.nan  # (the ReLU may map it to 0: compare, do not look for NaN)
        np.testing.assert_array_equal(net.forward(x), fresh_output(net.params, x))
        assert np.isnan(net.layers[0 if name == "conv1.weight" else 2].W_seen).any()
        w[1, 0, 0, 0] = 0.0
        np.testing.assert_array_equal(net.forward(x), fresh_output(net.params, x))
    net.param("conv2.weight")[:] = 0.0
    out_zero = net.forward(x).copy()
    net.param("conv2.weight")[:] = -0.0  # same values, other bits: redone all the same
    np.testing.assert_array_equal(net.forward(x), out_zero)
    assert np.signbit(net.layers[2].W_seen).all()
    other = np.zeros_like(net.params)
    other[:] = net.params
    other[: net.param("conv1.weight").size] *= 2.0
    net.bind(other, net.grads)  # a new buffer
    np.testing.assert_array_equal(net.forward(x), fresh_output(other, x))
