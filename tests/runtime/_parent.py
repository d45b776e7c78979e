"""A parent process for the signal tests: ``python _parent.py``.

Starts two idle workers, prints one JSON line {"pid", "segment", "workers"} once both are
ready, then waits for a signal (or a worker's death). Exit codes: 0 normal, 130 Ctrl-C,
143 SIGTERM, 3 WorkerError (message on stderr, one line).
"""

from __future__ import annotations

import json
import os
import sys

from _workers import ready_then_loop

from nbasync.runner import WorkerError, run_workers
from nbasync.shared import SharedState


def main() -> int:
    ready: dict[int, int] = {}
    with SharedState.create(n_params=1000, n_workers=2) as state:

        def on_event(ev):
            if ev[0] == "ready":
                ready[ev[1]] = ev[2]
                if len(ready) == 2:
                    info = {
                        "pid": os.getpid(),
                        "segment": state.name,
                        "workers": [ready[i] for i in sorted(ready)],
                    }
                    print(json.dumps(info), flush=True)

        try:
            run_workers(ready_then_loop, 2, state, None, on_event, poll_s=0.1, join_timeout_s=3.0)
        except WorkerError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 3
        except KeyboardInterrupt:
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
