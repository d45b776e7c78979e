"""The sweep spec (TOML) and the trials it stands for.

Owns the spec's shape and checks: ``[sweep]`` (name, samples, seed, repeats, target,
window, stop_at_target), ``[base]`` (settings of every trial: the keys of ``nbasync-train
--config``), ``[grid]`` (lists: the cross product is taken), ``[sample]`` (distributions:
``loguniform``, ``uniform``, ``choice``), and ``expand``: the same spec always gives the
same trials, each validated as a ``TrainConfig``. A bad spec is one ``SweepSpecError`` line
(exit code 2). Imports only ``config`` and ``errors`` (and numpy for the draws).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError, TrainConfig, build_config, coerce
from .errors import UserInputError

#: A repeat k > 0 of a trial runs with seed + REPEAT_SEED_STRIDE * k. Worker i's random
#: streams derive from (seed, i, run segment), so any two seeds already give distinct
#: streams; the stride keeps a repeat's seed recognisable (0, 1000, 2000, ...).
REPEAT_SEED_STRIDE = 1000

# Settings the sweep decides for every trial; a spec may not set them.
SET_BY_SWEEP = frozenset({"out", "quiet"})
SWEEP_KEYS = frozenset({"name", "samples", "seed", "repeats", "target", "window", "stop_at_target"})
TABLES = frozenset({"sweep", "base", "grid", "sample"})
DISTRIBUTIONS = ("loguniform", "uniform", "choice")


class SweepSpecError(UserInputError):
    """A bad sweep spec: one line naming the table and key (exit code 2)."""


# -- the spec -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    """One ``[sample]`` entry: ``{ loguniform = [low, high] }``, ``{ uniform = [low, high] }``
    or ``{ choice = [a, b, ...] }``. Integer settings get draws rounded to the nearest int."""

    kind: str
    args: tuple

    def draw(self, rng: np.random.Generator) -> Any:
        if self.kind == "loguniform":
            low, high = self.args
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        if self.kind == "uniform":
            return float(rng.uniform(*self.args))
        return self.args[int(rng.integers(len(self.args)))]

    def to_json(self) -> dict[str, list]:
        return {self.kind: list(self.args)}


@dataclass(frozen=True)
class SweepSpec:
    """A parsed spec. Trials: every point of the grid (cross product, keys in file order)
    x every sample (``samples`` draws of all ``[sample]`` settings, shared by every grid
    point so methods are compared at the same values) x ``repeats``."""

    base: dict[str, Any]
    grid: dict[str, list]
    sample: dict[str, Distribution]
    samples: int = 1
    seed: int = 0
    repeats: int = 1
    target: float | None = None
    window: int = 100
    stop_at_target: bool = False  # each trial stops once it reaches the target
    name: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "samples": self.samples,
            "seed": self.seed,
            "repeats": self.repeats,
            "target": self.target,
            "window": self.window,
            "stop_at_target": self.stop_at_target,
            "base": self.base,
            "grid": self.grid,
            "sample": {k: d.to_json() for k, d in self.sample.items()},
        }

    @property
    def swept(self) -> list[str]:
        """The settings that differ between trials, in spec order."""
        keys = [*self.grid, *self.sample]
        if self.repeats > 1 and "seed" not in keys:
            keys.append("seed")
        return keys


@dataclass(frozen=True)
class Trial:
    """One run of the sweep: ``settings`` are what ``nbasync-train --config`` would take."""

    id: str
    settings: dict[str, Any]


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    if not path.is_file():
        raise SweepSpecError(f"sweep spec not found: {path}")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SweepSpecError(f"sweep spec {path} is not valid TOML: {exc}") from None


#: The settings a spec may name: TrainConfig's fields.
SETTINGS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _setting_name(table: str, key: str) -> str:
    name = key.replace("-", "_")
    if name in SET_BY_SWEEP:
        raise SweepSpecError(f"[{table}] {key}: set by the sweep for every trial; remove it")
    if name not in SETTINGS:
        raise SweepSpecError(f"[{table}]: unknown setting {key!r}")
    return name


def _parse_distribution(key: str, value: Any) -> Distribution:
    where = f"[sample] {key}"
    if not isinstance(value, dict) or len(value) != 1:
        raise SweepSpecError(
            f"{where}: expected one distribution, e.g. {{ loguniform = [1e-4, 1e-2] }}"
        )
    (kind, args), = value.items()  # fmt: skip
    if kind not in DISTRIBUTIONS:
        raise SweepSpecError(
            f"{where}: unknown distribution {kind!r} (choose from {', '.join(DISTRIBUTIONS)})"
        )
    if not isinstance(args, list) or not args:
        raise SweepSpecError(f"{where}: {kind} needs a non-empty list")
    if kind == "choice":
        return Distribution(kind, tuple(args))
    numbers = all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
    if len(args) != 2 or not numbers:
        raise SweepSpecError(f"{where}: {kind} needs [low, high], got {args!r}")
    low, high = float(args[0]), float(args[1])
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise SweepSpecError(f"{where}: {kind} needs finite low < high, got {args!r}")
    if kind == "loguniform" and low <= 0:
        raise SweepSpecError(f"{where}: loguniform needs 0 < low, got {args!r}")
    return Distribution(kind, (low, high))


def parse_spec(data: dict[str, Any], source: str = "sweep spec") -> SweepSpec:
    """Check a spec's tables and keys (one-line ``SweepSpecError`` on the first problem)."""
    unknown = sorted(set(data) - TABLES)
    if unknown:
        raise SweepSpecError(
            f"{source}: unknown table or key {unknown[0]!r} (a spec has [sweep], [base], "
            f"[grid] and [sample])"
        )
    for table in TABLES & set(data):
        if not isinstance(data[table], dict):
            raise SweepSpecError(f"{source}: {table!r} must be a table [{table}]")
    meta = data.get("sweep", {})
    bad = sorted(set(meta) - SWEEP_KEYS)
    if bad:
        raise SweepSpecError(
            f"[sweep]: unknown key {bad[0]!r} (known: {', '.join(sorted(SWEEP_KEYS))})"
        )

    def integer(key: str, default: int, minimum: int) -> int:
        value = meta.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SweepSpecError(f"[sweep] {key}: must be an integer >= {minimum}, got {value!r}")
        return value

    base = {_setting_name("base", k): v for k, v in data.get("base", {}).items()}
    grid: dict[str, list] = {}
    if "grid" in data and not data["grid"]:
        raise SweepSpecError("[grid] is empty: give a setting with a list of values, or drop it")
    for key, values in data.get("grid", {}).items():
        name = _setting_name("grid", key)
        if not isinstance(values, list):
            raise SweepSpecError(f"[grid] {key}: must be a list of values, got {values!r}")
        if not values:
            raise SweepSpecError(f"[grid] {key}: empty list (the grid would have no trials)")
        grid[name] = values
    sample = {
        _setting_name("sample", k): _parse_distribution(k, v)
        for k, v in data.get("sample", {}).items()
    }
    for name in grid:
        if name in base:
            raise SweepSpecError(f"[grid] {name}: also set in [base]; set it in one place")
    for name in sample:
        if name in base or name in grid:
            where = "[base]" if name in base else "[grid]"
            raise SweepSpecError(f"[sample] {name}: also set in {where}; set it in one place")
    if "samples" in meta and not sample:
        raise SweepSpecError("[sweep] samples: there is no [sample] table to draw from")
    target = meta.get("target")
    if target is not None and (
        isinstance(target, bool)
        or not isinstance(target, (int, float))
        or not math.isfinite(target)
    ):
        raise SweepSpecError(f"[sweep] target: must be a number, got {target!r}")
    stop_at_target = meta.get("stop_at_target", False)
    if not isinstance(stop_at_target, bool):
        raise SweepSpecError(
            f"[sweep] stop_at_target: must be true or false, got {stop_at_target!r}"
        )
    if stop_at_target and target is None:
        raise SweepSpecError("[sweep] stop_at_target: needs a target ([sweep] target = ...)")
    if stop_at_target:
        for table, names in (("base", base), ("grid", grid), ("sample", sample)):
            for clash in sorted({"stop_return", "stop_window"} & set(names)):
                raise SweepSpecError(
                    f"[{table}] {clash}: stop_at_target sets it from [sweep] target and window"
                )
    name = meta.get("name", "")
    if not isinstance(name, str):
        raise SweepSpecError(f"[sweep] name: must be a string, got {name!r}")
    return SweepSpec(
        base=base,
        grid=grid,
        sample=sample,
        samples=integer("samples", 1, 1),
        seed=integer("seed", 0, 0),
        repeats=integer("repeats", 1, 1),
        target=None if target is None else float(target),
        window=integer("window", 100, 1),
        stop_at_target=stop_at_target,
        name=name,
    )


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a spec file; its trials are checked too (``expand``)."""
    p = Path(path)
    spec = parse_spec(_read_toml(p), source=f"sweep spec {p}")
    expand(spec)
    return spec


def _coerce_draw(name: str, value: Any) -> Any:
    default = SETTINGS[name].default
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
        return int(round(value))
    return value


def expand(spec: SweepSpec) -> list[Trial]:
    """The trials, in a fixed order (the same spec always gives the same trials: the
    draws come from ``spec.seed`` only). Every trial's settings are validated here."""
    rng = np.random.default_rng(spec.seed)
    draws = [
        {k: _coerce_draw(k, d.draw(rng)) for k, d in spec.sample.items()}
        for _ in range(spec.samples if spec.sample else 1)
    ]
    points = [
        dict(zip(spec.grid, values, strict=True))
        for values in itertools.product(*spec.grid.values())
    ]
    trials = []
    for point in points:
        for draw in draws:
            for repeat in range(spec.repeats):
                settings = {**spec.base, **point, **draw}
                if spec.stop_at_target:
                    settings["stop_return"] = spec.target
                    settings["stop_window"] = spec.window
                if repeat:
                    seed = int(settings.get("seed", TrainConfig.seed))
                    settings["seed"] = seed + REPEAT_SEED_STRIDE * repeat
                trial = Trial(f"t{len(trials):04d}", settings)
                try:
                    build_config({**settings, "quiet": True})
                except ConfigError as exc:
                    swept = ", ".join(f"{k}={settings.get(k)!r}" for k in spec.swept)
                    where = f" ({swept})" if swept else ""
                    raise SweepSpecError(f"trial {trial.id}{where}: {exc}") from None
                trials.append(trial)
    return trials


def check_only(only: dict[str, list[str]]) -> None:
    """``--only``'s keys must be settings (one-line ``UserInputError`` otherwise)."""
    for key in only:
        if key.replace("-", "_") not in SETTINGS:
            raise UserInputError(f"--only: unknown setting {key!r}")


def selected(trial: Trial, only: dict[str, list[str]]) -> bool:
    """Whether ``trial``'s settings take one of the values in ``only`` for every key
    (values compared as the setting's type: ``"1"`` matches ``workers = 1``)."""
    check_only(only)
    for key, values in only.items():
        f = SETTINGS[key.replace("-", "_")]
        value = coerce(f, trial.settings.get(f.name, f.default))
        if value not in [coerce(f, v) for v in values]:
            return False
    return True
