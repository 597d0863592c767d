"""The model card: what a bundle's model takes, gives and how faithfully it was quantized.

It lives in the bundle manifest under ``card`` and is what the registrar, the relay and the
CLI read: input shape and feature names, allowed ranges of the raw values, preprocessing,
output shape and meaning, the public-instance layout (checked against a real proof at build
time) and the fidelity report (float vs quantized on held-out data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prover.exceptions import FidelityCheckFailed, InvalidInput, InvalidPatientRecord
from prover.zk.circuit import Bundle
from prover.zk.commitment import proof_commitment

#: How far beyond the calibration data a raw value may go, as a share of its span.
RANGE_MARGIN = 0.5


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """The model's (single) input."""

    name: str
    shape: list[int]
    feature_names: list[str]
    #: Allowed raw values, one ``[low, high]`` per feature.
    ranges: list[tuple[float, float]]
    ranges_source: str


class PreprocessingSpec(_Strict):
    """The bundle's own preprocessing file (``preprocess.json``)."""

    kind: str
    version: str
    sha256: str
    file: str = "preprocess.json"


class OutputSpec(_Strict):
    """The model's output tensor."""

    name: str
    shape: list[int]
    names: list[str]
    meaning: str


class InstanceLayout(_Strict):
    """Where the commitment and the outputs sit among a proof's public instances.

    ``commitment`` says where the input commitment is: ``proof`` (a ``polycommit`` circuit: the
    hash of the proof's first G1 point; ``commitment_index`` is then the registry's
    ``PROOF_COMMITMENT``) or ``instance`` (a ``hashed`` circuit: instance ``commitment_index``).
    """

    count: int
    commitment: Literal["instance", "proof"] = "instance"
    commitment_index: int
    output_indexes: list[int]
    output_scale: int
    checked_against: str = Field(description="the real proof this layout was read from")
    #: Each output's own scale where the outputs' scales differ (``output_scale`` is the first's,
    #: the one the registry records); absent when every output has ``output_scale``.
    output_scales: list[int] | None = None

    def scales(self) -> list[int]:
        """The fixed-point scale of each output, in ``output_indexes`` order."""
        return self.output_scales or [self.output_scale] * len(self.output_indexes)

    def commitment_of(self, proof: bytes, instances: Sequence[int]) -> int:
        """The input commitment of a proof with this layout."""
        if self.commitment == "proof":
            return proof_commitment(proof)
        return int(instances[self.commitment_index])

    def registry_tuple(self) -> tuple[int, int, int, int, int]:
        """``(instanceCount, inputIndex, outputIndex, outputCount, outputScale)``."""
        return (
            self.count,
            self.commitment_index,
            self.output_indexes[0],
            len(self.output_indexes),
            self.output_scale,
        )


class DecisionSpec(_Strict):
    """The payout rule compiled into the circuit: its one public output is ``decision``
    (1: the rule holds, the claim pays). The scores it reads never leave the prover."""

    comparison: Literal["at_least", "at_most", "arg_max_is"]
    #: ``output[K]`` read against the threshold, or the class K for ``arg_max_is``.
    output: int
    output_name: str
    #: In the model's own (float) units; ``None`` for ``arg_max_is``.
    threshold: float | None
    rule: str
    #: The smallest distance of a held-out record from flipping (``|output[K] - T|``, or
    #: the gap between the two top outputs), in model units; the fixed-point step is
    #: ``2^-input_scale``.
    margin: float
    pays_when: str = "decision == 1"


class Fidelity(_Strict):
    """Float vs quantized outputs on the held-out data (for a decision model: the float rule's
    decisions vs the circuit's)."""

    task: Literal["classifier", "regression", "decision"]
    held_out: int
    held_out_source: str
    flips: int | None
    max_abs_error: float
    tolerance: float | None
    float_accuracy: float | None = None
    quantized_accuracy: float | None = None
    passed: bool


class ModelCard(_Strict):
    """Everything a user of a bundle needs to know about its model."""

    name: str
    input: InputSpec
    preprocessing: PreprocessingSpec
    output: OutputSpec
    salt: dict[str, int]
    instance_layout: InstanceLayout
    fidelity: Fidelity
    #: Set for a decision model (``model build --decide``); absent for a plain one.
    decision: DecisionSpec | None = None

    @classmethod
    def of(cls, bundle: Bundle) -> ModelCard:
        """The bundle's card, or a one-line error saying it has none (or a broken one)."""
        raw = bundle.manifest.get("card")
        if raw is None:
            raise FidelityCheckFailed(
                bundle.path,
                "has no model card (built before `model build`?)",
                "`python -m prover model build` to rebuild it",
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise FidelityCheckFailed(
                bundle.path, f"model card field {where}: {first['msg']}", "a rebuild"
            ) from exc

    @property
    def salt_limbs(self) -> int:
        """How many salt limbs a record of this model takes."""
        return int(self.salt["limbs"])

    @property
    def width(self) -> int:
        """Raw values per record."""
        return len(self.input.ranges)

    @property
    def output_count(self) -> int:
        """Number of output values."""
        return len(self.instance_layout.output_indexes)

    def check_record(self, record: Sequence[float]) -> list[float]:
        """Validate a raw record against the card; messages name the feature, never a value."""
        if isinstance(record, str | bytes) or not isinstance(record, Sequence):
            raise InvalidPatientRecord(
                f"model {self.name}: expected a list of {self.width} numbers"
            )
        if len(record) != self.width:
            raise InvalidPatientRecord(
                f"model {self.name} takes {self.width} features, got {len(record)}"
            )
        out: list[float] = []
        for i, value in enumerate(record):
            label = self.input.feature_names[i]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidPatientRecord(
                    f"model {self.name}: features[{i}] ({label}) is not a number"
                )
            if not math.isfinite(value):
                raise InvalidPatientRecord(
                    f"model {self.name}: features[{i}] ({label}) is not a finite number"
                )
            low, high = self.input.ranges[i]
            if not low <= value <= high:
                sign = (
                    "negative; the card allows" if value < 0 <= low else "outside the allowed range"
                )
                raise InvalidPatientRecord(
                    f"model {self.name}: features[{i}] ({label}) is {sign} [{low:g}, {high:g}]"
                )
            out.append(float(value))
        return out


def ranges_from(rows: Any, margin: float = RANGE_MARGIN) -> list[tuple[float, float]]:
    """Calibration min/max widened by ``margin`` of the span; never below 0 if never negative."""
    import numpy as np

    lo = np.min(rows, axis=0)
    hi = np.max(rows, axis=0)
    span = np.where(hi > lo, hi - lo, np.maximum(np.abs(hi), 1.0))
    out = []
    for low, high, width in zip(lo, hi, span, strict=True):
        a = float(low - margin * width)
        b = float(high + margin * width)
        if low >= 0:
            a = max(0.0, a)
        out.append((a, b))
    return out


def check_ranges(ranges: Any, width: int, source: str) -> list[tuple[float, float]]:
    """Validate user-given ranges: ``[[low, high], ...]`` one per feature."""
    if not isinstance(ranges, list) or len(ranges) != width:
        raise InvalidInput(f"{source}: expected {width} [low, high] pairs")
    out = []
    for i, pair in enumerate(ranges):
        ok = isinstance(pair, list | tuple) and len(pair) == 2
        if not ok or not all(isinstance(v, int | float) and math.isfinite(v) for v in pair):
            raise InvalidInput(f"{source}: range {i} is not a [low, high] pair of numbers")
        if pair[0] > pair[1]:
            raise InvalidInput(f"{source}: range {i} has low > high")
        out.append((float(pair[0]), float(pair[1])))
    return out
