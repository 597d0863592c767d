"""Read the data files a model owner hands to ``model build`` / ``model prove``.

Accepted: EZKL's input JSON (``{"input_data": [[...]]}``; a flat list that holds several
records back to back is split into records), a JSON list of rows (``[[...], ...]``, or one flat
row), ``{"rows": [...]}``, and CSV (one record per line; a first line that is not numbers is a
header). Labels: a JSON list, or CSV with one value per line. Every problem is one line naming
the file, the row and what to do.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from prover.exceptions import InputShapeError


def _numbers(source: str, row: Any, where: str) -> list[float]:
    if not isinstance(row, list):
        raise InputShapeError(source, f"{where} is {type(row).__name__}, not a list of numbers")
    out: list[float] = []
    for j, value in enumerate(row):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputShapeError(source, f"{where}, value {j} is not a number")
        if not math.isfinite(value):
            raise InputShapeError(source, f"{where}, value {j} is not finite")
        out.append(float(value))
    return out


def _read_csv(path: Path) -> tuple[list[list[float]], list[str] | None]:
    rows: list[list[float]] = []
    header: list[str] | None = None
    with path.open(newline="") as fh:
        for i, line in enumerate(csv.reader(fh)):
            if not line or all(not c.strip() for c in line):
                continue
            try:
                rows.append([float(c) for c in line])
            except ValueError:
                if i == 0 and not rows:
                    header = [c.strip() for c in line]
                    continue
                raise InputShapeError(
                    str(path), f"line {i + 1} holds a value that is not a number"
                ) from None
    return rows, header


def load_rows(path: Path, width: int | None = None) -> tuple[np.ndarray, list[str] | None]:
    """Records from ``path`` as ``[n, width]`` floats, and the CSV header if there was one."""
    source = str(path)
    if not path.is_file():
        raise InputShapeError(source, "no such file")
    header: list[str] | None = None
    if path.suffix.lower() == ".csv":
        rows, header = _read_csv(path)
    else:
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise InputShapeError(source, f"not JSON or CSV ({exc.__class__.__name__})") from exc
        if isinstance(data, dict) and "input_data" in data:
            inputs = data["input_data"]
            if not isinstance(inputs, list) or len(inputs) != 1:
                n = len(inputs) if isinstance(inputs, list) else 0
                raise InputShapeError(source, f"input_data has {n} inputs; zkcare models take one")
            flat = _numbers(source, inputs[0], "input_data[0]")
            if width is not None and flat and len(flat) % width == 0:
                rows = [flat[i : i + width] for i in range(0, len(flat), width)]
            else:
                rows = [flat]
        else:
            if isinstance(data, dict) and "rows" in data:
                data = data["rows"]
            if isinstance(data, list) and data and not isinstance(data[0], list):
                data = [data]
            if not isinstance(data, list):
                raise InputShapeError(
                    source, 'expected {"input_data": [[...]]}, a list of rows or CSV'
                )
            rows = [_numbers(source, r, f"row {i}") for i, r in enumerate(data)]
    if not rows:
        raise InputShapeError(source, "holds no records")
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise InputShapeError(source, f"rows have different lengths {sorted(lengths)}")
    n = lengths.pop()
    if width is not None and n != width:
        raise InputShapeError(source, f"records have {n} values; the model takes {width}")
    return np.asarray(rows, dtype=np.float64), header


def load_labels(path: Path, count: int) -> np.ndarray:
    """One label per held-out record."""
    rows, _ = load_rows(path)
    if rows.shape[1] == 1:
        labels = rows[:, 0]
    elif rows.shape[0] == 1:
        labels = rows[0]
    else:
        raise InputShapeError(
            str(path), f"expected one label per line, got rows of {rows.shape[1]}"
        )
    if labels.shape[0] != count:
        raise InputShapeError(str(path), f"{labels.shape[0]} labels for {count} held-out records")
    return labels
