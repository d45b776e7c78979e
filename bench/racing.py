"""Benchmark: where an agent step on CarRacing-v3 goes, the environment against nbasync.

Not a test; needs the ``box2d`` extra. On one core, CPU time per agent step (medians over
``--repeats``, cases interleaved):

(a) the environment alone, raw ``gymnasium.make("CarRacing-v3")``: ``--repeat`` frames
    (box2d physics plus pygame drawing the 96 x 96 state frame, every frame);
(b) the same frames through ``nbasync.envs.make_env`` with the run's options (action
    repeat, grey, 84 x 84, 4 stacked frames): (b) - (a) is our observation pipeline;
(c) one worker's whole A3C loop (``run_in_process``: act, learn, update) at lr ~0, feed-
    forward and LSTM: (c) - (b) is nbasync's learner, per agent step.

It answers whether a CarRacing run is bound by the environment or by us. BLAS and numba
threads are pinned to 1, as in a worker.

    python bench/racing.py [--steps 300] [--repeats 3] [--repeat 4] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core, as in a worker (before numpy loads BLAS)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import machine  # noqa: E402  (bench/ is sys.path[0])
from lstm_cost import loop_us_per_step  # noqa: E402

ENV_ID = "CarRacing-v3"


def env_us_per_step(env, actions: np.ndarray, frames_per_call: int) -> float:
    """CPU us per agent step: ``frames_per_call`` env.step calls per action (1 when the env
    repeats the action itself), resetting at episode ends."""
    env.reset(seed=0)
    t0 = time.thread_time()
    for action in actions:
        for _ in range(frames_per_call):
            _, _, terminated, truncated, _ = env.step(int(action))
            if terminated or truncated:
                env.reset()
                break
    return (time.thread_time() - t0) / len(actions) * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="agent steps per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=4, help="frames per agent step")
    parser.add_argument("--quick", action="store_true", help="seconds, not minutes (for tox)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 60, 1
    try:
        import gymnasium

        raw = gymnasium.make(ENV_ID, continuous=False)
    except Exception as e:  # box2d missing: gymnasium raises DependencyNotInstalled
        print(f"skipped: {ENV_ID} cannot be made ({str(e).splitlines()[0]})")
        return 0
    from nbasync.build import make_environment
    from nbasync.config import build_config

    # The racing preset's frames (grey, 84 x 84, 4 stacked) with this action repeat: the
    # settings the CarRacing runs used, merged by the preset as a run merges them.
    base = {"env": ENV_ID, "env_kwargs": f"continuous=false,action_repeat={args.repeat}"}
    ours, _ = make_environment(build_config(base), 0, continuous_ok=False)
    actions = np.random.default_rng(0).integers(0, 5, args.steps)
    loop_cases = {
        "feed-forward": {**base, "lr": 1e-12},
        "LSTM": {**base, "lr": 1e-12, "recurrent": True},
    }
    env_us_per_step(raw, actions[:10], args.repeat)  # warm-up: first reset, pygame init
    env_us_per_step(ours, actions[:10], 1)
    for settings in loop_cases.values():  # numba cache load outside the timing
        loop_us_per_step(settings, 12)
    runs: dict[str, list[float]] = {"raw": [], "ours": [], **{k: [] for k in loop_cases}}
    for _ in range(args.repeats):
        runs["raw"].append(env_us_per_step(raw, actions, args.repeat))
        runs["ours"].append(env_us_per_step(ours, actions, 1))
        for name, settings in loop_cases.items():
            runs[name].append(loop_us_per_step(settings, args.steps))
    med = {k: statistics.median(v) / 1e3 for k, v in runs.items()}  # ms per agent step
    print(machine())
    print(
        f"{ENV_ID}, one core, CPU ms per agent step ({args.repeat} frames), medians of "
        f"{args.repeats} x {args.steps} steps:"
    )
    print(f"  (a) raw env, {args.repeat} frames            {med['raw']:8.2f}")
    pipeline = med["ours"] - med["raw"]
    print(f"  (b) make_env (grey 84, stack 4)  {med['ours']:8.2f}   pipeline {pipeline:+.2f}")
    for name in loop_cases:
        learner = med[name] - med["ours"]
        print(
            f"  (c) A3C {name:<13s} whole loop {med[name]:8.2f}   learner {learner:+.2f} "
            f"({learner / med[name]:.0%} of the step; env {med['ours'] / med[name]:.0%})"
        )
    print(
        f"  env alone: {1e3 / med['raw'] * args.repeat:,.0f} frames/s = "
        f"{1e3 / med['raw']:,.0f} agent steps/s on one core; A3C FF loop "
        f"{1e3 / med['feed-forward']:,.0f} agent steps/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
