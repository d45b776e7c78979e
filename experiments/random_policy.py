"""The baseline every learning curve is read against: the return of a uniform random policy.

    python experiments/random_policy.py nbasync/Labyrinth-v0 --episodes 100
    python experiments/random_policy.py CarRacing-v3 --env-kwargs continuous=false

Plays ``--episodes`` episodes with actions drawn uniformly from the action space (seeded:
episode k resets with seed + k), through the same ``make_env`` as training, and prints the
mean, standard deviation, min and max of the episode returns. Not part of the package: a
results helper.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from nbasync.build import parse_env_kwargs
from nbasync.envs import make_env


def random_returns(env_id: str, episodes: int, seed: int, env_kwargs: dict) -> list[float]:
    env = make_env(env_id, seed=seed, **env_kwargs)
    env.action_space.seed(seed)
    returns = []
    for k in range(episodes):
        env.reset(seed=seed + k)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-kwargs", default="", help="key=value,... as nbasync-train takes")
    args = parser.parse_args(argv)
    returns = random_returns(args.env, args.episodes, args.seed, parse_env_kwargs(args.env_kwargs))
    mean = statistics.mean(returns)
    std = statistics.stdev(returns) if len(returns) > 1 else 0.0
    print(
        f"{args.env}: random policy over {len(returns)} episodes: mean {mean:.2f}, "
        f"std {std:.2f}, min {min(returns):.2f}, max {max(returns):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
