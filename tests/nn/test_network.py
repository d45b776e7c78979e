"""Network: layout, bind, init, forward vs reference, backward by finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from nbasync.nn import (
    Conv2d,
    Dense,
    Flatten,
    Network,
    ReLU,
    atari_network,
    gradcheck,
    mlp_network,
)

from . import naive

TOL = 1e-6  # per parameter entry, float64 central differences (eps = 1e-5)
# The input gradient of a conv net has entries ~1e-5 of its typical size (sums of terms of
# both signs), where 1 ulp of L over 2*eps (~1e-11) is already a relative error of 1e-6:
# per-entry input errors are held to INPUT_TOL and the input gradient as a whole is checked
# along random directions at DIRECTIONAL_TOL (test_input_gradient_directional).
INPUT_TOL = 1e-4
DIRECTIONAL_TOL = 1e-8


def _linear_loss(n_out, seed=0):
    G = np.random.default_rng(seed).normal(size=(1, n_out))

    def loss_fn(out):
        g = np.broadcast_to(G, out.shape).copy()
        return float((out * g).sum()), g

    return loss_fn


def _small_conv_net(seed, dtype=np.float64, max_batch=4):
    rng = np.random.default_rng(seed)
    C = int(rng.integers(1, 4))
    k1, s1 = int(rng.integers(2, 5)), int(rng.integers(1, 3))
    k2, s2 = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    H = int(rng.integers(k1 + k2 * s1 + 1, 14))
    W = int(rng.integers(k1 + k2 * s1 + 1, 14))
    layers = [
        Conv2d("conv1", int(rng.integers(1, 5)), k1, stride=s1),
        ReLU("relu1"),
        Conv2d("conv2", int(rng.integers(1, 5)), (k2, k2 + 1), stride=s2),
        ReLU("relu2"),
        Flatten("flatten"),
        Dense("fc1", int(rng.integers(2, 9))),
        ReLU("relu3"),
        Dense("head", int(rng.integers(1, 5))),
    ]
    return Network(layers, (C, H, W), max_batch=max_batch, dtype=dtype)


def test_atari_layout_matches_paper():
    net = atari_network(6)
    assert net.input_shape == (4, 84, 84) and net.n_outputs == 6
    assert net.max_batch == 8 and net.dtype == np.float32
    shapes = {name: shape for name, _, shape in net.layout}
    assert shapes == {
        "conv1.weight": (16, 4, 8, 8),
        "conv1.bias": (16,),
        "conv2.weight": (32, 16, 4, 4),
        "conv2.bias": (32,),
        "fc1.weight": (256, 2592),
        "fc1.bias": (256,),
        "head.weight": (6, 256),
        "head.bias": (6,),
    }
    assert net.param_names == [name for name, _, _ in net.layout]
    assert net.n_params == sum(int(np.prod(s)) for s in shapes.values())
    offsets = [off for _, off, _ in net.layout]
    assert offsets[0] == 0 and offsets == sorted(offsets)


def test_mlp_layout():
    net = mlp_network(4, 3, hidden=(64, 32), max_batch=5, dtype=np.float64)
    assert net.param_names == [
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "head.weight", "head.bias"
    ]  # fmt: skip
    assert net.param("fc2.weight").shape == (32, 64)
    assert net.n_params == 4 * 64 + 64 + 64 * 32 + 32 + 32 * 3 + 3
    assert net.params.shape == net.grads.shape == (net.n_params,)


@pytest.mark.parametrize("seed", range(4))
def test_forward_matches_naive(seed):
    net = _small_conv_net(seed)
    net.init_params(seed)
    x = np.random.default_rng(seed).normal(size=(3, *net.input_shape))
    np.testing.assert_allclose(net.forward(x), naive.network_forward(net, x), rtol=1e-10)


def test_atari_forward_matches_naive_and_float32():
    net64 = atari_network(5, dtype=np.float64)
    net32 = atari_network(5, dtype=np.float32)
    net64.init_params(7)
    net32.init_params(7)
    x = np.random.default_rng(0).random((2, 4, 84, 84))
    out64 = net64.forward(x)
    np.testing.assert_allclose(out64, naive.network_forward(net64, x), rtol=1e-9, atol=1e-12)
    out32 = net32.forward(x.astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_conv_network_gradcheck(seed):
    net = _small_conv_net(seed)
    net.init_params(seed)
    x = np.random.default_rng(seed + 100).normal(size=(3, *net.input_shape))
    errors = gradcheck(net, _linear_loss(net.n_outputs, seed), x, input_grad=True)
    assert set(errors) == {*net.param_names, "input"}
    assert errors.pop("input") < INPUT_TOL
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("seed", range(6))
def test_input_gradient_directional(seed):
    net = _small_conv_net(seed)
    net.init_params(seed)
    rng = np.random.default_rng(seed + 200)
    x = rng.normal(size=(3, *net.input_shape))
    loss_fn = _linear_loss(net.n_outputs, seed)
    _, dout = loss_fn(net.forward(x).copy())
    net.zero_grad()
    dx = net.backward(dout, 3, input_grad=True).copy()
    for _ in range(3):
        v = rng.normal(size=x.shape)
        eps = 1e-5
        lp = loss_fn(net.forward(x + eps * v).copy())[0]
        lm = loss_fn(net.forward(x - eps * v).copy())[0]
        num = (lp - lm) / (2 * eps)
        ana = float((dx * v).sum())
        assert abs(num - ana) / max(1e-8, abs(num) + abs(ana)) < DIRECTIONAL_TOL


@pytest.mark.parametrize("seed", range(6))
def test_mlp_gradcheck(seed):
    rng = np.random.default_rng(seed)
    hidden = tuple(int(h) for h in rng.integers(1, 12, size=int(rng.integers(0, 4))))
    net = mlp_network(int(rng.integers(1, 9)), int(rng.integers(1, 6)), hidden=hidden,
                      max_batch=6, dtype=np.float64)  # fmt: skip
    net.init_params(seed)
    x = rng.normal(size=(int(rng.integers(1, 7)), *net.input_shape))
    errors = gradcheck(net, _linear_loss(net.n_outputs, seed), x, input_grad=True)
    assert errors.pop("input") < INPUT_TOL
    assert max(errors.values()) < TOL, errors


def test_atari_gradcheck_sampled():
    net = atari_network(4, max_batch=2, dtype=np.float64)
    net.init_params(0)
    x = np.random.default_rng(1).random((2, 4, 84, 84))
    # ~16,000 ReLU units: a conv bias step of 1e-5 or 1e-6 moves every unit of a channel and
    # crosses a kink somewhere (seen here: conv1.bias[4] off by 1e-2 at eps=1e-5, 5e-3 at
    # 1e-6, right at 1e-7). The loss is linear between kinks, so a small step costs only
    # roundoff (~1e-8 relative here).
    errors = gradcheck(net, _linear_loss(4), x, eps=1e-7, max_entries=12)
    assert max(errors.values()) < TOL, errors


def test_rows_then_one_backward_equals_batch():
    """The acting loop: forward one row per step, then one backward over all rows."""
    net = _small_conv_net(3, max_batch=5)
    net.init_params(1)
    x = np.random.default_rng(2).normal(size=(5, *net.input_shape))
    dout = np.random.default_rng(3).normal(size=(5, net.n_outputs))
    outs = np.stack([net.forward(x[t][None], row=t)[0].copy() for t in range(5)])
    net.backward(dout, 5)
    g_rows = net.grads.copy()
    net.zero_grad()
    np.testing.assert_allclose(net.forward(x), outs, rtol=1e-12)
    net.backward(dout, 5)
    np.testing.assert_allclose(net.grads, g_rows, rtol=1e-12, atol=1e-14)


def test_backward_accumulates_and_zero_grad():
    net = mlp_network(3, 2, hidden=(5,), max_batch=4, dtype=np.float64)
    net.init_params(0)
    x = np.random.default_rng(0).normal(size=(4, 3))
    dout = np.ones((4, 2))
    net.forward(x)
    net.backward(dout, 4)
    once = net.grads.copy()
    assert np.abs(once).sum() > 0
    net.backward(dout, 4)
    np.testing.assert_allclose(net.grads, 2 * once)
    net.backward(dout[:2], 2)  # a shorter rollout adds rows [0, 2) only
    net.zero_grad()
    assert not net.grads.any()


def test_bind_shares_memory_without_copy():
    net = atari_network(3, max_batch=2)
    params = np.zeros(net.n_params, np.float32)  # e.g. a view of shared memory
    grads = np.zeros(net.n_params, np.float32)
    old_grads = net.grads
    net.bind(params)
    assert net.params is params and net.grads is old_grads
    net.bind(params, grads)
    assert net.grads is grads
    for name, _, shape in net.layout:
        assert np.shares_memory(net.param(name), params)
        assert np.shares_memory(net.grad(name), grads)
        assert net.param(name).shape == shape
    net.init_params(0)  # writes through to the external buffer
    assert params.any()
    _, offset, shape = net.layout[4]  # fc1.weight
    assert params[offset] == net.param("fc1.weight")[0, 0]
    params[offset] = 42.0
    assert net.param("fc1.weight")[0, 0] == 42.0
    x = np.random.default_rng(0).random((1, 4, 84, 84), dtype=np.float32)
    net.forward(x)
    net.backward(np.ones((1, 3), np.float32), 1)
    assert grads.any() and not old_grads.any()


@pytest.mark.parametrize(
    "bad",
    [np.zeros(10, np.float32), np.zeros(0, np.float32), "float64", "strided"],
)
def test_bind_rejects_bad_buffers(bad):
    net = mlp_network(2, 2, hidden=(3,))
    if isinstance(bad, str) and bad == "float64":
        bad = np.zeros(net.n_params, np.float64)
    elif isinstance(bad, str):
        bad = np.zeros(2 * net.n_params, np.float32)[::2]
    with pytest.raises(ValueError):
        net.bind(bad)


def test_init_deterministic_and_pytorch_bounds():
    a, b, c = (atari_network(6) for _ in range(3))
    a.init_params(5)
    b.init_params(5)
    c.init_params(6)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)
    d = atari_network(6, dtype=np.float64)
    d.init_params(5)
    np.testing.assert_allclose(d.params, a.params, rtol=1e-7)
    fan_in = {"conv1": 4 * 64, "conv2": 16 * 16, "fc1": 2592, "head": 256}
    for name, _, _ in a.layout:
        bound = 1 / np.sqrt(fan_in[name.split(".")[0]])
        p = d.param(name)
        assert np.abs(p).max() <= bound
        if p.size > 1000:  # uniform over the whole range
            assert np.abs(p).max() > 0.95 * bound
            assert abs(p.std() - bound / np.sqrt(3)) < 0.05 * bound


def test_forward_casts_input_and_returns_cache_view():
    net = atari_network(3, max_batch=4)
    net.init_params(0)
    frames = np.random.default_rng(0).integers(0, 255, size=(2, 4, 84, 84), dtype=np.uint8)
    out = net.forward(frames, row=1)
    assert out.shape == (2, 3) and out.dtype == np.float32
    expected = net.forward(frames.astype(np.float32), row=2).copy()
    np.testing.assert_allclose(out, net.forward(frames, row=1), rtol=1e-6)
    np.testing.assert_allclose(net.forward(frames, row=1), expected, rtol=1e-6)


def test_forward_backward_argument_checks():
    net = mlp_network(3, 2, max_batch=4)
    with pytest.raises(ValueError):
        net.forward(np.zeros((3, 3), np.float32), row=2)  # rows [2, 5) > max_batch
    with pytest.raises(ValueError):
        net.forward(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError):
        net.backward(np.zeros((5, 2), np.float32), 5)
    with pytest.raises(ValueError):
        net.backward(np.zeros((2, 3), np.float32), 2)
    with pytest.raises(ValueError):
        Network([Conv2d("c", 2, 3)], (1, 5, 5))  # output not flat
