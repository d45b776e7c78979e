"""Benchmark: Atari agent steps per second on one core (not a test).

(a) raw ALE, 4 frames per step, no preprocessing (the ceiling);
(b) nbasync AtariEnv (DQN preprocessing in numba, copy of the obs returned per step);
(c) gymnasium AtariPreprocessing + FrameStackObservation(4) (only when cv2 imports);
(d) nbasync/Labyrinth-v0 (maze + ray-cast 84x84 RGB frame per step; target >= 10,000/s).

Same pre-drawn random actions for all, episodes restarted when they end, runs interleaved
(a, b, c, a, b, c, ...), medians over the repeats. Ratios b/a and b/c are from this run,
twice: the ratio of the medians, and the median of each round's ratio (robust to the slow
and fast spells of a shared machine, since one round's runs are seconds apart).
Timed by default with this thread's CPU time (``time.thread_time``): on a shared, loaded
machine wall time mostly measures the waits for a core; ``--clock wall`` for wall time.
The load average is printed with the result.

    python bench/envs.py [--game pong] [--steps 5000] [--repeats 5] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import machine  # noqa: E402  (bench/ is sys.path[0])


def pin_one_core() -> str:
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    except (AttributeError, OSError):
        return "not pinned"


CLOCK = time.thread_time


def bench_raw_ale(game: str, actions: np.ndarray) -> float:
    import ale_py

    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.setInt("random_seed", 0)
    ale.loadROM(str(ale_py.roms.get_rom_path(game)))
    ale.reset_game()
    acts = ale.getMinimalActionSet()
    t0 = CLOCK()
    for a in actions:
        act = acts[a % len(acts)]
        for _ in range(4):
            ale.act(act)
            if ale.game_over():
                ale.reset_game()
                break
    return len(actions) / (CLOCK() - t0)


def _run_env(env, actions: np.ndarray) -> float:
    n = env.action_space.n
    env.reset(seed=0)
    t0 = CLOCK()
    for a in actions:
        _, _, te, tr, _ = env.step(int(a % n))
        if te or tr:
            env.reset()
    return len(actions) / (CLOCK() - t0)


def make_nbasync(game: str):
    from nbasync.envs import AtariEnv

    return AtariEnv(game, seed=0)


def make_gym(game: str):
    import ale_py
    import gymnasium
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    from nbasync.envs.atari import rom_name

    gymnasium.register_envs(ale_py)
    name = "".join(part.capitalize() for part in rom_name(game).split("_"))
    env = gymnasium.make(f"ALE/{name}-v5", frameskip=1, repeat_action_probability=0.0)
    return FrameStackObservation(AtariPreprocessing(env, frame_skip=4, noop_max=30), 4)


def make_labyrinth():
    from nbasync.envs import LabyrinthEnv

    return LabyrinthEnv(seed=0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--game", default="pong", help="ALE rom name (default pong)")
    p.add_argument("--steps", type=int, default=5000, help="agent steps per run")
    p.add_argument("--repeats", type=int, default=5, help="runs per variant (median)")
    p.add_argument("--quick", action="store_true", help="1000 steps x 3 repeats (tox)")
    p.add_argument("--json", action="store_true", help="one flat JSON object")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="thread CPU time")
    args = p.parse_args(argv)
    global CLOCK
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter
    if args.quick:
        args.steps, args.repeats = 1000, 3
    pinned = pin_one_core()

    try:
        import cv2  # noqa: F401

        have_cv2 = True
    except ImportError:
        have_cv2 = False

    actions = np.random.default_rng(0).integers(0, 18, args.steps)
    nb_env = make_nbasync(args.game)
    _run_env(nb_env, actions[:50])  # warm-up: numba (cached) compile, first reset
    gym_env = make_gym(args.game) if have_cv2 else None
    if gym_env is not None:
        _run_env(gym_env, actions[:50])

    maze_env = make_labyrinth()
    _run_env(maze_env, actions[:50])

    runs: dict[str, list[float]] = {"raw_ale": [], "nbasync": [], "gymnasium": [], "maze": []}
    for _ in range(args.repeats):
        runs["raw_ale"].append(bench_raw_ale(args.game, actions))
        runs["nbasync"].append(_run_env(nb_env, actions))
        if gym_env is not None:
            runs["gymnasium"].append(_run_env(gym_env, actions))
        runs["maze"].append(_run_env(maze_env, actions))
    med = {k: statistics.median(v) for k, v in runs.items() if v}
    # Per-round ratios too: a, b and c of one round run seconds apart, so the machine's slow
    # and fast spells (a shared VM) cancel in b_i / a_i better than in median(b) / median(a).
    paired = {
        other: statistics.median(b / o for b, o in zip(runs["nbasync"], runs[other], strict=True))
        for other in ("raw_ale", "gymnasium")
        if runs[other]
    }

    out = {
        "game": args.game,
        "steps_per_run": args.steps,
        "repeats": args.repeats,
        "frames_per_step": 4,
        "machine": machine(),
        "cpu": pinned,
        "clock": args.clock,
        "load_avg": round(os.getloadavg()[0], 2),
        "raw_ale_steps_per_s": round(med["raw_ale"], 1),
        "nbasync_steps_per_s": round(med["nbasync"], 1),
        "gymnasium_steps_per_s": round(med["gymnasium"], 1) if "gymnasium" in med else None,
        "labyrinth_steps_per_s": round(med["maze"], 1),
        "ratio_nbasync_over_raw": round(med["nbasync"] / med["raw_ale"], 3),
        "ratio_nbasync_over_gymnasium": (
            round(med["nbasync"] / med["gymnasium"], 3) if "gymnasium" in med else None
        ),
        "paired_ratio_nbasync_over_raw": round(paired["raw_ale"], 3),
        "paired_ratio_nbasync_over_gymnasium": (
            round(paired["gymnasium"], 3) if "gymnasium" in paired else None
        ),
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"# {out['machine']} ({pinned}); game={args.game}; "
          f"{args.steps} agent steps x {args.repeats} runs; 1 step = 4 frames; "
          f"{args.clock} clock; load avg {out['load_avg']}")  # fmt: skip
    print(f"{'variant':<34}{'median steps/s':>16}{'min':>10}{'max':>10}")
    labels = {
        "raw_ale": "(a) raw ALE, frameskip 4",
        "nbasync": "(b) nbasync AtariEnv",
        "gymnasium": "(c) gymnasium AtariPreprocessing+stack",
        "maze": "(d) nbasync/Labyrinth-v0",
    }
    for k, label in labels.items():
        v = runs[k]
        if v:
            print(f"{label:<34}{med[k]:>16.0f}{min(v):>10.0f}{max(v):>10.0f}")
        else:
            print(f"{label:<34}{'skipped (no cv2)':>16}")
    print(f"b/a = {out['ratio_nbasync_over_raw']:.3f}", end="")
    if out["ratio_nbasync_over_gymnasium"] is not None:
        print(f"   b/c = {out['ratio_nbasync_over_gymnasium']:.3f}", end="")
    print("   (ratios of the medians)")
    print(f"b/a = {out['paired_ratio_nbasync_over_raw']:.3f}", end="")
    if out["paired_ratio_nbasync_over_gymnasium"] is not None:
        print(f"   b/c = {out['paired_ratio_nbasync_over_gymnasium']:.3f}", end="")
    print("   (medians of the per-round ratios)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
