"""Where the Atari net's batch-1 forward goes: each layer's kernel timed alone, then the whole.

Not a test. One thread, CPU-time clock, medians of 5 loops of 2,000 calls, weights from
``init_params(0)`` (zero weights would let the ReLU-sparse kernels skip work). The parts
run hot in cache; the whole forward also pays for the layers evicting each other's data
(fc1's 2.65 MB of weights against a 2 MiB L2 on the machine of docs/results/throughput.md).

    python bench/forward_layers.py            # table
    python bench/forward_layers.py --json     # {layer: us, "parts": us, "whole": us}
    python bench/forward_layers.py --quick    # 200 calls per loop
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread, as each worker runs; before numpy is imported

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from nbasync.nn import atari_network  # noqa: E402

LOOPS = 5


def us_per_call(fn, arg, calls: int) -> float:
    fn(arg)
    times = []
    for _ in range(LOOPS):
        t0 = time.thread_time_ns()
        for _ in range(calls):
            fn(arg)
        times.append((time.thread_time_ns() - t0) / calls / 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one flat JSON object")
    ap.add_argument("--quick", action="store_true", help="200 calls per loop instead of 2,000")
    args = ap.parse_args(argv)
    calls = 200 if args.quick else 2000
    net = atari_network(7, max_batch=1)
    net.init_params(0)
    x = np.random.default_rng(0).random((1, *net.input_shape), dtype=np.float32)
    net.forward(x)  # builds the plan of (row 0, batch 1)
    h0, fns = net._plans[(0, 1)]
    names = [layer.name for layer in net.layers if not getattr(layer, "fused", False)]
    h = x if h0 is None else h0
    if h0 is not None:
        np.copyto(h0, x, casting="unsafe")
    result, shapes = {}, {}
    for name, fn in zip(names, fns, strict=True):
        result[name], shapes[name] = us_per_call(fn, h, calls), h.shape
        h = fn(h)
    result["parts"] = sum(result.values())
    result["whole"] = us_per_call(lambda _: net.forward(x), None, calls)
    if args.json:
        print(json.dumps({k: round(v, 2) for k, v in result.items()}))
        return
    for name, t in result.items():
        print(f"{name:<12}{str(shapes.get(name, '')):<20}{t:8.1f} us")


if __name__ == "__main__":
    main()
