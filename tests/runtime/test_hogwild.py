"""Hogwild: 3 processes updating ONE shared vector lock-free (shared RMSProp) converge on a
least-squares problem with a known answer, and agree with the single-process run."""

import os
import queue
import threading

import numpy as np
from _workers import lsq_problem, lsq_worker

from nbasync.runner import run_workers
from nbasync.shared import SEGMENT_PREFIX, SharedState

STEPS, LR0, BATCH = 500, 0.05, 16  # steps per worker; lr annealed to 0 over all workers' steps


def test_three_processes_converge_like_one():
    A, b, x_true = lsq_problem(seed=0)
    n_workers = 3
    total = n_workers * STEPS
    start_err = float(np.linalg.norm(x_true))

    with SharedState.create(A.shape[1], 1, target=False) as s:
        lsq_worker(
            0, s.handle(), (A, b, total, total, LR0, BATCH, 0), queue.Queue(), threading.Event()
        )
        single = s.params.copy()
        assert s.global_step() == total

    done = []
    with SharedState.create(A.shape[1], n_workers, target=False) as s:
        res = run_workers(
            lsq_worker,
            n_workers,
            s,
            lambda i: (A, b, STEPS, total, LR0, BATCH, 1 + i),  # seed = base + index
            on_event=done.append,
            poll_s=0.05,
        )
        assert res.reason == "finished" and len(done) == n_workers
        assert s.global_step() == total
        hogwild = s.params.copy()
        assert np.any(s.opt_stats > 0)  # the workers shared one set of RMSProp statistics

    err_single = np.linalg.norm(single - x_true)
    err_hogwild = np.linalg.norm(hogwild - x_true)
    assert err_single < 0.02 * start_err, err_single
    assert err_hogwild < 0.02 * start_err, err_hogwild
    np.testing.assert_allclose(hogwild, single, atol=0.03 * start_err)
    assert not [
        f for f in os.listdir("/dev/shm") if f.startswith(f"{SEGMENT_PREFIX}{os.getpid()}_")
    ]
