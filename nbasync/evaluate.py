"""Play episodes with fixed parameters: greedy (or sampled) actions, no learning.

Used at the end of training, by ``nbasync-eval`` and by the learning tests. Returns are the
raw game scores (no reward clipping; with loss-of-life-as-terminal off).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import TrainConfig
from ..envs import make_env
from ..nn import gaussian_mean, gaussian_sample, sample_from_logits
from .base import action_dim, build_network, env_spec, obs_scale


@dataclass
class EvalResult:
    returns: np.ndarray
    lengths: np.ndarray
    protocol: str = ""  # how the episodes were played (policy, starts), for the report

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    def describe(self) -> str:
        r = self.returns
        text = (
            f"evaluation over {r.size} episodes: mean {r.mean():.2f}, std {r.std():.2f}, "
            f"min {r.min():.2f}, max {r.max():.2f}, mean length {self.lengths.mean():.1f}"
        )
        return f"{text} ({self.protocol})" if self.protocol else text


def evaluate(
    config: TrainConfig,
    params: np.ndarray,
    episodes: int,
    seed: int = 12345,
    greedy: bool = True,
    epsilon: float = 0.0,
    gif_path: str | None = None,
) -> EvalResult:
    """Mean/std/min/max return of ``episodes`` episodes played with ``params``.

    A3C acts with argmax pi (``greedy``) or samples pi; the Q methods act epsilon-greedily
    on Q with ``epsilon`` (0 = greedy). Continuous actions: the mean (``greedy``) or a
    Gaussian sample, clipped to the bounds. A recurrent net carries its state from step to
    step (row 0, then ``carry_state(1)``) and starts each episode from zeros.
    ``gif_path`` records the first episode.
    """
    env = make_env(config.env, seed=seed, render_mode="rgb_array" if gif_path else None)
    spec = env_spec(env, config.env, continuous_ok=config.algo == "a3c")
    net = build_network(config, spec, max_batch=1)
    D = action_dim(spec)
    noise = np.zeros(D)
    sample = np.zeros(D, dtype=np.float32)
    clipped = np.zeros(D, dtype=np.float32)
    net.params[:] = params
    rng = np.random.default_rng(seed)
    scale = obs_scale(spec)
    x = np.zeros((1, *spec.obs_shape), dtype=np.float32)
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    frames: list[np.ndarray] = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        net.reset_state()
        done = False
        while not done:
            np.multiply(obs, scale, out=x[0], casting="unsafe")
            out = net.forward(x, row=0)[0]
            net.carry_state(1)  # the next step goes on from this one (no-op if FF)
            if not spec.discrete:
                if greedy:
                    gaussian_mean(out, spec.action_low, spec.action_high, clipped)
                else:
                    rng.standard_normal(out=noise)
                    gaussian_sample(out, noise, spec.action_low, spec.action_high, sample, clipped)
                action = clipped
            elif config.algo == "a3c":
                logits = out[: spec.n_actions]
                action = (
                    int(np.argmax(logits)) if greedy else sample_from_logits(logits, rng.random())
                )
            elif epsilon > 0 and rng.random() < epsilon:
                action = int(rng.integers(spec.n_actions))
            else:
                action = int(np.argmax(out))
            obs, reward, terminated, truncated, _ = env.step(action)
            returns[episode] += reward
            lengths[episode] += 1
            done = terminated or truncated
            if gif_path and episode == 0:
                frames.append(env.render())
    env.close()
    if gif_path:
        write_gif(frames, gif_path)
    return EvalResult(returns, lengths, _protocol(config, spec, env, greedy, epsilon))


def _protocol(config: TrainConfig, spec, env, greedy: bool, epsilon: float) -> str:
    """One phrase for reports: which policy played, and how Atari games started."""
    if not spec.discrete:
        policy = "mean action" if greedy else "sampled actions"
    elif config.algo == "a3c":
        policy = "greedy policy (argmax pi)" if greedy else "sampled policy"
    else:
        policy = f"epsilon-greedy on Q, epsilon {epsilon:g}" if epsilon > 0 else "greedy on Q"
    noop_max = getattr(env.unwrapped, "noop_max", 0) if spec.is_atari else 0
    starts = f"; each game starts with 1-{noop_max} random no-op frames" if noop_max else ""
    return policy + starts


def write_gif(frames: list[np.ndarray], path: str) -> None:
    """Write RGB frames as an animated GIF (needs Pillow, which matplotlib brings)."""
    try:
        from PIL import Image
    except ImportError:
        raise ValueError("--render-gif needs Pillow: pip install nbasync[plot]") from None
    images = [Image.fromarray(f) for f in frames if f is not None]
    if not images:
        raise ValueError("the environment rendered no frames")
    images[0].save(path, save_all=True, append_images=images[1:], duration=33, loop=0)
