"""``python -m prover …`` run as a user would: a fresh process from the repository root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def zkcare(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``python -m prover ARGS``; with ``check``, a non-zero exit fails the test."""
    done = subprocess.run(
        [sys.executable, "-m", "prover", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"zkcare {args} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done
