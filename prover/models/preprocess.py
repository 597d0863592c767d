"""Preprocessing: a versioned, explicit step between a raw record and the model's input.

A preprocessing file is JSON::

    {"version": "standardize-v1", "kind": "standardize",
     "feature_names": [...], "mean": [...], "scale": [...]}

``kind`` is ``standardize`` (``z = (x - mean) / scale``, the default when absent) or
``identity`` (the model takes raw values; ``width`` says how many). A bundle carries a copy of
its model's file (``preprocess.json``) and its hash, so a prover never falls back to another
model's preprocessing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prover.exceptions import InvalidInput


@dataclass(frozen=True)
class Preprocessor:
    """A versioned preprocessing step."""

    version: str
    feature_names: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    kind: str = "standardize"

    @property
    def width(self) -> int:
        """How many raw values a record has."""
        return len(self.mean)

    @classmethod
    def identity(cls, width: int, feature_names: Sequence[str] | None = None) -> Preprocessor:
        """No preprocessing: the model takes the raw values."""
        names = tuple(feature_names or (f"x{i}" for i in range(width)))
        return cls("identity", names, (0.0,) * width, (1.0,) * width, "identity")

    @classmethod
    def load(cls, path: Path) -> Preprocessor:
        """Read a preprocessing file, or say what is wrong with it in one line."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"preprocessing {path}: not readable JSON ({exc})") from exc
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "preprocessing") -> Preprocessor:
        """Validate a preprocessing document."""
        if not isinstance(data, dict):
            raise InvalidInput(f"{source}: expected a JSON object")
        kind = data.get("kind", "standardize")
        if kind == "identity":
            width = data.get("width") or len(data.get("feature_names") or [])
            if not isinstance(width, int) or width < 1:
                raise InvalidInput(f"{source}: identity preprocessing needs 'width' >= 1")
            pre = cls.identity(width, data.get("feature_names"))
            return cls(
                str(data.get("version", "identity")),
                pre.feature_names,
                pre.mean,
                pre.scale,
                "identity",
            )
        if kind != "standardize":
            raise InvalidInput(f"{source}: unknown kind {kind!r} (standardize or identity)")
        try:
            mean = tuple(float(v) for v in data["mean"])
            scale = tuple(float(v) for v in data["scale"])
            version = str(data["version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"{source}: needs 'version', 'mean' and 'scale' ({exc})") from exc
        names = tuple(
            str(n) for n in data.get("feature_names") or (f"x{i}" for i in range(len(mean)))
        )
        if not mean or len(mean) != len(scale) or len(names) != len(mean):
            raise InvalidInput(
                f"{source}: mean ({len(mean)}), scale ({len(scale)}) and feature_names "
                f"({len(names)}) must have the same, non-zero length"
            )
        if not all(np.isfinite(mean)) or not all(np.isfinite(s) and s > 0 for s in scale):
            raise InvalidInput(f"{source}: mean must be finite and every scale > 0")
        return cls(version, names, mean, scale, "standardize")

    def to_dict(self) -> dict[str, Any]:
        """The document :meth:`from_dict` reads."""
        if self.kind == "identity":
            return {
                "kind": "identity",
                "version": self.version,
                "width": self.width,
                "feature_names": list(self.feature_names),
            }
        return {
            "kind": self.kind,
            "version": self.version,
            "feature_names": list(self.feature_names),
            "mean": list(self.mean),
            "scale": list(self.scale),
        }

    def to_json(self) -> str:
        """Canonical JSON (stable bytes, so its hash is stable)."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    def apply(self, rows: np.ndarray) -> np.ndarray:
        """Transform raw rows ``[n, width]`` into model inputs (float64)."""
        x = np.asarray(rows, dtype=np.float64)
        if self.kind == "identity":
            return x
        return (x - np.asarray(self.mean)) / np.asarray(self.scale)

    def transform(self, record: Sequence[float]) -> list[float]:
        """Transform one raw record (already validated against the model card)."""
        return [float(v) for v in self.apply(np.asarray([record], dtype=np.float64))[0]]
