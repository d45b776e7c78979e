"""What every actor-learner has in common: a local network theta', its environment, its RNG,
its optimiser, the shared state it reads from and writes to, and the act loop.

An algorithm module only writes its choice of action, its targets and its loss (see
``a3c.py``, ``nstep_q.py``, ...); everything about buffers, the act loop
(:meth:`ActorLearner.rollout`), episode bookkeeping, the global step T, the target copy and
the lock-free update lives here once. The parts themselves (environment, networks,
optimiser) come from ``nbasync.build``, the same code the parent builds them with.

Parameter handling (all algorithms): each worker keeps a local copy theta' of the shared
parameters, refreshed from theta before every rollout (Algorithms S2/S3 do this explicitly;
for the one-step methods it means the gradient of one accumulation window is taken at one
consistent theta'). Acting writes one activation row per step, so the update runs backward
over the rollout without a second forward pass.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..build import action_dim, build_network, build_optimizer, make_environment, obs_scale
from ..events import EpisodeEvent
from ..normalise import ObsNormaliser, ReturnScaler, RunningMoments
from ..optim import clip_grad_norm, clip_scale, global_norm, linear_lr
from .targets import draw_final_epsilon, epsilon_at
from .telemetry import Telemetry

if TYPE_CHECKING:
    from ..config import TrainConfig
    from .registry import AlgorithmSpec


def worker_seed(config: TrainConfig, index: int, segment: int) -> np.random.SeedSequence:
    """Seeds derive from (seed, worker index, run segment): a resumed run gets fresh streams."""
    return np.random.SeedSequence([config.seed, index, segment])


def final_epsilon_of(config: TrainConfig, index: int) -> float:
    """Drawn once per worker from (seed, index) only, so a resumed run keeps the same value."""
    rng = np.random.default_rng([config.seed, index, 0xE95])
    return draw_final_epsilon(rng, config.final_epsilons, config.final_epsilon_probs)


#: Most transitions a rollout may carry over to the next (``ActorLearner.carry``).
MAX_CARRIED = 1


class Rollout(NamedTuple):
    """What :meth:`ActorLearner.rollout` did: ``n`` transitions (rows [0, n) of the
    buffers, the carried ones included), the state ``obs`` = s_n it ended in, and how it
    ended (neither: cut by t_max)."""

    n: int
    obs: Any
    terminated: bool
    truncated: bool


def run_worker(
    config: TrainConfig, algo: AlgorithmSpec, index: int, state, events, segment: int = 0
) -> None:
    """One worker's whole life on an attached shared state: build, run the algorithm's
    loop until the run is finished, flush and close (the process entry is ``nbasync.worker``;
    ``train``'s warm-up calls this in the parent with a short budget)."""
    learner = ActorLearner(config, algo, index, state, events, segment)
    try:
        algo.run(learner)
    finally:
        learner.close()


class ActorLearner:
    """One worker's machinery. Algorithms call ``sync``, ``rollout`` (or ``act_forward``
    and ``step``), ``apply_gradients`` and ``next_start``; the rest is bookkeeping."""

    def __init__(
        self,
        config: TrainConfig,
        algo: AlgorithmSpec,
        index: int,
        state,
        events,
        segment: int = 0,
    ) -> None:
        self.config = config
        self.algo = algo
        self.index = index
        self.state = state
        self.events = events
        seeds = worker_seed(config, index, segment).spawn(2)
        self.rng = np.random.default_rng(seeds[0])
        env_seed = int(seeds[1].generate_state(1)[0] % (2**31 - 1))
        self.env, self.env_info = make_environment(config, env_seed, algo.continuous)
        self.n_actions = self.env_info.n_actions  # None for continuous actions
        self.action_dim = action_dim(self.env_info)
        self.scale = obs_scale(self.env_info)

        # Row t of every buffer is step t of the rollout; the row after the last step holds
        # the state the rollout ends in (for bootstrapping). A rollout has up to t_max steps,
        # plus the transitions carried over from the previous one (``carry``; one-step SARSA
        # carries one), so the buffers have t_max + 1 + MAX_CARRIED rows.
        rows = config.t_max + 1 + MAX_CARRIED
        self.net = build_network(config, self.env_info, algo.head, max_batch=rows)
        self.net.params[:] = state.params
        self.target_net = None
        if algo.target_network:
            self.target_net = build_network(config, self.env_info, algo.head, rows)
            self.target_net.bind(state.target, np.zeros_like(state.target))
        self.obs = np.zeros((rows, *self.env_info.obs_shape), dtype=np.float32)
        self.outputs = np.zeros((rows, self.net.n_outputs), dtype=np.float32)
        self.dout = np.zeros((rows, self.net.n_outputs), dtype=np.float32)
        if self.env_info.discrete:
            self.actions = np.zeros(rows, dtype=np.int64)
        else:  # the unclipped Gaussian samples (the log-prob is of these)
            self.actions = np.zeros((rows, self.action_dim), dtype=np.float32)
        self.rewards = np.zeros(rows - 1, dtype=np.float32)
        self.terminated = np.zeros(rows - 1, dtype=np.bool_)
        self.targets = np.zeros(rows - 1, dtype=np.float32)

        # Shared normalisation (config.obs_norm / return_norm): this worker writes row
        # index + 1 of the shared moments and reads them all, merged, once per rollout.
        self.obs_norm: ObsNormaliser | None = None
        self.return_scaler: ReturnScaler | None = None
        if state.obs_moments is not None:
            self.obs_norm = ObsNormaliser(RunningMoments(state.obs_moments, index + 1))
            self.raw_obs = np.zeros((rows, self.obs_norm.moments.dim), dtype=np.float32)
        if state.return_moments is not None:
            moments = RunningMoments(state.return_moments, index + 1)
            self.return_scaler = ReturnScaler(moments, config.gamma)

        self.optimizer = build_optimizer(config, self.net.n_params, state.opt_stats)
        self._theta_fresh = False  # theta' already equals theta as this worker last wrote it
        # Largest gradient norm whose squares cannot overflow g (float32: ~1.8e19).
        self._max_unclipped_norm = math.sqrt(float(np.finfo(self.net.params.dtype).max))
        self.final_epsilon = final_epsilon_of(config, index)
        self.episode_return = 0.0
        self.episode_length = 0
        self.episodes = 0
        self.telemetry: Telemetry | None = None
        if config.telemetry_every > 0:
            # Bound here, not tested per update: with telemetry off the hot path is unchanged.
            self.telemetry = Telemetry(
                config.telemetry_every, index, self.net.layout, state, self.optimizer, events
            )
            self.sync = self._sync_recorded
            self.apply_gradients = self._apply_gradients_recorded

    def close(self) -> None:
        """End of the worker's loop: send the telemetry rows still buffered, close the env."""
        if self.telemetry is not None:
            self.telemetry.flush()
        self.env.close()

    # -- the act loop -----------------------------------------------------------------------
    def rollout(
        self, obs: np.ndarray, choose: Callable[[int, np.ndarray], Any], carried: int = 0
    ) -> Rollout:
        """Act from ``obs`` for up to t_max steps, or until the episode ends.

        Step t: forward s_t through theta' into cache row t (``outputs[t]``), take the action
        ``choose(t, outputs[t])`` returns, record ``rewards[t]`` (for learning) and
        ``terminated[t]``. Discrete actions are recorded in ``actions[t]`` here; a
        continuous ``choose`` records its unclipped sample itself and returns the clipped
        action the environment gets.

        ``carried``: rows [0, carried) hold transitions of the previous rollout (``carry``);
        acting starts at row ``carried``, and the first forward takes the carried states
        along in one batch (theta' changed since they were forwarded; one batch reads the
        weights once, where a forward of its own would read them again).
        """
        discrete = self.env_info.discrete
        t = carried
        end = carried + self.config.t_max
        while True:
            q = self._rejoin(t, obs) if t == carried > 0 else self.act_forward(t, obs)
            action = choose(t, q)
            if discrete:
                self.actions[t] = action
            obs, self.rewards[t], terminated, truncated = self.step(action)
            self.terminated[t] = terminated
            t += 1
            if terminated or truncated or t == end:
                if self.obs_norm is not None:
                    self.obs_norm.moments.observe(self.raw_obs[carried:t])
                if self.return_scaler is not None:
                    self.return_scaler.observe_pending()
                return Rollout(t, obs, terminated, truncated)

    def carry(self, row: int) -> None:
        """Keep transition ``row`` (its state, action, reward) as row 0 of the next rollout,
        which is then called with ``carried=1``: one-step SARSA learns a transition only once
        the next action, chosen in the next rollout, is known."""
        for buf in (self.obs, self.actions, self.rewards, self.terminated):
            buf[0] = buf[row]
        if self.obs_norm is not None:
            self.raw_obs[0] = self.raw_obs[row]

    def _rejoin(self, carried: int, obs: np.ndarray) -> np.ndarray:
        """The first forward of a rollout with carried rows: rows [0, carried) (the carried
        states, normalised again with this rollout's statistics) and ``obs`` in row
        ``carried``, in one batch."""
        if self.obs_norm is not None:
            for row in range(carried):
                self.obs_norm(self.raw_obs[row], out=self.obs[row])
        self.load(carried, obs)
        self.outputs[: carried + 1] = self.net.forward(self.obs[: carried + 1], row=0)
        return self.outputs[carried]

    def next_start(self, r: Rollout) -> np.ndarray:
        """Where the next rollout starts (call after the update): a new episode (env reset,
        LSTM state zeros) when ``r`` ended one; else s_n, with the LSTM state after row n-1
        carried over (no gradient crosses; a no-op for feed-forward nets)."""
        if r.terminated or r.truncated:
            return self.reset()
        self.net.carry_state(r.n)
        return r.obs

    # -- counters -------------------------------------------------------------------------
    def global_step(self) -> int:
        return self.state.global_step()

    def finished(self) -> bool:
        return self.state.stop_requested() or self.state.global_step() >= self.config.steps

    def epsilon(self) -> float:
        return epsilon_at(self.global_step(), self.final_epsilon, self.config.epsilon_anneal_steps)

    # -- environment ----------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        """A new episode for learning: the environment and the LSTM state (zeros).

        The logged episode's return and length are not touched here: they restart only when
        the game really ended (see :meth:`step`), so with loss-of-life-as-terminal the log
        carries the whole game, every life, as the paper reports it.
        """
        obs, _ = self.env.reset()
        self.net.reset_state()
        return obs

    def step(self, action) -> tuple[np.ndarray, float, bool, bool]:
        """One agent step. Returns (next_obs, reward for learning, terminated, truncated).

        ``action``: an int (discrete) or a float array already clipped to the bounds. The
        reward for learning is clipped to [-1, 1] (``clip_rewards``), then scaled by
        ``reward_scale``.
        Logs the episode (raw, unclipped return, agent steps) once when it really ends:
        terminated with the game over, or truncated (a time limit ends the game too, and
        Atari's ``game_over`` is false then). With loss-of-life-as-terminal a life loss is
        ``terminated`` for learning, but the game, its return and its length go on.
        """
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.episode_return += float(reward)
        self.episode_length += 1
        self.state.add_steps(self.index, 1)
        if truncated or (terminated and info.get("game_over", True)):
            self.events.put(
                EpisodeEvent.of(
                    worker=self.index,
                    step=self.state.global_step(),
                    wall=time.time(),
                    ret=self.episode_return,
                    length=self.episode_length,
                )
            )
            self.episodes += 1
            self.episode_return = 0.0
            self.episode_length = 0
        if self.config.clip_rewards:
            reward = max(-1.0, min(1.0, float(reward)))
        reward = float(reward) * self.config.reward_scale
        if self.return_scaler is not None:
            reward = self.return_scaler(reward, bool(terminated or truncated))
        return obs, reward, bool(terminated), bool(truncated)

    # -- network --------------------------------------------------------------------------
    def sync(self) -> None:
        """theta' <- theta (a plain copy of the shared vector; other workers may be writing),
        and the shared normalisation statistics as of now, fixed for the coming rollout.

        Right after this worker's own update the copy is skipped: ``apply_gradients`` wrote
        theta' with theta in the same pass (the snapshot of theta is then taken at this
        worker's write instead of a moment later; with one worker they are the same)."""
        if self._theta_fresh:
            self._theta_fresh = False
        else:
            np.copyto(self.net.params, self.state.params)
        self.refresh_normalisation()

    def _sync_recorded(self) -> None:
        """``sync`` with telemetry on: also remembers U0 for the staleness (read BEFORE the
        copy, so an update landing during the copy counts as stale, never as missed)."""
        self.telemetry.synced()
        np.copyto(self.net.params, self.state.params)
        self.refresh_normalisation()

    def refresh_normalisation(self) -> None:
        if self.obs_norm is not None:
            self.obs_norm.refresh()
        if self.return_scaler is not None:
            self.return_scaler.refresh()

    def load(self, row: int, obs: np.ndarray) -> None:
        """s_row into the network's input row: scaled (uint8 images to [0, 1]), or normalised
        by the shared running moments (``obs_norm``; the raw row kept for the statistics)."""
        if self.obs_norm is not None:
            np.copyto(self.raw_obs[row], np.ravel(obs), casting="unsafe")
            self.obs_norm(self.raw_obs[row], out=self.obs[row])
            return
        # dtype= makes NumPy multiply uint8 frames in float32 directly: half the time of
        # computing in float64 and casting (13 vs 24 us for a 4x84x84 Atari frame stack).
        np.multiply(obs, self.scale, out=self.obs[row], dtype=self.obs.dtype, casting="unsafe")

    def act_forward(self, row: int, obs: np.ndarray) -> np.ndarray:
        """Forward s_row through theta', keeping its activations in cache row ``row``."""
        self.load(row, obs)
        out = self.net.forward(self.obs[row : row + 1], row=row)
        self.outputs[row] = out[0]
        return self.outputs[row]

    def epsilon_greedy(self, q: np.ndarray) -> int:
        if self.rng.random() < self.epsilon():
            return int(self.rng.integers(self.n_actions))
        return int(np.argmax(q))

    def target_forward(self, first_row: int, n: int) -> np.ndarray:
        """Q(s, .; theta-) for the states in obs rows [first_row, first_row + n)."""
        return self.target_net.forward(self.obs[first_row : first_row + n], row=0)

    def apply_gradients(self, n: int) -> bool:
        """Backprop dout rows [0, n) through theta' and apply the update to shared theta.

        A non-finite update is never applied: when the gradient holds a NaN or inf (or,
        unclipped, is so large that d^2 overflows the RMSProp statistics) the update is
        skipped and counted in this worker's shared slot; the parent stops the run when
        skips keep coming (``train``). Returns whether the update was applied.
        """
        self.net.zero_grad()
        self.net.backward(self.dout[:n], n)
        grads = self.net.grads
        clip = self.config.grad_clip
        norm = global_norm(grads)
        # Clipped: a finite norm is enough (the clip scales it down); unclipped, d^2 must
        # not overflow g either (False for nan and inf too).
        finite = math.isfinite(norm) if clip > 0 else norm <= self._max_unclipped_norm
        self.state.record_update(self.index, finite)
        if not finite:
            return False
        lr = self.config.lr
        if self.config.anneal_lr:
            lr = linear_lr(lr, self.state.global_step(), self.config.steps)
        # One pass: the clip's scale, the step on shared theta, and theta' <- theta (so the
        # next ``sync`` has nothing to copy). Bit for bit the clip, step and copy it replaces.
        self.optimizer.step_and_copy(
            self.state.params, grads, lr, self.net.params, grad_scale=clip_scale(norm, clip)
        )
        self._theta_fresh = True
        if self.target_net is not None:
            self.state.maybe_update_target(self.config.target_interval)
        return True

    def _apply_gradients_recorded(self, n: int) -> bool:
        """``apply_gradients`` with telemetry on: the same update (tests check that the
        parameters come out identical), plus the counter behind staleness and, every K-th
        update, per-layer norms (``algos.telemetry``). Keep the two in step when editing."""
        tel = self.telemetry
        self.net.zero_grad()
        self.net.backward(self.dout[:n], n)
        grads = self.net.grads
        if tel.due():
            tel.grads_before_clip(grads)
        clip = self.config.grad_clip
        if clip > 0:
            norm = clip_grad_norm(grads, clip)
            finite = math.isfinite(norm)
        else:
            norm = global_norm(grads)
            finite = norm <= self._max_unclipped_norm
        self.state.record_update(self.index, finite)
        staleness = tel.staleness()
        lr = 0.0
        if finite:
            lr = self.config.lr
            if self.config.anneal_lr:
                lr = linear_lr(lr, self.state.global_step(), self.config.steps)
            self.optimizer.step(self.state.params, grads, lr)
            self.state.count_applied(self.index)
            if self.target_net is not None:
                self.state.maybe_update_target(self.config.target_interval)
        clipped = finite and clip > 0 and norm > clip
        tel.updated(staleness, norm, clipped, not finite, lr, grads, self.net.params)
        return finite
