"""``python -m prover demo`` (``./zk demo``) as a user runs it: the whole main job, one report.

The demo runs once for the module, in a fresh process. Its report must show every claim paid
or denied as the model's own diagnosis of that patient dictates, computed here independently
(onnxruntime on the committed ONNX file and preprocessing, not the proof path), and no score
(the diagnostic model is a decision bundle; the relay reports decisions only); the holders'
balances moved by exactly the payout, and the DAO-funded bounty. Failures (a forced one, an
occupied relay port, Ctrl-C) must exit non-zero with one ``Error:`` line and leave no anvil
and no temporary directory behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from prover.paths import ROOT

pytestmark = pytest.mark.slow

MODEL_DIR = ROOT / "prover" / "models" / "breast_cancer"
PAYOUT_ETH = 1.0
BOUNTY_ETH = 2.0
ROW = re.compile(
    r"^\s*(?P<n>\d+)\s+#(?P<patient>\d+)\s+(?P<truth>malignant|benign)\s+"
    r"(?P<decision>paid|denied)\s+"
    r"(?P<payout>[\d.]+) ETH\s+(?P<gas>[\d,]+)\s+(?P<seconds>[\d.]+) s\s+\S+: "
    r"(?P<before>[\d.]+) ETH -> (?P<after>[\d.]+) ETH$"
)


@dataclass(frozen=True)
class Claim:
    """One row of the report's claims table."""

    number: int
    patient: int
    truth: str
    decision: str
    payout: float
    gas: int
    seconds: float
    before: float
    after: float


def demo(
    *args: str, tmp: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the demo in a fresh process whose temporary files go under ``tmp``."""
    return subprocess.run(
        [sys.executable, "-m", "prover", "demo", *args],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(returncode: int, stderr: str) -> str:
    """The run failed with exactly one ``Error:`` line, the last one, and no traceback."""
    assert returncode != 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == errors[0], stderr[-3000:]
    return errors[0]


def anvil_port(stderr: str) -> int:
    """The port of the anvil the demo started (from its progress)."""
    match = re.search(r"anvil on http://127\.0\.0\.1:(\d+)", stderr)
    assert match, stderr[-3000:]
    return int(match.group(1))


def anvil_running_on(port: int) -> list[int]:
    """Pids of anvil processes listening on ``port``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"anvil" in argv[0] and b"--port" in argv:
            if argv[argv.index(b"--port") + 1] == str(port).encode():
                pids.append(int(entry.name))
    return pids


def assert_cleaned_up(stderr: str, tmp: Path) -> None:
    """No anvil on the demo's port and no ``zkcare-demo-*`` directory left in ``tmp``."""
    port = anvil_port(stderr)
    assert anvil_running_on(port) == [], f"anvil still running on port {port}"
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    assert list(tmp.glob("zkcare-demo-*")) == []


def model_logits(indices: list[int]) -> dict[int, float]:
    """The float model's logit for held-out patients: ONNX + the committed standardization."""
    import onnxruntime as ort
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    _, x_test, _, _ = train_test_split(
        data.data, data.target, test_size=0.2, random_state=42, stratify=data.target
    )
    pre = json.loads((MODEL_DIR / "breast_cancer_lr.preprocess.json").read_text())
    session = ort.InferenceSession(
        str(MODEL_DIR / "breast_cancer_lr.onnx"), providers=["CPUExecutionProvider"]
    )
    out = {}
    for i in indices:
        x = (np.asarray(x_test[i]) - np.asarray(pre["mean"])) / np.asarray(pre["scale"])
        (logit,) = session.run(None, {"input": x.astype(np.float32).reshape(1, 30)})
        out[i] = float(np.ravel(logit)[0])
    return out


def ground_truth(indices: list[int]) -> dict[int, str]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    _, _, _, y_test = train_test_split(
        data.data, data.target, test_size=0.2, random_state=42, stratify=data.target
    )
    return {i: "benign" if y_test[i] == 1 else "malignant" for i in indices}


# ------------------------------------------------------------------------------------ the run


@pytest.fixture(scope="module")
def demo_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-tmp")


@pytest.fixture(scope="module")
def demo_run(demo_tmp: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """``python -m prover demo`` with its defaults, as ``./zk demo`` runs it."""
    start = time.monotonic()
    done = demo(tmp=demo_tmp)
    return done, time.monotonic() - start


@pytest.fixture(scope="module")
def demo_report(demo_run) -> str:
    done, _ = demo_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr + done.stdout
    return done.stdout


@pytest.fixture(scope="module")
def demo_claims(demo_report: str) -> list[Claim]:
    rows = [ROW.match(line) for line in demo_report.splitlines()]
    claims = [
        Claim(
            int(m["n"]),
            int(m["patient"]),
            m["truth"],
            m["decision"],
            float(m["payout"]),
            int(m["gas"].replace(",", "")),
            float(m["seconds"]),
            float(m["before"]),
            float(m["after"]),
        )
        for m in rows
        if m
    ]
    assert claims, demo_report
    return claims


def report_line(report: str, key: str) -> str:
    lines = [line for line in report.splitlines() if line.startswith(f"{key}: ")]
    assert len(lines) == 1, report
    return lines[0].removeprefix(f"{key}: ")


# ------------------------------------------------------------------------------------ tests


def test_the_demo_runs_every_stage_and_reports(demo_run, demo_report: str, demo_tmp: Path) -> None:
    done, _ = demo_run
    assert demo_report.startswith("\nzkcare demo report\n")
    for stage in ("bundles", "chain", "deploy", "insurer", "relay", "claims", "dao", "research"):
        assert re.search(rf"^  {stage}\s+\d+\.\d\d s  ", demo_report, re.M), stage
    for key in ("chain", "deployed", "model", "insurer", "product", "policies", "relay"):
        assert re.search(rf"^{key}\s+\S", demo_report, re.M), key
    deployed = re.search(r"^deployed\s+(.*)$", demo_report, re.M)
    assert deployed
    for contract in ("ModelRegistry", "ClaimSettlement", "ResearchBounty", "BountyEvalVerifier"):
        assert contract in deployed.group(1)
    # the built-in product is a decision model: "pay if malignant" runs in the circuit
    assert "BreastCancerLrDecisionVerifier" in deployed.group(1)
    model = re.search(r"^model\s+(.*)$", demo_report, re.M)
    assert model and model.group(1).endswith("decision bundle (output[0] <= 0 in the circuit)")
    assert "logit" not in demo_report.split("claims (proved")[1]  # the claims: decisions only
    assert "NOT FOR PRODUCTION" in demo_report  # the dev SRS says so
    assert_cleaned_up(done.stderr, demo_tmp)


def test_claims_are_paid_or_denied_as_the_model_diagnoses(demo_claims: list[Claim]) -> None:
    patients = [c.patient for c in demo_claims]
    logits = model_logits(patients)
    truth = ground_truth(patients)
    assert len(demo_claims) >= 4 and len(set(patients)) == len(patients)
    for claim in demo_claims:
        float_logit = logits[claim.patient]
        assert abs(float_logit) > 1, "pick patients the quantized circuit cannot flip"
        expected = "paid" if float_logit <= 0 else "denied"  # the product pays if malignant
        assert claim.decision == expected, (claim, float_logit)
        assert claim.truth == truth[claim.patient]
        assert claim.payout == (PAYOUT_ETH if expected == "paid" else 0.0)
        assert claim.after - claim.before == pytest.approx(claim.payout)
        assert claim.before == 0.0  # a fresh holder
        assert 300_000 < claim.gas < 2_000_000
        assert 0 < claim.seconds < 120
    assert {c.decision for c in demo_claims} == {"paid", "denied"}


def test_totals_add_up(demo_report: str, demo_claims: list[Claim]) -> None:
    paid = [c for c in demo_claims if c.decision == "paid"]
    totals = report_line(demo_report, "totals")
    assert totals.startswith(
        f"{len(demo_claims)} claims: {len(paid)} paid ({len(paid) * PAYOUT_ETH:g} ETH), "
        f"{len(demo_claims) - len(paid)} denied; gas {sum(c.gas for c in demo_claims):,} in all"
    ), totals


def test_the_dao_funds_the_bounty_through_a_passed_proposal(demo_report: str) -> None:
    line = report_line(demo_report, "bounty")
    assert re.match(r"#1 \w+", line), line
    assert "by the DAO timelock" in line and "through a passed proposal" in line, line


def test_a_researcher_is_awarded_the_bounty(demo_report: str) -> None:
    """The demo checks the award on chain; the line names the proved accuracy on 114 patients."""
    line = report_line(demo_report, "bounty")
    assert re.match(rf"#1 awarded {BOUNTY_ETH:g} ETH to researcher 0x[0-9a-fA-F]{{40}} ", line), (
        line
    )
    accuracy = float(re.search(r"proved accuracy (\d\.\d+)", line).group(1))  # type: ignore[union-attr]
    assert 0.875 <= accuracy <= 1.0, line


def test_a_failure_exits_with_one_line_and_leaves_no_anvil(tmp_path: Path) -> None:
    done = demo(tmp=tmp_path, env={"ZKCARE_DEMO_FAIL_AT": "claims"})
    line = one_line_error(done.returncode, done.stderr)
    assert line == "Error: demo failed at claims: forced failure (ZKCARE_DEMO_FAIL_AT=claims)"
    assert done.stdout == ""
    assert "» start the prover relay" in done.stderr  # anvil and the relay had started
    assert_cleaned_up(done.stderr, tmp_path)


def test_an_occupied_relay_port_fails_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = demo("--relay-port", str(port), tmp=tmp_path, timeout=120)
    line = one_line_error(done.returncode, done.stderr)
    assert f"the relay port 127.0.0.1:{port} is not free" in line, line
    assert "anvil on" not in done.stderr
    assert list(tmp_path.glob("zkcare-demo-*")) == []


def test_ctrl_c_stops_anvil_and_the_relay_with_one_line(tmp_path: Path) -> None:
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prover", "demo"],
            cwd=ROOT,
            env={**os.environ, "TMPDIR": str(tmp_path)},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            deadline = time.monotonic() + 300
            while "claim 1: patient" not in log.read_text():  # a claim is being proved
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            returncode = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    stderr = log.read_text()
    line = one_line_error(returncode, stderr)
    assert returncode == 130
    assert line.startswith("Error: interrupted; anvil and the relay stopped"), line
    assert_cleaned_up(stderr, tmp_path)
