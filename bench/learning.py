"""How fast does each algorithm learn CartPole-v1? Wall-clock seconds and agent steps until
the mean return of the last 100 episodes first reaches 475, with 1 and 2 workers.

Each (algorithm, workers, seed) is one ``nbasync.train.train`` run with a fixed step budget;
the crossing point is read afterwards from the run file's episode log (global step and
seconds since the start at the episode that completes the first window of 100 with mean
>= 475). Runs that never cross count as "not reached" and are left out of the medians
(the table says how many reached). Medians over seeds. This is a benchmark, not a test.

    python bench/learning.py                       # table
    python bench/learning.py --json                # one flat JSON object
    python bench/learning.py --quick               # 1 seed, smaller budget
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import machine  # noqa: E402  (bench/ is sys.path[0])

from nbasync.algos import algorithm_names  # noqa: E402
from nbasync.config import build_config  # noqa: E402
from nbasync.runfile import RunFile  # noqa: E402
from nbasync.train import train  # noqa: E402

TARGET = 475.0
WINDOW = 100


def crossing(episodes: np.ndarray, target: float = TARGET, window: int = WINDOW):
    """(global_step, seconds) at the first episode where the mean of the last ``window``
    episodes reaches ``target``; None if it never does."""
    returns = episodes["return"]
    if returns.size < window:
        return None
    means = np.convolve(returns, np.ones(window) / window, mode="valid")
    hit = np.flatnonzero(means >= target)
    if hit.size == 0:
        return None
    i = hit[0] + window - 1
    return int(episodes["global_step"][i]), float(episodes["wall_time"][i])


def one_run(algo: str, workers: int, seed: int, steps: int, out: Path):
    config = build_config(
        {"algo": algo, "workers": workers, "seed": seed, "steps": steps, "quiet": True,
         "out": str(out), "checkpoint_every": 0}
    )  # fmt: skip
    train(config)
    return crossing(RunFile.open(out).episodes())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = algorithm_names()
    p.add_argument("--algos", nargs="+", default=list(names), choices=names)
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=500_000, help="step budget of each run")
    p.add_argument("--quick", action="store_true", help="one seed, 300k steps")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.steps = args.seeds[:1], 300_000

    figures: dict[str, float] = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for algo in args.algos:
            for workers in args.workers:
                hits = []
                for seed in args.seeds:
                    out = Path(tmp) / f"{algo}-{workers}-{seed}"
                    hit = one_run(algo, workers, seed, args.steps, out)
                    if hit is not None:
                        hits.append(hit)
                key = f"{algo}.w{workers}"
                figures[f"{key}.reached"] = len(hits)
                figures[f"{key}.runs"] = len(args.seeds)
                if hits:
                    figures[f"{key}.steps"] = statistics.median(h[0] for h in hits)
                    figures[f"{key}.seconds"] = statistics.median(h[1] for h in hits)
                rows.append((algo, workers, len(hits), len(args.seeds)))
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"CartPole-v1: steps and seconds until mean return (last {WINDOW}) >= {TARGET}")
    print(f"machine: {machine()}; budget {args.steps:,} steps per run; medians over reached runs")
    print(f"{'algo':<14} {'workers':>7} {'reached':>8} {'steps':>10} {'seconds':>8}")
    for algo, workers, reached, runs in rows:
        key = f"{algo}.w{workers}"
        steps = figures.get(f"{key}.steps")
        secs = figures.get(f"{key}.seconds")
        s = f"{steps:>10,.0f}" if steps is not None else f"{'-':>10}"
        t = f"{secs:>8.1f}" if secs is not None else f"{'-':>8}"
        print(f"{algo:<14} {workers:>7} {f'{reached}/{runs}':>8} {s} {t}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
