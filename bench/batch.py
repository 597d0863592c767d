"""Batch verifier gas with real proofs: N = 1, 2, 5, 10, 20 against the single verifier.

``python -m bench.batch`` proves 20 held-out patients with the diagnostic model, deploys the
generated single verifier and the batch verifier the build produced on a throwaway anvil, and
sends one transaction per measurement (gas used, including the 21,000 base and calldata). The
baseline in the same run is ``verifyProof`` of the single verifier, one transaction per proof.
``./zk bench batch`` records them in ``bench/results.json`` under ``batch``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from eth_abi import encode
from eth_utils import keccak

from prover.anvil import DEV_PRIVATE_KEY, Anvil
from prover.chain import ChainClient
from prover.models.breast_cancer import build_diagnostic_bundle, load_dataset, prove_diagnosis
from prover.zk.proof import Proof, evm_calldata

SIZES = (1, 2, 5, 10, 20)
#: Issue 13's targets are per claim through ClaimSettlement; these are the verifier's share.
TARGETS = {"batch10_verifier_gas_per_proof": 330_000, "stretch": 300_000}
OUT = Path(__file__).parent / "work" / "batch.json"
VERIFY_BATCH = keccak(text="verifyBatch(bytes[],uint256[][])")[:4]


def _calldata(proofs: list[Proof]) -> bytes:
    return VERIFY_BATCH + encode(
        ["bytes[]", "uint256[][]"], [[p.proof for p in proofs], [list(p.instances) for p in proofs]]
    )


def _gas(client: ChainClient, to: str, data: bytes) -> int:
    receipt = client._send({"to": to, "data": "0x" + data.hex(), "gas": 15_000_000})
    return int(receipt["gasUsed"])


def run() -> dict[str, Any]:
    """Measure; returns the ``batch`` results."""
    bundle = build_diagnostic_bundle()
    ds = load_dataset()
    with tempfile.TemporaryDirectory() as tmp, Anvil() as node:
        proofs = [
            prove_diagnosis(bundle, list(ds.x_test[i]), Path(tmp)).proof for i in range(max(SIZES))
        ]
        client = ChainClient(node.url, DEV_PRIVATE_KEY)
        single = client.deploy(bytes.fromhex(bundle.verifier_artifact["bytecode"][2:]))
        batch = client.deploy(bytes.fromhex(bundle.batch_verifier_artifact["bytecode"][2:]))
        single_gas = [_gas(client, single.address, evm_calldata(p)) for p in proofs]
        calldata = {n: _calldata(proofs[:n]) for n in SIZES}
        batch_gas = {n: _gas(client, batch.address, calldata[n]) for n in SIZES}
    single_mean = round(sum(single_gas) / len(single_gas))
    rows = {
        str(n): {
            "batch_gas": batch_gas[n],
            "gas_per_proof": round(batch_gas[n] / n),
            "single_gas_per_proof": single_mean,
            "saving_per_proof": single_mean - round(batch_gas[n] / n),
            "calldata_bytes": len(calldata[n]),
        }
        for n in SIZES
    }
    marginal = round((batch_gas[20] - batch_gas[10]) / 10)
    return {
        "batch": {
            "model": bundle.manifest["name"],
            "single_verifier": {
                "deployed_bytes": single.code_size,
                "deploy_gas": single.gas_used,
                "gas_per_proof": single_mean,
            },
            "batch_verifier": {
                "deployed_bytes": batch.code_size,
                "inputs_deployed_bytes": bundle.manifest["batch_verifier"]["inputs_deployed_bytes"],
                "deploy_gas": batch.gas_used,  # both contracts (it deploys its inputs contract)
                "shared_points": bundle.manifest["batch_verifier"]["shared_points"],
            },
            "sizes": rows,
            "marginal_gas_per_proof_10_to_20": marginal,
            "targets": TARGETS,
        }
    }


def table(result: dict[str, Any]) -> str:
    """A plain-text table of the results."""
    data = result["batch"]
    lines = [
        f"batch verifier ({data['model']}): gas per proof, transactions incl. 21k base + calldata",
        f"  single verifier verifyProof: {data['single_verifier']['gas_per_proof']:>9,}",
        "      N   batch gas   per proof   saving/proof",
    ]
    for n, row in data["sizes"].items():
        lines.append(
            f"  {n:>5} {row['batch_gas']:>11,} {row['gas_per_proof']:>11,} "
            f"{row['saving_per_proof']:>14,}"
        )
    lines.append(f"  marginal proof (N 10 -> 20): {data['marginal_gas_per_proof_10_to_20']:,}")
    return "\n".join(lines)


def main() -> int:
    """Run, print the table, write ``bench/work/batch.json``."""
    result = run()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(table(result))
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
