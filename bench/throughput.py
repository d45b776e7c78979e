"""Benchmark: training agent steps per second (act + learn + update), Pong, 1..N workers.

The real thing: ``nbasync.train.train(build_config({...}))`` on ``ALE/Pong-v5`` (the
paper's Atari network, the atari preset) for each algorithm and worker count, stopped by
``time_limit``. The summary's steps / seconds include process start-up (spawn, numba cache
load, env creation), so each cell runs two time limits and takes the slope:

    steps/s = (steps(T2) - steps(T1)) / (elapsed(T2) - elapsed(T1))

median over ``--repeats`` rounds. The rounds interleave the cells (every algorithm and
worker count once per round), and ``/ a3c`` is the median of each round's ratio to A3C at
the same worker count, so a drift of the machine's speed over minutes cancels. A sampler
thread reads ``VmRSS`` from ``/proc/<pid>/status`` of this process's
``multiprocessing.spawn`` children (the workers) every 0.2 s; the table shows the median over
workers of each worker's peak RSS.

When PyTorch imports, ``bench/torch_a3c.py`` (a one-process PyTorch A3C on the same env
pipeline) runs too, and the table shows nbasync A3C with 1 worker / torch (target >= 2).

This machine is shared (other runs, tests): the load average is printed; compare only
ratios from one run.

    python bench/throughput.py [--workers 1 2] [--algos a3c nstep_q] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ALGOS = ("a3c", "nstep_q", "onestep_q", "onestep_sarsa")


class RssSampler(threading.Thread):
    """Peak VmRSS (KiB) of each multiprocessing-spawned child of this process."""

    def __init__(self, period: float = 0.2):
        super().__init__(daemon=True)
        self.period = period
        self.peak: dict[int, int] = {}
        self._halt = threading.Event()

    def _children(self) -> list[int]:
        me = os.getpid()
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid != me:
                    continue
                cmd = Path(f"/proc/{d}/cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if b"spawn_main" in cmd:  # workers, not multiprocessing's resource tracker
                pids.append(int(d))
        return pids

    def run(self) -> None:
        while not self._halt.wait(self.period):
            for pid in self._children():
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            kb = int(line.split()[1])
                            self.peak[pid] = max(self.peak.get(pid, 0), kb)
                            break
                except (OSError, ValueError):
                    pass

    def stop(self) -> list[int]:
        self._halt.set()
        self.join()
        return list(self.peak.values())


def run_once(algo: str, workers: int, seconds: float, out_dir: str) -> tuple[int, float, list]:
    from nbasync.config import build_config
    from nbasync.train import train

    cfg = build_config(
        {
            "algo": algo,
            "env": "ALE/Pong-v5",
            "workers": workers,
            "steps": 10_000_000,
            "time_limit": seconds,
            "quiet": True,
            "eval_episodes": 0,
            "out": out_dir,
        }
    )
    sampler = RssSampler()
    sampler.start()
    try:
        s = train(cfg)
    finally:
        rss = sampler.stop()
    return s.steps, s.elapsed_s, rss


def measure(algo: str, workers: int, t1: float, t2: float) -> tuple[float, list[int]]:
    """One slope: steps/s between the T1 and T2 runs, and the workers' peak RSS (KiB)."""
    with tempfile.TemporaryDirectory() as d:
        n1, e1, _ = run_once(algo, workers, t1, os.path.join(d, "a"))
        n2, e2, rss = run_once(algo, workers, t2, os.path.join(d, "b"))
    return (n2 - n1) / max(e2 - e1, 1e-9), rss


def interleaved(algos, workers, t1: float, t2: float, repeats: int) -> dict:
    """Every (algo, workers) cell once per round, ``repeats`` rounds: the machine's drift
    over minutes then lands on every cell alike, and each round gives a ratio to A3C taken
    minutes apart at most. Returns {(algo, n): {"steps_per_s", "rss_mib", "runs",
    "vs_a3c"}} with medians over the rounds (vs_a3c: None when a3c is not measured)."""
    runs: dict = {(a, n): [] for a in algos for n in workers}
    rss: dict = {(a, n): [] for a in algos for n in workers}
    for _ in range(repeats):
        for algo in algos:
            for n in workers:
                rate, peak = measure(algo, n, t1, t2)
                runs[algo, n].append(rate)
                rss[algo, n].extend(peak)
    cells = {}
    for (algo, n), rates in runs.items():
        base = runs.get(("a3c", n))
        ratios = [r / b for r, b in zip(rates, base, strict=True)] if base else None
        cells[algo, n] = {
            "steps_per_s": statistics.median(rates),
            "rss_mib": statistics.median(rss[algo, n]) / 1024 if rss[algo, n] else None,
            "runs": rates,
            "vs_a3c": statistics.median(ratios) if ratios else None,
            "vs_a3c_runs": ratios,
        }
    return cells


def torch_rate(seconds: float, repeats: int) -> float | None:
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    from bench import torch_a3c

    return statistics.median(torch_a3c.measure(seconds) for _ in range(repeats))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, nargs="+", default=None, help="worker counts")
    p.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    p.add_argument("--seconds", type=float, nargs=2, default=(8.0, 20.0), metavar=("T1", "T2"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    p.add_argument("--quick", action="store_true", help="T1=4 s, T2=10 s, 1 repeat")
    p.add_argument("--json", action="store_true", help="one flat JSON object")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats = (4.0, 10.0), 1
    workers = args.workers or list(range(1, (os.cpu_count() or 1) + 1))
    t1, t2 = args.seconds
    load0 = os.getloadavg()[0]

    out: dict = {
        "env": "ALE/Pong-v5",
        "cpu_count": os.cpu_count(),
        "seconds": f"{t1}/{t2}",
        "repeats": args.repeats,
        "load_avg_start": round(load0, 2),
    }
    cells = interleaved(args.algos, workers, t1, t2, args.repeats)
    rows = []
    for algo in args.algos:
        for n in workers:
            c = cells[algo, n]
            out[f"{algo}_w{n}_steps_per_s"] = round(c["steps_per_s"], 1)
            out[f"{algo}_w{n}_rss_mib_per_worker"] = (
                round(c["rss_mib"], 1) if c["rss_mib"] else None
            )
            if c["vs_a3c"] is not None and algo != "a3c":
                out[f"{algo}_w{n}_over_a3c"] = round(c["vs_a3c"], 3)
            rows.append((algo, n, c))
    tr = None if args.no_torch else torch_rate(t2 - t1, args.repeats)
    out["torch_a3c_w1_steps_per_s"] = round(tr, 1) if tr else None
    nb1 = out.get("a3c_w1_steps_per_s")
    out["ratio_nbasync_a3c_w1_over_torch"] = round(nb1 / tr, 3) if tr and nb1 else None
    out["load_avg_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"# ALE/Pong-v5, atari preset; slope of steps between time limits {t1}s and {t2}s; "
          f"median of {args.repeats} interleaved rounds; load avg {load0:.1f} -> "
          f"{out['load_avg_end']:.1f} "
          f"on {os.cpu_count()} cores")  # fmt: skip
    print(
        f"{'algo':<15}{'workers':>8}{'steps/s':>10}{'per worker':>12}{'RSS/worker MiB':>16}"
        f"{'/ a3c':>8}  rounds / a3c"
    )
    for algo, n, c in rows:
        rss = f"{c['rss_mib']:.0f}" if c["rss_mib"] else "-"
        vs = f"{c['vs_a3c']:.3f}" if c["vs_a3c"] is not None else "-"
        each = " ".join(f"{r:.2f}" for r in c["vs_a3c_runs"] or [])
        print(
            f"{algo:<15}{n:>8}{c['steps_per_s']:>10.0f}{c['steps_per_s'] / n:>12.0f}{rss:>16}"
            f"{vs:>8}  {each}"
        )
    if tr:
        ratio = out["ratio_nbasync_a3c_w1_over_torch"]
        print(f"torch A3C (1 process, 1 thread): {tr:.0f} steps/s; nbasync a3c w1/torch = {ratio}")
    elif not args.no_torch:
        print("torch A3C reference: skipped (torch not importable)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
