"""AtariEnv: agreement with gymnasium's wrappers and with the raw emulator, resets, seeding."""

import ale_py
import gymnasium
import numpy as np
import pytest

from nbasync.envs import AtariEnv, EnvError

gymnasium.register_envs(ale_py)


def gym_reference(noop_max: int):
    """gymnasium's DQN preprocessing over the frame-by-frame ALE env (needs OpenCV)."""
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    env = gymnasium.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0)
    env = AtariPreprocessing(env, noop_max=noop_max, frame_skip=4, screen_size=84)
    return FrameStackObservation(env, 4)


@pytest.mark.parametrize("noop_max", [0, 30])
def test_matches_gymnasium_preprocessing(noop_max):
    """Same seed and actions -> identical observations (tolerance 0), rewards, terminations.

    Intended difference: when the game ends inside the action repeat gymnasium returns the
    stale previous screen, we return the final one, so the terminal observation is skipped.
    """
    pytest.importorskip("cv2")
    ref = gym_reference(noop_max)
    env = AtariEnv("pong", noop_max=noop_max, max_episode_frames=None)
    o_ref, _ = ref.reset(seed=7)
    o, info = env.reset(seed=7)
    np.testing.assert_array_equal(o, o_ref)
    rng = np.random.default_rng(0)
    for _ in range(5000):
        a = int(rng.integers(env.action_space.n))
        o_ref, r_ref, te_ref, tr_ref, i_ref = ref.step(a)
        o, r, te, tr, info = env.step(a)
        assert (r, te, tr) == (r_ref, te_ref, tr_ref)
        assert info["lives"] == i_ref["lives"]
        if te:
            break
        np.testing.assert_array_equal(o, o_ref)
    assert te and info["game_over"]


def ale_like(game: str, seed: int) -> ale_py.ALEInterface:
    """A raw emulator seeded the way AtariEnv (and ale_py's AtariEnv) seed it."""
    _, ale_seed = np.random.SeedSequence(seed).generate_state(n_words=2)
    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.setInt("random_seed", np.int32(ale_seed))
    ale.loadROM(str(ale_py.roms.get_rom_path(game)))
    ale.reset_game()
    return ale


@pytest.mark.parametrize("game", ["pong", "breakout"])
def test_scores_lives_and_episode_end_agree_with_emulator(game):
    env = AtariEnv(game, seed=3, noop_max=0, max_episode_frames=None)
    ale = ale_like(game, 3)
    actions = ale.getMinimalActionSet()
    _, info = env.reset()
    assert info["lives"] == ale.lives()
    rng = np.random.default_rng(1)
    score = ref_score = 0.0
    frames = 0
    for _ in range(3000):
        a = int(rng.integers(env.action_space.n))
        _, r, te, tr, info = env.step(a)
        score += r
        for _ in range(4):
            ref_score += ale.act(actions[a])
            frames += 1
            if ale.game_over():
                break
        assert score == ref_score
        assert info["lives"] == ale.lives()
        assert info["episode_frame_number"] == frames == ale.getEpisodeFrameNumber()
        assert te == info["game_over"] == ale.game_over()
        assert not tr
        if te:
            break
    assert te  # both games end well inside 3000 random steps
    np.testing.assert_array_equal(env.ale.getScreenGrayscale(), ale.getScreenGrayscale())


def test_noop_starts():
    counts = set()
    for seed in range(8):
        env = AtariEnv("pong", seed=seed, noop_max=30)
        _, info = env.reset()
        assert 1 <= info["episode_frame_number"] <= 30
        counts.add(info["episode_frame_number"])
    assert len(counts) > 1
    _, info = AtariEnv("pong", seed=0, noop_max=0).reset()
    assert info["episode_frame_number"] == 0


def test_determinism_per_seed():
    def rollout(seed, reset_seed=None):
        env = AtariEnv("pong", seed=seed, repeat_action_probability=0.25)
        obs, _ = env.reset(seed=reset_seed)
        out, rng = [obs], np.random.default_rng(0)
        for _ in range(300):
            obs, r, te, tr, _ = env.step(int(rng.integers(6)))
            out.append(obs)
        return np.stack(out)

    a = rollout(5)
    np.testing.assert_array_equal(a, rollout(5))
    np.testing.assert_array_equal(a, rollout(99, reset_seed=5))
    assert not np.array_equal(a, rollout(6))


def test_terminal_on_life_loss_continues_game():
    env = AtariEnv("breakout", seed=0, terminal_on_life_loss=True, noop_max=0)
    obs, info = env.reset()
    lives0 = info["lives"]
    assert lives0 == 5
    rng = np.random.default_rng(0)
    episodes, last_frames = [], info["episode_frame_number"]
    for _ in range(50_000):
        obs, r, te, tr, info = env.step(int(rng.integers(env.action_space.n)))
        if te:
            episodes.append((info["lives"], info["game_over"]))
            if info["game_over"]:
                break
            frames_before = info["episode_frame_number"]
            obs, info = env.reset()
            # same game: no new frames, stack refilled with the newest frame
            assert info["episode_frame_number"] == frames_before > last_frames
            assert all(np.array_equal(obs[c], obs[3]) for c in range(3))
            last_frames = frames_before
    assert episodes == [(4, False), (3, False), (2, False), (1, False), (0, True)]
    _, info = env.reset()  # real game over -> new game
    assert info["lives"] == 5 and info["episode_frame_number"] == 0


def test_life_loss_full_reset_option():
    env = AtariEnv("breakout", seed=0, terminal_on_life_loss=True, noop_max=0)
    env.reset()
    rng = np.random.default_rng(0)
    while True:
        *_, te, _, info = env.step(int(rng.integers(4)))
        if te:
            break
    _, info = env.reset(options={"full_reset": True})
    assert info["lives"] == 5 and info["episode_frame_number"] == 0


def test_truncation_in_frames():
    env = AtariEnv("pong", seed=0, noop_max=0, max_episode_frames=40)
    env.reset()
    for t in range(10):
        _, _, te, tr, info = env.step(0)
        assert info["episode_frame_number"] == 4 * (t + 1)
    assert tr and not te
    with pytest.raises(RuntimeError):
        env.step(0)
    _, info = env.reset()
    assert info["episode_frame_number"] == 0


def test_spaces_and_obs():
    env = AtariEnv("Pong", seed=0)
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert env.action_space == gymnasium.spaces.Discrete(6)
    obs, _ = env.reset()
    assert obs.dtype == np.uint8 and obs.shape == (4, 84, 84) and obs.flags.c_contiguous
    assert env.observation_space.contains(obs)
    obs2, *_ = env.step(np.int64(1))
    assert obs2 is not obs and np.array_equal(obs2[:3], obs[1:])  # oldest -> newest
    assert AtariEnv("space_invaders", seed=0).action_space.n == 6
    assert AtariEnv("pong", seed=0, full_action_space=True).action_space.n == 18
    env.close()


def test_copy_obs_false_returns_internal_buffer():
    env = AtariEnv("pong", seed=0, copy_obs=False)
    o1, _ = env.reset()
    o2, *_ = env.step(0)
    assert o1 is o2


def test_errors():
    with pytest.raises(EnvError, match="nosuchgame"):
        AtariEnv("nosuchgame")
    env = AtariEnv("pong", seed=0)
    with pytest.raises(RuntimeError):
        env.step(0)
    env.reset()
    with pytest.raises(EnvError, match="Discrete"):
        env.step(6)
    with pytest.raises(EnvError, match="frame_skip"):
        AtariEnv("pong", frame_skip=0)
