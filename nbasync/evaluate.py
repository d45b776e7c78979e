"""Play episodes with fixed parameters: greedy (or sampled) actions, no learning.

Owns evaluation: at the end of training, ``nbasync-eval`` (a run file's latest checkpoint)
and the learning tests. Returns are the raw game scores (no reward clipping; with
loss-of-life-as-terminal off). How an agent acts is its algorithm's (``AlgorithmSpec.acting``,
written once per head in ``algos.acting``); the environment and the network come from
``nbasync.build``, as in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .algos import get_algorithm
from .build import build_network, make_environment, obs_scale, parse_env_kwargs, probe_env
from .config import TrainConfig
from .normalise import ObsNormaliser
from .runfile import RunFile, RunFileError


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
    obs_moments: np.ndarray | None = None,
) -> EvalResult:
    """Mean/std/min/max return of ``episodes`` episodes played with ``params``.

    ``obs_moments``: the run's observation moments (a checkpoint's ``norm_moments["obs"]``)
    when it normalised observations (``obs_norm``): applied exactly as in training, frozen.

    The policy head acts with argmax pi (``greedy``) or samples pi (continuous actions: the
    mean, or a Gaussian sample, clipped to the bounds); a Q head acts epsilon-greedily on Q
    with ``epsilon`` (0 = greedy). A recurrent net carries its state from step to step (row
    0, then ``carry_state(1)``) and starts each episode from zeros. Episode k starts from
    ``env.reset(seed=seed + k)``. ``gif_path`` records the first episode.
    """
    algo = get_algorithm(config.algo)
    options = {
        **parse_env_kwargs(config.env_kwargs),
        "render_mode": "rgb_array" if gif_path else None,
    }
    env, info = make_environment(config, seed, algo.continuous, options)
    net = build_network(config, info, algo.head, max_batch=1)
    net.params[:] = params
    act = algo.acting(info, np.random.default_rng(seed), greedy=greedy, epsilon=epsilon)
    scale = obs_scale(info)
    x = np.zeros((1, *info.obs_shape), dtype=np.float32)
    normalise = None
    if config.obs_norm:
        if obs_moments is None:
            raise RunFileError("the run normalised observations, but no moments were saved")
        normalise = ObsNormaliser.from_saved(obs_moments)
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    frames: list[np.ndarray] = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        net.reset_state()
        done = False
        while not done:
            if normalise is None:
                np.multiply(obs, scale, out=x[0], casting="unsafe")
            else:
                normalise(obs, out=x[0])
            out = net.forward(x, row=0)[0]
            net.carry_state(1)  # the next step goes on from this one (no-op if FF)
            obs, reward, terminated, truncated, _ = env.step(act(out))
            returns[episode] += reward
            lengths[episode] += 1
            done = terminated or truncated
            if gif_path and episode == 0:
                frames.append(env.render())
    env.close()
    if gif_path:
        write_gif(frames, gif_path)
    noop_max = getattr(env.unwrapped, "noop_max", 0) if info.is_atari else 0
    starts = f"; each game starts with 1-{noop_max} random no-op frames" if noop_max else ""
    return EvalResult(returns, lengths, act.description + starts)


def evaluate_run(
    run: str | Path,
    episodes: int = 10,
    seed: int = 12345,
    greedy: bool = True,
    epsilon: float = 0.0,
    gif_path: str | None = None,
) -> EvalResult:
    """Play ``episodes`` with the latest checkpoint of a run file (``nbasync-eval``)."""
    runfile = RunFile.open(run)
    config = TrainConfig.from_dict(runfile.config())
    ckpt = runfile.latest_checkpoint()
    if ckpt is None:
        raise RunFileError(f"{runfile.path} has no checkpoint")
    algo = get_algorithm(config.algo)
    net = build_network(config, probe_env(config, algo.continuous), algo.head, max_batch=1)
    # The config is the run's own: only the network must match the stored parameters.
    stored = runfile.config()
    runfile.check_compatible(stored, net.layout, may_differ=frozenset(stored))
    return evaluate(
        config,
        ckpt.params,
        episodes,
        seed=seed,
        greedy=greedy,
        epsilon=epsilon,
        gif_path=gif_path,
        obs_moments=ckpt.norm_moments.get("obs"),
    )


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
