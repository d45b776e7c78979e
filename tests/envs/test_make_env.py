"""make_env routing, the vector adapter, masked velocities, space helpers and error messages."""

import gymnasium
import numpy as np
import pytest

from nbasync.envs import (
    AtariEnv,
    EnvError,
    MaskVelocityWrapper,
    describe,
    is_atari_id,
    make_env,
    require_discrete,
)


def test_unknown_id_names_it_on_one_line():
    with pytest.raises(EnvError) as e:
        make_env("NoSuchEnv-v9", 0)
    assert "'NoSuchEnv-v9'" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(EnvError, match="did you mean 'CartPole-v1'"):
        make_env("CartPole-v2", 0)
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("env_id", ["ALE/Pong-v5", "PongNoFrameskip-v4", "ALE/Breakout-v5"])
def test_atari_ids_route_to_atarienv(env_id):
    assert is_atari_id(env_id)
    env = make_env(env_id, 1)
    assert isinstance(env, AtariEnv)
    assert env.repeat_action_probability == 0.0 and env.frame_skip == 4
    info = require_discrete(env)
    assert info.is_atari and info.obs_shape == (4, 84, 84) and info.frames_per_step == 4


def test_atari_options_and_errors():
    env = make_env("ALE/Breakout-v5", 0, terminal_on_life_loss=True, noop_max=0)
    assert env.terminal_on_life_loss and env.noop_max == 0
    with pytest.raises(EnvError, match="bogus"):
        make_env("ALE/Pong-v5", 0, bogus=1)
    gymnasium.register(
        id="nbasync_test/PongRam-v5",
        entry_point="ale_py.env:AtariEnv",
        kwargs={"game": "pong", "obs_type": "ram"},
    )
    try:
        with pytest.raises(EnvError, match="RAM"):
            make_env("nbasync_test/PongRam-v5", 0)
    finally:
        del gymnasium.registry["nbasync_test/PongRam-v5"]
    a, b = make_env("ALE/Pong-v5", 3), make_env("ALE/Pong-v5", 3)
    np.testing.assert_array_equal(a.reset()[0], b.reset()[0])


def test_cartpole_float32_obs_and_seeded():
    env = make_env("CartPole-v1", 4)
    obs, _ = env.reset()
    assert obs.dtype == np.float32 and obs.shape == (4,)
    assert env.observation_space.dtype == np.float32 and env.observation_space.contains(obs)
    obs2, r, te, tr, _ = env.step(0)
    assert obs2.dtype == np.float32 and isinstance(te, bool)
    np.testing.assert_array_equal(obs, make_env("CartPole-v1", 4).reset()[0])
    assert not np.array_equal(obs, make_env("CartPole-v1", 5).reset()[0])
    info = require_discrete(env)
    assert info.n_actions == 2 and info.obs_shape == (4,) and info.obs_dim == 4
    assert not info.is_atari and info.frames_per_step == 1
    assert info.action_low is None and info.action_high is None


def test_continuous_actions():
    env = make_env("Pendulum-v1", 0)
    info = describe(env)
    assert not info.discrete and info.n_actions is None
    assert info.action_low.dtype == np.float32 and float(info.action_high[0]) == 2.0
    with pytest.raises(EnvError, match="discrete"):
        require_discrete(env)


def test_masked_velocity_cartpole():
    base = make_env("CartPole-v1", 2)
    env = make_env("nbasync/CartPoleNoVel-v1", 2)
    full, _ = base.reset()
    obs, _ = env.reset()
    assert obs.shape == (2,) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs, full[[0, 2]])
    for _ in range(5):
        full, *_ = base.step(1)
        obs, *_ = env.step(1)
        np.testing.assert_array_equal(obs, full[[0, 2]])
    assert describe(make_env("CartPole-v1", 0, mask_velocity=True)).obs_shape == (2,)
    zeroed = MaskVelocityWrapper(gymnasium.make("CartPole-v1"), mode="zero")
    o, _ = zeroed.reset(seed=0)
    assert o.shape == (4,) and o[1] == 0 and o[3] == 0
    assert gymnasium.make("nbasync/CartPoleNoVel-v1").observation_space.shape == (2,)
    with pytest.raises(EnvError, match="velocity"):
        MaskVelocityWrapper(gymnasium.make("Acrobot-v1"))


class _ImageEnv(gymnasium.Env):
    observation_space = gymnasium.spaces.Box(0, 255, (8, 8, 3), np.uint8)
    action_space = gymnasium.spaces.Discrete(2)


class _FloatImageEnv(_ImageEnv):
    observation_space = gymnasium.spaces.Box(0, 1, (8, 8, 3), np.float32)


def test_image_obs_are_wrapped_and_other_shapes_are_a_clear_error():
    gymnasium.register(id="nbasync_test/Image-v0", entry_point=_ImageEnv)
    gymnasium.register(id="nbasync_test/FloatImage-v0", entry_point=_FloatImageEnv)
    try:
        env = make_env("nbasync_test/Image-v0", 0)
        assert env.observation_space.shape == (3, 8, 8)  # channels first (ImageObs)
        with pytest.raises(EnvError, match="1-D vectors and uint8 images"):
            make_env("nbasync_test/FloatImage-v0", 0)
    finally:
        del gymnasium.registry["nbasync_test/Image-v0"]
        del gymnasium.registry["nbasync_test/FloatImage-v0"]


def test_bad_gym_kwargs_become_enverror():
    with pytest.raises(EnvError, match="cannot make 'CartPole-v1'"):
        make_env("CartPole-v1", 0, no_such_kwarg=3)


def test_action_repeat_holds_each_action_and_sums_the_rewards():
    """One repeated step = k plain steps (same observation, summed reward); the repeat stops
    at the episode's end, so a repeated episode takes exactly the plain episode's steps."""
    plain = make_env("CartPole-v1", 3)
    repeated = make_env("CartPole-v1", 3, action_repeat=3)
    assert describe(repeated).frames_per_step == 3 and describe(plain).frames_per_step == 1
    plain.reset()
    repeated.reset()
    plain_total = repeated_total = 0.0
    plain_steps = 0
    done = False
    while not done:
        obs_r, reward_r, term_r, trunc_r, _ = repeated.step(1)
        for _ in range(3):
            obs_p, reward_p, term_p, trunc_p, _ = plain.step(1)
            plain_total += reward_p
            plain_steps += 1
            if term_p or trunc_p:
                break
        repeated_total += reward_r
        np.testing.assert_array_equal(obs_r, obs_p)
        assert (term_r, trunc_r) == (term_p, trunc_p)
        done = term_r or trunc_r
    assert repeated_total == plain_total == plain_steps  # CartPole: +1 per step


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_action_repeat_rejects_what_is_not_a_count(bad):
    with pytest.raises(EnvError, match="action_repeat must be a whole number >= 1"):
        make_env("CartPole-v1", 0, action_repeat=bad)


class _PedalCar(gymnasium.Env):
    """CarRacing's continuous action space, recording the actions it is given (no box2d)."""

    observation_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gymnasium.spaces.Box(
        np.array([-1, 0, 0], np.float32), np.array([1, 1, 1], np.float32)
    )

    def __init__(self):
        self.given = []

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.given.append(np.array(action))
        return np.zeros(2, np.float32), 0.0, False, False, {}


def test_one_pedal_maps_one_axis_to_gas_or_brake_never_both():
    from nbasync.envs import OnePedal

    car = _PedalCar()
    env = OnePedal(car)
    assert env.action_space.shape == (2,) and env.action_space.low.tolist() == [-1, -1]
    for action in ([0.3, 0.5], [-2.0, -0.7], [1.5, 3.0], [0.0, 0.0]):
        env.step(np.array(action, np.float32))
    np.testing.assert_allclose(
        np.array(car.given),
        [[0.3, 0.5, 0.0], [-1.0, 0.0, 0.7], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]],
        rtol=1e-6,
    )
    with pytest.raises(EnvError, match="one_pedal: needs CarRacing's continuous actions"):
        OnePedal(gymnasium.make("Pendulum-v1"))
