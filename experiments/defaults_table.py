"""Issue 17's table: final mean return per task x algorithm x seed, for several sweeps of
the same trials with different normalisation settings (one column group per sweep).

    python experiments/defaults_table.py off=sweeps/defaults-discrete-off \\
        return=sweeps/defaults-discrete-return both=sweeps/defaults-discrete-on

Reads each sweep's summary.csv (``nbasync-sweep`` writes it); prints a Markdown table and a
line of medians per task and algorithm. Not part of the package: a results helper.
"""

from __future__ import annotations

import csv
import statistics
import sys
from collections import defaultdict


def read(path: str) -> dict[tuple[str, str, int], float]:
    with open(f"{path}/summary.csv", newline="") as f:
        return {
            (row["env"], row.get("algo") or "a3c", int(row["seed"])): float(row["final_mean"])
            for row in csv.DictReader(f)
            if row["status"] == "finished"
        }


def main(argv: list[str]) -> int:
    arms = [arg.split("=", 1) for arg in argv]
    data = {name: read(path) for name, path in arms}
    keys = sorted({k for d in data.values() for k in d})
    names = [name for name, _ in arms]
    print("| task | algo | seed | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    groups = defaultdict(lambda: defaultdict(list))
    for env, algo, seed in keys:
        cells = []
        for name in names:
            value = data[name].get((env, algo, seed))
            cells.append("" if value is None else f"{value:.1f}")
            if value is not None:
                groups[(env, algo)][name].append(value)
        print(f"| {env} | {algo} | {seed} | " + " | ".join(cells) + " |")
    for (env, algo), by_name in groups.items():
        medians = [f"{statistics.median(by_name[n]):.1f}" if by_name[n] else "" for n in names]
        print(f"| {env} | {algo} | **median** | " + " | ".join(f"**{m}**" for m in medians) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
