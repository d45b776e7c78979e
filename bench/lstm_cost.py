"""Benchmark: what the LSTM adds to an A3C agent step, part by part, against feed-forward.

Not a test. One worker's real loop (``nbasync.train.run_in_process``: a throwaway shared state, in
this process) is timed in CPU time per agent step for the feed-forward net and the same net with
``--recurrent``, cases interleaved, medians over ``--repeats``. The learning rate is ~0
(1e-12) so both nets play the same random episodes: a net that learns plays longer episodes
and changes the steps per update, which would be a different comparison.

Then the parts, each timed alone on the network the preset builds: the forward at batch 1
(per step), the backward over t_max = 5 rows (per step), and the update path (global norm,
shared RMSProp step and theta' copy in one pass; per step = per update / 5) plus zero_grad.
What is left of the loop's difference is state handling and the shorter rollouts at episode
ends. CPU time, so other jobs on the machine skew it less than wall time (caches still
shared): compare the columns of one run only.

    python bench/lstm_cost.py                       # CartPole-v1, classic preset
    python bench/lstm_cost.py --env ALE/Pong-v5 --steps 2000
    python bench/lstm_cost.py --quick               # for tox: seconds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import machine  # noqa: E402  (bench/ is sys.path[0])

from nbasync.algos import get_algorithm  # noqa: E402
from nbasync.build import build_network, probe_env  # noqa: E402
from nbasync.config import build_config  # noqa: E402
from nbasync.optim import clip_scale, global_norm, make_optimizer  # noqa: E402
from nbasync.train import run_in_process  # noqa: E402

T_MAX = 5


def cpu_us(fn, calls: int, repeats: int = 5) -> float:
    """Median CPU microseconds of one ``fn()`` call (after one warm call)."""
    fn()
    runs = []
    for _ in range(repeats):
        t0 = time.thread_time()
        for _ in range(calls):
            fn()
        runs.append((time.thread_time() - t0) / calls * 1e6)
    return statistics.median(runs)


def loop_us_per_step(settings: dict, steps: int) -> float:
    """CPU us per agent step of one worker's whole loop (act, learn, update)."""
    config = build_config({"algo": "a3c", "workers": 1, "steps": steps, **settings})
    t0 = time.thread_time()
    run_in_process(config, get_algorithm(config.algo))
    return (time.thread_time() - t0) / steps * 1e6


def parts_us_per_step(settings: dict, calls: int) -> dict[str, float]:
    """Forward, backward, update path and zero_grad, each per agent step."""
    config = build_config({"algo": "a3c", **settings})
    algo = get_algorithm(config.algo)
    info = probe_env(config, algo.continuous)
    net = build_network(config, info, algo.head, max_batch=T_MAX + 1)
    net.init_params(0)
    rng = np.random.default_rng(0)
    x = rng.random((1, *net.input_shape)).astype(np.float32)
    dout = rng.standard_normal((T_MAX, net.n_outputs)).astype(np.float32)

    def forward_rollout():
        net.reset_state()
        for row in range(T_MAX):
            net.forward(x, row=row)

    def backward():
        net.backward(dout, T_MAX)

    forward_rollout()
    n = net.n_params
    optimizer = make_optimizer(
        "shared_rmsprop",
        n,
        shared_stats=np.full(n, 1e-3, np.float32),
        alpha=config.rmsprop_alpha,
        eps=config.rmsprop_eps,
    )
    theta = net.params.copy()
    grads = (rng.random(n, dtype=np.float32) - 0.5) * 1e-2

    def update():
        norm = global_norm(grads)
        optimizer.step_and_copy(theta, grads, 1e-12, net.params, grad_scale=clip_scale(norm, 40.0))

    return {
        "params": n,
        "forward": cpu_us(forward_rollout, calls) / T_MAX,
        "backward": cpu_us(backward, calls) / T_MAX,
        "update": cpu_us(update, calls) / T_MAX,
        "zero_grad": cpu_us(net.zero_grad, calls) / T_MAX,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--steps", type=int, default=20_000, help="agent steps per loop run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="seconds, not minutes (for tox)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = min(args.steps, 500), 1
    atari = args.env.startswith("ALE/")
    cases = {
        "feed-forward": {"env": args.env, "lr": 1e-12},
        "LSTM": {"env": args.env, "lr": 1e-12, "recurrent": True},
    }
    print(machine())
    for settings in cases.values():  # compile / load the numba cache outside the timing
        loop_us_per_step(settings, 3 * (T_MAX + 1))
    loops: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, settings in cases.items():
            loops[name].append(loop_us_per_step(settings, args.steps))
    calls = 50 if atari else (200 if args.quick else 2000)
    parts = {name: parts_us_per_step(settings, calls) for name, settings in cases.items()}
    ff, lstm = (statistics.median(loops[name]) for name in cases)
    print(f"{args.env}, one worker in-process, CPU us per agent step (medians):")
    print(f"{'':34s}{'feed-forward':>14s}{'LSTM':>12s}{'extra':>10s}")
    print(
        f"{'parameters':34s}{parts['feed-forward']['params']:>14,d}{parts['LSTM']['params']:>12,d}"
    )
    print(f"{'whole worker loop':34s}{ff:>14.1f}{lstm:>12.1f}{lstm - ff:>10.1f}")
    for part in ("forward", "backward", "update", "zero_grad"):
        a, b = parts["feed-forward"][part], parts["LSTM"][part]
        print(f"{part + ' (per step)':34s}{a:>14.1f}{b:>12.1f}{b - a:>10.1f}")
    print(f"LSTM / feed-forward steps/s: {ff / lstm:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
