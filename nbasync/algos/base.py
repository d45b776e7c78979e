"""What every actor-learner has in common: a local network theta', its environment, its RNG,
its optimiser, and the shared state it reads from and writes to.

An algorithm module only writes its rollout and its loss (see ``a3c.py``, ``nstep_q.py``,
...); everything about buffers, episode bookkeeping, the global step T, the target copy and
the lock-free update lives here once.

Parameter handling (all four algorithms): each worker keeps a local copy theta' of the
shared parameters, refreshed from theta before every rollout (Algorithms S2/S3 do this
explicitly; for the one-step methods it means the gradient of one accumulation window is
taken at one consistent theta'). Acting writes one activation row per step, so the update
runs backward over the rollout without a second forward pass.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import numpy as np

from ..config import ConfigError, TrainConfig, parse_env_kwargs
from ..envs import EnvInfo, describe, is_atari_id, make_env, require_discrete
from ..nn import NetworkPair, atari_network, mlp_network
from ..optim import clip_grad_norm, global_norm, linear_lr, make_optimizer
from .targets import draw_final_epsilon, epsilon_at
from .telemetry import Telemetry

EPISODE_EVENT = "episode"


class EpisodeEvent(NamedTuple):
    """Worker -> parent: one finished episode (``wall`` a Unix time). The parent dispatches
    on ``kind`` (``telemetry.TelemetryEvent`` is the other kind a worker sends)."""

    kind: str
    worker: int
    step: int
    wall: float
    ret: float
    length: int


def env_options(config: TrainConfig) -> dict[str, Any]:
    """make_env's keyword arguments: --env-kwargs, and Atari's life-loss setting."""
    options = parse_env_kwargs(config.env_kwargs)
    if is_atari_id(config.env):
        options.setdefault("terminal_on_life_loss", config.terminal_on_life_loss)
    return options


def n_outputs(config: TrainConfig, spec: EnvInfo) -> int:
    """A3C: policy logits + one value column; Q methods: one Q value per action.
    Continuous A3C: mean and pre-variance per action dimension + V(s) (2D + 1, two nets)."""
    if not spec.discrete:
        return 2 * action_dim(spec) + 1
    return spec.n_actions + 1 if config.algo == "a3c" else spec.n_actions


def action_dim(spec: EnvInfo) -> int:
    """Continuous action dimensions D (0 for discrete actions)."""
    return 0 if spec.discrete else int(spec.action_low.size)


def build_network(config: TrainConfig, spec: EnvInfo, max_batch: int, dtype=np.float32):
    """The paper's Atari net for image observations, an MLP for vector observations; with
    ``config.recurrent`` an LSTM of ``config.lstm_size`` cells before the head (A3C LSTM).

    Continuous actions: a :class:`~nbasync.nn.NetworkPair` of a policy net (2D outputs:
    Gaussian mean and pre-variance) and a value net (1 output) with the same trunk and no
    shared parameters (the paper's MuJoCo set-up), over one flat parameter vector.
    """
    if not spec.discrete:
        D = action_dim(spec)
        policy = _trunk_network(config, spec, 2 * D, max_batch, dtype)
        value = _trunk_network(config, spec, 1, max_batch, dtype)
        return NetworkPair(policy, value, names=("policy", "value"))
    return _trunk_network(config, spec, n_outputs(config, spec), max_batch, dtype)


def _trunk_network(config: TrainConfig, spec: EnvInfo, n_out: int, max_batch: int, dtype):
    kind = config.network
    if kind == "auto":
        kind = "atari" if len(spec.obs_shape) == 3 else "mlp"
    lstm_size = config.lstm_size if config.recurrent else 0
    _check_network_fits(kind, spec)
    if kind == "atari":
        return atari_network(
            n_out,
            in_channels=spec.obs_shape[0],
            max_batch=max_batch,
            dtype=dtype,
            lstm_size=lstm_size,
            input_size=spec.obs_shape[1:],
        )
    return mlp_network(
        spec.obs_shape[0],
        n_out,
        hidden=config.hidden,
        max_batch=max_batch,
        dtype=dtype,
        lstm_size=lstm_size,
    )


def _check_network_fits(kind: str, spec: EnvInfo) -> None:
    """--network names a net the observations cannot feed: one line (exit 2), before any
    file is written, instead of a shape error deep inside the first forward pass."""
    if kind == "atari" and (len(spec.obs_shape) != 3 or min(spec.obs_shape[1:]) < 20):
        raise ConfigError(
            f"--network: atari (the conv net) needs (C, H, W) images of at least 20 x 20, "
            f"this env gives shape {spec.obs_shape} (use --network mlp or auto)"
        )
    if kind == "mlp" and len(spec.obs_shape) != 1:
        raise ConfigError(
            f"--network: mlp needs vector observations, this env gives shape "
            f"{spec.obs_shape} (use --network atari or auto)"
        )


def obs_scale(spec: EnvInfo) -> float:
    """Images are uint8 (Atari, Labyrinth); the network sees them in [0, 1]."""
    return 1.0 / 255.0 if np.dtype(spec.obs_dtype) == np.uint8 else 1.0


def worker_seed(config: TrainConfig, index: int, segment: int) -> np.random.SeedSequence:
    """Seeds derive from (seed, worker index, run segment): a resumed run gets fresh streams."""
    return np.random.SeedSequence([config.seed, index, segment])


def final_epsilon_of(config: TrainConfig, index: int) -> float:
    """Drawn once per worker from (seed, index) only, so a resumed run keeps the same value."""
    rng = np.random.default_rng([config.seed, index, 0xE95])
    return draw_final_epsilon(rng, config.final_epsilons, config.final_epsilon_probs)


class ActorLearner:
    """One worker's machinery. Algorithms call ``sync``, ``act_forward``, ``step``,
    ``reset`` and ``apply_gradients``; the rest is bookkeeping."""

    def __init__(
        self, config: TrainConfig, index: int, state, events, stop, segment: int = 0
    ) -> None:
        self.config = config
        self.index = index
        self.state = state
        self.events = events
        self.stop = stop
        seeds = worker_seed(config, index, segment).spawn(2)
        self.rng = np.random.default_rng(seeds[0])
        env_seed = int(seeds[1].generate_state(1)[0] % (2**31 - 1))
        self.env = make_env(config.env, seed=env_seed, **env_options(config))
        self.spec = env_spec(self.env, config.env, continuous_ok=config.algo == "a3c")
        self.n_actions = self.spec.n_actions  # None for continuous actions
        self.action_dim = action_dim(self.spec)
        self.scale = obs_scale(self.spec)

        t_max = config.t_max
        # Row t of every buffer is step t of the rollout; row t_max holds the state the
        # rollout ends in (for bootstrapping).
        self.net = build_network(config, self.spec, max_batch=t_max + 1)
        self.net.params[:] = state.params
        self.target_net = None
        if state.target is not None:
            self.target_net = build_network(config, self.spec, max_batch=t_max + 1)
            self.target_net.bind(state.target, np.zeros_like(state.target))
        self.obs = np.zeros((t_max + 1, *self.spec.obs_shape), dtype=np.float32)
        self.outputs = np.zeros((t_max + 1, self.net.n_outputs), dtype=np.float32)
        self.dout = np.zeros((t_max + 1, self.net.n_outputs), dtype=np.float32)
        if self.spec.discrete:
            self.actions = np.zeros(t_max + 1, dtype=np.int64)
        else:  # the unclipped Gaussian samples (the log-prob is of these)
            self.actions = np.zeros((t_max + 1, self.action_dim), dtype=np.float32)
        self.rewards = np.zeros(t_max, dtype=np.float32)
        self.terminated = np.zeros(t_max, dtype=np.bool_)
        self.targets = np.zeros(t_max, dtype=np.float32)

        self.optimizer = make_optimizer(
            config.optimizer,
            self.net.n_params,
            shared_stats=state.opt_stats if config.optimizer == "shared_rmsprop" else None,
            alpha=config.rmsprop_alpha,
            eps=config.rmsprop_eps,
            momentum=config.momentum,
        )
        # Largest gradient norm whose squares cannot overflow g (float32: ~1.8e19).
        self._max_unclipped_norm = math.sqrt(float(np.finfo(self.net.params.dtype).max))
        self.final_epsilon = final_epsilon_of(config, index)
        self.episode_return = 0.0
        self.episode_length = 0
        self.episodes = 0
        self.start_time = time.time()
        self.telemetry: Telemetry | None = None
        if config.telemetry_every > 0:
            # Bound here, not tested per update: with telemetry off the hot path is unchanged.
            self.telemetry = Telemetry(
                config.telemetry_every, index, self.net.layout, state, self.optimizer, events
            )
            self.sync = self._sync_recorded
            self.apply_gradients = self._apply_gradients_recorded

    def close(self) -> None:
        """End of the worker's loop: send the telemetry rows still buffered."""
        if self.telemetry is not None:
            self.telemetry.flush()

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
                EpisodeEvent(
                    EPISODE_EVENT,
                    self.index,
                    self.state.global_step(),
                    time.time(),
                    self.episode_return,
                    self.episode_length,
                )
            )
            self.episodes += 1
            self.episode_return = 0.0
            self.episode_length = 0
        if self.config.clip_rewards:
            reward = max(-1.0, min(1.0, float(reward)))
        reward = float(reward) * self.config.reward_scale
        return obs, reward, bool(terminated), bool(truncated)

    # -- network --------------------------------------------------------------------------
    def sync(self) -> None:
        """theta' <- theta (a plain copy of the shared vector; other workers may be writing)."""
        np.copyto(self.net.params, self.state.params)

    def _sync_recorded(self) -> None:
        """``sync`` with telemetry on: also remembers U0 for the staleness (read BEFORE the
        copy, so an update landing during the copy counts as stale, never as missed)."""
        self.telemetry.synced()
        np.copyto(self.net.params, self.state.params)

    def load(self, row: int, obs: np.ndarray) -> None:
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
        if self.config.grad_clip > 0:
            norm = clip_grad_norm(grads, self.config.grad_clip)
            finite = math.isfinite(norm)
        else:
            norm = global_norm(grads)
            finite = norm <= self._max_unclipped_norm  # False for nan and inf too
        self.state.record_update(self.index, finite)
        if not finite:
            return False
        lr = self.config.lr
        if self.config.anneal_lr:
            lr = linear_lr(lr, self.state.global_step(), self.config.steps)
        self.optimizer.step(self.state.params, grads, lr)
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


def env_spec(env, env_id: str, continuous_ok: bool = False) -> EnvInfo:
    """The spaces of ``env``; EnvError (one line) when the algorithm cannot use them.

    Continuous (1-D Box) actions only with ``continuous_ok`` (A3C's Gaussian policy); the Q
    methods need discrete actions.
    """
    return describe(env) if continuous_ok else require_discrete(env)
