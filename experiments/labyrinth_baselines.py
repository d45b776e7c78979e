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


def biased_random(env, episodes: int, seed: int, p_forward: float) -> list[float]:
    rng = np.random.default_rng(seed)
    p = np.array([p_forward] + [(1.0 - p_forward) / 5] * 5)
    returns = []
    for k in range(episodes):
        env.reset(seed=seed + k)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(int(rng.choice(6, p=p)))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def wall_bump_explorer(env, episodes: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    returns = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        total, done, turns_left = 0.0, False, 0
        while not done:
            if turns_left:
                action, turns_left = TURN_RIGHT, turns_left - 1
            elif rng.random() < 0.05:
                action = int(rng.integers(TURN_LEFT, TURN_RIGHT + 1))
            else:
                action = FORWARD
            new_obs, reward, terminated, truncated, _ = env.step(action)
            if action == FORWARD and np.array_equal(new_obs, obs):
                turns_left = int(rng.integers(3, 9))
            obs = new_obs
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
        returns = biased_random(env, args.episodes, args.seed, p)
        mean, std = np.mean(returns), np.std(returns)
        print(f"random, forward p = {p:.2f}: mean {mean:.2f}, std {std:.2f}")
    returns = wall_bump_explorer(env, args.episodes, args.seed)
    print(f"scripted wall-bump explorer: mean {np.mean(returns):.2f}, std {np.std(returns):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
