"""Structured reference strings: a dev SRS per logrows, or a ceremony SRS the user brings.

A dev SRS comes from ``ezkl.gen_srs``: whoever generated it knows its toxic waste and could
forge proofs. It is **not for production** and every manifest and report says so.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prover.exceptions import SrsError
from prover.paths import ARTIFACTS
from prover.zk import ezkl_api
from prover.zk.hashing import sha256_file

DEV_WARNING = "DEV SRS from ezkl.gen_srs - NOT FOR PRODUCTION (its toxic waste is known)"


@dataclass(frozen=True)
class Srs:
    """An SRS file and where it came from."""

    path: Path
    logrows: int
    dev: bool
    sha256: str

    @property
    def label(self) -> str:
        """Human-readable provenance."""
        return DEV_WARNING if self.dev else f"ceremony SRS {self.path.name}"


def dev_srs(logrows: int, cache_dir: Path | None = None) -> Srs:
    """Return the cached dev SRS for ``logrows``, generating it atomically if needed."""
    if not 1 <= logrows <= 26:
        raise SrsError(f"logrows must be within 1..26, got {logrows}")
    directory = cache_dir or ARTIFACTS / "srs"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"dev-k{logrows}.srs"
    if not path.is_file():
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".partial")
        os.close(fd)
        try:
            ezkl_api.gen_srs(Path(tmp), logrows)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return Srs(path, logrows, True, sha256_file(path))


def ceremony_srs(path: Path, logrows: int) -> Srs:
    """Use an SRS from a trusted-setup ceremony (e.g. a perpetual powers-of-tau export)."""
    if not path.is_file():
        raise SrsError(f"SRS file {path} does not exist")
    # A KZG params file holds 2**k G1 points; EZKL reduces larger params to logrows itself.
    min_size = (1 << logrows) * 32
    if path.stat().st_size < min_size:
        raise SrsError(
            f"SRS file {path} has {path.stat().st_size} bytes, too small for logrows={logrows}"
        )
    return Srs(path.resolve(), logrows, False, sha256_file(path))
