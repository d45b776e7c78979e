"""Recurrent and continuous-action nets: ms per forward (batch 1) and forward+backward (batch 5).

Not a test. Nets (batch 5 = t_max: one rollout, backpropagated through time):
  lstm_mlp    obs 4 -> fc 64 + ReLU -> LSTM 64 -> 3 outputs (2 actions + V)
  lstm_atari  4x84x84 -> conv 16 8x8/4 -> conv 32 4x4/2 -> fc 256 -> LSTM 256 -> 7 outputs
  gaussian    policy obs 3 -> 200 + ReLU -> 2 (mean, pre-variance) and a separate value net
              obs 3 -> 200 + ReLU -> 1 (one flat vector, NetworkPair); fwdbwd includes the
              Gaussian A3C loss and its gradient (Pendulum-v1 sizes)
Implementations: nbasync (numba kernels + BLAS), a plain NumPy implementation (below) and
PyTorch CPU when importable (torch.set_num_threads(1); autograd; nn.LSTM over the 5 steps as
one sequence), all on ONE thread. fwd: one step of acting (batch 1; torch under no_grad);
fwdbwd: the forward of 5 rows (5 time steps from a zero state) then a backward accumulating
every parameter gradient. Medians over repeats of short timed loops, all in this one run.
A float64 sanity check against torch (or NumPy) is printed under the table.

    python bench/kernels_recurrent.py            # table
    python bench/kernels_recurrent.py --json     # flat JSON {net}.{op}.b{batch}.{impl}_ms
    python bench/kernels_recurrent.py --quick    # few repeats
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

from nbasync.nn import (  # noqa: E402
    NetworkPair,
    atari_network,
    gaussian_a3c_loss,
    mlp_network,
)

NETS = ("lstm_mlp", "lstm_atari", "gaussian")
T_MAX = 5
BATCHES = {"fwd": 1, "fwdbwd": T_MAX}


def build(name, max_batch, dtype=np.float32):
    if name == "lstm_mlp":
        net = mlp_network(4, 3, hidden=(64,), lstm_size=64, max_batch=max_batch, dtype=dtype)
    elif name == "lstm_atari":
        net = atari_network(7, lstm_size=256, max_batch=max_batch, dtype=dtype)
    else:
        net = NetworkPair(
            mlp_network(3, 2, hidden=(200,), max_batch=max_batch, dtype=dtype),
            mlp_network(3, 1, hidden=(200,), max_batch=max_batch, dtype=dtype),
        )
    net.init_params(0)
    return net


def _layers(net):
    """(prefix, layers, net) of each sub-network."""
    if isinstance(net, NetworkPair):
        return [(f"{n}.", sub.layers, sub) for n, sub in zip(net.names, net.nets, strict=True)]
    return [("", net.layers, net)]


# ----------------------------------------------------------------------------- NumPy
def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


class NumpyNet:
    """The same function in plain NumPy (channels-first conv, LSTM loop over time)."""

    def __init__(self, net):
        self.net = net
        self.grads = {name: np.zeros_like(net.param(name)) for name in net.param_names}

    def forward(self, x):
        self.caches = []
        outs = []
        for prefix, layers, _ in _layers(self.net):
            cache, h = [], x
            for layer in layers:
                h = self._fwd(prefix, layer, h, cache)
            self.caches.append(cache)
            outs.append(h)
        return np.concatenate(outs, axis=1) if len(outs) > 1 else outs[0]

    def _fwd(self, prefix, layer, h, cache):
        kind = type(layer).__name__
        P = lambda s: self.net.param(prefix + layer.name + "." + s)  # noqa: E731
        if kind == "Conv2d":
            s = layer.stride
            win = sliding_window_view(h, (layer.kh, layer.kw), axis=(2, 3))[:, :, ::s, ::s]
            cache.append((layer, h, win))
            y = np.tensordot(win, P("weight"), axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
            return y + P("bias")[:, None, None]
        if kind == "Dense":
            cache.append((layer, h, None))
            return h @ P("weight").T + P("bias")
        if kind == "ReLU":
            y = np.maximum(h, 0)
            cache.append((layer, y, None))
            return y
        if kind == "Flatten":
            cache.append((layer, h.shape, None))
            return h.reshape(h.shape[0], -1)
        # LSTM over the rows as time steps, from zeros
        H = layer.hidden_size
        Wih, Whh, b = P("weight_ih"), P("weight_hh"), P("bias")
        xw = h @ Wih.T + b
        hp, cp = np.zeros(H, h.dtype), np.zeros(H, h.dtype)
        steps = []
        ys = np.empty((h.shape[0], H), h.dtype)
        for t in range(h.shape[0]):
            a = xw[t] + Whh @ hp
            i, f, g, o = (
                _sig(a[:H]),
                _sig(a[H : 2 * H]),
                np.tanh(a[2 * H : 3 * H]),
                _sig(a[3 * H :]),
            )
            c = f * cp + i * g
            tc = np.tanh(c)
            steps.append((i, f, g, o, cp, tc, hp))
            hp, cp = o * tc, c
            ys[t] = hp
        cache.append((layer, h, steps))
        return ys

    def backward(self, dout):
        col = 0
        for (prefix, _, sub), cache in zip(_layers(self.net), self.caches, strict=True):
            dy = dout[:, col : col + sub.n_outputs]
            col += sub.n_outputs
            for i in range(len(cache) - 1, -1, -1):
                dy = self._bwd(prefix, cache[i], dy, first=i == 0)
                if dy is None:
                    break

    def _bwd(self, prefix, entry, dy, first):
        layer, saved, extra = entry
        kind = type(layer).__name__
        name = prefix + layer.name + "."
        G = self.grads
        if kind == "Conv2d":
            W = self.net.param(name + "weight")
            G[name + "weight"] += np.tensordot(dy, extra, axes=([0, 2, 3], [0, 2, 3]))
            G[name + "bias"] += dy.sum(axis=(0, 2, 3))
            if first:
                return None
            dwin = np.tensordot(dy, W, axes=([1], [0]))
            dx = np.zeros_like(saved)
            s, OH, OW = layer.stride, dy.shape[2], dy.shape[3]
            for a in range(layer.kh):
                for c in range(layer.kw):
                    dx[:, :, a : a + s * OH : s, c : c + s * OW : s] += dwin[..., a, c].transpose(
                        0, 3, 1, 2
                    )
            return dx
        if kind == "Dense":
            W = self.net.param(name + "weight")
            G[name + "weight"] += dy.T @ saved
            G[name + "bias"] += dy.sum(axis=0)
            return None if first else dy @ W
        if kind == "ReLU":
            return dy * (saved > 0)
        if kind == "Flatten":
            return dy.reshape(saved)
        H = layer.hidden_size
        Whh = self.net.param(name + "weight_hh")
        da = np.empty((dy.shape[0], 4 * H), dy.dtype)
        dh, dc = np.zeros(H, dy.dtype), np.zeros(H, dy.dtype)
        hprev = np.empty((dy.shape[0], H), dy.dtype)
        for t in range(dy.shape[0] - 1, -1, -1):
            i, f, g, o, cp, tc, hp = extra[t]
            hprev[t] = hp
            dht = dy[t] + dh
            dct = dht * o * (1 - tc * tc) + dc
            da[t] = np.concatenate(
                [dct * g * i * (1 - i), dct * cp * f * (1 - f), dct * i * (1 - g * g),
                 dht * tc * o * (1 - o)]
            )  # fmt: skip
            dc = dct * f
            dh = Whh.T @ da[t]
        G[name + "weight_ih"] += da.T @ saved
        G[name + "weight_hh"] += da.T @ hprev
        G[name + "bias"] += da.sum(axis=0)
        return None if first else da @ self.net.param(name + "weight_ih")


def numpy_gaussian_dout(out, actions, returns, beta=1e-4, vw=0.5):
    """The Gaussian A3C loss gradient in NumPy (D = 1), as nbasync.nn.gaussian_a3c_loss."""
    mu, s, v = out[:, :1], out[:, 1:2], out[:, 2]
    var = np.logaddexp(0.0, s) + 1e-4
    u = actions - mu
    adv = (returns - v)[:, None]
    dout = np.empty_like(out)
    dout[:, :1] = -adv * u / var
    dout[:, 1:2] = (-adv * 0.5 * (u * u / var**2 - 1 / var) - beta * 0.5 / var) * _sig(s)
    dout[:, 2] = -2 * vw * adv[:, 0]
    return dout


# ----------------------------------------------------------------------------- torch
def torch_model(net):
    """A torch module with the nbasync weights copied in (None without torch)."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    tdtype = torch.float64 if net.dtype == np.float64 else torch.float32

    class Seq(torch.nn.Module):
        def __init__(self, prefix, layers):
            super().__init__()
            self.mods = torch.nn.ModuleList()
            for layer in layers:
                kind = type(layer).__name__
                P = lambda s, layer=layer: torch.from_numpy(  # noqa: E731
                    net.param(prefix + layer.name + "." + s).copy()
                )
                if kind == "Conv2d":
                    m = torch.nn.Conv2d(
                        layer.in_shape[0], layer.out_channels, (layer.kh, layer.kw),
                        stride=layer.stride,
                    )  # fmt: skip
                elif kind == "Dense":
                    m = torch.nn.Linear(layer.in_shape[0], layer.out_features)
                elif kind == "ReLU":
                    m = torch.nn.ReLU()
                elif kind == "Flatten":
                    m = torch.nn.Flatten()
                else:
                    m = torch.nn.LSTM(layer.in_shape[0], layer.hidden_size)
                m = m.to(tdtype)
                with torch.no_grad():
                    if kind in ("Conv2d", "Dense"):
                        m.weight.copy_(P("weight"))
                        m.bias.copy_(P("bias"))
                    elif kind == "LSTM":
                        m.weight_ih_l0.copy_(P("weight_ih"))
                        m.weight_hh_l0.copy_(P("weight_hh"))
                        m.bias_ih_l0.copy_(P("bias"))
                        m.bias_hh_l0.zero_()
                self.mods.append(m)

        def forward(self, x):
            for m in self.mods:
                # an LSTM sees the rows as time steps of one sequence (batch 1)
                x = m(x.unsqueeze(1))[0].squeeze(1) if isinstance(m, torch.nn.LSTM) else m(x)
            return x

    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.subs = torch.nn.ModuleList(
                Seq(prefix, layers) for prefix, layers, _ in _layers(net)
            )

        def forward(self, x):
            outs = [s(x) for s in self.subs]
            return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]

    return Pair()


def torch_gaussian_loss(out, actions, returns, beta=1e-4, vw=0.5):
    import torch

    mu, s, v = out[:, :1], out[:, 1:2], out[:, 2]
    var = torch.nn.functional.softplus(s) + 1e-4
    logp = (-0.5 * (actions - mu) ** 2 / var - 0.5 * torch.log(2 * torch.pi * var)).sum(1)
    H = (0.5 * torch.log(2 * torch.pi * torch.e * var)).sum(1)
    adv = returns - v
    return (-(logp * adv.detach()) - beta * H + vw * adv**2).sum()


# ----------------------------------------------------------------------------- timing
def timeit(fn, repeats, min_time=0.02):
    """Median ms per call over ``repeats`` loops of n calls each (n: ~min_time per loop)."""
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t0 > min_time or n >= 4096:
            break
        n *= 2
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n)
    return 1e3 * statistics.median(times)


def _inputs(net, B, rng, dtype):
    x = rng.random((B, *net.input_shape)).astype(dtype)
    dout = rng.standard_normal((B, net.n_outputs)).astype(dtype)
    actions = rng.standard_normal((B, 1)).astype(dtype)
    returns = rng.standard_normal(B).astype(dtype)
    return x, dout, actions, returns


def bench_net(name, repeats):
    results = {}
    rng = np.random.default_rng(0)
    gaussian = name == "gaussian"
    for op, B in BATCHES.items():
        net = build(name, max_batch=T_MAX + 1)
        x, dout, actions, returns = _inputs(net, B, rng, np.float32)
        ref = NumpyNet(net)
        buf = np.zeros((B, net.n_outputs), np.float32)
        key = f"{name}.{op}.b{B}"
        if op == "fwd":

            def nb(net=net, x=x):
                net.forward(x, 0)
                net.carry_state(1)

            def npf(ref=ref, x=x):
                ref.forward(x)

        else:

            def nb(net=net, x=x, dout=dout, B=B, buf=buf, actions=actions, returns=returns):
                net.reset_state()
                out = net.forward(x, 0)
                if gaussian:
                    gaussian_a3c_loss(out, actions, returns, 1e-4, 0.5, buf)
                    net.backward(buf, B)
                else:
                    net.backward(dout, B)

            def npf(ref=ref, x=x, dout=dout, actions=actions, returns=returns):
                out = ref.forward(x)
                ref.backward(numpy_gaussian_dout(out, actions, returns) if gaussian else dout)

        net.reset_state()
        results[f"{key}.nbasync_ms"] = timeit(nb, repeats)
        results[f"{key}.numpy_ms"] = timeit(npf, repeats)
        model = torch_model(net)
        if model is not None:
            import torch

            tx, tdout = torch.from_numpy(x), torch.from_numpy(dout)
            ta, tr = torch.from_numpy(actions), torch.from_numpy(returns)
            if op == "fwd":
                # acting: one step of the LSTM with its state carried (h, c) by torch
                def t_step(model=model, tx=tx):
                    with torch.no_grad():
                        model(tx)
            else:

                def t_step(model=model, tx=tx, tdout=tdout, ta=ta, tr=tr):
                    out = model(tx)
                    if gaussian:
                        torch_gaussian_loss(out, ta, tr).backward()
                    else:
                        out.backward(tdout)

            results[f"{key}.torch_ms"] = timeit(t_step, repeats)
    return results


def sanity(name):
    """float64: worst relative difference of outputs and gradients vs torch (else NumPy)."""
    net = build(name, max_batch=T_MAX + 1, dtype=np.float64)
    rng = np.random.default_rng(1)
    x, dout, actions, returns = _inputs(net, T_MAX, rng, np.float64)
    net.reset_state()
    net.zero_grad()
    out = net.forward(x, 0).copy()
    if name == "gaussian":
        dout = np.zeros_like(out)
        gaussian_a3c_loss(out, actions, returns, 1e-4, 0.5, dout)
    net.backward(dout, T_MAX)
    model = torch_model(net)
    if model is None:
        ref = NumpyNet(net)
        rout = ref.forward(x)
        ref.backward(dout)
        grads = ref.grads
        against = "numpy"
    else:
        import torch

        tout = model(torch.from_numpy(x))
        if name == "gaussian":
            torch_gaussian_loss(
                tout, torch.from_numpy(actions), torch.from_numpy(returns)
            ).backward()
        else:
            tout.backward(torch.from_numpy(dout))
        rout = tout.detach().numpy()
        # torch's parameter order matches the layout, except the LSTM's extra bias_hh
        tp = [p for (n, p) in model.named_parameters() if not n.endswith("bias_hh_l0")]
        grads = {name_: p.grad.numpy() for name_, p in zip(net.param_names, tp, strict=True)}
        against = "torch"
    worst = float(np.abs(out - rout).max() / np.abs(rout).max())
    for pname in net.param_names:
        g = grads[pname]
        worst = max(worst, float(np.linalg.norm(net.grad(pname) - g) / np.linalg.norm(g)))
    return against, worst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one flat JSON object")
    ap.add_argument("--quick", action="store_true", help="few repeats")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--net", choices=NETS, nargs="*", default=list(NETS))
    args = ap.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 15)
    results = {}
    for name in args.net:
        results.update(bench_net(name, repeats))
    if args.json:
        print(json.dumps(results, indent=None, sort_keys=True))
        return 0
    impls = ("nbasync", "numpy", "torch")
    print(f"{'net':<12} {'op':<7} {'batch':>5} " + " ".join(f"{i + ' ms':>11}" for i in impls))
    for name in args.net:
        for op, B in BATCHES.items():
            key = f"{name}.{op}.b{B}"
            cells = [results.get(f"{key}.{i}_ms") for i in impls]
            print(
                f"{name:<12} {op:<7} {B:>5} "
                + " ".join(f"{c:>11.4f}" if c is not None else f"{'-':>11}" for c in cells)
            )
    for name in args.net:
        against, worst = sanity(name)
        print(f"sanity {name}: float64 vs {against}, worst relative difference {worst:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
