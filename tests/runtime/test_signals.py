"""Signals to the PARENT (run as a subprocess): Ctrl-C, SIGTERM; and a worker SIGKILLed
from outside. After each: the parent exits promptly with its documented code, no
``nbasync_<parent pid>_`` segment is left in /dev/shm and no worker process remains."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nbasync.shared import SEGMENT_PREFIX

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            state = next(line for line in f if line.startswith("State:"))
        return "Z" not in state
    except (FileNotFoundError, StopIteration):
        return False


def start_parent():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_parent.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(f"parent did not start: {proc.stderr.read()}")
    info = json.loads(line)
    assert os.path.exists(f"/dev/shm/{info['segment'].lstrip('/')}")
    return proc, info


def finish(proc, info, expected_rc):
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("parent hung")
    assert proc.returncode == expected_rc, err
    assert "resource_tracker" not in err and "Traceback" not in err, err
    leftover = [
        f for f in os.listdir("/dev/shm") if f.startswith(f"{SEGMENT_PREFIX}{info['pid']}_")
    ]
    assert leftover == []
    deadline = time.monotonic() + 5  # reparented zombies may take a moment to be reaped
    while any(alive(p) for p in info["workers"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in info["workers"] if alive(p)]
    return err


@pytest.mark.parametrize(("sig", "rc"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_to_parent_cleans_up(sig, rc):
    proc, info = start_parent()
    t0 = time.monotonic()
    proc.send_signal(sig)
    finish(proc, info, rc)
    assert time.monotonic() - t0 < 10


def test_worker_sigkilled_from_outside():
    proc, info = start_parent()
    t0 = time.monotonic()
    os.kill(info["workers"][1], signal.SIGKILL)
    err = finish(proc, info, 3)
    assert "error: worker 1 was killed by SIGKILL (exit code -9)" in err
    assert time.monotonic() - t0 < 5
