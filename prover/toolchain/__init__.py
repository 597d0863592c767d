"""Locate the offline toolchain: the solc launcher (solcjs from npm) and anvil (npm)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prover.exceptions import ToolMissing
from prover.paths import ROOT

LAUNCHER = Path(__file__).parent / "solc"
SOLCJS = Path(os.environ.get("ZKCARE_SOLCJS", ROOT / "node_modules" / "solc" / "solc.js"))


def solc_version() -> str:
    """The pinned solc version (from the installed npm ``solc`` package)."""
    import json

    package = SOLCJS.parent / "package.json"
    if shutil.which("node") is None:
        raise ToolMissing("node (Node.js, needed by solcjs)", "not on PATH")
    if not package.is_file():
        raise ToolMissing("solc (npm solcjs)", str(SOLCJS))
    return str(json.loads(package.read_text())["version"])


def solc_binary() -> Path:
    """The launcher py-solc-x should run as ``solc``; checks that solcjs is installed."""
    solc_version()
    return LAUNCHER


def anvil_binary() -> Path:
    """The anvil executable from npm (or ``ZKCARE_ANVIL``)."""
    override = os.environ.get("ZKCARE_ANVIL")
    if override:
        candidate = Path(override)
    else:
        candidate = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
    if not (candidate.is_file() and os.access(candidate, os.X_OK)):
        raise ToolMissing("anvil", str(candidate))
    return candidate
