"""CarRacing's gas and brake as one pedal: continuous actions [steer, pedal] in [-1, 1]^2.

Owns :class:`OnePedal` (``--env-kwargs one_pedal=true`` on ``CarRacing-v3``). The
environment's continuous action is [steer, gas, brake] with gas and brake each in [0, 1],
both at once allowed. A Gaussian policy draws them independently, so about half its early
steps brake; in nbasync's first continuous run (docs/results/carracing.md) the brake's mean
settled at 0.6 with a variance of 0.001 while the gas's was 0.7: the car crawled, and the
run stayed below a random policy. One pedal makes pressing both impossible: pedal > 0 is
gas, pedal < 0 is brake, as a driver's right foot.
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces

from .errors import EnvError

__all__ = ["OnePedal"]


class OnePedal(gymnasium.ActionWrapper):
    """[steer, pedal] -> [steer, max(pedal, 0), max(-pedal, 0)] for CarRacing's 3-D Box."""

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        space = env.action_space
        if (
            not isinstance(space, spaces.Box)
            or space.shape != (3,)
            or not np.allclose(space.low, [-1, 0, 0])
            or not np.allclose(space.high, [1, 1, 1])
        ):
            raise EnvError(
                f"one_pedal: needs CarRacing's continuous actions [steer, gas, brake], got {space}"
            )
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._action = np.zeros(3, np.float32)

    def action(self, action):
        steer, pedal = float(action[0]), float(action[1])
        self._action[0] = min(1.0, max(-1.0, steer))
        self._action[1] = min(1.0, max(0.0, pedal))
        self._action[2] = min(1.0, max(0.0, -pedal))
        return self._action
