"""``python -m prover audit`` on a real run of the main job (anvil, relay, four claims, a bounty).

The audit indexes the deployment, reconciles it with the chain (pools, reserves, policies,
bounty escrow, model versions) and exports CSV and JSON; a tampered index is caught and named;
a claim and the bounty award are traced to their transaction, attestation signer, model
version, verifier code hash and proof hash, each checked here against the raw chain (logs and
calldata decoded with eth_abi, not with the index's code).
"""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode
from eth_utils import keccak, to_checksum_address
from mainjob import MainJob
from web3 import Web3

from prover.attestation import Attestation, recover_attester
from prover.paths import ROOT

pytestmark = pytest.mark.slow

#: ``ClaimSettlement.Claim``: policyId, hospital, attestedAt, attestationExpiry, recordNullifier,
#: inputCommitment, signature, proof, instances.
CLAIM = "(uint256,address,uint64,uint64,bytes32,uint256,bytes,bytes,uint256[])"
REVEAL = ["uint256", "address", "uint256", "bytes32", "bytes", "uint256[]"]
E18 = 10**18


def audit(job: MainJob, db: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "prover",
            "audit",
            "--rpc",
            job.rpc,
            "--deployment",
            str(job.deployment),
            "--db",
            str(db),
            *map(str, args),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def _addresses(job: MainJob) -> dict[str, str]:
    manifest = json.loads(job.deployment.read_text())
    return {
        k: manifest["contracts"][k]["address"]
        for k in ("ModelRegistry", "ClaimSettlement", "ResearchBounty")
    }


def _logs(w3: Web3, job: MainJob) -> list[Any]:
    return list(
        w3.eth.get_logs(
            {
                "address": list(_addresses(job).values()),  # type: ignore[typeddict-item]
                "fromBlock": 0,
                "toBlock": "latest",
            }
        )
    )


@pytest.fixture(scope="module")
def index_w3(index_main_job: MainJob) -> Web3:
    return Web3(Web3.HTTPProvider(index_main_job.rpc))


def test_audit_reconciles_the_main_job_and_exports(
    index_main_job: MainJob, index_w3: Web3, tmp_path: Path
) -> None:
    job, w3 = index_main_job, index_w3
    done = audit(
        job, tmp_path / "i.sqlite", "--csv", tmp_path / "csv", "--json", tmp_path / "a.json"
    )
    assert done.returncode == 0, done.stderr
    assert "reconciled" in done.stdout.splitlines()[-1]
    assert "FAIL" not in done.stdout
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["audit"]["ok"] and len(doc["audit"]["checks"]) >= 20
    subjects = {c["subject"] for c in doc["audit"]["checks"]}
    assert {
        "pool 1 balance (funded - paid - withdrawn)",
        "pool 1 reserved (open policies' coverage)",
        "bounty 1 escrow",
        "ResearchBounty ETH held (open escrows + credits)",
    } <= subjects
    # The demo's numbers: 10 ETH funded, two 1-ETH claims paid, two denied; 4 policies of 1 ETH.
    (pool,) = doc["pools"]
    assert (pool["funded"], pool["paid"], pool["withdrawn"]) == (10 * E18, 2 * E18, 0)
    assert pool["balance"] == 8 * E18 and pool["reserved"] == 2 * E18
    settlement = _addresses(job)["ClaimSettlement"]
    assert w3.eth.get_balance(settlement) == pool["balance"]  # type: ignore[arg-type]
    # Claim ids follow the order the relay's proofs finished (two provers), not the demo's
    # numbering: each demo claim is found by its policy (one claim per policy).
    claims = {c["policy_id"]: c for c in doc["claims"]}
    assert sorted(c["id"] for c in doc["claims"]) == [1, 2, 3, 4]
    for expected in job.info["claims"]:
        claim = claims[expected["policy_id"]]
        assert claim["tx_hash"] == expected["tx_hash"]
        assert claim["decision"] == expected["decision"]
        assert claim["amount"] == expected["payout"]
        assert claim["gas"] == expected["gas"]  # one claim per relay transaction
    (bounty,) = doc["bounties"]
    assert bounty["status"] == "awarded" and bounty["amount"] == 2 * E18
    # Every log of the three contracts is exported once; no model output anywhere.
    logs = _logs(w3, job)
    assert len(doc["events"]) == len(logs)
    with (tmp_path / "csv" / "events.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(logs)
    for row in rows:
        if row["name"] in ("ClaimPaid", "ClaimDenied"):
            assert "output" not in json.loads(row["args"])
    with (tmp_path / "csv" / "claims.csv").open() as fh:
        header = next(csv.reader(fh))
    assert "output" not in header and "decision" in header


def test_audit_names_a_tampered_index(index_main_job: MainJob, tmp_path: Path) -> None:
    db = tmp_path / "i.sqlite"
    assert audit(index_main_job, db).returncode == 0
    with sqlite3.connect(db) as conn:  # someone drops the pool's funding from the index
        assert conn.execute("DELETE FROM index_events WHERE name = 'PoolFunded'").rowcount == 1
    error = one_line_error(audit(index_main_job, db))
    assert error.startswith("Error: audit found")
    assert (
        "first: pool 1 balance (funded - paid - withdrawn): index -2000000000000000000, chain 8000000000000000000"
        in error
    )


def test_trace_a_claim_and_the_award(
    index_main_job: MainJob, index_w3: Web3, tmp_path: Path
) -> None:
    job, w3 = index_main_job, index_w3
    db = tmp_path / "i.sqlite"
    done = audit(job, db, "--claim", "1")
    assert done.returncode == 0, done.stderr
    trace = json.loads(done.stdout)
    (first,) = [c for c in job.info["claims"] if c["policy_id"] == trace["policy_id"]]
    assert trace["tx_hash"] == first["tx_hash"] and trace["decision"] == first["decision"]
    assert trace["attestation"]["signer"] == job.info["hospital"]
    assert trace["attestation"]["signer_is_hospital"] is True
    tx = w3.eth.get_transaction(first["tx_hash"])
    (claim,) = decode([CLAIM], bytes(tx["input"])[4:])
    assert trace["proof_keccak256"] == "0x" + keccak(claim[7]).hex()
    assert to_checksum_address(claim[1]) == job.info["hospital"]
    assert trace["policy_id"] == claim[0] == first["policy_id"]
    assert (trace["attestation"]["attested_at"], trace["attestation"]["expiry"]) == claim[2:4]
    # The signer, recovered here from the calldata's EIP-712 attestation (pool 1's product)
    attestation = Attestation(claim[0], 1, claim[1], claim[5], claim[4], claim[2], claim[3])
    signer = recover_attester(
        attestation, claim[6], w3.eth.chain_id, _addresses(job)["ClaimSettlement"]
    )
    assert signer == job.info["hospital"]
    model = trace["model"]
    assert model["name"] == "zkcare/breast_cancer_lr" and model["version"] == 1
    code = bytes(w3.eth.get_code(model["verifier"]))
    assert model["verifier_code_hash"] == "0x" + keccak(code).hex()

    done = audit(job, db, "--award", "1")
    assert done.returncode == 0, done.stderr
    award = json.loads(done.stdout)
    awarded = keccak(text="BountyAwarded(uint256,address,uint256,int256,uint256)")
    (log,) = [lg for lg in _logs(w3, job) if bytes(lg["topics"][0]) == awarded]
    assert award["winner"] == to_checksum_address(bytes(log["topics"][2])[-20:])
    assert award["tx_hash"] == "0x" + bytes(log["transactionHash"]).hex()
    reveal = decode(REVEAL, bytes(w3.eth.get_transaction(log["transactionHash"])["input"])[4:])
    assert award["proof_keccak256"] == "0x" + keccak(reveal[4]).hex()
    assert award["model"]["name"] == "zkcare/bounty_eval"


def test_audit_bad_input_is_one_line(index_main_job: MainJob, tmp_path: Path) -> None:
    db = tmp_path / "i.sqlite"
    assert one_line_error(audit(index_main_job, db, "--claim", "99")) == (
        "Error: no claim 99 in the index (is it synced? see `audit`)"
    )
    assert "not both" in one_line_error(audit(index_main_job, db, "--claim", "1", "--award", "1"))
    assert "no award of bounty 7" in one_line_error(audit(index_main_job, db, "--award", "7"))
    junk = tmp_path / "31337.json"
    junk.write_text("[]")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "prover",
            "audit",
            "--rpc",
            index_main_job.rpc,
            "--deployment",
            str(junk),
            "--db",
            str(db),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "not a deployment manifest" in one_line_error(done)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "prover",
            "audit",
            "--rpc",
            "http://127.0.0.1:9",
            "--deployment",
            str(index_main_job.deployment),
            "--db",
            str(db),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert one_line_error(done).startswith("Error: no EVM node answers at http://127.0.0.1:9")


def test_audit_on_postgresql(index_main_job: MainJob, index_pg_db: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "prover",
            "audit",
            "--rpc",
            index_main_job.rpc,
            "--deployment",
            str(index_main_job.deployment),
            "--db",
            index_pg_db,
            "--claim",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    trace = json.loads(done.stdout)  # claim 2: whichever demo claim settled second
    (expected,) = [c for c in index_main_job.info["claims"] if c["policy_id"] == trace["policy_id"]]
    assert (trace["tx_hash"], trace["decision"]) == (expected["tx_hash"], expected["decision"])
    again = subprocess.run(  # the same PostgreSQL index, resumed: nothing new, still reconciled
        [
            sys.executable,
            "-m",
            "prover",
            "audit",
            "--rpc",
            index_main_job.rpc,
            "--deployment",
            str(index_main_job.deployment),
            "--db",
            index_pg_db,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert "index up to date at block" in again.stderr
    assert again.stdout.splitlines()[-1].endswith("reconciled")
