"""What a policy has become: action frequencies, mean pi, entropy and value; Gaussian means.

    python experiments/policy_stats.py RUN [--step N] [--episodes 3] [--seed 100]

Loads a checkpoint of RUN (the latest, or the one at global step N), plays ``--episodes``
episodes with actions sampled from pi (episode k resets with seed + k), and prints the
returns and the mean and standard deviation of V(s). Discrete actions: how often each action
was taken, pi averaged over the visited states, its mean entropy (ln A is the uniform
policy's). Continuous actions: the Gaussian's mean and variance per dimension against the
action bounds. A policy drifting back to uniform (docs/results/labyrinth.md), a mean that
left the bounds (docs/results/mujoco.md) or a value head that ignores its input shows here
first. Runs with a policy head (A3C). Not part of the package: a results helper.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from nbasync.algos.registry import get_algorithm
from nbasync.build import build_network, make_environment, obs_scale, parse_env_kwargs
from nbasync.config import TrainConfig
from nbasync.normalise import ObsNormaliser
from nbasync.runfile import RunFile


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--step", type=int, default=None)
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args(argv)

    run = RunFile.open(args.run)
    config = TrainConfig.from_dict(run.config())
    ckpt = run.load_checkpoint(args.step)
    algo = get_algorithm(config.algo)
    # The run's env kwargs (image size, frame stack, ...), without learning's own options
    # (Atari's life loss), as nbasync-eval plays.
    options = parse_env_kwargs(config.env_kwargs)
    env, info = make_environment(config, args.seed, algo.continuous, options)
    net = build_network(config, info, algo.head, max_batch=1)
    net.params[:] = ckpt.params
    normalise = ObsNormaliser.from_saved(ckpt.norm_moments["obs"]) if config.obs_norm else None
    act = algo.acting(info, np.random.default_rng(args.seed), greedy=False)  # samples pi
    x = np.zeros((1, *info.obs_shape), np.float32)
    outs, actions, returns = [], [], []
    for k in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + k)
        net.reset_state()
        total, done = 0.0, False
        while not done:
            if normalise is None:
                np.multiply(obs, obs_scale(info), out=x[0], casting="unsafe")
            else:
                normalise(obs, out=x[0])
            out = net.forward(x, row=0)[0]
            net.carry_state(1)
            outs.append(out.astype(np.float64))
            action = act(out)  # continuous: the same clipped buffer each step
            if info.discrete:
                actions.append(action)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    outs = np.array(outs)
    print(f"checkpoint at step {ckpt.step:,}; returns {np.round(returns, 2).tolist()}")
    if info.discrete:
        A = info.n_actions
        pis = np.exp(outs[:, :A] - outs[:, :A].max(axis=1, keepdims=True))
        pis /= pis.sum(axis=1, keepdims=True)
        counts = np.bincount(actions, minlength=A)
        entropy = float(-(pis * np.log(pis + 1e-12)).sum(axis=1).mean())
        print(f"action frequencies {np.round(counts / counts.sum(), 3).tolist()}")
        print(f"mean pi            {np.round(pis.mean(axis=0), 3).tolist()}")
        print(f"entropy {entropy:.4f} (uniform: ln {A} = {np.log(A):.4f})")
    else:
        D = info.action_low.size
        mu, var = outs[:, :D], np.logaddexp(0.0, outs[:, D : 2 * D])
        print(f"Gaussian mean mu   {np.round(mu.mean(axis=0), 2).tolist()}")
        print(f"max |mu|           {np.abs(mu).max():.2f}; bounds {info.action_low.tolist()} "
              f"to {info.action_high.tolist()}")  # fmt: skip
        print(f"variance (mean)    {np.round(var.mean(axis=0), 3).tolist()}")
    print(f"V(s): mean {outs[:, -1].mean():.4f}, std {outs[:, -1].std():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
