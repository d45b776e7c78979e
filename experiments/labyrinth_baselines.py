"""Levels a Labyrinth learning curve is read against: random policies and a scripted one.

    python experiments/labyrinth_baselines.py [--episodes 30] [--seed 1000]

Plays ``nbasync/Labyrinth-v0`` with
- random policies that choose "forward" with probability p (the other five actions share
  the rest; p = 1/6 is the uniform random policy),
- a scripted explorer: forward, and after a step forward that left the view unchanged
  (a wall) 3-8 right turns; 5 % of its steps are a random turn.
Episode k resets with seed + k. Prints the mean and standard deviation of the returns. Not
part of the package: a results helper (docs/results/labyrinth.md).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from nbasync.envs import make_env

FORWARD, TURN_LEFT, TURN_RIGHT = 0, 4, 5


class BiasedRandom:
    """Forward with probability p, each other action with (1 - p) / 5."""

    def __init__(self, p_forward: float, rng: np.random.Generator):
        self.p = np.array([p_forward] + [(1.0 - p_forward) / 5] * 5)
        self.rng = rng

    def reset(self) -> None:
        pass

    def __call__(self, obs: np.ndarray) -> int:
        return int(self.rng.choice(6, p=self.p))


class WallBumpExplorer:
    """Forward; after a step forward that left the view unchanged (a wall), 3-8 right turns;
    5 % of its steps a random turn."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def reset(self) -> None:
        self.turns_left, self.last_obs, self.last_action = 0, None, None

    def __call__(self, obs: np.ndarray) -> int:
        if self.last_action == FORWARD and np.array_equal(obs, self.last_obs):
            self.turns_left = int(self.rng.integers(3, 9))
        if self.turns_left:
            self.turns_left -= 1
            action = TURN_RIGHT
        elif self.rng.random() < 0.05:
            action = int(self.rng.integers(TURN_LEFT, TURN_RIGHT + 1))
        else:
            action = FORWARD
        self.last_obs, self.last_action = obs, action
        return action


def returns_of(policy, env, episodes: int, seed: int) -> list[float]:
    """Episode k resets with seed + k; ``policy(obs) -> action``, ``policy.reset()`` first."""
    returns = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        policy.reset()
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args(argv)
    env = make_env("nbasync/Labyrinth-v0", seed=args.seed)
    for p in (1 / 6, 0.4, 0.6, 0.8):
        policy = BiasedRandom(p, np.random.default_rng(args.seed))
        returns = returns_of(policy, env, args.episodes, args.seed)
        mean, std = np.mean(returns), np.std(returns)
        print(f"random, forward p = {p:.2f}: mean {mean:.2f}, std {std:.2f}")
    explorer = WallBumpExplorer(np.random.default_rng(args.seed))
    returns = returns_of(explorer, env, args.episodes, args.seed)
    print(f"scripted wall-bump explorer: mean {np.mean(returns):.2f}, std {np.std(returns):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
