"""EZKL settings sweep for single-proof verify gas (issue 13), baseline measured in the same run.

For the built-in diagnostic model (the plain bundle; its decision variant for the baseline and
the winner) every setting keeps the patient input salted and committed (``hashed`` = Poseidon,
or ``polycommit`` = a KZG commitment in the proof) and fixed parameters. Each setting is built
from the same salted graph with :func:`prover.zk.circuit.build_bundle` (settings, compile, dev
SRS, keys, generated Solidity verifier, batch verifier) and gets:

* fidelity: the quantized model on all 114 held-out patients against the float model (decision
  flips; the tuning's criterion: zero) plus the calibration extremes (no overflow);
* ``verify_gas``: ``verifyProof`` of the generated verifier in a transaction on a throwaway
  anvil (incl. the 21,000 base and calldata), the mean over 10 real proofs (min and max kept);
* ``batch10_gas_per_proof``: the build's batch verifier on 10 real proofs, where it exists;
* proof bytes, calldata bytes, instances, proving-/verifying-key bytes, deployed verifier bytes,
  prove time (median of 3; the machine is shared, so times are indicative).

One knob moves at a time from the baseline (today's settings); ``python -m bench sweep`` records
them under ``sweep`` in ``bench/results.json``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from eth_abi import encode
from eth_utils import keccak

from prover.anvil import DEV_PRIVATE_KEY, Anvil
from prover.chain import ChainClient
from prover.exceptions import ZkcareError
from prover.models.breast_cancer import (
    DIAGNOSTIC_MODEL,
    DIAGNOSTIC_PREPROCESS,
    NAME,
    PAY_IF_MALIGNANT,
    float_logits,
    load_dataset,
)
from prover.models.card import ranges_from
from prover.models.preprocess import Preprocessor
from prover.zk import proof as proofs
from prover.zk import tuning
from prover.zk.circuit import Bundle, CircuitSpec, build_bundle
from prover.zk.commitment import MAX_SALT_LIMB, SALT_LIMBS, new_salt
from prover.zk.decision import decide_graph
from prover.zk.fields import fixed_to_float
from prover.zk.salting import salt_graph

#: Today's built-in settings (the tuned spec of ``breast_cancer_lr``): the baseline.
BASELINE: dict[str, Any] = {
    "input_visibility": "hashed",
    "input_scale": 4,
    "param_scale": 4,
    "logrows": 11,
    "num_inner_cols": 1,
    "decomp_base": 256,
    "decomp_legs": 2,
    "scale_rebase_multiplier": 10,
}
#: One knob at a time (label, changes to the baseline; ``extra`` = other ``PyRunArgs`` fields).
VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("baseline", {}),
    ("polycommit", {"input_visibility": "polycommit"}),
    ("cols 2", {"num_inner_cols": 2}),
    ("cols 3", {"num_inner_cols": 3}),
    ("cols 4", {"num_inner_cols": 4}),
    ("logrows 12", {"logrows": 12}),
    ("logrows 13", {"logrows": 13}),
    ("decomp 128x3", {"decomp_base": 128, "decomp_legs": 3}),
    ("decomp 256x3", {"decomp_legs": 3}),
    ("decomp 1024x2", {"decomp_base": 1024}),
    ("decomp 16384x2", {"decomp_base": 16384, "logrows": 15}),
    ("disable_freivalds", {"extra": {"disable_freivalds": True}}),
    ("bounded_log_lookup", {"extra": {"bounded_log_lookup": True}}),
    ("rebase 1", {"scale_rebase_multiplier": 1}),
    ("range-check io", {"range_check_inputs_outputs": True}),
)
#: Measured on the decision model (the built-in product) too.
DECISION_VARIANTS = (
    "baseline",
    "polycommit",
    "cols 2",
    "logrows 12",
    "decomp 128x3",
    "decomp 256x3",
    "decomp 1024x2",
    "disable_freivalds",
    "bounded_log_lookup",
    "rebase 1",
)
#: Gas differences below this are noise: the same circuit's proofs differ in calldata zero bytes
#: (random salts), about ±300 gas between proofs.
NOISE_GAS = 1_000
PROVES = 3
BATCH = 10
VERIFY_BATCH = keccak(text="verifyBatch(bytes[],uint256[][])")[:4]


def _say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def _example(row: Sequence[float], salt: Sequence[int] | None = None) -> list[list[float]]:
    limbs = salt if salt is not None else [MAX_SALT_LIMB] * SALT_LIMBS
    return [[float(v) for v in row] + [float(s) for s in limbs]]


@dataclasses.dataclass(frozen=True)
class _Model:
    """One salted graph with its held-out data and float reference."""

    name: str
    graph: Path
    held_out: np.ndarray  # standardized held-out rows
    screen: np.ndarray  # standardized calibration extremes (overflow screen)
    reference: np.ndarray
    target: tuning.Target


def _models(work: Path) -> dict[str, _Model]:
    pre = Preprocessor.load(DIAGNOSTIC_PREPROCESS)
    ds = load_dataset()
    held = pre.apply(ds.x_test)
    ranges = ranges_from(ds.x_train)
    screen = pre.apply(np.array([[r[0] for r in ranges], [r[1] for r in ranges]]))
    logits = float_logits(DIAGNOSTIC_MODEL, held).reshape(-1, 1)
    plain = salt_graph(DIAGNOSTIC_MODEL, work / "plain.salted.onnx").path
    decided = decide_graph(DIAGNOSTIC_MODEL, work / "decision.onnx", PAY_IF_MALIGNANT)
    decision = salt_graph(decided, work / "decision.salted.onnx").path
    return {
        "plain": _Model(NAME, plain, held, screen, logits, tuning.Target("classifier")),
        "decision": _Model(
            f"{NAME}_decision",
            decision,
            held,
            screen,
            PAY_IF_MALIGNANT.decide(logits).astype(np.float64).reshape(-1, 1),
            tuning.Target("decision"),
        ),
    }


def spec_of(model: str, changes: dict[str, Any]) -> CircuitSpec:
    """The circuit spec of a sweep point (baseline + ``changes``)."""
    return CircuitSpec(name=f"sweep_{model}", **{**BASELINE, **changes})


def _fidelity(bundle: Bundle, model: _Model, work: Path) -> dict[str, Any]:
    outputs = []
    for i, row in enumerate([*model.screen, *model.held_out]):
        path = proofs.write_inputs(work / f"f{i}.json", _example(row))
        witness = proofs.gen_witness(bundle, path, work / "f.witness.json")
        outputs.append([fixed_to_float(v, bundle.output_scale) for v in witness.outputs])
    q = np.asarray(outputs[len(model.screen) :])
    decide = model.target.decision
    flips = sum(decide(a) != decide(b) for a, b in zip(q, model.reference, strict=True))
    return {"flips": int(flips), "held_out": len(q), "faithful": flips == 0}


def _batch_calldata(batch: list[proofs.Proof]) -> bytes:
    return VERIFY_BATCH + encode(
        ["bytes[]", "uint256[][]"], [[p.proof for p in batch], [list(p.instances) for p in batch]]
    )


def _gas(client: ChainClient, to: str, data: bytes) -> int:
    receipt = client._send({"to": to, "data": "0x" + data.hex(), "gas": 15_000_000})
    return int(receipt["gasUsed"])


def measure(
    model: _Model, label: str, changes: dict[str, Any], client: ChainClient, work: Path
) -> dict[str, Any]:
    """Build one sweep point and measure it; a setting EZKL refuses is recorded, not raised."""
    spec = spec_of(model.name, changes)
    row: dict[str, Any] = {"label": label, "model": model.name, "changes": changes}
    d = work / label.replace(" ", "_")
    d.mkdir()
    try:
        spec.check()
        start = time.perf_counter()
        bundle = build_bundle(
            model.graph,
            spec,
            [[v for r in model.screen for v in _example(r)[0]]],
            out_root=d / "bundles",
            export_verifier_to=None,
        )
        row["build_s"] = round(time.perf_counter() - start, 2)
        settings = json.loads(bundle.settings.read_text())
        row["logrows"] = bundle.logrows
        row["rows"] = int(settings["num_rows"])
        row["min_logrows"] = tuning.logrows_for(settings)
        row.update(_fidelity(bundle, model, d))
        times, batch = [], []
        for i in range(max(PROVES, BATCH)):
            inp = proofs.write_inputs(d / f"p{i}.json", _example(model.held_out[i], new_salt()))
            t = time.perf_counter()
            witness = proofs.gen_witness(bundle, inp, d / f"w{i}.json")
            batch.append(proofs.prove(bundle, witness, d / f"proof{i}.json"))
            times.append(time.perf_counter() - t)
        proof = batch[0]
        if not proofs.verify(bundle, proof):
            raise RuntimeError(f"{label}: the proof does not verify natively")
        verifier = client.deploy(bytes.fromhex(bundle.verifier_artifact["bytecode"][2:]))
        gas = []
        for p in batch:
            client.call_verify(verifier.address, p)
            gas.append(int(client.send_verify(verifier.address, p, 5_000_000)["gasUsed"]))
        row["verify_gas"] = round(statistics.mean(gas))
        row["verify_gas_min_max"] = [min(gas), max(gas)]
        row["verifier_deployed_bytes"] = verifier.code_size
        row["proof_bytes"] = len(proof.proof)
        row["calldata_bytes"] = len(proofs.evm_calldata(proof))
        row["instances"] = len(proof.instances)
        row["pk_bytes"] = bundle.pk.stat().st_size
        row["vk_bytes"] = bundle.vk.stat().st_size
        row["prove_s"] = round(statistics.median(times[:PROVES]), 3)
        if "contract" in (bundle.manifest.get("batch_verifier") or {}):
            bv = client.deploy(bytes.fromhex(bundle.batch_verifier_artifact["bytecode"][2:]))
            batch_gas = _gas(client, bv.address, _batch_calldata(batch[:BATCH]))
            row["batch10_gas_per_proof"] = round(batch_gas / BATCH)
        else:
            row["batch10_gas_per_proof"] = None
            row["batch_verifier_error"] = bundle.manifest["batch_verifier"].get("error")
        row["status"] = "ok"
    except (ZkcareError, RuntimeError) as exc:
        row["status"] = "error"
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    finally:
        shutil.rmtree(d, ignore_errors=True)
    _say(
        f"{model.name} {label}: "
        + ", ".join(f"{k} {row[k]}" for k in ("status", "verify_gas", "flips") if k in row)
    )
    return row


def run(variants: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure every sweep point (or only ``variants``); returns the ``sweep`` results."""
    chosen = [(label, ch) for label, ch in VARIANTS if variants is None or label in variants]
    with tempfile.TemporaryDirectory(prefix="zkcare-sweep-") as tmp, Anvil() as node:
        work = Path(tmp)
        models = _models(work)
        client = ChainClient(node.url, DEV_PRIVATE_KEY)
        rows = [measure(models["plain"], label, ch, client, work) for label, ch in chosen]
        rows += [
            measure(models["decision"], label, ch, client, work)
            for label, ch in chosen
            if label in DECISION_VARIANTS
        ]
    winners = {m.name: winner(rows, m.name) for m in models.values()}
    return {"sweep": {"baseline": BASELINE, "rows": rows, "winners": winners}}


def winner(rows: list[dict[str, Any]], model: str = NAME) -> dict[str, Any] | None:
    """The faithful hashed-input setting of ``model`` with the lowest verify gas; the baseline
    unless another saves more than :data:`NOISE_GAS`."""
    usable = [
        r
        for r in rows
        if r["model"] == model
        and r["status"] == "ok"
        and r["faithful"]
        and r["changes"].get("input_visibility", "hashed") == "hashed"
    ]
    if not usable:
        return None
    base = next((r for r in usable if r["label"] == "baseline"), None)
    best = min(usable, key=lambda r: (r["verify_gas"], r["pk_bytes"]))
    if base is not None and base["verify_gas"] - best["verify_gas"] <= NOISE_GAS:
        best = base
    return {
        "label": best["label"],
        "verify_gas": best["verify_gas"],
        "saving_vs_baseline": (base or best)["verify_gas"] - best["verify_gas"],
    }


def table(result: dict[str, Any]) -> str:
    """A plain-text table of the sweep."""
    data = result["sweep"]
    head = (
        f"{'model':<26}{'setting':<20}{'verify gas':>11}{'batch10/proof':>14}{'proof B':>8}"
        f"{'pk MB':>7}{'logrows':>8}{'flips':>6}{'prove s':>8}"
    )
    lines = [head]
    for r in data["rows"]:
        if r["status"] != "ok":
            lines.append(f"{r['model']:<26}{r['label']:<20}  {r['error'][:90]}")
            continue
        b10 = r["batch10_gas_per_proof"]
        lines.append(
            f"{r['model']:<26}{r['label']:<20}{r['verify_gas']:>11,}"
            f"{(f'{b10:,}' if b10 else '-'):>14}{r['proof_bytes']:>8}"
            f"{r['pk_bytes'] / 1e6:>7.1f}{r['logrows']:>8}{r['flips']:>6}{r['prove_s']:>8}"
        )
    for model, best in data["winners"].items():
        lines.append(f"winner for {model} (hashed, faithful, > {NOISE_GAS} gas): {best}")
    return "\n".join(lines)


if __name__ == "__main__":
    result = run(sys.argv[1:] or None)
    print(table(result))
