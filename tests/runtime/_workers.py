"""Top-level worker functions for the runtime tests (spawn pickles them by name)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from nbasync.envs import EnvError
from nbasync.errors import RunFailedError
from nbasync.optim import clip_grad_norm, linear_lr, make_optimizer
from nbasync.shared import SharedState


def lsq_problem(seed: int = 0, m: int = 128, d: int = 16):
    """Noise-free least squares: every minibatch gradient vanishes at x_true."""
    rng = np.random.default_rng(seed)
    A = (rng.standard_normal((m, d)) / np.sqrt(d)).astype(np.float32)
    x_true = rng.standard_normal(d).astype(np.float32)
    return A, A @ x_true, x_true


def lsq_worker(index, handle, args, events, stop):
    """Minibatch least squares with shared RMSProp on the shared parameter vector."""
    A, b, n_steps, total, lr0, batch, seed = args
    with SharedState.attach(handle) as state:
        params = state.params
        opt = make_optimizer("shared_rmsprop", state.n_params, shared_stats=state.opt_stats)
        rng = np.random.default_rng(seed)
        grads = np.empty_like(params)
        for _ in range(n_steps):
            if state.stop_requested():
                break
            rows = rng.integers(0, A.shape[0], batch)
            Ar = A[rows]
            grads[:] = Ar.T @ (Ar @ params - b[rows]) / batch
            clip_grad_norm(grads, 40.0)
            opt.step(params, grads, linear_lr(lr0, state.global_step(), total))
            state.add_steps(index, 1)
    events.put(("done", index, os.getpid()))


def target_worker(index, handle, args, events, stop):
    """Advance T one step at a time and try the target copy after every step."""
    n_steps, interval = args
    copies = 0
    with SharedState.attach(handle) as state:
        for _ in range(n_steps):
            state.add_steps(index, 1)
            if state.maybe_update_target(interval):
                copies += 1
    events.put(("copies", index, copies))


# what "fail_after" raises: a bug (any exception), bad input, a run failure
_FAILURES = {"ValueError": ValueError, "EnvError": EnvError, "RunFailedError": RunFailedError}


def ready_then_loop(index, handle, args, events, stop):
    """Report (ready, index, pid, environment), then idle until stopped.

    args: None, or a dict with optional "fail_after" / "kill_after" seconds for worker 0 (and
    "fail_with": the name of the exception "fail_after" raises, see _FAILURES), and
    "restart_ok" (a killed-and-restarted worker 0 sees its step slot > 0 and just finishes).
    """
    args = args or {}
    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}
    with SharedState.attach(handle) as state:
        first_life = state.worker_steps(index) == 0
        state.add_steps(index, 1)
        events.put(("ready", index, os.getpid(), env))
        t0 = time.monotonic()
        while not stop.is_set():
            time.sleep(0.01)
            if index == 0 and first_life:
                if "fail_after" in args and time.monotonic() - t0 > args["fail_after"]:
                    raise _FAILURES[args.get("fail_with", "ValueError")]("boom in worker 0")
                if "kill_after" in args and time.monotonic() - t0 > args["kill_after"]:
                    events.put(("dying", index, time.time()))
                    time.sleep(0.05)  # let the queue feeder flush
                    os.kill(os.getpid(), signal.SIGKILL)
            if args.get("restart_ok") and index == 0 and not first_life:
                events.put(("restarted_ran", index, os.getpid()))
                return
            if args.get("finish_after") and time.monotonic() - t0 > args["finish_after"]:
                return


def ignore_stop(index, handle, args, events, stop):
    """A stuck worker: ignores the stop Event and SIGTERM; only SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    events.put(("ready", index, os.getpid(), {}))
    while True:
        time.sleep(0.05)


def stepping_worker(index, handle, args, events, stop):
    """Makes a step every 10 ms until stopped; worker ``args["freeze"]`` stops itself with
    SIGSTOP after ``args["after"]`` seconds (a hung worker: alive, silent, making no step),
    in its first life only (a replacement finds its step slot > 0 and keeps stepping)."""
    args = args or {}
    with SharedState.attach(handle) as state:
        events.put(("ready", index, os.getpid(), {}))
        t0 = time.monotonic()
        frozen = state.worker_steps(index) > 0
        while not state.stop_requested():
            state.add_steps(index, 1)
            time.sleep(0.01)
            if (
                not frozen
                and index == args.get("freeze")
                and time.monotonic() - t0 > args.get("after", 0.3)
            ):
                frozen = True
                events.put(("freezing", index, time.time()))
                time.sleep(0.05)  # let the queue feeder flush
                os.kill(os.getpid(), signal.SIGSTOP)


def moments_worker(index, handle, args, events, stop):
    """Observe this worker's share of a known stream into its own row of the shared moments."""
    from nbasync.normalise import RunningMoments

    stream_obs, stream_ret = args
    with SharedState.attach(handle) as state:
        obs = RunningMoments(state.obs_moments, slot=index + 1)
        ret = RunningMoments(state.return_moments, slot=index + 1)
        share = slice(index, None, state.n_workers)
        for i in range(0, len(stream_obs[share]), 7):  # rollouts of 7 steps
            obs.observe(stream_obs[share][i : i + 7])
            ret.observe(stream_ret[share][i : i + 7])
