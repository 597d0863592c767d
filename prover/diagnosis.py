"""The diagnostic use case: a patient record -> salted commitment -> proof of the diagnosis."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prover.exceptions import ProofError
from prover.models.breast_cancer import (
    DIAGNOSTIC_MODEL,
    DIAGNOSTIC_PREPROCESS,
    Preprocessor,
    load_dataset,
    sha256_file,
)
from prover.zk import proof as proofs
from prover.zk.circuit import Bundle, CircuitSpec, ProgressFn, build_bundle
from prover.zk.commitment import check_salt, commit, input_row, new_salt

#: zkcare's tuned circuit for the diagnostic model (see bench/ for the numbers).
DIAGNOSTIC_SPEC = CircuitSpec(name="breast_cancer_lr")
CALIBRATION_ROWS = 32


def calibration_rows(
    preprocessor: Preprocessor, n: int = CALIBRATION_ROWS, salt_limb: int = (1 << 24) - 1
) -> list[list[float]]:
    """Training-set rows (standardized) with maximal salt limbs, for calibration."""
    ds = load_dataset()
    return [input_row(preprocessor.transform(list(r)), [salt_limb] * 6) for r in ds.x_train[:n]]


def build_diagnostic_bundle(
    spec: CircuitSpec = DIAGNOSTIC_SPEC,
    *,
    onnx: Path = DIAGNOSTIC_MODEL,
    preprocess: Path = DIAGNOSTIC_PREPROCESS,
    srs_file: Path | None = None,
    out_root: Path | None = None,
    contract_name: str | None = None,
    export_verifier_to: Path | None = None,
    calibration: Sequence[Sequence[float]] | None = None,
    progress: ProgressFn | None = None,
) -> Bundle:
    """Build or reuse the diagnostic model's bundle."""
    pre = Preprocessor.load(preprocess)
    kwargs: dict[str, Any] = {}
    if export_verifier_to is not None:
        kwargs["export_verifier_to"] = export_verifier_to
    return build_bundle(
        onnx,
        spec,
        [[v for row in (calibration or calibration_rows(pre)) for v in row]],
        srs_file=srs_file,
        out_root=out_root,
        contract_name=contract_name,
        extra_manifest={
            "preprocessing": {"version": pre.version, "sha256": sha256_file(preprocess)},
            "model_output": "logit of P(benign); < 0 means the model calls it malignant",
        },
        progress=progress,
        **kwargs,
    )


@dataclass(frozen=True)
class DiagnosisProof:
    """A proved diagnosis. ``salt`` stays with the hospital; only the proof is shared."""

    proof: proofs.Proof
    commitment: int
    logit: float
    salt: tuple[int, ...]

    @property
    def malignant(self) -> bool:
        """The model's call: a negative logit means malignant."""
        return self.logit < 0


def prove_diagnosis(
    bundle: Bundle,
    record: Sequence[float],
    workdir: Path,
    *,
    salt: Sequence[int] | None = None,
    preprocessor: Preprocessor | None = None,
) -> DiagnosisProof:
    """Standardize ``record``, prove the model's output on it, check the commitment."""
    pre = preprocessor or Preprocessor.load(DIAGNOSTIC_PREPROCESS)
    z = pre.transform(record)
    s = check_salt(salt) if salt is not None else new_salt()
    workdir.mkdir(parents=True, exist_ok=True)
    tag = secrets.token_hex(6)
    input_json = proofs.write_input(workdir / f"input-{tag}.json", [input_row(z, s)])
    try:
        witness = proofs.gen_witness(bundle, input_json, workdir / f"witness-{tag}.json")
    finally:
        input_json.unlink(missing_ok=True)  # raw features do not outlive witness generation
    try:
        expected = commit(z, s, bundle.input_scale)
        if witness.input_commitment != expected:
            raise ProofError(
                f"witness commitment {witness.input_commitment} != off-circuit {expected}"
            )
        proof = proofs.prove(bundle, witness, workdir / f"proof-{tag}.json")
    finally:
        witness.path.unlink(missing_ok=True)
    if proof.instances[0] != expected:
        raise ProofError("proof's commitment instance does not match the attested commitment")
    return DiagnosisProof(proof, expected, proofs.output_value(bundle, proof), s)
