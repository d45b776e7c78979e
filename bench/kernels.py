"""Network kernel speed: ms per forward (batch 1) and forward+backward (batch 5, 32).

Not a test. Nets: the paper's Atari net (4x84x84 -> conv 16 8x8/4 -> conv 32 4x4/2 -> fc 256
-> 7 outputs = 6 actions + V) and an MLP (obs 4 -> 64 -> 64 -> 3 outputs = 2 actions + V).
Implementations: nbasync (numba kernels + BLAS GEMMs), a plain NumPy implementation (below,
sliding windows + tensordot) and PyTorch CPU when importable, all on ONE thread. fwd: one
forward pass (torch under no_grad); fwdbwd: a forward of the batch, then a backward that
accumulates every parameter gradient (no input gradient, so conv1's dx is not computed).
Timings are medians over repeats of short timed loops, all measured in this one run, the
implementations interleaved round by round; by default on this thread's CPU time (--clock).

FLOP floor: 2 FLOP per multiply-add of the GEMMs (fwd; dW; dx except the first layer) at
PEAK_GFLOPS, one core's float32 FMA peak (AVX2: 2 FMA x 8 lanes x 2 FLOP per cycle).

    python bench/kernels.py            # table
    python bench/kernels.py --json     # one flat JSON object {net}.{op}.b{batch}.{impl}_ms
    python bench/kernels.py --quick    # for tox: few repeats
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread, as each worker runs; before numpy is imported

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import kernels_recurrent  # noqa: E402  (bench/ is sys.path[0])
from _machine import cpu_model  # noqa: E402

from nbasync.nn import atari_network, mlp_network  # noqa: E402
from nbasync.nn.layers import Conv2d, Dense  # noqa: E402

PEAK_GFLOPS = 68.0  # one Zen 3 core, float32 FMA, ~2.1 GHz sustained (AMD EPYC here)
ATARI_OUT, MLP_OBS, MLP_OUT = 7, 4, 3
BATCHES = {"fwd": (1,), "fwdbwd": (5, 32)}


# ----------------------------------------------------------------------------- nets
def build(net_name, max_batch, dtype=np.float32):
    if net_name == "atari":
        net = atari_network(ATARI_OUT, max_batch=max_batch, dtype=dtype)
    else:
        net = mlp_network(MLP_OBS, MLP_OUT, hidden=(64, 64), max_batch=max_batch, dtype=dtype)
    net.init_params(0)
    return net


def flops(net, op, batch):
    """GEMM FLOPs of one call: forward; + dW of every layer + dx of all but the first."""
    macs = []
    for layer in net.layers:
        if isinstance(layer, Conv2d):
            macs.append(layer.P * layer.K * layer.out_channels)
        elif isinstance(layer, Dense):
            macs.append(layer.in_shape[0] * layer.out_features)
    total = sum(macs)
    if op == "fwdbwd":
        total += sum(macs) + sum(macs[1:])
    return 2 * batch * total


class NumpyNet:
    """The same function in plain NumPy (channels-first), reading the nbasync parameters."""

    def __init__(self, net):
        self.net = net
        self.grads = {name: np.zeros_like(net.param(name)) for name in net.param_names}

    def forward(self, x):
        self.cache = []
        h = x
        for layer in self.net.layers:
            kind = type(layer).__name__
            if kind == "Conv2d":
                W, b = self.net.param(layer.name + ".weight"), self.net.param(layer.name + ".bias")
                s = layer.stride
                win = sliding_window_view(h, (layer.kh, layer.kw), axis=(2, 3))[:, :, ::s, ::s]
                self.cache.append((layer, h, win))
                h = np.tensordot(win, W, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
                h = h + b[:, None, None]
            elif kind == "Dense":
                W, b = self.net.param(layer.name + ".weight"), self.net.param(layer.name + ".bias")
                self.cache.append((layer, h, None))
                h = h @ W.T + b
            elif kind == "ReLU":
                h = np.maximum(h, 0)
                self.cache.append((layer, h, None))
            else:  # Flatten
                self.cache.append((layer, h.shape, None))
                h = h.reshape(h.shape[0], -1)
        return h

    def backward(self, dout):
        dy = dout
        for i in range(len(self.cache) - 1, -1, -1):
            layer, saved, win = self.cache[i]
            kind = type(layer).__name__
            if kind == "Conv2d":
                W = self.net.param(layer.name + ".weight")
                self.grads[layer.name + ".weight"] += np.tensordot(
                    dy, win, axes=([0, 2, 3], [0, 2, 3])
                )
                self.grads[layer.name + ".bias"] += dy.sum(axis=(0, 2, 3))
                if i == 0:
                    return
                dwin = np.tensordot(dy, W, axes=([1], [0]))  # (B, OH, OW, C, kh, kw)
                dx = np.zeros_like(saved)
                s, OH, OW = layer.stride, dy.shape[2], dy.shape[3]
                for a in range(layer.kh):
                    for c in range(layer.kw):
                        dx[:, :, a : a + s * OH : s, c : c + s * OW : s] += dwin[
                            ..., a, c
                        ].transpose(0, 3, 1, 2)
                dy = dx
            elif kind == "Dense":
                W = self.net.param(layer.name + ".weight")
                self.grads[layer.name + ".weight"] += dy.T @ saved
                self.grads[layer.name + ".bias"] += dy.sum(axis=0)
                if i == 0:
                    return
                dy = dy @ W
            elif kind == "ReLU":
                dy = dy * (saved > 0)
            else:
                dy = dy.reshape(saved)


def torch_model(net):
    """torch.nn.Sequential with the nbasync weights copied in, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    mods = []
    for layer in net.layers:
        kind = type(layer).__name__
        if kind == "Conv2d":
            m = torch.nn.Conv2d(layer.in_shape[0], layer.out_channels, (layer.kh, layer.kw),
                                stride=layer.stride)  # fmt: skip
        elif kind == "Dense":
            m = torch.nn.Linear(layer.in_shape[0], layer.out_features)
        elif kind == "ReLU":
            m = torch.nn.ReLU()
        else:
            m = torch.nn.Flatten()
        if kind in ("Conv2d", "Dense"):
            m = m.double() if net.dtype == np.float64 else m
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(net.param(layer.name + ".weight").copy()))
                m.bias.copy_(torch.from_numpy(net.param(layer.name + ".bias").copy()))
        mods.append(m)
    model = torch.nn.Sequential(*mods)
    return model.double() if net.dtype == np.float64 else model


# ----------------------------------------------------------------------------- timing
CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]  # set by main(): --clock


def _calibrate(fn, min_time):
    """Calls per timed loop so that one loop takes about min_time."""
    fn()
    n = 1
    while True:
        t0 = clock()
        for _ in range(n):
            fn()
        if clock() - t0 > min_time or n >= 4096:
            return n
        n *= 2


def timeit(fns, repeats, min_time=0.02):
    """Median ms per call of each fn (dict name -> fn) over ``repeats`` rounds, as
    ``{name}_ms``, and ``{name}_over_nbasync_paired`` (median of the per-round ratios).

    The implementations are INTERLEAVED (one timed loop of each per round), so a load
    change on a shared machine hits all of them alike and their ratios stay meaningful."""
    counts = {name: _calibrate(fn, min_time) for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            n = counts[name]
            t0 = clock()
            for _ in range(n):
                fn()
            times[name].append((clock() - t0) / n)
    out = {f"{name}_ms": 1e3 * statistics.median(t) for name, t in times.items()}
    # also each other implementation over nbasync, per round (one round's loops run
    # milliseconds apart, so the slow and fast spells of a shared machine cancel), median
    base = times.get("nbasync")
    for name, t in times.items():
        if base is not None and name != "nbasync":
            ratios = [a / b for a, b in zip(t, base, strict=True)]
            out[f"{name}_over_nbasync_paired"] = statistics.median(ratios)
    return out


def bench_net(net_name, repeats, sanity):
    results = {}
    floors = {}
    rng = np.random.default_rng(0)
    for op, batches in BATCHES.items():
        for B in batches:
            net = build(net_name, max_batch=B)
            x = rng.random((B, *net.input_shape), dtype=np.float32)
            dout = rng.standard_normal((B, net.n_outputs), dtype=np.float32)
            key = f"{net_name}.{op}.b{B}"
            floors[key] = flops(net, op, B)
            ref = NumpyNet(net)
            fns = {}
            if op == "fwd":
                fns["nbasync"] = lambda n=net, x=x: n.forward(x)
                fns["numpy"] = lambda r=ref, x=x: r.forward(x)
            else:

                def nb_step(net=net, x=x, dout=dout, B=B):
                    net.forward(x)
                    net.backward(dout, B)

                def np_step(ref=ref, x=x, dout=dout):
                    ref.forward(x)
                    ref.backward(dout)

                fns["nbasync"], fns["numpy"] = nb_step, np_step
            model = torch_model(net)
            if model is not None:
                import torch

                tx, tdout = torch.from_numpy(x), torch.from_numpy(dout)
                if op == "fwd":

                    def t_step(model=model, tx=tx):
                        with torch.no_grad():
                            model(tx)
                else:

                    def t_step(model=model, tx=tx, tdout=tdout):
                        model(tx).backward(tdout)

                fns["torch"] = t_step
            for what, value in timeit(fns, repeats).items():
                results[f"{key}.{what}"] = value
            if sanity is not None and op == "fwdbwd":
                net64 = build(net_name, max_batch=B, dtype=np.float64)
                if model is not None:
                    sanity[key] = check_against_torch(net64, torch_model(net64), x, dout)
                else:
                    sanity[key] = check_against_numpy(net64, x, dout)
    return results, floors


def _grad_diff(a, g):
    """||a - g|| / ||g||: a norm, not a max, since in float32 a ReLU unit whose input is within
    rounding of 0 may be on in one implementation and off in the other (a kink, not a bug)."""
    return float(np.linalg.norm(a - g) / max(np.linalg.norm(g), 1e-30))


def check_against_torch(net, model, x, dout):
    """Worst relative difference of outputs (max) and parameter gradients (norm) vs torch.

    Run in float64 (same weights): in float32 a ReLU input within rounding of 0 can be on in
    one implementation and off in the other, which moves a gradient by ~1% (seen here)."""
    import torch

    net.zero_grad()
    out = net.forward(x).copy()
    net.backward(dout.astype(net.dtype), x.shape[0])
    model.zero_grad()
    tout = model(torch.from_numpy(x.astype(net.dtype)))
    tout.backward(torch.from_numpy(dout.astype(net.dtype)))
    worst = float(np.abs(out - tout.detach().numpy()).max() / np.abs(out).max())
    params = dict(model.named_parameters())
    layer_of = {layer.name: i for i, layer in enumerate(net.layers)}
    for name in net.param_names:
        lname, suffix = name.split(".")
        g = params[f"{layer_of[lname]}.{suffix}"].grad.numpy()
        worst = max(worst, _grad_diff(net.grad(name), g))
    return worst


def check_against_numpy(net, x, dout):
    net.zero_grad()
    out = net.forward(x).copy()
    net.backward(dout.astype(net.dtype), x.shape[0])
    ref = NumpyNet(net)
    rout = ref.forward(x.astype(net.dtype))
    ref.backward(dout.astype(net.dtype))
    worst = float(np.abs(out - rout).max() / np.abs(rout).max())
    for name in net.param_names:
        worst = max(worst, _grad_diff(net.grad(name), ref.grads[name]))
    return worst


def machine():
    versions = [f"numpy {np.__version__}"]
    import numba

    versions.append(f"numba {numba.__version__}")
    try:
        import torch

        versions.append(f"torch {torch.__version__}")
    except ImportError:
        versions.append("torch not installed")
    core = os.environ.get("OPENBLAS_CORETYPE")
    extra = f", OPENBLAS_CORETYPE={core}" if core else ""
    return f"{cpu_model()}, {os.cpu_count()} cores, 1 thread used; {', '.join(versions)}{extra}"


def load():
    """1-minute load average and CPU count (other jobs on the machine skew every timing)."""
    try:
        one = os.getloadavg()[0]
    except OSError:
        return "unknown"
    return f"{one:.2f} (1-min average) on {os.cpu_count()} cores"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one flat JSON object")
    ap.add_argument("--quick", action="store_true", help="few repeats (for tox)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument(
        "--net",
        choices=("atari", "mlp", *kernels_recurrent.NETS),
        nargs="*",
        default=["atari", "mlp", *kernels_recurrent.NETS],
        help="lstm_mlp, lstm_atari, gaussian: the recurrent / continuous nets "
        "(bench/kernels_recurrent.py, batch 1 forward and batch t_max=5 forward+backward)",
    )
    ap.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="cpu",
        help="cpu: this thread's CPU time (default: on a shared machine it leaves out the "
        "time other processes hold the core; cache sharing still shows); wall: elapsed time",
    )
    args = ap.parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]
    repeats = args.repeats or (3 if args.quick else 15)
    results, floors, sanity = {}, {}, {}
    recurrent = [n for n in args.net if n in kernels_recurrent.NETS]
    for net_name in args.net:
        if net_name in recurrent:
            results.update(kernels_recurrent.bench_net(net_name, repeats))
            continue
        r, f = bench_net(net_name, repeats, sanity)
        results.update(r)
        floors.update(f)
    if args.json:  # the flat {net}.{op}.b{batch}.{impl}_ms keys only
        print(json.dumps({k: v for k, v in results.items() if k.endswith("_ms")}, sort_keys=True))
        return
    print(f"machine: {machine()}")
    print(f"load: {load()}")
    print(
        f"floor: GEMM FLOPs at {PEAK_GFLOPS:.0f} GFLOP/s (1 core, float32); ms per call,"
        f" {args.clock} clock, medians of {repeats} interleaved rounds"
    )
    head = f"{'case':<18}{'MFLOP':>8}{'floor ms':>10}{'nbasync':>10}{'numpy':>10}{'torch':>10}"
    print(head + f"{'torch/nb':>10}{'numpy/nb':>10}{'paired':>9}")
    for key, fl in floors.items():
        nb = results[f"{key}.nbasync_ms"]
        npy = results[f"{key}.numpy_ms"]
        th = results.get(f"{key}.torch_ms")
        row = f"{key:<18}{fl / 1e6:>8.2f}{fl / PEAK_GFLOPS / 1e6:>10.3f}{nb:>10.3f}{npy:>10.3f}"
        row += f"{th:>10.3f}" if th is not None else f"{'-':>10}"
        row += f"{th / nb:>9.2f}x" if th is not None else f"{'-':>10}"
        row += f"{npy / nb:>9.2f}x"
        paired = results.get(f"{key}.torch_over_nbasync_paired")
        row += f"{paired:>8.2f}x" if paired is not None else f"{'-':>9}"
        print(row)
    print("paired: torch/nbasync per interleaved round, median (robust to load spells)")
    for key, err in sanity.items():
        print(f"check {key} (float64): outputs, gradients vs torch (or numpy): {err:.1e}")
    if recurrent:
        print("recurrent / continuous nets (wall clock, medians; no FLOP floor computed):")
        print(f"{'case':<22}{'nbasync':>10}{'numpy':>10}{'torch':>10}{'torch/nb':>10}")
        for name in recurrent:
            for op, batch in kernels_recurrent.BATCHES.items():
                key = f"{name}.{op}.b{batch}"
                nb, npy = results[f"{key}.nbasync_ms"], results[f"{key}.numpy_ms"]
                th = results.get(f"{key}.torch_ms")
                row = f"{key:<22}{nb:>10.3f}{npy:>10.3f}"
                row += f"{th:>10.3f}{th / nb:>9.2f}x" if th is not None else f"{'-':>10}{'-':>10}"
                print(row)


if __name__ == "__main__":
    main()
