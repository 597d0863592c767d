"""Where zkcare keeps things on disk."""

from __future__ import annotations

import os
from pathlib import Path

#: The checkout (parent of the ``prover`` package).
ROOT = Path(__file__).resolve().parent.parent
#: Git-ignored build outputs: circuit bundles, SRS files, proofs. Override with ZKCARE_ARTIFACTS.
ARTIFACTS = Path(os.environ.get("ZKCARE_ARTIFACTS", ROOT / "artifacts"))
#: Generated Solidity verifiers (generated, never hand-edited; git-ignored).
VERIFIERS_DIR = ROOT / "contracts" / "verifiers"


def partial_path(path: Path) -> Path:
    """A temporary name next to ``path``, unique to this call, to write into and then
    ``os.replace`` onto ``path``: two processes writing the same file at once (two relays
    building one bundle) never share a half-written file."""
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.partial")
