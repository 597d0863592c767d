"""Diagnostic-circuit benchmark: EZKL defaults (baseline) vs zkcare's automatic settings.

Both prove the same salted graph (:func:`prover.zk.salting.salt_graph` of the built-in ONNX);
zkcare's bundle is the one ``model build`` makes (:func:`build_diagnostic_bundle`).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from prover.anvil import DEV_PRIVATE_KEY, Anvil
from prover.chain import ChainClient
from prover.models.breast_cancer import (
    DIAGNOSTIC_MODEL,
    build_diagnostic_bundle,
    float_logits,
    load_dataset,
    load_preprocessor,
)
from prover.zk import proof as proofs
from prover.zk.circuit import Bundle, CircuitSpec, build_bundle
from prover.zk.commitment import KZG_SALT_LIMBS, input_row
from prover.zk.fields import fixed_to_float
from prover.zk.salting import salt_graph

#: EZKL's defaults: gen_settings + calibrate(target="resources"), no tuning; the same KZG-committed
#: (polycommit) salted input as zkcare's bundle.
BASELINE = CircuitSpec(
    name="ezkl_defaults",
    use_ezkl_defaults=True,
    calibrate="resources",
    input_visibility="polycommit",
)
PROVE_REPEATS = 5


def _salt(bundle_spec: CircuitSpec) -> list[int]:
    # EZKL's default range checks (2 x 14-bit limbs) cannot take 24-bit salt limbs at its
    # calibrated scales, so the baseline proves with zero salt; cost does not depend on values.
    limb = 0 if bundle_spec.use_ezkl_defaults else (1 << 24) - 1
    return [limb] * KZG_SALT_LIMBS


def measure(spec: CircuitSpec, node: Anvil, work: Path) -> dict[str, Any]:
    """Build from scratch, then measure proving, sizes, gas and quantization flips."""
    start = time.perf_counter()
    pre = load_preprocessor()
    ds = load_dataset()
    bundle: Bundle
    if spec.use_ezkl_defaults:
        salted = salt_graph(DIAGNOSTIC_MODEL, work / "salted.onnx", KZG_SALT_LIMBS)
        calibration = [input_row(pre.transform(list(r)), _salt(spec)) for r in ds.x_train[:32]]
        bundle = build_bundle(
            salted.path,
            spec,
            [[v for row in calibration for v in row]],
            out_root=work / "bundles",
            export_verifier_to=work / "verifiers",
            contract_name="BenchEzklDefaultsVerifier",
        )
    else:
        bundle = build_diagnostic_bundle(
            out_root=work / "bundles", export_verifier_to=work / "verifiers"
        )
    build_s = time.perf_counter() - start
    rows = [pre.transform(list(r)) for r in ds.x_test]
    salt = _salt(spec)

    prove_times = []
    proof = None
    for i in range(PROVE_REPEATS):
        inp = proofs.write_input(work / "in.json", [input_row(rows[i], salt)])
        witness = proofs.gen_witness(bundle, inp, work / "w.json")
        t = time.perf_counter()
        proof = proofs.prove(bundle, witness, work / f"proof-{i}.json")
        prove_times.append(time.perf_counter() - t)
    assert proof is not None and proofs.verify(bundle, proof)

    client = ChainClient(node.url, DEV_PRIVATE_KEY)
    deployment = client.deploy(bytes.fromhex(bundle.verifier_artifact["bytecode"][2:]))
    receipt = client.send_verify(deployment.address, proof)

    floats = float_logits(DIAGNOSTIC_MODEL, np.array(rows))
    flips = 0
    for i, z in enumerate(rows):
        inp = proofs.write_input(work / "in.json", [input_row(z, salt)])
        out = proofs.gen_witness(bundle, inp, work / "w.json").outputs[0]
        flips += int((fixed_to_float(out, bundle.output_scale) > 0) != bool(floats[i] > 0))

    m = bundle.manifest
    return {
        "spec": m["spec"],
        "tuning": (m.get("tuning") or {}).get("chosen"),
        "logrows": m["logrows"],
        "scales": m["scales"],
        "build_s": round(build_s, 3),
        "setup_s": m["timings_s"]["setup (keys)"],
        "prove_s": round(statistics.median(prove_times), 4),
        "prove_s_all": [round(t, 4) for t in prove_times],
        "pk_bytes": m["sizes"]["pk_bytes"],
        "vk_bytes": m["sizes"]["vk_bytes"],
        "proof_bytes": len(proof.proof),
        "verify_gas": int(receipt["gasUsed"]),
        "verifier_deploy_gas": deployment.gas_used,
        "verifier_code_bytes": deployment.code_size,
        "held_out_patients": len(rows),
        "flips": flips,
    }


TARGETS = {"prove_s": 1.0, "pk_bytes": 64 * 2**20, "verify_gas": 400_000, "flips": 0}


def run() -> dict[str, Any]:
    """Measure baseline and tuned in the same run."""
    with (
        tempfile.TemporaryDirectory(prefix="zkcare-bench-") as tmp,
        Anvil(
            code_size_limit=10**6  # the baseline's verifier may exceed EIP-170
        ) as node,
    ):
        work = Path(tmp)
        results = {
            "baseline_ezkl_defaults": measure(BASELINE, node, work / "a"),
            "zkcare": measure(CircuitSpec(name="zkcare_auto"), node, work / "b"),
        }
    return {"circuit": results, "circuit_targets": TARGETS}


def table(data: dict[str, Any]) -> str:
    """A printed comparison with ratios."""
    a = data["circuit"]["baseline_ezkl_defaults"]
    b = data["circuit"]["zkcare"]
    rows = [
        ("prove time (s, median of 5)", "prove_s"),
        ("setup time (s)", "setup_s"),
        ("proving key (bytes)", "pk_bytes"),
        ("proof (bytes)", "proof_bytes"),
        ("verify gas (tx)", "verify_gas"),
        ("held-out flips", "flips"),
        ("logrows", "logrows"),
    ]
    head = f"{'diagnostic circuit':<30}{'EZKL defaults':>16}{'zkcare':>14}{'ratio':>9}"
    out = [f"{head}{'target':>14}"]
    for label, key in rows:
        ratio = f"{b[key] / a[key]:.3f}" if a[key] else "-"
        target = TARGETS.get(key)
        mark = "" if target is None else ("  ok" if b[key] <= target else "  MISSED")
        tgt = "" if target is None else f"<= {target:,}{mark}"
        out.append(f"{label:<30}{a[key]:>16,}{b[key]:>14,}{ratio:>9}  {tgt}")
    return "\n".join(out)
