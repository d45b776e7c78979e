"""Action repeat for any gymnasium environment: one agent step = k environment steps.

Owns :class:`ActionRepeat`. Atari has its own frame skip (``AtariEnv(frame_skip=4)``); this
is the same idea for everything else (``--env-kwargs action_repeat=4``), e.g. CarRacing-v3,
whose 1,000-frame episodes make credit assignment long and whose steps change little
frame to frame. The agent acts, learns and counts steps at the repeated rate; the
environment's own frames per agent step are ``describe(env).frames_per_step``.
"""

from __future__ import annotations

import gymnasium

from .errors import EnvError

__all__ = ["ActionRepeat", "check_action_repeat"]


def check_action_repeat(value: object) -> int:
    """The repeat count as an int >= 1; EnvError (one line) otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EnvError(f"action_repeat must be a whole number >= 1, got {value!r}")
    return int(value)


class ActionRepeat(gymnasium.Wrapper):
    """Repeat each action ``repeat`` times; the rewards are summed, the last observation and
    info returned. Stops early when the episode ends (terminated or truncated), so no step
    runs past an episode's end."""

    def __init__(self, env: gymnasium.Env, repeat: int):
        super().__init__(env)
        self.repeat = check_action_repeat(repeat)

    def step(self, action):
        total = 0.0
        for _ in range(self.repeat):
            observation, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return observation, total, terminated, truncated, info
