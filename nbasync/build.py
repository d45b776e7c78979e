"""One run's parts from its configuration: the environment and its description, the
network, the optimiser.

Owns how a setting becomes a part, in ONE place below both the algorithms (each worker
builds its environment, local network theta' and optimiser here) and ``train`` / evaluation
(the parent builds the network it initialises, checkpoints and evaluates here, with the
same code), so a setting flows one way: config -> build -> parts. It knows no processes and
no particular algorithm: an algorithm's declaration (``algos.AlgorithmSpec``) says which
head it needs and whether it takes continuous actions, and those arrive here as plain
values (``head``, ``continuous_ok``). ``config`` is read by attribute only.

Heads (the network's last layers; the output columns)::

    POLICY_VALUE  discrete actions:   n_actions + 1 columns: [:, :A] policy logits, [:, A] V(s)
                  continuous actions: 2D + 1 columns from two nets (NetworkPair), or one
                                      with ``config.shared_trunk``: Gaussian mean (D),
                                      pre-variance (D), V(s)
    Q_VALUES      n_actions columns: [:, a] Q(s, a); with ``config.dueling`` the last Dense
                  has A + 1 outputs (advantages, V) and ``nn.Dueling`` makes them
                  Q = V + A - mean(A)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium
import numpy as np

from .envs import EnvInfo, describe, is_atari_id, make_env, require_discrete
from .errors import ConfigError
from .nn import Network, NetworkPair, atari_network, mlp_network
from .nn.gaussian import pre_variance_for_std
from .optim import MomentumSGD, RMSProp, make_optimizer

if TYPE_CHECKING:  # read by attribute only: config sits above this module
    from .config import TrainConfig

POLICY_VALUE = "policy_value"
Q_VALUES = "q_values"
HEADS = (POLICY_VALUE, Q_VALUES)

__all__ = [
    "HEADS",
    "POLICY_VALUE",
    "Q_VALUES",
    "action_dim",
    "build_network",
    "build_optimizer",
    "env_info",
    "env_options",
    "parse_env_kwargs",
    "make_environment",
    "n_outputs",
    "normalisation_layout",
    "obs_scale",
    "probe_env",
]


# -- the environment ------------------------------------------------------------------------


def parse_env_kwargs(text: str) -> dict[str, Any]:
    """``"continuous=false,lap_complete_percent=0.9"`` -> {"continuous": False, ...}: true and
    false become bools, whole numbers ints, other numbers floats, the rest stays a string."""
    kwargs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not eq or not key.isidentifier() or not raw:
            raise ConfigError(f"--env-kwargs: {item!r} is not key=value")
        if key in kwargs:
            raise ConfigError(f"--env-kwargs: {key!r} given twice")
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for kind in (int, float):
                try:
                    value = kind(raw)
                    break
                except ValueError:
                    continue
        kwargs[key] = value
    return kwargs


def env_options(config: TrainConfig) -> dict[str, Any]:
    """The environment's keyword arguments for learning: ``--env-kwargs``, and Atari's
    life-loss setting (evaluation plays whole games: ``--env-kwargs`` only)."""
    options = parse_env_kwargs(config.env_kwargs)
    if is_atari_id(config.env):
        options.setdefault("terminal_on_life_loss", config.terminal_on_life_loss)
    return options


def env_info(env: gymnasium.Env, continuous_ok: bool) -> EnvInfo:
    """The spaces of ``env``; EnvError (one line) when the algorithm cannot use them.

    Continuous (1-D Box) actions only with ``continuous_ok`` (the algorithm declares it:
    A3C's Gaussian policy); the others need discrete actions.
    """
    return describe(env) if continuous_ok else require_discrete(env)


def normalisation_layout(config: TrainConfig, info: EnvInfo) -> tuple[int, bool]:
    """(dimension of the observation moments, 0 = none; whether returns are normalised) for
    the shared segment. Observation normalisation needs vector observations."""
    obs_dim = 0
    if config.obs_norm:
        if len(info.obs_shape) != 1:
            raise ConfigError(
                f"--obs-norm: needs vector observations; {config.env} gives images of shape "
                f"{info.obs_shape} (scaled to [0, 1] already)"
            )
        obs_dim = int(info.obs_shape[0])
    return obs_dim, bool(config.return_norm)


def make_environment(
    config: TrainConfig, seed: int, continuous_ok: bool, options: dict[str, Any] | None = None
) -> tuple[gymnasium.Env, EnvInfo]:
    """``config.env`` seeded with ``seed`` and its description. ``options``: the env's keyword
    arguments, by default the learning ones (:func:`env_options`)."""
    env = make_env(config.env, seed=seed, **(env_options(config) if options is None else options))
    try:
        return env, env_info(env, continuous_ok)
    except BaseException:
        env.close()
        raise


def probe_env(config: TrainConfig, continuous_ok: bool) -> EnvInfo:
    """Make one env in the parent and describe it: fails early, with one line, on an id or a
    space the algorithm cannot use, before any file is written or process started."""
    env, info = make_environment(config, config.seed, continuous_ok)
    env.close()
    return info


def refuse_continuous_only_settings(config: TrainConfig, info: EnvInfo) -> None:
    """Settings of the Gaussian policy would do nothing with discrete actions: say so rather
    than train as if they had been applied. A new run only: a run stored with one of them
    still resumes (they cannot change on resume) and evaluates."""
    if not info.discrete:
        return
    given = {
        "init_std": config.init_std != 0,
        "mean_bound_weight": config.mean_bound_weight != 0,
        "shared_trunk": config.shared_trunk,
    }
    for name, set_ in given.items():
        if set_:
            raise ConfigError(
                f"--{name.replace('_', '-')}: only for continuous actions (a Gaussian policy); "
                f"{config.env} has discrete actions"
            )


def obs_scale(info: EnvInfo) -> float:
    """Images are uint8 (Atari, Labyrinth, ImageObs); the network sees them in [0, 1]."""
    return 1.0 / 255.0 if np.dtype(info.obs_dtype) == np.uint8 else 1.0


def action_dim(info: EnvInfo) -> int:
    """Continuous action dimensions D (0 for discrete actions)."""
    return 0 if info.discrete else int(info.action_low.size)


# -- the network ----------------------------------------------------------------------------


def n_outputs(head: str, info: EnvInfo) -> int:
    """Output columns of the network for ``head`` on these spaces (see the module's table)."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")
    if not info.discrete:
        if head != POLICY_VALUE:
            raise ValueError(f"head {head!r} needs discrete actions")
        return 2 * action_dim(info) + 1
    return info.n_actions + 1 if head == POLICY_VALUE else info.n_actions


def build_network(
    config: TrainConfig, info: EnvInfo, head: str, max_batch: int, dtype=np.float32
) -> Network | NetworkPair:
    """The paper's conv net for image observations, an MLP for vectors (``config.network``);
    with ``config.recurrent`` an LSTM of ``config.lstm_size`` cells before the head (A3C
    LSTM); with ``config.dueling`` (Q heads) the dueling aggregation after the head.

    Continuous actions: a :class:`~nbasync.nn.NetworkPair` of a policy net (2D outputs:
    Gaussian mean and pre-variance) and a value net (1 output) with the same trunk and no
    shared parameters (the paper's MuJoCo set-up), over one flat parameter vector. With
    ``config.shared_trunk`` one net gives all 2D + 1 columns, as a discrete policy does.
    """
    n_out = n_outputs(head, info)
    if not info.discrete and not config.shared_trunk:
        D = action_dim(info)
        policy = _network(config, info, 2 * D, max_batch, dtype, dueling=False)
        value = _network(config, info, 1, max_batch, dtype, dueling=False)
        _start_gaussian_at(policy, config.init_std, D)
        return NetworkPair(policy, value, names=("policy", "value"))
    dueling = head == Q_VALUES and config.dueling
    net = _network(config, info, n_out, max_batch, dtype, dueling)
    if not info.discrete:
        _start_gaussian_at(net, config.init_std, action_dim(info))
    return net


def _start_gaussian_at(policy: Network, std: float, D: int) -> None:
    """``--init-std``: the head's pre-variance columns (D to 2D) start at the bias that gives
    the Gaussian that standard deviation (0: all drawn, the plain init)."""
    if std > 0:
        s = pre_variance_for_std(std)
        policy.head_bias_init = {D + d: s for d in range(D)}


def _network(
    config: TrainConfig, info: EnvInfo, n_out: int, max_batch: int, dtype, dueling: bool
) -> Network:
    kind = config.network
    if kind == "auto":
        kind = "atari" if len(info.obs_shape) == 3 else "mlp"
    lstm_size = config.lstm_size if config.recurrent else 0
    _check_network_fits(kind, info)
    if kind == "atari":
        return atari_network(
            n_out,
            in_channels=info.obs_shape[0],
            max_batch=max_batch,
            dtype=dtype,
            lstm_size=lstm_size,
            input_size=info.obs_shape[1:],
            dueling=dueling,
        )
    return mlp_network(
        info.obs_shape[0],
        n_out,
        hidden=config.hidden,
        max_batch=max_batch,
        dtype=dtype,
        lstm_size=lstm_size,
        dueling=dueling,
    )


def _check_network_fits(kind: str, info: EnvInfo) -> None:
    """--network names a net the observations cannot feed: one line (exit 2), before any
    file is written, instead of a shape error deep inside the first forward pass."""
    if kind == "atari" and (len(info.obs_shape) != 3 or min(info.obs_shape[1:]) < 20):
        raise ConfigError(
            f"--network: atari (the conv net) needs (C, H, W) images of at least 20 x 20, "
            f"this env gives shape {info.obs_shape} (use --network mlp or auto)"
        )
    if kind == "mlp" and len(info.obs_shape) != 1:
        raise ConfigError(
            f"--network: mlp needs vector observations, this env gives shape "
            f"{info.obs_shape} (use --network atari or auto)"
        )


# -- the optimiser --------------------------------------------------------------------------


def build_optimizer(
    config: TrainConfig, n_params: int, shared_stats: np.ndarray | None
) -> RMSProp | MomentumSGD:
    """``config.optimizer`` over ``n_params``; ``shared_stats`` is the shared RMSProp g
    (``SharedState.opt_stats``), used only by "shared_rmsprop" (the others keep their own)."""
    return make_optimizer(
        config.optimizer,
        n_params,
        shared_stats=shared_stats if config.optimizer == "shared_rmsprop" else None,
        alpha=config.rmsprop_alpha,
        eps=config.rmsprop_eps,
        momentum=config.momentum,
    )
