"""Gradient telemetry (``--telemetry-every``): values against a hand-computed update, exact
Hogwild staleness with interleaved workers, and no effect on the update itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nbasync.algos import a3c
from nbasync.algos.base import ActorLearner
from nbasync.algos.telemetry import (
    layer_bounds,
    layer_sq_norms,
    layer_sq_norms_reference,
    rmsprop_delta_sq_norms,
    rmsprop_delta_sq_norms_reference,
)
from nbasync.events import TelemetryEvent
from nbasync.runfile import telemetry_dtype


def _learners(make_learners, n_workers=1, **settings) -> list[ActorLearner]:
    return make_learners(n_workers, **{"seed": 3, **settings})


def _rows(w: ActorLearner) -> np.ndarray:
    """Every telemetry row the learner sent (after flushing its buffer)."""
    w.close()
    dtype = telemetry_dtype(len(w.net.layout))
    chunks = []
    while not w.events.empty():
        ev = w.events.get()
        if isinstance(ev, TelemetryEvent):
            chunks.append(np.frombuffer(ev.rows, dtype))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype)


def _set_gradient(w: ActorLearner, grads: np.ndarray) -> None:
    """Make the learner's backward pass produce exactly ``grads`` (known gradients)."""

    def backward(dout, n):
        w.net.grads[:] = grads

    w.net.backward = backward


def test_kernels_match_plain_numpy():
    rng = np.random.default_rng(0)
    layout = [("a", 0, (3, 4)), ("b", 12, (4,)), ("c", 16, (5, 2))]
    starts, ends = layer_bounds(layout)
    assert starts.tolist() == [0, 12, 16] and ends.tolist() == [12, 16, 26]
    x = rng.standard_normal(26).astype(np.float32)
    g = rng.random(26).astype(np.float32)
    out = np.zeros(3)
    layer_sq_norms(x, starts, ends, out)
    np.testing.assert_allclose(out, layer_sq_norms_reference(x, starts, ends), rtol=1e-12)
    rmsprop_delta_sq_norms(x, g, 0.1, starts, ends, out)
    ref = rmsprop_delta_sq_norms_reference(x, g, 0.1, starts, ends)
    np.testing.assert_allclose(out, ref, rtol=1e-6)


def test_values_of_one_worker_with_known_gradients_computed_by_hand(make_learners):
    """Every gradient element is 2: layer l has norm 2 sqrt(n_l), the whole 2 sqrt(N). With
    grad_clip sqrt(N) the clip fires and halves it to 1 per element; shared g starts at 0, so
    after the step g = (1 - alpha) * 1 and every element moves by lr / sqrt(g + eps)."""
    lr, alpha, eps = 1e-3, 0.99, 0.1
    (w,) = _learners(
        make_learners,
        telemetry_every=1,
        anneal_lr=False,
        lr=lr,
        rmsprop_alpha=alpha,
        rmsprop_eps=eps,
    )
    N = w.net.n_params
    clip = math.sqrt(N)
    w.config = w.config.replace(grad_clip=clip)
    sizes = np.array([math.prod(shape) for _, _, shape in w.net.layout])
    theta0 = w.state.params.copy()
    _set_gradient(w, np.full(N, 2.0, np.float32))
    w.sync()
    assert w.apply_gradients(1)
    step = lr / math.sqrt((1 - alpha) * 1.0 + eps)  # per element, the clipped d being ~1
    np.testing.assert_allclose(w.state.params, theta0 - step, rtol=0, atol=1e-6)

    _set_gradient(w, np.full(N, np.nan, np.float32))  # a skipped update
    w.sync()
    assert not w.apply_gradients(1)
    rows = _rows(w)
    assert len(rows) == 2
    r = rows[0]
    assert (r["worker"], r["update"], r["staleness"], r["skipped"], r["clipped"]) == (0, 1, 0, 0, 1)
    assert r["global_norm"] == pytest.approx(2 * math.sqrt(N), rel=1e-6)
    assert r["lr"] == pytest.approx(lr)
    np.testing.assert_allclose(r["grad_norm"], 2 * np.sqrt(sizes), rtol=1e-5)
    theta_norms = np.array([np.linalg.norm(theta0[o : o + n]) for (_, o, _), n in
                            zip(w.net.layout, sizes, strict=True)])  # fmt: skip
    np.testing.assert_allclose(r["update_ratio"], step * np.sqrt(sizes) / theta_norms, rtol=1e-4)
    assert (r["window_updates"], r["window_clipped"], r["window_skipped"]) == (1, 1, 0)

    s = rows[1]
    assert (s["update"], s["skipped"], s["clipped"], s["lr"]) == (2, 1, 0, 0.0)
    assert np.isnan(s["update_ratio"]).all() and np.isnan(s["global_norm"])
    assert (s["window_updates"], s["window_skipped"]) == (1, 1)
    assert w.state.applied_updates() == 1  # the skipped update wrote nothing


def test_every_k_updates_one_row_whose_window_counts_all_of_them(make_learners):
    (w,) = _learners(make_learners, telemetry_every=3, steps=300, t_max=5)
    a3c.run(w)
    rows = _rows(w)
    updates = w.state.applied_updates() + w.state.skipped_updates(0)[0]
    assert len(rows) == updates // 3
    assert rows["update"].tolist() == list(range(3, 3 * len(rows) + 1, 3))
    assert (rows["window_updates"] == 3).all()
    assert (rows["staleness"] == 0).all() and (rows["window_staleness_max"] == 0).all()
    assert np.isfinite(rows["grad_norm"]).all() and (rows["grad_norm"] > 0).all()
    assert (np.diff(rows["global_step"]) > 0).all()


def test_staleness_counts_the_other_workers_updates_between_sync_and_write(make_learners):
    """Two workers on one shared state, interleaved by hand: exact staleness values."""
    w0, w1 = _learners(make_learners, n_workers=2, telemetry_every=1)
    N = w0.net.n_params
    for w in (w0, w1):
        _set_gradient(w, np.full(N, 0.01, np.float32))
    w0.sync()
    w1.sync()
    w1.apply_gradients(1)  # lands between w0's sync and w0's write
    w0.apply_gradients(1)  # staleness 1
    w1.sync()
    w0.sync()
    w0.apply_gradients(1)
    w0.sync()
    w0.apply_gradients(1)
    w1.apply_gradients(1)  # two of w0's updates landed since w1's sync: staleness 2
    w0.sync()
    w0.apply_gradients(1)  # nobody else wrote: 0
    assert _rows(w0)["staleness"].tolist() == [1, 0, 0, 0]
    assert _rows(w1)["staleness"].tolist() == [0, 2]
    assert w0.state.applied_updates() == 6


def test_telemetry_does_not_change_learning(make_learners):
    """The same single-worker run with telemetry off and on gives identical parameters; off,
    the actor-learner uses the plain methods (nothing bound, no telemetry counter moves).
    Off, the update is the fused one pass (clip scale + step + theta' refresh, ``sync``
    then copies nothing); on, the three passes: so this also checks that they agree bit for
    bit, with clipping firing (grad_clip 0.5)."""
    finals = []
    for every in (0, 1):
        (w,) = _learners(make_learners, telemetry_every=every, steps=400, grad_clip=0.5)
        if every == 0:
            assert w.telemetry is None
            assert "sync" not in vars(w) and "apply_gradients" not in vars(w)
        a3c.run(w)
        if every == 0:
            assert w.state.applied_updates() == 0
        else:
            assert len(_rows(w)) > 0
        finals.append(w.state.params.copy())
    np.testing.assert_array_equal(finals[0], finals[1])


@pytest.mark.parametrize("optimizer", ["shared_rmsprop", "rmsprop", "momentum"])
def test_update_ratio_is_the_step_actually_written(make_learners, optimizer):
    """One worker: theta before minus theta after is the step; its norm per tensor over
    ||theta'|| must be what the row says, whatever the optimiser (two updates, so that the
    optimiser's state is not at its starting zeros)."""
    (w,) = _learners(make_learners, telemetry_every=1, optimizer=optimizer, grad_clip=0.0)
    rng = np.random.default_rng(1)
    N = w.net.n_params
    measured = []
    for _ in range(2):
        _set_gradient(w, rng.standard_normal(N).astype(np.float32))
        w.sync()
        before = w.state.params.astype(np.float64)
        assert w.apply_gradients(1)
        delta = before - w.state.params
        measured.append([np.linalg.norm(delta[o : o + int(np.prod(s))])
                         / np.linalg.norm(before[o : o + int(np.prod(s))])
                         for _, o, s in w.net.layout])  # fmt: skip
    rows = _rows(w)
    np.testing.assert_allclose(rows["update_ratio"], measured, rtol=2e-3)
