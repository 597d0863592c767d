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
