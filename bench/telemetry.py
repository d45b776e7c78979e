"""Benchmark: what gradient telemetry (``--telemetry-every K``) costs a worker.

One actor-learner in this process runs the real A3C loop (``nbasync.algos.a3c.run``) for a
fixed number of agent steps with telemetry off, K = 100 and K = 1, interleaved round by
round, and the CPU time of this thread (``time.thread_time``) per agent step is compared.
Thread CPU time, not wall time: the machine is shared, and wall time measures the other
processes as much as this one. The ratio on/off is the cost in training throughput for a
CPU-bound worker (one core each); the target is under 3 % (issue 13).

Off costs nothing by construction: the recording ``sync``/``apply_gradients`` are bound
onto the actor-learner only when K > 0 (``tests/algos/test_telemetry.py`` checks that
nothing is bound when off, and that learning is bit-identical either way). Not measured
here: the parent's side (appending rows to telemetry.bin, in its own process) and the
pickling into a multiprocessing queue (rows go in batches of up to 64, one put each).

    python bench/telemetry.py [--env CartPole-v1 ALE/Pong-v5] [--steps N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbasync.algos import ALGORITHMS  # noqa: E402
from nbasync.algos.base import ActorLearner, build_network  # noqa: E402
from nbasync.config import build_config  # noqa: E402
from nbasync.shared import SharedState  # noqa: E402
from nbasync.train import probe_env  # noqa: E402

SETTINGS = (0, 100, 1)  # telemetry_every: off, K = 100, K = 1


def cpu_per_step(env: str, every: int, steps: int, seed: int) -> float:
    """Thread CPU seconds per agent step of one A3C worker with ``telemetry_every=every``."""
    config = build_config(
        {"algo": "a3c", "env": env, "workers": 1, "steps": steps, "seed": seed,
         "telemetry_every": every}
    )  # fmt: skip
    spec = probe_env(config)
    net = build_network(config, spec, max_batch=config.t_max + 1)
    with SharedState.create(net.n_params, 1, target=False, optimizer_stats=True) as state:
        net.bind(state.params, net.grads)
        net.init_params(seed)
        events = queue.SimpleQueue()
        w = ActorLearner(config, 0, state, events, None)
        t0 = time.thread_time()
        ALGORITHMS["a3c"](w)
        w.close()
        cpu = time.thread_time() - t0
        done = state.global_step()
        w.env.close()
    return cpu / done


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", nargs="+", default=["CartPole-v1", "ALE/Pong-v5"])
    p.add_argument("--steps", type=int, default=0, help="agent steps per measurement")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; thread CPU time")
    print(f"{'env':<16}{'K':>6}{'us/step':>10}{'on/off':>9}{'(min..max over rounds)':>26}")
    for env in args.env:
        steps = args.steps or (20_000 if "ALE/" not in env else 1_500)
        for every in SETTINGS:  # warm-up: compile / load the kernels, open the ROM
            cpu_per_step(env, every, 200, seed=0)
        per: dict[int, list[float]] = {k: [] for k in SETTINGS}
        for r in range(args.repeats):
            for every in SETTINGS:  # interleaved: a load change hits all three alike
                per[every].append(cpu_per_step(env, every, steps, seed=r))
        ratios = {k: [a / b for a, b in zip(per[k], per[0], strict=True)] for k in SETTINGS}
        for every in SETTINGS:
            rs = ratios[every]
            print(
                f"{env:<16}{every or 'off':>6}{statistics.median(per[every]) * 1e6:>10.1f}"
                f"{statistics.median(rs):>9.3f}{f'{min(rs):.3f}..{max(rs):.3f}':>26}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
