"""The examples run, and every relative error they print is that of a correct gradient."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("script", ["gradcheck.py", "new_layer.py"])
def test_example_prints_small_gradient_errors(script):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    errors = [float(e) for e in re.findall(r"\b(\d\.\d+e[-+]\d+)\s*(?:\(|$)", proc.stdout, re.M)]
    assert len(errors) >= 5, proc.stdout
    assert max(errors) < 1e-6, proc.stdout
