"""Settings of a training run: one dataclass, the paper's presets, and validation.

This module owns what a run is configured with, how bad values are reported, and which
settings a resumed run may change (:data:`RESUMABLE`). It imports the algorithm registry
(``nbasync.algos``) to check what a configuration asks of its algorithm (the algorithm
exists, has an LSTM variant, reads ``--gae-lambda`` ...); the modules below it read a
``TrainConfig``'s attributes without importing it. The CLI builds its options from
``TrainConfig``'s fields (each field's ``help`` is its docstring), so a new setting is added
here only.

Counting convention (everywhere in nbasync): a **step** is one agent step (one action
chosen); a **frame** is one emulator frame. On Atari one step is 4 frames (action repeat).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .algos import ALGORITHMS, check_config, get_algorithm
from .build import POLICY_VALUE, parse_env_kwargs
from .errors import ConfigError
from .nn.gaussian import VAR_FLOOR

OPTIMIZERS = ("shared_rmsprop", "rmsprop", "momentum")
NETWORKS = ("auto", "mlp", "atari")
PRESET_NAMES = ("auto", "atari", "classic", "continuous", "labyrinth", "racing")


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults follow the paper where it states a value
    (see each field's help for where nbasync chose instead); presets fill in per domain."""

    algo: str = _help(
        "algorithm: " + "; ".join(f"{spec.name}: {spec.summary}" for spec in ALGORITHMS.values()),
        default="a3c",
    )
    env: str = _help(
        "environment id (gymnasium id; ALE/<Game>-v5 for Atari)", default="CartPole-v1"
    )
    workers: int = _help("number of actor-learner processes", default=2)
    steps: int = _help("total agent steps over all workers (T_max)", default=200_000)
    seed: int = _help(
        "base seed: the network's initial parameters use it; worker i's random streams "
        "(actions, environment) derive from (seed, i, run segment) and its final epsilon "
        "from (seed, i); the final evaluation's episode k resets with seed + 10000 + k",
        default=0,
    )
    out: str = _help("output directory of the run (run.h5 lives there)", default="")

    lr: float = _help(
        "initial learning rate, annealed linearly to 0 over --steps. The paper sampled each "
        "run's rate from LogUniform(1e-4, 1e-2); 7e-4 is a common single choice, not a value "
        "the paper states (the atari preset: 1e-4 with --rmsprop-eps 1e-5, measured on Pong)",
        default=7e-4,
    )
    anneal_lr: bool = _help("anneal the learning rate linearly to 0", default=True)
    t_max: int = _help("rollout length / I_AsyncUpdate: steps between async updates", default=5)
    gamma: float = _help("discount factor", default=0.99)
    entropy_beta: float = _help(
        "A3C entropy bonus weight beta (paper: 0.01 Atari; 1e-4 continuous actions, the "
        "'continuous' preset)",
        default=0.01,
    )
    value_weight: float = _help("A3C value-loss weight (applied once)", default=0.5)
    mean_bound_weight: float = _help(
        "continuous actions: weight w of a penalty w (mu - clip(mu, low, high))^2 per action "
        "dimension that pulls the Gaussian's mean back inside the action bounds. The env gets "
        "clipped actions, so once mu is outside them the return no longer depends on it and "
        "nothing brings it back (HalfCheetah: means of 4 to 11 against bounds of 1, return "
        "-496 for good). 0 = off, the paper's loss",
        default=0.0,
    )
    init_std: float = _help(
        "continuous actions: the Gaussian policy's standard deviation at the start; the "
        "policy head's pre-variance biases start at softplus^-1(std^2 - 1e-4). 0 = the plain "
        "init, about 0.83 (variance softplus(0)); stable-baselines3's CarRacing settings "
        "start at exp(-2) = 0.135",
        default=0.0,
    )
    gae_lambda: float = _help(
        "a3c_gae: lambda of generalised advantage estimation, in [0, 1]; the advantage is "
        "sum_l (gamma lambda)^l delta_(t+l) over the rollout (1 = A3C's n-step advantage "
        "exactly, 0 = the one-step TD error)",
        default=1.0,
    )
    target_interval: int = _help(
        "I_target in AGENT STEPS (global T) between copies of theta to the target network. "
        "The paper's 40,000 frames are 10,000 agent steps at Atari's action repeat 4",
        default=10_000,
    )
    optimizer: str = _help("optimizer: " + ", ".join(OPTIMIZERS), default="shared_rmsprop")
    rmsprop_alpha: float = _help("RMSProp decay alpha", default=0.99)
    rmsprop_eps: float = _help(
        "RMSProp epsilon, inside the square root (the paper: 0.1, which makes small gradients' "
        "steps plain SGD; the atari preset: 1e-5, every weight's step normalised)",
        default=0.1,
    )
    momentum: float = _help("momentum of the momentum-SGD optimizer", default=0.9)
    grad_clip: float = _help(
        "global gradient-norm clipping threshold (0 = off). 40 is nbasync's choice (common in "
        "A3C code); the paper does not state gradient clipping",
        default=40.0,
    )

    epsilon_anneal_steps: int = _help(
        "agent steps (global T) over which epsilon goes from 1 to each worker's final value "
        "(the paper's 4M frames = 1M agent steps on Atari)",
        default=1_000_000,
    )
    final_epsilons: tuple[float, ...] = _help(
        "final epsilons a worker draws from", default=(0.1, 0.01, 0.5)
    )
    final_epsilon_probs: tuple[float, ...] = _help(
        "probabilities of the final epsilons", default=(0.4, 0.3, 0.3)
    )

    env_kwargs: str = _help(
        "keyword arguments for the environment, as key=value pairs separated by commas "
        "(true/false, numbers and words), e.g. continuous=false for CarRacing-v3's five "
        "discrete actions, image_size=64,frame_stack=2 for an image environment, or "
        "action_repeat=4 (each action held for 4 environment steps, rewards summed; not for "
        "Atari ids, whose frame_skip is 4 already)",
        default="",
    )
    network: str = _help("network: auto (atari for ALE ids, else mlp), mlp, atari", default="auto")
    hidden: tuple[int, ...] = _help("hidden layer sizes of the MLP", default=(64, 64))
    recurrent: bool = _help(
        "A3C LSTM: an LSTM of --lstm-size cells after the last hidden layer; its state is "
        "carried across rollouts and reset at episode end (BPTT over t_max steps)",
        default=False,
    )
    lstm_size: int = _help(
        "LSTM cells of the recurrent net (paper: 256 Atari, 128 MuJoCo)", default=256
    )
    dueling: bool = _help(
        "Q methods: a dueling head, Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a') (Wang et "
        "al. 2016); the value and advantage streams are linear maps of the same trunk",
        default=False,
    )
    shared_trunk: bool = _help(
        "continuous actions: one net whose last layer gives the Gaussian's mean and "
        "pre-variance and V(s), over a trunk both train, instead of the paper's separate "
        "policy and value nets. From pixels the value's dense error signal then shapes the "
        "conv features the policy reads (discrete policies always share their trunk)",
        default=False,
    )
    reward_scale: float = _help(
        "multiply rewards by this for learning (after clipping; logged returns stay raw)",
        default=1.0,
    )
    preset: str = _help(
        "settings preset: auto (by env id), " + ", ".join(PRESET_NAMES[1:]), default="auto"
    )
    clip_rewards: bool = _help("clip rewards to [-1, 1] for learning (Atari)", default=False)
    obs_norm: bool = _help(
        "normalise vector observations by their running mean and standard deviation, kept "
        "by all workers together (clipped to +-10, saved in checkpoints, used by nbasync-eval;"
        " on in the continuous preset, measured in docs/results/defaults.md)",
        default=False,
    )
    return_norm: bool = _help(
        "divide rewards (after clipping and --reward-scale) by the running standard deviation "
        "of the discounted return, kept by all workers together (on in the classic preset "
        "for the actor-critics, off there for the Q methods; docs/results/defaults.md)",
        default=False,
    )
    terminal_on_life_loss: bool = _help("Atari: treat a lost life as terminal", default=False)

    checkpoint_every: int = _help(
        "agent steps between checkpoints (0 = only at the end)", default=0
    )
    time_limit: float = _help(
        "stop after this many seconds of training wall time, counted over the whole run "
        "when resumed (0 = no limit). lr still anneals over --steps: ask for more steps "
        "than the time allows, or lr nears 0 before the clock stops the run",
        default=0.0,
    )
    stop_return: float = _help(
        "stop the run, as a finished one (checkpoint, evaluation), once the mean return of "
        "the last --stop-window training episodes of all workers reaches this (inf = never). "
        "For time-to-score experiments: nbasync-sweep's stop_at_target sets it",
        default=math.inf,
    )
    stop_window: int = _help("episodes in the mean that --stop-return compares", default=100)
    skip_limit: int = _help(
        "stop the run (exit code 3, 'diverged') when a worker has skipped this many updates "
        "in a row because their gradients were not finite (NaN/inf); a skipped update is "
        "never applied to the shared parameters",
        default=100,
    )
    stall_timeout: float = _help(
        "seconds a worker may make no step before it counts as stalled and the run stops "
        "with exit code 3 (0 = never). A worker steps many times a second (an update of "
        "t_max steps takes well under 1 s, even Atari on a busy machine); start-up, before "
        "the first step, gets at least 180 s",
        default=30.0,
    )
    telemetry_every: int = _help(
        "record gradient telemetry every K updates per worker (0 = off): per-layer gradient "
        "norms and update/parameter ratios, clipping, skipped updates and Hogwild staleness, "
        "appended to telemetry.bin in the run directory (nbasync-plot --grads draws it)",
        default=0,
    )
    eval_episodes: int = _help("greedy evaluation episodes at the end of training", default=0)
    quiet: bool = _help("no live progress line", default=False)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r}")
        coerced = {k: coerce(names[k], v) for k, v in values.items()}
        return cls(**coerced)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def coerce(f: dataclasses.Field, value: Any) -> Any:
    """Turn a value read from TOML/CLI into the field's type, or raise ConfigError."""
    default = f.default
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            kind = type(default[0]) if default else float
            return tuple(_as_int(x) if kind is int else _as_float(x) for x in items)
        if isinstance(default, int):
            return _as_int(value)
        if isinstance(default, float):
            return _as_float(value)
        return str(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"--{f.name.replace('_', '-')}: invalid value {value!r}") from None


#: Every integer setting must fit the int64 counters of the shared state and the run file.
INT64_MAX = 2**63 - 1


def _as_int(value: Any) -> int:
    """A whole number: 3, "3", "1e6", 3.0; never a bool, a fraction (1.5 is not rounded to
    1), inf, nan, or a value outside int64 (the step counters' type)."""
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            as_float = float(text)
            if not (math.isfinite(as_float) and as_float.is_integer()):
                raise ValueError(value) from None
            number = int(as_float)
    elif isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise ValueError(value)
        number = int(value)
    else:
        number = int(value)
    if abs(number) > INT64_MAX:
        raise OverflowError(value)
    return number


def _as_float(value: Any) -> float:
    """A number (NaN and inf pass here; ``validate`` says which settings allow them)."""
    if isinstance(value, bool):
        raise TypeError(value)
    return float(value)


def looks_like_atari(env_id: str) -> bool:
    """Preset choice only (no gymnasium import here); nbasync.envs routes the real env."""
    return env_id.startswith("ALE/") or env_id.endswith("NoFrameskip-v4")


@dataclass(frozen=True)
class ByAlgo:
    """A preset value that depends on the algorithm (a measurement can favour a setting for
    one method and not another). ``values`` is keyed by an algorithm's name or by its head
    (``build.POLICY_VALUE``: every actor-critic, a3c_gae and registered ones included;
    ``build.Q_VALUES``: the Q methods); the name wins, then the head, else ``otherwise``."""

    values: dict[str, Any]
    otherwise: Any

    def for_algo(self, algo: str) -> Any:
        if algo in self.values:
            return self.values[algo]
        spec = ALGORITHMS.get(algo)  # an unknown name: validation reports it
        return self.values.get(spec.head, self.otherwise) if spec else self.otherwise


# Presets: the paper's Atari settings, and settings that learn classic-control tasks (small
# MLP, short runs) in about a minute. A preset fills only the settings the user did not set;
# a ByAlgo value is resolved for the run's algorithm.
PRESETS: dict[str, dict[str, Any]] = {
    "atari": {
        "network": "atari",
        # Step size, measured on Pong (A3C, 2 workers, docs/results/README.md): the paper's
        # eps 0.1 inside the square root keeps sqrt(g + eps) near 0.32 while squared
        # gradients are far below 0.1 (fc1's are ~1e-6), so RMSProp acts as SGD with steps
        # of 3.2 lr * d, and fc1 moved ~2e-4 of its norm per update. With eps 1e-5 every
        # weight's step is normalised (about lr): lr 7e-4 / eps 0.1 was at -20 after 2.5M
        # steps and -11 after 7.6M; lr 1e-4 / eps 1e-5 passed -15 at 2.3M steps and 18 at
        # 12.5M (82 min). `--lr 7e-4 --rmsprop-eps 0.1` gives the paper's setting back.
        "lr": 1e-4,
        "rmsprop_eps": 1e-5,
        "clip_rewards": True,
        # Agent steps; one step = 4 emulator frames (action repeat), so:
        "target_interval": 10_000,  # the paper's 40,000 frames
        "epsilon_anneal_steps": 1_000_000,  # the paper's 4M frames
        "steps": 20_000_000,  # 80M frames
        "checkpoint_every": 500_000,
    },
    # (no "network": 'auto' picks the MLP for vectors and the conv net for images)
    "classic": {
        "lr": 1e-3,
        # Unclipped returns reach the hundreds here and gradient norms 1e3-1e4 (measured on
        # CartPole, A3C): clipping at the paper's 40 shrinks steps ~100x and stalls learning.
        "grad_clip": 0.0,
        "target_interval": 2_000,
        "epsilon_anneal_steps": 30_000,
        "steps": 200_000,
        "checkpoint_every": 50_000,
        "lstm_size": 64,
        # Return scaling for the actor-critics (A3C) only. Measured (docs/results/defaults.md:
        # CartPole-v1, Acrobot-v1, 2 workers, 500k steps): A3C without it left 2 of 5 seeds
        # at Acrobot's worst, -500 (one after reaching -80); with it every seed learned.
        # n-step Q on 10 seeds, off / on: Acrobot medians -95.6 / -122.2 (one seed at -500
        # with it), CartPole 473 / 359; RMSProp eps 1e-2 or 1e-3 did not close the gap. The
        # one-step Q methods bootstrap the same way as n-step Q and follow it.
        # Observation normalisation made every Acrobot seed fail (-500): off here.
        "return_norm": ByAlgo({POLICY_VALUE: True}, otherwise=False),
        # Entropy beta 1e-3 (A3C; the Q methods have no entropy term): the return scaling
        # divides the advantages by the return's std (30-100 here) while the entropy's pull
        # stays, so 0.01 weighed that much more than before. Measured (defaults.md, 5 seeds):
        # CartPole median 500 (0.01: 492), Acrobot -82.9 (0.01: -92.3; unscaled: -90.3).
        "entropy_beta": 1e-3,
    },
    # Continuous actions (Gaussian policy, separate policy and value nets; the paper's
    # MuJoCo set-up): entropy beta 1e-4 as in the paper. The rest was tuned on Pendulum-v1
    # (2 workers, 300k steps, hidden 64,64, greedy eval over 10 episodes; random policy
    # about -1200; Hogwild runs are not bit-reproducible, so seeds were repeated):
    #   gamma 0.9, lr 3e-4, t_max 20, rewards x 0.1  -> seeds 0 / 1: -195 / -224   (chosen)
    #   the same with t_max 10                        -> seeds 0 / 0 / 1 / 2: -167 / -536 /
    #        -221 / -221; at 500k steps seed 0 collapsed to -1126 after reaching -340
    #   t_max 10 + gradient clipping 40               -> -598 / -577
    #   gamma 0.99, lr 1e-3, t_max 5                  -> -558; lr 3e-3 / 1e-2 -> -1560 / -1589
    #   gamma 0.9, lr 3e-4, t_max 10, rewards unscaled -> -693
    # For MuJoCo tasks with long horizons pass --gamma 0.99 (not tuned here).
    "continuous": {
        "entropy_beta": 1e-4,
        "lr": 3e-4,
        "gamma": 0.9,
        "t_max": 20,
        "grad_clip": 0.0,
        "reward_scale": 0.1,
        "steps": 300_000,
        "checkpoint_every": 100_000,
        "lstm_size": 128,
        # Measured (docs/results/defaults.md: Pendulum-v1, InvertedDoublePendulum-v5, 5 seeds,
        # 2 workers, 500k steps): observation normalisation raised the median from -361 to
        # -256 (Pendulum) and 162 to 682 (InvertedDoublePendulum), every seed learned; the
        # return scaling, alone or with it, did not help here.
        "obs_norm": True,
    },
}

# nbasync/Labyrinth-v0 (84x84 RGB, first person): the paper's conv net (on 3 channels);
# rewards unclipped (the portal's +10 against an apple's +1 is the point of the task).
PRESETS["labyrinth"] = {
    "network": "atari",
    "clip_rewards": False,
    # Entropy beta, measured (docs/results/labyrinth.md; A3C LSTM, 2 workers, seed 0): with
    # the Atari 0.01 the policy drifted back to uniform (entropy ln 6) and the mean return
    # to the random policy's 1.4 after a start near 4; with 1e-3 it kept 3.5-5 after 13 min.
    # Apples are sparse (a random policy finds 1.4 in 900 steps), so the policy gradient
    # per step is about the size of 0.01's pull toward uniform.
    "entropy_beta": 1e-3,
    "steps": 10_000_000,
    "checkpoint_every": 250_000,
}

# Racing from pixels: CarRacing-v3 (the box2d extra), the paper's TORCS analogue; discrete
# (--env-kwargs continuous=false) or Gaussian actions. Measured in docs/results/carracing.md
# (A3C FF, 2 workers, seed 0):
# - Rewards are not clipped: clipping turned leaving the playfield (-100, the episode ends)
#   into -1, cheaper than 3 agent steps on the grass (-0.1 a frame), and the agent learned to
#   drive off at once (episodes of 86 steps, a last-100 of -43 after 13 min). The return's
#   std scales them instead (tiles give +1000/N, about +3.4 each).
# - The environment's frames: each action held 4 frames (episodes of 1,000 frames become
#   250 decisions), grey, 84 x 84, the last 4 stacked (the Atari pipeline's shape). A
#   command line's --env-kwargs adds to these (continuous=false keeps them), key by key.
# - The step size of the Atari preset (lr 1e-4, RMSProp eps 1e-5).
PRESETS["racing"] = {
    "network": "atari",
    "lr": 1e-4,
    "rmsprop_eps": 1e-5,
    "clip_rewards": False,
    "return_norm": True,
    "env_kwargs": "action_repeat=4,image_grey=true,image_size=84,frame_stack=4",
    "steps": 1_000_000,
    "checkpoint_every": 20_000,
}
RACING_IDS = ("CarRacing-",)

# Continuous-action ids the 'auto' preset knows (config is a leaf: no gymnasium here).
CONTINUOUS_IDS = (
    "Pendulum-", "MountainCarContinuous-", "LunarLanderContinuous-", "BipedalWalker",
    "HalfCheetah-", "Hopper-", "Walker2d-", "Ant-", "Humanoid-", "HumanoidStandup-",
    "InvertedPendulum-", "InvertedDoublePendulum-", "Reacher-", "Swimmer-", "Pusher-",
)  # fmt: skip


def preset_name_for(env_id: str, name: str = "auto") -> str:
    """The preset's name: ``name`` itself, or for 'auto' the one chosen by the env id."""
    if name == "auto":
        if looks_like_atari(env_id):
            name = "atari"
        elif env_id.startswith("nbasync/Labyrinth"):
            name = "labyrinth"
        elif env_id.startswith(RACING_IDS):
            name = "racing"
        elif env_id.startswith(CONTINUOUS_IDS):
            name = "continuous"
        else:
            name = "classic"
    if name not in PRESETS:
        raise ConfigError(
            f"--preset: unknown preset {name!r} (choose from {', '.join(PRESET_NAMES)})"
        )
    return name


def preset_for(env_id: str, name: str = "auto", algo: str = TrainConfig.algo) -> dict[str, Any]:
    """The named preset's values for ``algo``; 'auto': atari for ALE ids, labyrinth for
    nbasync/Labyrinth ids, racing for CarRacing ids, continuous for known continuous-action
    ids (Pendulum, MuJoCo, ...), classic otherwise."""
    preset = PRESETS[preset_name_for(env_id, name)]
    return {k: v.for_algo(algo) if isinstance(v, ByAlgo) else v for k, v in preset.items()}


def build_config(explicit: dict[str, Any]) -> TrainConfig:
    """Defaults <- env preset (for the algorithm) <- explicit settings (from a config file
    and/or the CLI)."""
    env_id = str(explicit.get("env", TrainConfig.env))
    algo = str(explicit.get("algo", TrainConfig.algo))
    preset = preset_for(env_id, str(explicit.get("preset", "auto")), algo)
    merged = {**preset, **explicit}
    if "env_kwargs" in preset and "env_kwargs" in explicit:
        merged["env_kwargs"] = merge_env_kwargs(preset["env_kwargs"], explicit["env_kwargs"])
    config = TrainConfig.from_dict(merged)
    validate(config)
    return config


def merge_env_kwargs(base: str, extra: Any) -> str:
    """``--env-kwargs`` over a preset's: ``extra``'s keys added to ``base``'s, replacing the
    same keys (``"a=1,b=2"`` + ``"b=3,c=4"`` -> ``"a=1,b=3,c=4"``). A malformed ``extra`` is
    kept as it is, for validation to name it."""
    if not isinstance(extra, str):
        return extra
    merged: dict[str, str] = {}
    for text in (base, extra):
        items: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, eq, _ = item.partition("=")
            if not eq or key.strip() in items:
                return extra
            items[key.strip()] = item
        merged.update(items)
    return ",".join(merged.values())


def build_config_explained(
    file_settings: dict[str, Any],
    cli_settings: dict[str, Any],
    file_label: str = "config file",
) -> tuple[TrainConfig, dict[str, str]]:
    """``build_config`` of the file's settings overridden by the command line's, and where
    each setting of the result came from: "command line", ``file_label``, "preset NAME" (or
    "preset NAME for ALGO" for a value set per algorithm) or "default" (the later in that
    list loses to the earlier); "preset NAME + command line" for ``env_kwargs`` merged with
    a preset's."""
    explicit = {**file_settings, **cli_settings}
    config = build_config(explicit)
    preset = preset_name_for(config.env, config.preset)
    sources = {}
    for f in dataclasses.fields(TrainConfig):
        in_preset = f.name in PRESETS[preset]
        if f.name in cli_settings:
            sources[f.name] = "command line"
        elif f.name in file_settings:
            sources[f.name] = file_label
        elif in_preset and isinstance(PRESETS[preset][f.name], ByAlgo):
            sources[f.name] = f"preset {preset} for {config.algo}"
            continue
        else:
            sources[f.name] = f"preset {preset}" if in_preset else "default"
            continue
        if f.name == "env_kwargs" and in_preset:  # merged key by key (merge_env_kwargs)
            sources[f.name] = f"preset {preset} + {sources[f.name]}"
    return config, sources


def explain_settings(config: TrainConfig, sources: dict[str, str], everything: bool = False) -> str:
    """The settings a run uses, each with its source: every one when ``everything``, else
    those not at their plain default (one line)."""
    shown = [
        (name, value, sources.get(name, "default"))
        for name, value in config.to_dict().items()
        if everything or sources.get(name, "default") != "default"
    ]
    if everything:
        width = max(len(n) for n, _, _ in shown)
        return "\n".join(f"  {n:<{width}}  {_show(v):<24} {src}" for n, v, src in shown)
    by_source: dict[str, list[str]] = {}
    for name, value, src in shown:
        by_source.setdefault(src, []).append(f"{name}={_show(value)}")
    parts = [f"{src}: {' '.join(items)}" for src, items in by_source.items()]
    return "settings (" + "; ".join(parts) + "; the rest default)"


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a preset file; every key must be a TrainConfig field."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    flat = {k.replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(flat) - names)
    if unknown:
        raise ConfigError(f"config file {p}: unknown setting {unknown[0]!r}")
    return flat


#: Step counters are int64 and a run may overshoot ``steps`` by a rollout per worker.
MAX_STEPS = 2**62
#: Seeds feed numpy's SeedSequence (non-negative); the final evaluation adds 10_000 + episode.
MAX_SEED = 2**62


def validate(c: TrainConfig) -> None:
    """Raise ConfigError (one line naming the setting) for any value the run cannot use."""

    def bad(name: str, why: str) -> ConfigError:
        return ConfigError(f"--{name.replace('_', '-')}: {why}")

    get_algorithm(c.algo)  # an unknown name first: every other message may depend on it
    if c.optimizer not in OPTIMIZERS:
        raise bad(
            "optimizer", f"unknown optimizer {c.optimizer!r} (choose from {', '.join(OPTIMIZERS)})"
        )
    if c.network not in NETWORKS:
        raise bad("network", f"unknown network {c.network!r} (choose from {', '.join(NETWORKS)})")
    if c.preset not in PRESET_NAMES:
        raise bad("preset", f"unknown preset {c.preset!r} (choose from {', '.join(PRESET_NAMES)})")
    if not (math.isfinite(c.reward_scale) and c.reward_scale > 0):
        raise bad("reward_scale", f"must be a positive number, got {c.reward_scale}")
    for name in (
        "workers", "steps", "t_max", "target_interval", "lstm_size", "skip_limit", "stop_window"
    ):  # fmt: skip
        if getattr(c, name) < 1:
            raise bad(name, f"must be at least 1, got {getattr(c, name)}")
    for name in ("epsilon_anneal_steps", "checkpoint_every", "eval_episodes", "telemetry_every"):
        if getattr(c, name) < 0:
            raise bad(name, f"must be >= 0, got {getattr(c, name)}")
    if c.steps > MAX_STEPS:
        raise bad("steps", f"{c.steps} is more than {MAX_STEPS} (2**62, the int64 step counters)")
    if not 0 <= c.seed <= MAX_SEED:
        raise bad("seed", f"must be in [0, {MAX_SEED}], got {c.seed}")
    if c.workers > 512:
        raise bad("workers", f"{c.workers} is more than 512")
    for name in ("lr", "rmsprop_eps"):
        v = getattr(c, name)
        if not (math.isfinite(v) and v > 0):
            raise bad(name, f"must be a positive number, got {v}")
    for name in (
        "entropy_beta", "value_weight", "mean_bound_weight", "grad_clip", "time_limit",
        "stall_timeout",
    ):  # fmt: skip
        v = getattr(c, name)
        if not (math.isfinite(v) and v >= 0):
            raise bad(name, f"must be >= 0, got {v}")
    std_floor = math.sqrt(VAR_FLOOR)
    if not (c.init_std == 0 or (math.isfinite(c.init_std) and c.init_std > std_floor)):
        raise bad(
            "init_std",
            f"must be 0 (the plain init) or above {std_floor:g} (the variance's "
            f"floor is {VAR_FLOOR:g}), got {c.init_std}",
        )
    if math.isnan(c.stop_return):
        raise bad("stop_return", "must be a number (inf = never stop on the return)")
    for name in ("gamma", "rmsprop_alpha", "momentum", "gae_lambda"):
        v = getattr(c, name)
        if not (0.0 <= v <= 1.0):
            raise bad(name, f"must be in [0, 1], got {v}")
    parse_env_kwargs(c.env_kwargs)
    if not c.hidden or any(h < 1 for h in c.hidden):
        raise bad("hidden", f"layer sizes must be positive, got {c.hidden}")
    if len(c.final_epsilons) != len(c.final_epsilon_probs) or not c.final_epsilons:
        raise bad("final_epsilon_probs", "needs one probability per final epsilon")
    if any(not 0 <= e <= 1 for e in c.final_epsilons):
        raise bad("final_epsilons", f"must lie in [0, 1], got {c.final_epsilons}")
    if any(p < 0 for p in c.final_epsilon_probs) or abs(sum(c.final_epsilon_probs) - 1) > 1e-6:
        raise bad("final_epsilon_probs", f"must be >= 0 and sum to 1, got {c.final_epsilon_probs}")
    check_config(c)  # what the configuration asks of its algorithm: an LSTM, --gae-lambda ...


# -- resuming -------------------------------------------------------------------------------

RESUMABLE = frozenset(
    {
        "steps", "workers", "quiet", "checkpoint_every", "eval_episodes", "out", "time_limit",
        "skip_limit", "stall_timeout", "telemetry_every", "stop_return", "stop_window",
    }
)  # fmt: skip
"""The settings a resumed run may change (``--resume``): how long and how wide it runs and
what it records, never what it learns. Every other setting must equal the run file's."""


def resumed_settings(stored: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings of a resumed run: the run file's ``stored`` ones with the RESUMABLE
    ``overrides``. An override of any other setting that differs from the stored value is a
    ConfigError (one line); one equal to it is accepted and changes nothing."""
    for key, value in overrides.items():
        if key not in RESUMABLE:
            old = TrainConfig.from_dict({key: stored[key]}) if key in stored else TrainConfig()
            old = old.to_dict()[key]
            new = TrainConfig.from_dict({key: value}).to_dict()[key]
            if old != new:
                raise ConfigError(
                    f"--{key.replace('_', '-')}: cannot change {key} when resuming "
                    f"(run file has {old!r})"
                )
    return {**stored, **{k: v for k, v in overrides.items() if k in RESUMABLE}}


def may_differ_on_resume(stored: dict[str, Any]) -> frozenset[str]:
    """Keys the run file's check may skip: the RESUMABLE settings, and the settings a newer
    nbasync has that ``stored`` lacks (they take their defaults, which must leave the run
    as it was: e.g. ``gae_lambda`` 1.0, ``dueling`` off)."""
    return RESUMABLE | frozenset(set(TrainConfig().to_dict()) - set(stored))
