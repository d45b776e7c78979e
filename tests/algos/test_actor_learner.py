"""ActorLearner's bookkeeping: which episodes reach the log (and with what score), and the
guard that keeps a non-finite update away from the shared parameters."""

from __future__ import annotations

import queue

import gymnasium
import numpy as np
import pytest

from nbasync.algos.base import ActorLearner
from nbasync.envs import AtariEnv


def _learner1(make_learners, **settings) -> ActorLearner:
    return make_learners(**settings)[0]


def _logged(w: ActorLearner) -> list[tuple[float, int]]:
    """(return, length) of every episode event the learner sent."""
    out = []
    while True:
        try:
            event = w.events.get_nowait()
        except queue.Empty:
            return out
        out.append((event.ret, event.length))


# -- the episode log --------------------------------------------------------------------


class ScriptedEnv(gymnasium.Env):
    """Plays back (reward, terminated, truncated, game_over) rows; obs are zeros."""

    observation_space = gymnasium.spaces.Box(-1, 1, (4,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def __init__(self, rows):
        self.rows = list(rows)

    def reset(self, *, seed=None, options=None):
        return np.zeros(4, np.float32), {}

    def step(self, action):
        reward, terminated, truncated, game_over = self.rows.pop(0)
        info = {} if game_over is None else {"game_over": game_over}
        return np.zeros(4, np.float32), reward, terminated, truncated, info


def _play(w: ActorLearner) -> None:
    """The algorithms' loop in miniature: step until the script ends, reset after an end."""
    w.reset()
    while w.env.rows:
        _, _, terminated, truncated = w.step(0)
        if terminated or truncated:
            w.reset()


def test_every_ending_is_logged_once_with_the_whole_games_score(make_learners):
    w = make_learners()[0]
    w.env = ScriptedEnv(
        [
            (1.0, False, False, False),
            (2.0, True, False, False),  # life lost: terminal for learning, the game goes on
            (3.0, False, False, False),
            (4.0, True, False, True),  # game over: one episode, all lives, return 10
            (5.0, False, False, False),
            (6.0, False, True, False),  # Atari time limit: truncated, game_over is False
            (7.0, False, True, None),  # a gymnasium TimeLimit (no game_over key)
            (1.0, False, False, None),
            (8.0, True, False, None),  # a plain terminal state
        ]
    )
    _play(w)
    assert _logged(w) == [(10.0, 4), (11.0, 2), (7.0, 1), (9.0, 2)]
    assert w.episodes == 4


class RawRewards:
    """Passes an env through, keeping the raw rewards and step results it returned."""

    def __init__(self, env):
        self.env = env
        self.rewards: list[float] = []
        self.ends: list[tuple[bool, bool, bool]] = []  # (terminated, truncated, game_over)

    def reset(self, **kw):
        return self.env.reset(**kw)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.rewards.append(float(reward))
        if terminated or truncated:
            self.ends.append((terminated, truncated, info["game_over"]))
        return obs, reward, terminated, truncated, info


def _play_game(w: ActorLearner, env: RawRewards) -> None:
    """Random actions until the log has one episode (a whole game), resetting after every
    terminal as the algorithms do."""
    w.env = env
    w.reset()
    while not w.episodes:
        _, _, terminated, truncated = w.step(int(w.rng.integers(w.n_actions)))
        if terminated or truncated:
            w.reset()


def test_truncated_atari_game_is_logged(make_learners):
    w = _learner1(make_learners, env="ALE/Pong-v5", network="atari")
    env = RawRewards(AtariEnv("pong", seed=3, max_episode_frames=400))  # 400 frames
    _play_game(w, env)
    assert env.ends == [(False, True, False)]  # the time limit, not a game over
    assert _logged(w) == [(sum(env.rewards), len(env.rewards))]
    assert 90 <= len(env.rewards) <= 100  # 400 frames = 100 steps, less the no-op start
    assert w.episode_return == 0.0 and w.episode_length == 0  # the next game starts afresh


def test_life_loss_as_terminal_logs_the_whole_game(make_learners):
    w = _learner1(
        make_learners, env="ALE/Breakout-v5", network="atari", terminal_on_life_loss=True, seed=3
    )  # a seed whose random play scores
    env = RawRewards(w.env)
    _play_game(w, env)
    life_losses = [end for end in env.ends if not end[2]]
    assert len(life_losses) == 4 and env.ends[-1] == (True, False, True)  # 5 lives
    # raw scores (Breakout's bricks are worth 1, 4 or 7; learning sees them clipped to 1)
    assert _logged(w) == [(sum(env.rewards), len(env.rewards))]
    assert sum(env.rewards) > 0


# -- non-finite updates -------------------------------------------------------------------


@pytest.mark.parametrize("grad_clip", [0.0, 40.0])
def test_non_finite_gradient_is_skipped_counted_and_never_applied(make_learners, grad_clip):
    w = _learner1(make_learners, grad_clip=grad_clip)
    state = w.state
    obs = w.reset()
    for t in range(2):
        w.act_forward(t, obs)
    before = (state.params.copy(), state.opt_stats.copy())

    w.dout[:2] = 0.5
    w.dout[1, 0] = np.nan
    assert w.apply_gradients(2) is False
    np.testing.assert_array_equal(state.params, before[0])
    np.testing.assert_array_equal(state.opt_stats, before[1])
    assert state.skipped_updates(0) == (1, 1)

    w.dout[:2] = np.inf
    assert w.apply_gradients(2) is False
    assert state.skipped_updates(0) == (2, 2)
    np.testing.assert_array_equal(state.params, before[0])

    w.dout[:2] = 0.5
    assert w.apply_gradients(2) is True
    assert not np.array_equal(state.params, before[0])
    assert np.isfinite(state.params).all() and np.isfinite(state.opt_stats).all()
    assert state.skipped_updates(0) == (2, 0)  # the run of skips is over; the total stays


def test_unclipped_gradient_whose_square_overflows_is_skipped(make_learners):
    w = _learner1(make_learners, grad_clip=0.0)
    obs = w.reset()
    w.act_forward(0, obs)
    before = w.state.params.copy()
    w.dout[:1] = 1e30  # finite in float32, but d^2 would make RMSProp's g inf
    assert w.apply_gradients(1) is False
    np.testing.assert_array_equal(w.state.params, before)
    assert np.isfinite(w.state.opt_stats).all()
