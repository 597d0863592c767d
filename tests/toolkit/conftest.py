"""Models made by the tests, built once per session through the CLI a model owner uses."""

from __future__ import annotations

from pathlib import Path

import pytest
from zkcare_cli import zkcare

from prover.zk.circuit import Bundle, load_bundle

from .zoo import ZOO, ZooModel


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zoo")


@pytest.fixture(scope="session")
def zoo(zoo_dir: Path) -> dict[str, ZooModel]:
    return {name: make(zoo_dir) for name, make in ZOO.items()}


def build_args(m: ZooModel, out: Path) -> list[str | Path]:
    args: list[str | Path] = [
        "model",
        "build",
        m.onnx,
        "--calibration",
        m.calibration,
        "--held-out",
        m.held_out,
        "--labels",
        m.labels,
        "--out",
        out,
    ]
    if m.preprocess is not None:
        args += ["--preprocess", m.preprocess]
    return args


@pytest.fixture(scope="session")
def zoo_bundles(zoo: dict[str, ZooModel], zoo_dir: Path) -> dict[str, Bundle]:
    """Each zoo model built with ``python -m prover model build`` (bundle dir = last line)."""
    out = {}
    for name, m in zoo.items():
        done = zkcare(*build_args(m, zoo_dir / "bundles"))
        out[name] = load_bundle(Path(done.stdout.strip().splitlines()[-1]))
    return out
