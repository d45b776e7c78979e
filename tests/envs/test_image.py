"""Any image environment: ImageObs (layouts, grey, resize, frame stack), make_env's routing
of gymnasium ids with image observations, and the conv net sized from the observation."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from nbasync.envs import EnvError, ImageObs, make_env
from nbasync.envs.atari import resize_area
from nbasync.envs.image import image_layout
from nbasync.nn import atari_network, reference

H, W = 40, 52


class Pictures(gymnasium.Env):
    """Frame t is a fixed random RGB picture plus t (mod 256); layout chosen at creation."""

    action_space = spaces.Discrete(2)

    def __init__(self, layout="hwc", render_mode=None):
        shape = {"hwc": (H, W, 3), "chw": (3, H, W), "hw": (H, W)}[layout]
        self.layout = layout
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.base = np.random.default_rng(0).integers(0, 200, shape, dtype=np.uint8)
        self.t = 0

    def frame(self, t):
        return (self.base + t).astype(np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.frame(0), {}

    def step(self, action):
        self.t += 1
        return self.frame(self.t), 1.0, False, self.t >= 20, {}


gymnasium.register("nbasync-test/Pictures-v0", entry_point=Pictures)


def as_chw(frame, layout):
    if layout == "hwc":
        return frame.transpose(2, 0, 1)
    return frame if layout == "chw" else frame[None]


@pytest.mark.parametrize("layout", ["hwc", "chw", "hw"])
def test_layouts_become_channels_first(layout):
    env = ImageObs(Pictures(layout))
    obs, _ = env.reset()
    C = 1 if layout == "hw" else 3
    assert obs.shape == (C, H, W) == env.observation_space.shape and obs.dtype == np.uint8
    np.testing.assert_array_equal(obs, as_chw(env.unwrapped.frame(0), layout))


def test_layout_detection():
    assert image_layout((210, 160, 3)) == "hwc"
    assert image_layout((3, 96, 96)) == "chw"
    assert image_layout((84, 84)) == "hw"
    assert image_layout((4, 84, 84)) == "chw"
    with pytest.raises(EnvError, match="not an image"):
        image_layout((7,))


def test_grey_resize_and_frame_stack():
    env = ImageObs(Pictures("hwc"), grey=True, size=21, frame_stack=3)
    base = env.unwrapped
    obs, _ = env.reset()
    assert obs.shape == (3, 21, 21)

    def expected(t):
        rgb = base.frame(t).astype(np.float64)
        grey = np.floor(rgb @ np.array([0.299, 0.587, 0.114]) + 0.5).astype(np.uint8)
        return resize_area(grey, (21, 21))

    for k in range(3):  # a new episode fills the stack with its first frame
        np.testing.assert_array_equal(obs[k], expected(0))
    obs, *_ = env.step(0)
    obs, *_ = env.step(0)
    # oldest first: frames 0, 1, 2
    for k in range(3):
        np.testing.assert_array_equal(obs[k], expected(k))
    obs, *_ = env.step(0)
    np.testing.assert_array_equal(obs[0], expected(1))
    np.testing.assert_array_equal(obs[2], expected(3))
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs[0], expected(0))


def test_make_env_routes_image_ids_and_refuses_other_shapes():
    env = make_env("nbasync-test/Pictures-v0", seed=1, image_size=30, frame_stack=2)
    assert isinstance(env, ImageObs) and env.observation_space.shape == (6, 30, 30)
    with pytest.raises(EnvError, match="need image observations"):
        make_env("CartPole-v1", seed=0, image_size=30)
    with pytest.raises(EnvError, match="grey needs RGB"):
        make_env("nbasync-test/Pictures-v0", seed=0, layout="hw", image_grey=True)


@pytest.mark.parametrize("hw", [(84, 84), (96, 96), (64, 80), (20, 20)])
def test_conv_net_is_sized_from_the_image(hw):
    net = atari_network(4, in_channels=3, max_batch=2, dtype=np.float64, input_size=hw)
    net.init_params(1)
    x = np.random.default_rng(0).standard_normal((2, 3, *hw))
    out = net.forward(x, row=0).copy()
    ref, caches = reference.network_forward(net, x)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    net.zero_grad()
    net.backward(dout, 2)
    _, grads = reference.network_backward(dout, caches)
    for name, g in grads.items():
        np.testing.assert_allclose(net.grad(name), g, rtol=1e-9, atol=1e-11, err_msg=name)
    with pytest.raises(ValueError, match="at least 20 x 20"):
        atari_network(4, input_size=(19, 40))


@pytest.mark.parametrize("algo", ["a3c", "nstep_q"])
def test_a_worker_learns_from_a_gymnasium_image_env(algo):
    """The worker loop (run in-process by train's warm-up) on a registered image id, routed
    through ImageObs into the conv net sized 30 x 30 from the observation. (A spawned worker
    would not see this test's registration; real ids are registered in every process.)"""
    from nbasync.algos import get_algorithm
    from nbasync.build import probe_env
    from nbasync.config import build_config
    from nbasync.train import warm_up

    config = build_config(
        {"algo": algo, "env": "nbasync-test/Pictures-v0", "network": "atari", "workers": 1}
    )
    spec = probe_env(config, continuous_ok=False)
    assert spec.obs_shape == (3, H, W)
    warm_up(config, get_algorithm(algo))  # raises on any shape or dtype mismatch along the way


def test_car_racing_from_pixels_when_installed():
    """The paper's TORCS analogue: gymnasium's CarRacing-v3 (box2d extra), 96 x 96 RGB,
    through ImageObs into the conv net, with A3C's Gaussian policy (its continuous form)."""
    pytest.importorskip(
        "Box2D", reason="CarRacing needs the box2d extra: pip install 'nbasync[box2d]'"
    )
    from nbasync.algos import get_algorithm
    from nbasync.build import probe_env
    from nbasync.config import build_config
    from nbasync.train import warm_up

    discrete = make_env("CarRacing-v3", seed=0, continuous=False)
    assert discrete.observation_space.shape == (3, 96, 96) and discrete.action_space.n == 5
    config = build_config({"algo": "a3c", "env": "CarRacing-v3", "workers": 1})
    spec = probe_env(config, continuous_ok=True)  # the racing preset: grey 84 x 84, 4 stacked
    assert spec.obs_shape == (4, 84, 84) and not spec.discrete and spec.frames_per_step == 4
    warm_up(config, get_algorithm("a3c"))  # a few real updates of the worker loop, in this process
    config = build_config({"algo": "a3c", "env": "CarRacing-v3", "env_kwargs": "one_pedal=true"})
    spec = probe_env(config, continuous_ok=True)
    assert spec.action_low.tolist() == [-1, -1] and spec.action_high.tolist() == [1, 1]
    with pytest.raises(EnvError, match="one_pedal: needs CarRacing's continuous actions"):
        make_env("CarRacing-v3", seed=0, continuous=False, one_pedal=True)
