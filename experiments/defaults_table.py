"""Issue 17's table: final mean return per task x algorithm x seed, for several sweeps of
the same trials with different normalisation settings (one column group per sweep).

    python experiments/defaults_table.py off=sweeps/defaults-discrete-off \\
        return=sweeps/defaults-discrete-return both=sweeps/defaults-discrete-on

Reads each sweep's sweep.json (``nbasync-sweep`` writes it); prints a Markdown table and a
line of medians per task and algorithm. A sweep whose grid has axes besides env, algo and
seed (say ``rmsprop_eps``) gives one column per value of them, named ``name rmsprop_eps=0.1``,
instead of letting its trials overwrite each other. Not part of the package: a results helper.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

ROW_AXES = ("env", "algo", "seed")

Row = tuple[str, str, int]


def read(name: str, path: str) -> dict[str, dict[Row, float]]:
    """Column name -> {(env, algo, seed): final mean} for one sweep's finished trials."""
    with open(f"{path}/sweep.json") as f:
        sweep = json.load(f)
    spec = sweep["spec"]
    extra_axes = [a for a in [*spec.get("grid", {}), *spec.get("sample", {})] if a not in ROW_AXES]
    columns: dict[str, dict[Row, float]] = defaultdict(dict)
    for trial in sweep["trials"]:
        if trial["status"] != "finished" or trial["final_mean"] is None:
            continue
        settings = trial["settings"]
        column = " ".join([name, *(f"{a}={settings[a]}" for a in extra_axes)])
        row = (settings["env"], settings.get("algo") or "a3c", int(settings["seed"]))
        columns[column][row] = float(trial["final_mean"])
    return dict(columns)


def main(argv: list[str]) -> int:
    data: dict[str, dict[Row, float]] = {}
    for arg in argv:
        name, path = arg.split("=", 1)
        data.update(read(name, path))
    names = list(data)
    keys = sorted({k for d in data.values() for k in d})
    print("| task | algo | seed | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    groups: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for env, algo, seed in keys:
        cells = []
        for name in names:
            value = data[name].get((env, algo, seed))
            cells.append("" if value is None else f"{value:.1f}")
            if value is not None:
                groups[(env, algo)][name].append(value)
        print(f"| {env} | {algo} | {seed} | " + " | ".join(cells) + " |")
    for (env, algo), by_name in groups.items():
        medians = [f"**{statistics.median(by_name[n]):.1f}**" if by_name[n] else "" for n in names]
        print(f"| {env} | {algo} | **median** | " + " | ".join(medians) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
