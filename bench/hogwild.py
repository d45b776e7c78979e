"""Hogwild update throughput: shared RMSProp steps per second with 1, 2, ... workers.

Not a test. Each worker process attaches the run's SharedState and applies the update of the
Atari network's size (677,943 parameters for 6 actions) to the ONE shared parameter vector,
lock-free, as fast as it can: once "rmsprop" (the step alone) and once "clip+rmsprop"
(global-norm clipping at 40, then the step). Workers start together (a spin on the shared
step counters), each times its own loop; aggregate updates/s = all updates / (last end -
first start). Medians over --repeats runs. Memory-bandwidth floor: the step moves
20 bytes per parameter (read d, g, theta; write g, theta); the floor printed is that divided
by a single-thread copy bandwidth measured here on arrays far larger than the caches.

    python bench/hogwild.py                 # table, workers 1 2 .. os.cpu_count()
    python bench/hogwild.py --workers 1 2 4 --json
    python bench/hogwild.py --quick         # for tox: seconds, not minutes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _machine import machine  # noqa: E402  (bench/ is sys.path[0])

from nbasync.optim import clip_grad_norm, make_optimizer  # noqa: E402
from nbasync.runner import run_workers  # noqa: E402
from nbasync.shared import SharedState  # noqa: E402


def atari_n_params(n_actions: int = 6) -> int:
    conv1 = 16 * 4 * 8 * 8 + 16
    conv2 = 32 * 16 * 4 * 4 + 32
    fc = 32 * 9 * 9 * 256 + 256  # 2592 inputs
    head = 256 * (n_actions + 1) + (n_actions + 1)  # policy logits + V(s)
    return conv1 + conv2 + fc + head


def copy_bandwidth_gbs(mb: int = 256, repeats: int = 5) -> float:
    """Single-thread copy bandwidth (read + write bytes / s), arrays larger than any cache."""
    n = mb * 1024 * 1024 // 4
    a = np.ones(n, np.float32)
    b = np.empty_like(a)
    np.copyto(b, a)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best / 1e9


def bench_worker(index, handle, args, events, stop):
    iters, n_workers = args
    with SharedState.attach(handle) as state:
        params = state.params
        opt = make_optimizer("shared_rmsprop", state.n_params, shared_stats=state.opt_stats)
        rng = np.random.default_rng(index)
        grads = (rng.standard_normal(state.n_params) * 0.1).astype(np.float32)
        fresh = grads.copy()
        opt.step(params, grads, 1e-6)  # warm-up (cache load)
        clip_grad_norm(grads, 40.0)
        state.add_steps(index, 1)
        while state.global_step() < n_workers:  # start together
            time.sleep(0.0005)
        t0 = time.time()
        for _ in range(iters):
            opt.step(params, grads, 1e-6)
        t1 = time.time()
        for _ in range(iters):
            np.copyto(grads, fresh)  # a fresh gradient each step, norm > 40: clip scales it
            clip_grad_norm(grads, 40.0)
            opt.step(params, grads, 1e-6)
        t2 = time.time()
        for _ in range(iters):
            np.copyto(grads, fresh)
        t3 = time.time()
    # (index, rmsprop start, end, clip+rmsprop start, end minus the gradient refills' time)
    events.put((index, t0, t1, t1, t2 - (t3 - t2), iters))


def run_once(n_params: int, n_workers: int, iters: int) -> dict[str, float]:
    got = []
    with SharedState.create(n_params, n_workers, target=False) as state:
        run_workers(bench_worker, n_workers, state, (iters, n_workers), got.append, poll_s=0.05)
    total = n_workers * iters
    step_span = max(e[2] for e in got) - min(e[1] for e in got)
    clip_span = max(e[4] for e in got) - min(e[3] for e in got)
    return {"rmsprop": total / step_span, "clip+rmsprop": total / clip_span}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, nargs="+", default=None)
    p.add_argument("--iters", type=int, default=400, help="updates per worker per run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--actions", type=int, default=6)
    p.add_argument("--json", action="store_true", help="one flat JSON object on stdout")
    p.add_argument("--quick", action="store_true", help="tiny run (tox): 1 2 workers, 30 iters")
    a = p.parse_args(argv)
    cpus = os.cpu_count() or 1
    workers = a.workers or [w for w in (1, 2, 4, 8, 16, 32, 64) if w < cpus] + [cpus]
    iters, repeats = a.iters, a.repeats
    if a.quick:
        workers, iters, repeats = a.workers or [1, 2], 30, 1
    workers = sorted(set(workers))
    n = atari_n_params(a.actions)
    bw = copy_bandwidth_gbs(64 if a.quick else 256)
    bytes_per_update = 5 * 4 * n
    floor_ms = bytes_per_update / (bw * 1e9) * 1e3

    out: dict[str, object] = {
        "machine": machine(),
        "n_params": n,
        "bytes_per_update": bytes_per_update,
        "copy_bandwidth_gbs": round(bw, 2),
        "floor_ms_per_update_1thread": round(floor_ms, 4),
        "iters": iters,
        "repeats": repeats,
    }
    results = {}
    for w in workers:
        runs = [run_once(n, w, iters) for _ in range(repeats)]
        results[w] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    base = results[workers[0]] if workers[0] == 1 else None
    for w in workers:
        for k, v in results[w].items():
            key = k.replace("+", "_")
            out[f"{key}_updates_per_s_w{w}"] = round(v, 1)
            out[f"{key}_ms_per_update_per_worker_w{w}"] = round(1e3 * w / v, 4)
            if base is not None:
                out[f"{key}_scaling_w{w}"] = round(v / base[k], 3)

    if a.json:
        print(json.dumps(out))
        return 0
    print(f"machine: {out['machine']}")
    print(
        f"params: {n:,}   bytes/update: {bytes_per_update / 1e6:.1f} MB   "
        f"copy bandwidth (1 thread): {bw:.1f} GB/s   floor: {floor_ms:.3f} ms/update "
        f"= {1e3 / floor_ms:,.0f} updates/s per thread (if memory-bound at that bandwidth)"
    )
    print(
        f"working set {3 * 4 * n / 1e6:.1f} MB (theta, g, d): where it fits in the last-level "
        "cache a step can beat the DRAM floor"
    )
    print(f"iters/worker: {iters}, median of {repeats} runs")
    head = f"{'workers':>7} | {'kind':>12} | {'updates/s':>10} | {'ms/upd/worker':>13} | scaling"
    print(head)
    print("-" * len(head))
    for w in workers:
        for k, v in results[w].items():
            sc = f"{v / base[k]:.2f}x" if base is not None else "-"
            print(f"{w:>7} | {k:>12} | {v:>10,.0f} | {1e3 * w / v:>13.3f} | {sc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
