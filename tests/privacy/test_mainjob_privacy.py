"""The main job (``./zk demo``'s stages) puts no patient's score on chain, and the relay
reports none.

The whole main job runs in a fresh process (:class:`mainjob.MainJob`: bundles, anvil,
``deploy all``, the insurer, the relay over HTTP with four claims, the DAO's bounty, the
researcher's award); then every transaction of its chain (calldata ABI-decoded for the
registry, settlement and bounty, word by word otherwise), every event log and every storage
slot written is scanned (:mod:`tests.privacy.scan`) for the four patients' scores: the float
model's logits (onnxruntime on the committed ONNX file, not the proof path) in every
fixed-point encoding, and the plain circuit's raw quantized outputs on the same records. The
same scan over the same main job run with the old plain bundle (public logit) finds them: the
scan can fail.

Not a patient's score, and so not scanned for: the bounty's evaluation publishes the count of
benchmark patients classified right (accuracy), the bounty's metric by design.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from mainjob import MainJob
from models.decision_zoo import score_words
from web3 import Web3

from prover.models.breast_cancer import (
    DIAGNOSTIC_MODEL,
    DIAGNOSTIC_PREPROCESS,
    build_diagnostic_bundle,
    load_dataset,
)
from prover.models.card import ModelCard
from prover.relay.devchain import compiled
from prover.zk import proof as proofs_io
from prover.zk.circuit import Bundle
from prover.zk.commitment import KZG_SALT_LIMBS
from prover.zk.fields import fixed_to_float

from .scan import Scan, scan_chain

pytestmark = pytest.mark.slow


class _Provider:
    """What :func:`scan_chain` needs of a provider, over plain JSON-RPC."""

    def __init__(self, url: str) -> None:
        self.web3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))

    def make_request(self, method: str, params: list[Any]) -> Any:
        response = self.web3.provider.make_request(method, params)  # type: ignore[arg-type]
        assert "error" not in response, response
        return response["result"]


class _Decoder:
    """A deployed contract's calldata decoder (its ABI from the compiled project)."""

    def __init__(self, w3: Web3, name: str) -> None:
        abi, _ = compiled(name)
        self.contract = w3.eth.contract(abi=abi)

    def decode_input(self, data: bytes) -> tuple[str, dict[str, Any]]:
        fn, arguments = self.contract.decode_function_input(data)
        return str(fn.fn_name), dict(arguments)


def _float_logits(indices: list[int]) -> np.ndarray:
    """The float model's logits: onnxruntime on the committed ONNX + standardization."""
    import onnxruntime as ort

    ds = load_dataset()
    pre = json.loads(DIAGNOSTIC_PREPROCESS.read_text())
    session = ort.InferenceSession(str(DIAGNOSTIC_MODEL), providers=["CPUExecutionProvider"])
    out = []
    for i in indices:
        x = (np.asarray(ds.x_test[i]) - np.asarray(pre["mean"])) / np.asarray(pre["scale"])
        (logit,) = session.run(None, {"input": x.astype(np.float32).reshape(1, 30)})
        out.append(float(np.ravel(logit)[0]))
    return np.array(out).reshape(-1, 1)


def _raw_outputs(plain: Bundle, indices: list[int], work: Path) -> list[int]:
    """The plain circuit's quantized logit (a field word) on each patient's record."""
    pre = json.loads(DIAGNOSTIC_PREPROCESS.read_text())
    ds = load_dataset()
    raw = []
    for i in indices:
        z = (np.asarray(ds.x_test[i]) - np.asarray(pre["mean"])) / np.asarray(pre["scale"])
        data = proofs_io.write_inputs(
            work / f"raw-{i}.json", [[*map(float, z), *([7.0] * KZG_SALT_LIMBS)]]
        )
        raw += list(proofs_io.gen_witness(plain, data, work / "raw-w.json").outputs)
    return raw


@pytest.fixture(scope="module")
def privacy_main_job() -> Iterator[MainJob]:
    with MainJob.running("privacy") as job:
        yield job


@pytest.fixture(scope="module")
def privacy_plain_main_job() -> Iterator[MainJob]:
    """The same main job with the old plain diagnostic bundle (public logit)."""
    with MainJob.running("privacy-plain", plain=True) as job:
        yield job


@pytest.fixture(scope="module")
def privacy_main_scores(
    privacy_main_job: MainJob, tmp_path_factory: pytest.TempPathFactory
) -> tuple[np.ndarray, list[int]]:
    """The four patients' float logits and the plain circuit's raw outputs on them."""
    patients = list(privacy_main_job.info["patients"])
    plain = build_diagnostic_bundle()
    work = tmp_path_factory.mktemp("privacy-main-raw")
    return _float_logits(patients), _raw_outputs(plain, patients, work)


def _scan(job: MainJob, scores: np.ndarray, raw: list[int], *, with_raw: bool = True) -> Scan:
    words = score_words(scores)
    for value in raw if with_raw else ():
        words[value] = "raw quantized output"
    provider = _Provider(job.rpc)
    manifest = json.loads(job.deployment.read_text())
    contracts = {
        manifest["contracts"][name]["address"]: _Decoder(provider.web3, name)
        for name in ("ModelRegistry", "ClaimSettlement", "ResearchBounty")
    }
    last = int(job.info["last_block"])
    assert last == provider.web3.eth.block_number  # nothing was mined after the main job
    return scan_chain(provider, 0, last, words, scores, contracts)


def test_the_main_job_settles_its_claims_as_the_float_model_decides(
    privacy_main_job: MainJob, privacy_main_scores: tuple[np.ndarray, list[int]]
) -> None:
    logits, _ = privacy_main_scores
    decisions = [c["decision"] for c in privacy_main_job.info["claims"]]
    assert decisions == ["paid" if v <= 0 else "denied" for v in logits[:, 0]]
    assert set(decisions) == {"paid", "denied"}
    manifest = json.loads(privacy_main_job.deployment.read_text())
    entry = manifest["models"]["zkcare/breast_cancer_lr"]
    assert entry["decisions"]["1"]["rule"] == "output[0] <= 0"
    assert entry["layout"][3:] == [1, 0]  # one output, the 0/1 decision, at scale 0


def test_no_patient_score_in_the_main_jobs_calldata_logs_or_storage(
    privacy_main_job: MainJob, privacy_main_scores: tuple[np.ndarray, list[int]]
) -> None:
    scores, raw = privacy_main_scores
    assert len(raw) == 4 and len(set(raw)) == 4
    scan = _scan(privacy_main_job, scores, raw)
    # deploy all, the insurer, 4 claims, the DAO, the bounty: all of it was read
    assert scan.transactions >= 25 and scan.logs >= 20 and scan.storage_slots >= 50, scan
    assert scan.calldata_words > 1000, scan
    assert scan.findings == []


def test_the_relay_reports_decisions_only(privacy_main_job: MainJob) -> None:
    """The relay's jobs name their decision, never a logit or an output; reading them takes
    the READ scope (no token: 401)."""
    url = f"{privacy_main_job.relay}/v1/jobs"
    assert requests.get(url, timeout=30).status_code == 401
    token = privacy_main_job.info["relay_token"]
    response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text
    jobs = response.json()["jobs"]
    by_policy = {c["policy_id"]: c["decision"] for c in privacy_main_job.info["claims"]}
    assert {j["policy_id"]: j["decision"] for j in jobs} == by_policy
    for job in jobs:
        assert job["decision"] == job["state"]
        assert not {"logit", "outputs", "instances"} & set(job), job


def test_the_same_scan_finds_the_scores_of_the_plain_main_job(
    privacy_plain_main_job: MainJob, privacy_main_scores: tuple[np.ndarray, list[int]]
) -> None:
    """Control: the old plain bundle's proofs carry each patient's logit as a public instance
    (calldata of every claim), which reads back as the float model's logit."""
    scores, raw = privacy_main_scores
    assert privacy_plain_main_job.info["patients"] == [0, 2, 1, 5]
    by_raw = _scan(privacy_plain_main_job, scores, raw)
    claims = [f for f in by_raw.findings if f.startswith("calldata") and "raw quantized" in f]
    assert len(claims) >= 4, by_raw.findings
    assert not any(f.startswith(("log", "storage")) for f in by_raw.findings)  # events: none
    # the calldata words read back as the patients' logits, to the circuit's precision
    manifest = json.loads(privacy_plain_main_job.deployment.read_text())
    scale = int(manifest["models"]["zkcare/breast_cancer_lr"]["layout"][4])
    assert scale > 0
    read = [fixed_to_float(w, scale) for w in raw]
    # within what the plain bundle's card measured on the held-out split
    tolerance = ModelCard.of(build_diagnostic_bundle()).fidelity.max_abs_error + 0.05
    assert read == pytest.approx(list(scores[:, 0]), abs=tolerance)
