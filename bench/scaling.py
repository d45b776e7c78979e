"""Scaling model: where Hogwild's update path meets the machine's memory bandwidth.

Not a test. For 1, 2, 4, ... workers up to the machine's cores it measures, in one run:

1. **memory bandwidth**: a STREAM-style triad ``a = b + s * c`` (float64, arrays far larger
   than the caches) in that many processes at once; STREAM's count of 24 bytes per element;
2. **the update path** as a worker runs it on the Atari network's shared vector (677,943
   float32 parameters), every worker at once on ONE shared parameter vector and ONE shared
   RMSProp statistics vector: "three passes" (zero the gradient, norm + clip, RMSProp step,
   theta' <- theta copy), "fused" (norm, then ``step_and_copy``: one pass, what workers
   run) and "before" (the three passes with the step's arithmetic in float64, as it was
   before nbasync computed float32 updates in float32), ms per update;
3. **training**: A3C on Pong, agent steps/s (``bench/throughput.py``'s slope of two time
   limits), unless ``--no-train``.

Bytes per update are counted from the code (the table ``UPDATE_PASSES`` lists every pass of
``ActorLearner.apply_gradients`` and ``sync`` and the arrays each reads and writes), not
guessed. The model: a worker doing ``u`` updates/s (measured at 1 worker, steps/s / t_max)
demands ``u * bytes_per_update`` of bandwidth; the update path saturates the machine at
``bandwidth(all cores) / (u * bytes_per_update)`` workers. Past that, adding workers adds
no updates.

    python bench/scaling.py                      # workers 1 2 4 .. cores, with training
    python bench/scaling.py --workers 1 2 --json
    python bench/scaling.py --quick              # seconds: a smoke run (tox bench)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

import numpy as np
from numba import njit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _machine import machine  # noqa: E402  (bench/ is sys.path[0])
from hogwild import atari_n_params  # noqa: E402

from nbasync.optim import clip_grad_norm, clip_scale, global_norm, make_optimizer  # noqa: E402
from nbasync.runner import run_workers  # noqa: E402
from nbasync.shared import SharedState  # noqa: E402

T_MAX = 5  # the Atari preset's rollout: one update per 5 agent steps per worker

# Every pass over parameter-sized float32 arrays in one update of one worker, in the order
# the code runs them: (pass, arrays read, arrays written). d = the gradient, theta = the
# shared parameters, g = the shared RMSProp statistics, local = the worker's theta'.
# Backward writes d too, but that traffic belongs to the backward (it is the same in both).
THREE_PASSES = [
    ("zero_grad: d <- 0", (), ("d",)),
    ("global norm of d", ("d",), ()),
    ("clip: d <- s d (when the norm exceeds 40)", ("d",), ("d",)),
    ("RMSProp step", ("d", "g", "theta"), ("g", "theta")),
    ("sync: local <- theta", ("theta",), ("local",)),
]
UPDATE_PASSES = {
    "before": THREE_PASSES,  # the same passes, the step's arithmetic in float64 (before 2026-12)
    "three passes": THREE_PASSES,
    "fused": [
        ("zero_grad: d <- 0", (), ("d",)),
        ("global norm of d", ("d",), ()),
        (
            "step_and_copy: clip scale, RMSProp step, local <- theta",
            ("d", "g", "theta"),
            ("g", "theta", "local"),
        ),
    ],
}


def bytes_per_update(path: str, n_params: int, clip_rate: float = 1.0, itemsize: int = 4):
    """Bytes one update moves (reads + writes; a clip pass weighted by how often it clips)."""
    total = 0.0
    for name, reads, writes in UPDATE_PASSES[path]:
        weight = clip_rate if name.startswith("clip") else 1.0
        total += weight * (len(reads) + len(writes)) * n_params * itemsize
    return total


@njit(cache=True, error_model="numpy")
def _rmsprop_float64_arithmetic(params, grads, g, lr, alpha, eps):
    """The RMSProp kernel as it was: ``1 - alpha`` (an int minus a float32) made numba do
    every element's arithmetic, square root and division in float64."""
    one_minus_alpha = 1 - alpha
    for i in range(params.shape[0]):
        d = grads[i]
        gi = alpha * g[i] + one_minus_alpha * d * d
        g[i] = gi
        params[i] -= lr * d / np.sqrt(gi + eps)


# ----------------------------------------------------------------------------- triad


def _triad_worker(n: int, repeats: int, barrier, results) -> None:
    from numba import njit

    @njit(cache=False)
    def triad(a, b, c, s):
        for i in range(a.shape[0]):
            a[i] = b[i] + s * c[i]

    b = np.ones(n)
    c = np.full(n, 2.0)
    a = np.empty(n)
    triad(a, b, c, 3.0)  # compile and touch every page
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(repeats):
        triad(a, b, c, 3.0)
    t1 = time.perf_counter()
    results.put((time.time() - (t1 - t0), time.time()))


def triad_bandwidth_gbs(n_procs: int, mib_per_array: int, repeats: int) -> float:
    """Aggregate STREAM triad bandwidth of ``n_procs`` processes at once (24 bytes/element)."""
    ctx = mp.get_context("spawn")
    n = mib_per_array * 1024 * 1024 // 8
    barrier, results = ctx.Barrier(n_procs), ctx.Queue()
    procs = [
        ctx.Process(target=_triad_worker, args=(n, repeats, barrier, results))
        for _ in range(n_procs)
    ]
    for p in procs:
        p.start()
    spans = [results.get() for _ in procs]
    for p in procs:
        p.join()
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    return n_procs * repeats * 24 * n / (end - start) / 1e9


# ----------------------------------------------------------------------------- update path


def _update_worker(index, handle, args, events, stop) -> None:
    iters, n_workers = args
    with SharedState.attach(handle) as state:
        params = state.params
        opt = make_optimizer("shared_rmsprop", state.n_params, shared_stats=state.opt_stats)
        rng = np.random.default_rng(index)
        fresh = (rng.standard_normal(state.n_params) * 0.1).astype(np.float32)  # norm > 40
        grads = fresh.copy()
        local = params.copy()

        f32 = np.float32

        def before():
            grads[...] = 0.0
            np.copyto(grads, fresh)
            clip_grad_norm(grads, 40.0)
            _rmsprop_float64_arithmetic(params, grads, opt.g, f32(1e-7), f32(0.99), f32(0.1))
            np.copyto(local, params)

        def three_passes():
            grads[...] = 0.0
            np.copyto(grads, fresh)  # stands in for the backward (its time is subtracted)
            clip_grad_norm(grads, 40.0)
            opt.step(params, grads, 1e-7)
            np.copyto(local, params)

        def fused():
            grads[...] = 0.0
            np.copyto(grads, fresh)
            scale = clip_scale(global_norm(grads), 40.0)
            opt.step_and_copy(params, grads, 1e-7, local, grad_scale=scale)

        def refill_only():
            np.copyto(grads, fresh)

        for f in (before, three_passes, fused, refill_only):  # warm-up (numba cache load)
            f()
        state.add_steps(index, 1)
        while state.global_step() < n_workers:  # start together
            time.sleep(0.0005)
        spans = {}
        paths = (("before", before), ("three passes", three_passes), ("fused", fused))
        for name, f in (*paths, ("refill", refill_only)):
            t0 = time.time()
            for _ in range(iters):
                f()
            spans[name] = (t0, time.time())
        refill = spans.pop("refill")
        refill_s = refill[1] - refill[0]  # the stand-in backward is not the update path's
        events.put((index, {k: (a, b - refill_s) for k, (a, b) in spans.items()}, iters))


def update_ms(n_params: int, n_workers: int, iters: int) -> dict[str, float]:
    """Per-worker ms per update for each path, all ``n_workers`` updating one shared vector."""
    got = []
    with SharedState.create(n_params, n_workers, target=False) as state:
        run_workers(_update_worker, n_workers, state, (iters, n_workers), got.append, poll_s=0.05)
    out = {}
    for path in UPDATE_PASSES:
        span = max(e[1][path][1] for e in got) - min(e[1][path][0] for e in got)
        out[path] = 1e3 * span / iters  # each worker did `iters` updates in `span`
    return out


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, nargs="+", default=None)
    p.add_argument("--iters", type=int, default=300, help="updates per worker per run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-train", action="store_true", help="skip the training runs")
    p.add_argument("--seconds", type=float, nargs=2, default=(8.0, 20.0), metavar=("T1", "T2"))
    p.add_argument("--json", action="store_true", help="one flat JSON object on stdout")
    p.add_argument("--quick", action="store_true", help="a smoke run of seconds (tox bench)")
    a = p.parse_args(argv)
    cpus = os.cpu_count() or 1
    workers = a.workers or [w for w in (1, 2, 4, 8, 16, 32, 64) if w < cpus] + [cpus]
    iters, repeats, mib, train_seconds = a.iters, a.repeats, 256, a.seconds
    if a.quick:
        workers, iters, repeats, mib, train_seconds = a.workers or [1, 2], 20, 1, 32, (4.0, 8.0)
    workers = sorted(set(workers))
    n = atari_n_params()

    rows = {}
    for w in workers:
        bw = statistics.median(triad_bandwidth_gbs(w, mib, 5) for _ in range(repeats))
        upd = [update_ms(n, w, iters) for _ in range(repeats)]
        row = {"triad_gbs": bw}
        for path in UPDATE_PASSES:
            row[f"{path} ms"] = statistics.median(u[path] for u in upd)
        rows[w] = row
    if not a.no_train:
        from throughput import cell  # bench/throughput.py: slope of two time limits

        for w in workers:
            rows[w]["train steps/s"] = cell("a3c", w, *train_seconds, repeats)["steps_per_s"]

    # The model, from the 1-worker (or smallest) figures and the widest triad.
    w0 = workers[0]
    full_bw = max(r["triad_gbs"] for r in rows.values()) * 1e9
    model = {}
    for path in UPDATE_PASSES:
        b = bytes_per_update(path, n)
        if "train steps/s" not in rows[w0]:
            continue  # the model needs a worker's real update rate: training
        updates_per_s = rows[w0]["train steps/s"] / w0 / T_MAX
        model[path] = {
            "bytes_per_update": b,
            "updates_per_s_per_worker": updates_per_s,
            "gbs_per_worker": updates_per_s * b / 1e9,
            "saturating_workers": full_bw / (updates_per_s * b),
        }

    out = {"machine": machine(), "n_params": n, "t_max": T_MAX, "rows": rows, "model": model}
    if a.json:
        print(json.dumps(out))
        return 0
    print(f"machine: {out['machine']}")
    print(f"Atari network: {n:,} float32 parameters; t_max {T_MAX}; medians of {repeats} runs")
    cols = ["triad_gbs", *(f"{p} ms" for p in UPDATE_PASSES)]
    if not a.no_train:
        cols.append("train steps/s")
    print("workers | " + " | ".join(cols) + " | before / fused | three passes / fused")
    for w, r in rows.items():
        cells = [f"{r[c]:.3f}" if "ms" in c else f"{r[c]:.1f}" for c in cols]
        ratios = r["before ms"] / r["fused ms"], r["three passes ms"] / r["fused ms"]
        print(f"{w:7d} | " + " | ".join(cells) + " | {:.2f}x | {:.2f}x".format(*ratios))
    if not model:
        print("\nmodel: needs the training runs (without --no-train)")
        return 0
    print(f"\nmodel (bandwidth of all cores: {full_bw / 1e9:.1f} GB/s, triad):")
    for path, m in model.items():
        print(
            f"  {path:12s}: {m['bytes_per_update'] / 1e6:5.1f} MB/update x "
            f"{m['updates_per_s_per_worker']:6.1f} updates/s = {m['gbs_per_worker']:5.2f} GB/s "
            f"per worker -> saturates at {m['saturating_workers']:.0f} workers"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
