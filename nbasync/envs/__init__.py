"""nbasync.envs: environment id -> gymnasium.Env, plus the space helpers the algorithms use.

Owns the id routing (Atari ids -> :class:`~nbasync.envs.atari.AtariEnv`, other gymnasium
ids -> float32 vector-observation adapter, or :class:`~nbasync.envs.image.ImageObs` for
uint8 image observations), nbasync's own ids (``nbasync/CartPoleNoVel-v1``,
``nbasync/Labyrinth-v0``)
and :class:`EnvError`. A leaf: imports nothing else of nbasync.

    env = make_env("ALE/Pong-v5", seed=1)            # AtariEnv, obs uint8 (4, 84, 84)
    env = make_env("CartPole-v1", seed=1)            # obs float32 (4,)
    env = make_env("nbasync/CartPoleNoVel-v1", 1)    # obs float32 (2,): [x, theta]
    info = describe(env)                             # EnvInfo, or EnvError saying why not
    info = require_discrete(env)                     # ... and the actions must be discrete
    info.obs_shape, info.n_actions, info.frames_per_step

For Atari ids the id selects only the game (plus mode/difficulty if the id sets them); the
preprocessing comes from ``options`` (AtariEnv's keyword arguments), not from the id's
gymnasium settings: ``ALE/Pong-v5`` and ``PongNoFrameskip-v4`` give the same environment,
with sticky actions off unless ``repeat_action_probability`` is passed.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from .atari import AtariEnv
from .errors import EnvError
from .image import ImageObs, image_layout
from .labyrinth import LabyrinthEnv
from .pedal import OnePedal
from .repeat import ActionRepeat, check_action_repeat
from .vector import Float32Obs, MaskVelocityWrapper

__all__ = [
    "ActionRepeat",
    "AtariEnv",
    "EnvError",
    "EnvInfo",
    "ImageObs",
    "LabyrinthEnv",
    "Float32Obs",
    "MaskVelocityWrapper",
    "OnePedal",
    "describe",
    "is_atari_id",
    "make_env",
    "require_discrete",
]

_ATARI_OPTIONS = frozenset(
    name
    for name, p in inspect.signature(AtariEnv.__init__).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
)

_ale_registered = False


def _registry() -> dict:
    """gymnasium's registry with the ALE ids in it (ale_py registers them on demand)."""
    global _ale_registered
    if not _ale_registered:
        import ale_py

        gymnasium.register_envs(ale_py)
        _ale_registered = True
    return gymnasium.registry


def _cartpole_novel(**kwargs) -> gymnasium.Env:
    return MaskVelocityWrapper(gymnasium.make("CartPole-v1", **kwargs))


# nbasync's own ids: id -> factory(**options) returning an Env with float32 1-D obs.
_NBASYNC_IDS = {"nbasync/CartPoleNoVel-v1": _cartpole_novel}

for _id, _factory in _NBASYNC_IDS.items():
    if _id not in gymnasium.registry:  # also usable as gymnasium.make(id)
        gymnasium.register(id=_id, entry_point=_factory)

# nbasync's own image environments: id -> class(seed, **options), used as they are (uint8
# images, no float32 adapter); also registered for gymnasium.make.
_IMAGE_IDS = {"nbasync/Labyrinth-v0": LabyrinthEnv}
for _id, _cls in _IMAGE_IDS.items():
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, entry_point=_cls)


def _atari_spec(env_id: str):
    spec = _registry().get(env_id)
    if spec is None:
        return None
    ep = spec.entry_point
    name = ep if isinstance(ep, str) else f"{getattr(ep, '__module__', '')}:{ep.__qualname__}"
    return spec if name.startswith("ale_py") else None


def is_atari_id(env_id: str) -> bool:
    """True for ids registered by ale_py (``ALE/Pong-v5``, ``PongNoFrameskip-v4``, ...)."""
    return _atari_spec(env_id) is not None


def _unknown_id(env_id: str) -> EnvError:
    ids = list(_registry().keys())
    close = difflib.get_close_matches(env_id, ids, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return EnvError(
        f"unknown environment id {env_id!r} (not in gymnasium's registry; "
        f"Atari ids look like 'ALE/Pong-v5'){hint}"
    )


def make_env(env_id: str, seed: int, **options: Any) -> gymnasium.Env:
    """Build the environment for ``env_id``, seeded with ``seed``.

    Atari ids -> :class:`AtariEnv` (``options`` are its keyword arguments: ``frame_skip``,
    ``noop_max``, ``repeat_action_probability``, ``terminal_on_life_loss``,
    ``max_episode_frames``, ...). Other ids -> ``gymnasium.make(env_id, **options)`` wrapped
    to float32 1-D observations; the first ``reset()`` uses ``seed``. Extra options for those:
    ``mask_velocity=True`` (see :class:`MaskVelocityWrapper`), ``action_repeat=k`` (see
    :class:`ActionRepeat`), ``one_pedal=True`` (CarRacing's gas and brake as one axis, see
    :class:`OnePedal`), and for image observations ``image_grey``, ``image_size`` and
    ``frame_stack`` (see :class:`ImageObs`).
    Raises :class:`EnvError` for unknown ids, unknown options and unsupported spaces.
    """
    if not isinstance(env_id, str) or not env_id:
        raise EnvError(f"environment id must be a non-empty string, got {env_id!r}")
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise EnvError(f"seed must be an int, got {seed!r}")
    seed = None if seed is None else int(seed)

    spec = _atari_spec(env_id)
    if spec is not None:
        kw = dict(spec.kwargs)
        if kw.get("obs_type", "rgb") == "ram":
            raise EnvError(f"{env_id!r}: RAM observations are not supported; use the image id")
        bad = sorted(set(options) - _ATARI_OPTIONS)
        if bad:
            raise EnvError(
                f"unknown option(s) {', '.join(bad)} for Atari id {env_id!r} "
                f"(known: {', '.join(sorted(_ATARI_OPTIONS))})"
            )
        for key in ("mode", "difficulty"):
            if kw.get(key) is not None:
                options.setdefault(key, kw[key])
        return AtariEnv(kw["game"], seed, **options)

    if env_id in _IMAGE_IDS:
        try:
            return _IMAGE_IDS[env_id](seed, **options)
        except TypeError as e:  # an unknown option
            raise EnvError(f"cannot make {env_id!r}: {e}") from None

    mask = bool(options.pop("mask_velocity", False))
    repeat = check_action_repeat(options.pop("action_repeat", 1))
    one_pedal = options.pop("one_pedal", False)
    if not isinstance(one_pedal, bool):
        raise EnvError(f"one_pedal must be true or false, got {one_pedal!r}")
    image_options = {
        key: options.pop(f"image_{key}") for key in ("grey", "size") if f"image_{key}" in options
    }
    if "frame_stack" in options:
        image_options["frame_stack"] = options.pop("frame_stack")
    if env_id in _NBASYNC_IDS:
        factory = _NBASYNC_IDS[env_id]
        make = lambda: factory(**options)  # noqa: E731
    elif env_id in _registry():
        make = lambda: gymnasium.make(env_id, **options)  # noqa: E731
    else:
        raise _unknown_id(env_id)
    try:
        env = make()
    except EnvError:
        raise
    except Exception as e:  # dependency missing, bad kwargs: one line naming the id
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EnvError(f"cannot make {env_id!r}: {msg}") from e

    if one_pedal:
        try:
            env = OnePedal(env)
        except EnvError:
            env.close()
            raise
    if repeat > 1:
        env = ActionRepeat(env, repeat)
    space = env.observation_space
    if _is_image(space):
        if mask:
            env.close()
            raise EnvError(f"mask_velocity needs vector observations; {env_id!r} has images")
        return ImageObs(env, seed, **image_options)
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        env.close()
        raise EnvError(
            f"{env_id!r} has observations {space}; nbasync takes 1-D vectors and uint8 "
            f"images ((H, W), (H, W, C) or (C, H, W))"
        )
    if image_options:
        env.close()
        raise EnvError(f"image options {sorted(image_options)} need image observations")
    if mask:
        env = MaskVelocityWrapper(env)
    return Float32Obs(env, seed)


def _is_image(space) -> bool:
    if not isinstance(space, spaces.Box) or space.dtype != np.uint8:
        return False
    try:
        image_layout(tuple(space.shape))
    except EnvError:
        return False
    return True


# --------------------------------------------------------------------------------------
# Space helpers
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvInfo:
    """What the algorithms need to know about an environment's spaces."""

    obs_shape: tuple[int, ...]
    obs_dtype: np.dtype
    discrete: bool
    n_actions: int | None  # discrete action count, else None
    action_low: np.ndarray | None  # continuous bounds (float32), else None
    action_high: np.ndarray | None
    is_atari: bool
    frames_per_step: int  # env frames per agent step (Atari frame_skip, action_repeat, else 1)

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.obs_shape))


def describe(env: gymnasium.Env) -> EnvInfo:
    """Spaces of ``env`` as an :class:`EnvInfo`; EnvError for spaces nbasync cannot use."""
    ospace, aspace = env.observation_space, env.action_space
    if not isinstance(ospace, spaces.Box):
        raise EnvError(f"observation space must be a Box, got {ospace}")
    base = env.unwrapped
    atari = isinstance(base, AtariEnv)
    frames = base.frame_skip if atari else _action_repeat(env)
    if isinstance(aspace, spaces.Discrete):
        return EnvInfo(
            tuple(ospace.shape), ospace.dtype, True, int(aspace.n), None, None, atari, frames
        )
    if isinstance(aspace, spaces.Box) and len(aspace.shape) == 1:
        return EnvInfo(
            tuple(ospace.shape), ospace.dtype, False, None,
            np.asarray(aspace.low, np.float32), np.asarray(aspace.high, np.float32), atari,
            frames,
        )  # fmt: skip
    raise EnvError(f"action space must be Discrete or a 1-D Box, got {aspace}")


def _action_repeat(env: gymnasium.Env) -> int:
    """The product of the :class:`ActionRepeat` counts in ``env``'s wrapper chain (1: none)."""
    frames = 1
    while isinstance(env, gymnasium.Wrapper):
        if isinstance(env, ActionRepeat):
            frames *= env.repeat
        env = env.env
    return frames


def _name(env: gymnasium.Env) -> str:
    return env.spec.id if env.spec is not None else type(env.unwrapped).__name__


def require_discrete(env: gymnasium.Env) -> EnvInfo:
    """EnvInfo of an env with Discrete actions (vector or Atari obs); EnvError otherwise."""
    info = describe(env)
    if not info.discrete:
        raise EnvError(
            f"{_name(env)} has continuous actions {env.action_space}; this algorithm needs "
            f"discrete actions"
        )
    return info
