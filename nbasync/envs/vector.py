"""Vector-observation adapters over gymnasium: float32 1-D observations, masked velocities.

Owns the light wrappers that make non-Atari gymnasium environments look the way the
algorithms expect: observations as contiguous float32 1-D arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium
import numpy as np
from gymnasium import spaces

from .errors import EnvError

__all__ = ["Float32Obs", "MaskVelocityWrapper", "SeededObservationWrapper", "VELOCITY_INDICES"]

# Positions of the velocity entries in the observation vector, per environment name.
VELOCITY_INDICES: dict[str, tuple[int, ...]] = {
    "CartPole": (1, 3),  # [x, x_dot, theta, theta_dot]
}


class SeededObservationWrapper(gymnasium.ObservationWrapper):
    """An observation wrapper whose first ``reset()`` without a seed uses the one given at
    construction (so ``make_env(id, seed)`` is reproducible); the action space is seeded."""

    def __init__(self, env: gymnasium.Env, seed: int | None = None):
        super().__init__(env)
        self._pending_seed = seed
        if seed is not None:
            self.action_space.seed(int(seed))

    def reset(self, *, seed=None, options=None):
        if seed is None and self._pending_seed is not None:
            seed = self._pending_seed
        self._pending_seed = None
        return super().reset(seed=seed, options=options)


class Float32Obs(SeededObservationWrapper):
    """Observations as contiguous float32 1-D arrays (Box obs of any rank is flattened).

    The first ``reset()`` without a seed uses ``seed`` (given at construction), so
    ``make_env(id, seed)`` is reproducible; the action space is seeded too.
    """

    def __init__(self, env: gymnasium.Env, seed: int | None = None):
        super().__init__(env, seed)
        space = env.observation_space
        if not isinstance(space, spaces.Box):
            raise EnvError(f"Float32Obs needs a Box observation space, got {space}")
        n = int(np.prod(space.shape))
        low = np.asarray(space.low, np.float32).reshape(n)
        high = np.asarray(space.high, np.float32).reshape(n)
        self.observation_space = spaces.Box(low, high, (n,), np.float32)

    def observation(self, observation):
        return np.ascontiguousarray(observation, dtype=np.float32).reshape(-1)


class MaskVelocityWrapper(gymnasium.ObservationWrapper):
    """Hide velocities: a partially observed task that needs memory (LSTM tests).

    ``mode="remove"`` (default) drops the velocity entries (CartPole obs becomes
    ``[x, theta]``); ``mode="zero"`` keeps the shape and writes zeros there.
    ``velocity_indices=None`` looks the environment's name up in :data:`VELOCITY_INDICES`.
    Output observations are float32 1-D.
    """

    def __init__(
        self,
        env: gymnasium.Env,
        velocity_indices: Sequence[int] | None = None,
        mode: str = "remove",
    ):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise EnvError(f"MaskVelocityWrapper needs a 1-D Box observation space, got {space}")
        if velocity_indices is None:
            name = env.spec.name if env.spec is not None else type(env.unwrapped).__name__
            if name not in VELOCITY_INDICES:
                raise EnvError(
                    f"no known velocity entries for {name!r}; pass velocity_indices "
                    f"(known: {', '.join(sorted(VELOCITY_INDICES))})"
                )
            velocity_indices = VELOCITY_INDICES[name]
        n = space.shape[0]
        vel = sorted({int(i) for i in velocity_indices})
        if any(i < 0 or i >= n for i in vel):
            raise EnvError(f"velocity_indices {vel} out of range for obs of size {n}")
        if mode not in ("remove", "zero"):
            raise EnvError(f"mode must be 'remove' or 'zero', got {mode!r}")
        self.mode = mode
        self.velocity_indices = tuple(vel)
        low = np.asarray(space.low, np.float32).copy()
        high = np.asarray(space.high, np.float32).copy()
        if mode == "remove":
            self._keep = np.array([i for i in range(n) if i not in vel], np.int64)
            low, high = low[self._keep], high[self._keep]
        else:
            self._zero = np.array(vel, np.int64)
            low[self._zero] = 0.0
            high[self._zero] = 0.0
        self.observation_space = spaces.Box(low, high, low.shape, np.float32)

    def observation(self, observation):
        obs = np.asarray(observation, dtype=np.float32)
        if self.mode == "remove":
            return obs[self._keep]
        obs = obs.copy()
        obs[self._zero] = 0.0
        return obs
