"""End-to-end demo: prove a held-out patient's diagnosis and verify it on a local chain."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prover.anvil import DEV_PRIVATE_KEY, Anvil
from prover.chain import ChainClient
from prover.models.breast_cancer import (
    DiagnosisProof,
    build_diagnostic_bundle,
    load_dataset,
    prove_diagnosis,
)


@dataclass
class Report:
    """What the demo measured."""

    stages: dict[str, float] = field(default_factory=dict)
    lines: list[tuple[str, str]] = field(default_factory=list)

    def add(self, key: str, value: object) -> None:
        self.lines.append((key, str(value)))

    def render(self) -> str:
        width = max(len(k) for k, _ in self.lines + [(s, "") for s in self.stages])
        out = ["", "zkcare demo report", "=" * 60]
        out += [f"{k:<{width}}  {v}" for k, v in self.lines]
        out += ["-" * 60, "time per stage:"]
        out += [f"  {k:<{width}}  {v:8.2f} s" for k, v in self.stages.items()]
        return "\n".join(out)


def run_demo(
    patient: int = 0, *, srs_file: Path | None = None, echo: Callable[[str], None] = print
) -> Report:
    """Run every stage; raises a :class:`~prover.exceptions.ZkcareError` on any failure."""
    report = Report()

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        echo(f"» {name} …")
        start = time.perf_counter()
        yield
        report.stages[name] = time.perf_counter() - start
        echo(f"  done in {report.stages[name]:.2f} s")

    with stage("build or reuse circuit bundle"):
        bundle = build_diagnostic_bundle(srs_file=srs_file, progress=lambda m: echo(f"    {m}"))
    ds = load_dataset()
    if not 0 <= patient < len(ds.x_test):
        raise IndexError(f"patient must be within 0..{len(ds.x_test) - 1}")
    with stage("start local chain (anvil)"):
        node = Anvil().start()
    try:
        client = ChainClient(node.url, DEV_PRIVATE_KEY)
        artifact = bundle.verifier_artifact
        with stage("deploy verifier"):
            deployment = client.deploy(bytes.fromhex(artifact["bytecode"][2:]))
        with tempfile.TemporaryDirectory() as work, stage("prove diagnosis"):
            result: DiagnosisProof = prove_diagnosis(bundle, list(ds.x_test[patient]), Path(work))
        with stage("verify by eth_call"):
            client.call_verify(deployment.address, result.proof)
        with stage("verify in a transaction"):
            receipt = client.send_verify(deployment.address, result.proof)
    finally:
        node.stop()

    m = bundle.manifest
    probability = 1.0 / (1.0 + math.exp(-result.logit))
    truth = "benign" if ds.y_test[patient] == 1 else "malignant"
    report.add("model (ONNX sha256)", m["sha256"]["onnx"])
    report.add("verifying key sha256", m["sha256"]["vk"])
    report.add("circuit", f"logrows {m['logrows']}, inputs Poseidon-hashed with 144-bit salt")
    report.add("SRS", m["srs"]["label"])
    report.add("patient", f"held-out #{patient} (ground truth: {truth})")
    report.add("input commitment", hex(result.commitment))
    report.add("model output", f"logit {result.logit:+.4f} -> P(benign) = {probability:.4f}")
    report.add("diagnosis", "MALIGNANT" if result.malignant else "benign")
    report.add(
        "proof size", f"{len(result.proof.proof)} bytes, {len(result.proof.instances)} instances"
    )
    report.add("verifier", f"{deployment.address} ({deployment.code_size} bytes of code)")
    report.add("verify (eth_call)", "accepted")
    report.add("verify (transaction)", f"accepted, gas used {receipt['gasUsed']:,}")
    report.add("proving key", f"{m['sizes']['pk_bytes'] / 1e6:.1f} MB")
    return report
