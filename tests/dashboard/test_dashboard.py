"""The dashboard in a real browser against a real run of the main job.

One main-job chain (anvil, the relay, four claims paid/denied, a DAO bounty awarded) serves
the module; the dashboard runs as an operator starts it (``python -m prover dashboard`` with a
token file made by ``--add-token``) and headless Chromium (Debian's, driven by Playwright)
signs in through the login form. Each view renders and its numbers match the chain, read here
with hand-written ABIs and raw logs; a new claim submitted to the relay shows up without a
reload; no page carries a proved output, a patient's features or a record id; and nobody
without a valid token sees anything. Screenshots of each view go to artifacts/screenshots/.
"""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
import requests
from eth_abi import decode
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from prover.anvil import DEV_PRIVATE_KEY
from prover.demo import held_out_patients
from prover.models.breast_cancer import DIAGNOSTIC_MODEL, float_logits, load_preprocessor

from .conftest import SCREENSHOTS, DashboardServer, zkcare

pytestmark = pytest.mark.slow

VIEWS = ("insurer", "dao", "registry", "relay")
GET_POOL = [
    {
        "name": "getPool",
        "type": "function",
        "stateMutability": "view",
        "inputs": [{"name": "poolId", "type": "uint256"}],
        "outputs": [
            {
                "name": "",
                "type": "tuple",
                "components": [
                    {"name": "insurer", "type": "address"},
                    {"name": "asset", "type": "address"},
                    {"name": "balance", "type": "uint128"},
                    {"name": "reserved", "type": "uint128"},
                ],
            }
        ],
    }
]
ISSUE_POLICY = [
    {
        "name": "issuePolicy",
        "type": "function",
        "stateMutability": "nonpayable",
        "inputs": [
            {"name": "productId", "type": "uint256"},
            {"name": "holder", "type": "address"},
            {"name": "coverage", "type": "uint256"},
            {"name": "expiry", "type": "uint64"},
        ],
        "outputs": [{"name": "policyId", "type": "uint256"}],
    }
]
PAID = keccak(text="ClaimPaid(uint256,uint256,address,uint256)")
DENIED = keccak(text="ClaimDenied(uint256,uint256)")
AWARDED = keccak(text="BountyAwarded(uint256,address,uint256,int256,uint256)")
NEW_PATIENT = 3


def eth_text(wei: int) -> str:
    text = format(Decimal(wei) / Decimal(10**18), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _w3(server: DashboardServer) -> Web3:
    return Web3(Web3.HTTPProvider(server.job.rpc))


def _contracts(server: DashboardServer) -> dict[str, Any]:
    return json.loads(server.job.deployment.read_text())


def _claim_logs(w3: Web3, settlement: str) -> dict[int, tuple[str, int, str]]:
    """claim id -> (decision, amount paid, tx hash), from the raw logs (the claim events carry
    no model output: ``ClaimPaid(claimId, policyId, holder, amount)``, ``ClaimDenied(claimId,
    policyId)``)."""
    out = {}
    for log in w3.eth.get_logs({"address": settlement, "fromBlock": 0, "toBlock": "latest"}):  # type: ignore[typeddict-item]
        topic = bytes(log["topics"][0])
        if topic not in (PAID, DENIED):
            continue
        claim_id = int.from_bytes(bytes(log["topics"][1]), "big")
        if topic == PAID:
            (amount,) = decode(["uint256"], bytes(log["data"]))
        else:
            assert bytes(log["data"]) == b""  # nothing but the indexed ids
            amount = 0
        out[claim_id] = (
            "paid" if topic == PAID else "denied",
            int(amount),
            "0x" + bytes(log["transactionHash"]).hex(),
        )
    return out


def _login(browser: Any, server: DashboardServer) -> Any:
    browser.clear_cookies()  # each test signs in afresh
    page = browser.new_page()
    page.goto(server.url + "/insurer")
    assert page.locator("input[name=token]").is_visible()  # not signed in: the login form
    page.fill("input[name=token]", "not-the-token")
    page.click("button[type=submit]")
    assert page.locator("[data-testid=login-wrong]").is_visible()
    page.fill("input[name=token]", server.token)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=pools]")
    return page


def _scan_for_private_values(html: str, forbidden: dict[str, str], where: str) -> None:
    for needle, what in forbidden.items():
        assert not re.search(rf"(?<![\w.]){re.escape(needle)}(?![\w.])", html), (
            f"{where} shows {what} ({needle})"
        )


def test_public_bind_needs_a_token_file(dashboard_main_job: Any, tmp_path: Any) -> None:
    args = [
        "dashboard",
        "--rpc",
        dashboard_main_job.rpc,
        "--deployment",
        dashboard_main_job.deployment,
    ]
    done = zkcare(*args, "--host", "0.0.0.0")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: refusing to bind the dashboard to 0.0.0.0 without authentication: pass --tokens "
        "FILE (create one with --add-token NAME), or bind 127.0.0.1"
    )
    bad = tmp_path / "tokens"
    bad.write_text("sha256:abc auditor\n")
    done = zkcare(*args, "--host", "0.0.0.0", "--tokens", bad)
    assert done.stderr.strip().splitlines()[-1] == (
        f"Error: {bad}:1: expected `sha256:<64 hex digits> [name]`"
    )


def test_the_relay_view_needs_a_relay_token_with_read(
    dashboard_main_job: Any, tmp_path: Any
) -> None:
    """The relay wants a client token: none, a wrong one or a badly kept file is refused in one
    line; ``read`` shows that client's jobs and only liveness; ``admin`` every job and health."""
    from prover.dashboard.app import Dashboard, DashboardConfig

    job = dashboard_main_job
    info = job.info

    def relay_view(token: str | None) -> tuple[Any, Any, Any]:
        config = DashboardConfig(
            job.rpc, job.deployment, str(tmp_path / "i.sqlite"), job.relay, token
        )
        dashboard = Dashboard(config)
        try:
            return dashboard.relay_jobs()
        finally:
            dashboard.stop()

    jobs, health, error = relay_view(None)
    assert jobs is None and health is None
    assert error.startswith(f"relay {job.relay}: no token; give --relay-token-file")
    jobs, _, error = relay_view("zkr_" + "0" * 16 + "_" + "A" * 43)
    assert jobs is None and error.startswith(f"relay {job.relay}: HTTP 401: invalid or revoked")
    every = requests.get(job.relay + "/v1/jobs", headers=job.relay_admin_headers, timeout=30)
    assert every.status_code == 200
    everyone = {j["job_id"] for j in every.json()["jobs"]}
    assert len(everyone) >= 4

    jobs, health, error = relay_view(info["relay_admin_token"])  # read + admin
    assert error is None and {j["job_id"] for j in jobs} == everyone
    assert health["status"] in ("ok", "degraded") and "workers" in health
    assert not health.get("needs_admin")

    from prover.relay.auth import Scope
    from prover.relay.store import JobStore

    store = JobStore(job.deployment.parent.parent / "relay" / "jobs.sqlite3")
    try:
        _, reader = store.create_client("dashboard-reader", [Scope.READ])
    finally:
        store.close()
    jobs, health, error = relay_view(reader)  # read only: its own jobs (none), liveness only
    assert error is None and jobs == [] and health == {"status": "alive", "needs_admin": True}
    jobs, _, _ = relay_view(info["relay_token"])  # the hospital (submit + read): its own
    assert {j["job_id"] for j in jobs} <= everyone and len(jobs) >= 4

    args = ["dashboard", "--rpc", job.rpc, "--deployment", job.deployment, "--relay", job.relay]
    loose = tmp_path / "relay.token"
    loose.write_text(info["relay_admin_token"] + "\n")
    loose.chmod(0o644)
    done = zkcare(*args, "--relay-token-file", loose)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"Error: {loose}:0: mode 0644 lets others read a relay token; chmod 600 {loose}"
    )
    loose.chmod(0o600)
    loose.write_text("sha256:" + "ab" * 32 + "\n")  # a dashboard token hash is no relay token
    done = zkcare(*args, "--relay-token-file", loose)
    assert done.stderr.strip().splitlines()[-1] == (
        f"Error: {loose}:1: not a relay client token (zkr_<id>_<secret>; "
        "`clients create --token-file`)"
    )


def test_nobody_without_a_valid_token_sees_anything(dashboard_server: DashboardServer) -> None:
    s = dashboard_server
    for path in [
        "/insurer",
        "/dao",
        "/registry",
        "/relay",
        "/fragments/insurer",
        "/fragments/relay",
        "/api/status",
        "/static/htmx.min.js",
        "/",
    ]:
        for token in (None, "wrong-token", s.token[:-1]):
            r = s.get(path, token)
            assert r.status_code == 401, (path, token, r.status_code)
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert 'data-testid="pools"' not in r.text
        assert s.get(path, s.token).status_code in (200, 303), path
    assert s.get("/nowhere", s.token).status_code == 404
    wrong = requests.post(
        s.url + "/login", data={"token": "nope"}, allow_redirects=False, timeout=30
    )
    assert wrong.status_code == 401 and "Set-Cookie" not in wrong.headers
    right = requests.post(
        s.url + "/login",
        data={"token": s.token, "next": "//evil.example"},
        allow_redirects=False,
        timeout=30,
    )
    assert right.status_code == 303 and right.headers["Location"] == "/insurer"
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    session = requests.Session()
    session.cookies.update(right.cookies)
    assert session.get(s.url + "/dao", timeout=30).status_code == 200
    session.post(s.url + "/logout", timeout=30, allow_redirects=False)
    again = requests.get(s.url + "/dao", cookies=right.cookies, timeout=30)
    assert again.status_code == 401  # the session ended with the logout


def test_views_render_and_match_the_chain(
    dashboard_server: DashboardServer, dashboard_browser: Any
) -> None:
    s = dashboard_server
    w3 = _w3(s)
    manifest = _contracts(s)
    settlement = manifest["contracts"]["ClaimSettlement"]["address"]
    page = _login(dashboard_browser, s)

    # insurer: the pool as the chain holds it, every claim's decision and transaction
    _, _, balance, reserved = (
        w3.eth.contract(address=settlement, abi=GET_POOL).functions.getPool(1).call()
    )
    assert (
        int(page.get_attribute("[data-testid=pool-1-balance]", "data-wei")) == balance == 8 * 10**18
    )
    assert int(page.get_attribute("[data-testid=pool-1-reserved]", "data-wei")) == reserved
    assert page.inner_text("[data-testid=pool-1-balance]") == eth_text(balance)
    claims = _claim_logs(w3, settlement)
    assert len(claims) == 4
    for claim_id, (decision, _, tx_hash) in claims.items():
        assert page.inner_text(f"[data-testid=claim-{claim_id}-decision]") == decision
        assert page.get_attribute(f"[data-testid=claim-{claim_id}-tx]", "data-tx") == tx_hash
        gas = int(w3.eth.get_transaction_receipt(tx_hash)["gasUsed"])  # type: ignore[arg-type]
        assert int(page.inner_text(f"[data-testid=claim-{claim_id}-gas]")) == gas
    paid = sum(1 for d, _, _ in claims.values() if d == "paid")
    assert int(page.inner_text("[data-testid=total-paid]")) == paid
    assert int(page.inner_text("[data-testid=total-denied]")) == 4 - paid
    for chart in ("claims", "payouts", "denial", "gas"):
        assert page.locator(f"[data-testid=chart-{chart}] svg rect").count() >= 1
    page.screenshot(path=str(SCREENSHOTS / "insurer.png"), full_page=True)

    # DAO: the bounty awarded to the researcher the chain names
    page.click("nav >> text=dao")
    page.wait_for_selector("[data-testid=bounties]")
    bounty = manifest["contracts"]["ResearchBounty"]["address"]
    (log,) = [
        lg
        for lg in w3.eth.get_logs({"address": bounty, "fromBlock": 0, "toBlock": "latest"})  # type: ignore[typeddict-item]
        if bytes(lg["topics"][0]) == AWARDED
    ]
    winner = to_checksum_address(bytes(log["topics"][2])[-20:])
    assert page.inner_text("[data-testid=bounty-1-status]") == "awarded"
    assert page.inner_text("[data-testid=bounty-1-winner]") == winner
    amount = decode(["uint256", "int256", "uint256"], bytes(log["data"]))[2]
    assert int(page.get_attribute("[data-testid=bounty-1-amount]", "data-wei")) == amount
    page.screenshot(path=str(SCREENSHOTS / "dao.png"), full_page=True)

    # registry: each model version active, its verifier's code hash as deployed
    page.click("nav >> text=registry")
    page.wait_for_selector("[data-testid=models]")
    for entry in manifest["models"].values():
        key = f"model-{entry['modelId']}-{entry['version']}"
        code = bytes(w3.eth.get_code(entry["verifier"]))
        assert page.inner_text(f"[data-testid={key}-codehash]") == "0x" + keccak(code).hex()
        assert page.inner_text(f"[data-testid={key}-status]") == "active"
    page.screenshot(path=str(SCREENSHOTS / "registry.png"), full_page=True)

    # relay: jobs by state as the relay reports them
    page.click("nav >> text=relay")
    page.wait_for_selector("[data-testid=relay-jobs]")
    jobs = requests.get(
        s.job.relay + "/v1/jobs", headers=s.job.relay_admin_headers, timeout=30
    ).json()["jobs"]
    assert len(jobs) >= 4
    for state in {j["state"] for j in jobs}:
        expected = sum(1 for j in jobs if j["state"] == state)
        assert int(page.inner_text(f"[data-testid=relay-state-{state}]")) == expected
    page.screenshot(path=str(SCREENSHOTS / "relay.png"), full_page=True)
    page.close()


def test_a_new_claim_appears_without_a_reload(
    dashboard_server: DashboardServer, dashboard_browser: Any
) -> None:
    s = dashboard_server
    w3 = _w3(s)
    settlement = _contracts(s)["contracts"]["ClaimSettlement"]["address"]
    page = _login(dashboard_browser, s)
    assert page.locator("[data-testid=claim-5]").count() == 0
    page.evaluate("window.__sameDocument = true")

    # The insurer issues a fifth policy; the hospital sends a claim for it to the relay.
    insurer = Account.from_key(s.job.info["insurer_key"])
    holder = Account.create().address
    expiry = int(w3.eth.get_block("latest")["timestamp"]) + 30 * 86400
    tx = (
        w3.eth.contract(address=settlement, abi=ISSUE_POLICY)
        .functions.issuePolicy(1, holder, 10**18, expiry)
        .build_transaction(
            {
                "from": insurer.address,
                "nonce": w3.eth.get_transaction_count(insurer.address),
                "gas": 300_000,
                "chainId": w3.eth.chain_id,
            }
        )
    )
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(insurer.sign_transaction(tx).raw_transaction)
    )
    assert receipt["status"] == 1
    policy_id = int.from_bytes(bytes(receipt["logs"][0]["topics"][1]), "big")
    (patient,) = held_out_patients([NEW_PATIENT])
    r = requests.post(
        s.job.relay + "/v1/jobs",
        headers=s.job.relay_headers,  # the demo's hospital client (submit + read)
        timeout=30,
        json={
            "idempotency_key": "dashboard-live-claim",
            "policy_id": policy_id,
            "model": "breast_cancer_lr",
            "model_version": 1,
            "record_id": "MRN-dash-live",
            "features": list(patient.features),
        },
    )
    assert r.status_code == 202, r.text

    started = time.monotonic()
    page.wait_for_selector("[data-testid=claim-5]", timeout=180_000)
    assert page.evaluate("window.__sameDocument") is True  # htmx swapped it in; no reload
    decision, _, tx_hash = _claim_logs(w3, settlement)[5]
    assert page.inner_text("[data-testid=claim-5-decision]") == decision
    assert page.get_attribute("[data-testid=claim-5-tx]", "data-tx") == tx_hash
    assert int(page.inner_text("[data-testid=total-claims]")) == 5
    print(f"claim 5 appeared {time.monotonic() - started:.1f} s after its submission")
    page.screenshot(path=str(SCREENSHOTS / "insurer-live-claim.png"), full_page=True)
    page.close()


def test_pages_show_no_scores_and_no_patient_data(
    dashboard_server: DashboardServer, dashboard_browser: Any
) -> None:
    s = dashboard_server
    w3 = _w3(s)
    settlement = _contracts(s)["contracts"]["ClaimSettlement"]["address"]
    forbidden: dict[str, str] = {}
    assert len(_claim_logs(w3, settlement)) >= 4
    jobs = requests.get(
        s.job.relay + "/v1/jobs", headers=s.job.relay_admin_headers, timeout=30
    ).json()["jobs"]
    assert len(jobs) >= 4
    for job in jobs:
        forbidden[job["input_commitment"]] = "an input commitment"
    indices = [*held_out_patients_indices(s), NEW_PATIENT]
    pre = load_preprocessor()
    for patient in held_out_patients(indices):
        # the relay reports decisions only: the scores to look for are the float model's
        z = np.asarray([pre.transform(patient.features)])
        value = float(float_logits(DIAGNOSTIC_MODEL, z)[0])
        for text in (repr(value), f"{value:.4f}", f"{value:+.4f}", f"{value:.2f}"):
            forbidden[text] = "a patient's score"
        for feature in patient.features:
            if abs(feature) >= 1 and feature != int(feature):
                forbidden[repr(feature)] = "a patient's feature"
    forbidden["MRN-demo"] = forbidden["MRN-dash-live"] = "a record id"
    for view in VIEWS:
        for path in (f"/{view}", f"/fragments/{view}"):
            html = s.get(path, s.token).text
            assert 'data-testid="status"' in html
            _scan_for_private_values(html, forbidden, path)
    page = _login(dashboard_browser, s)
    for view in VIEWS:
        page.goto(f"{s.url}/{view}")
        page.wait_for_selector("[data-testid=status]")
        _scan_for_private_values(page.content(), forbidden, f"browser {view}")
    page.close()


def held_out_patients_indices(s: DashboardServer) -> list[int]:
    return [int(i) for i in s.job.info["patients"]]


REVOKE = [
    {
        "name": "revokeModel",
        "type": "function",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "modelId", "type": "bytes32"}, {"name": "version", "type": "uint32"}],
        "outputs": [],
    }
]


def test_a_revocation_shows_in_the_registry(
    dashboard_server: DashboardServer, dashboard_browser: Any, tmp_path: Any
) -> None:
    s = dashboard_server
    w3 = _w3(s)
    manifest = _contracts(s)
    entry = manifest["models"]["zkcare/bounty_eval"]  # its bounty is already awarded
    key = f"model-{entry['modelId']}-{entry['version']}"
    page = _login(dashboard_browser, s)
    page.click("nav >> text=registry")
    page.wait_for_selector(f"[data-testid={key}-status]")
    assert page.inner_text(f"[data-testid={key}-status]") == "active"
    page.evaluate("window.__sameDocument = true")
    guardian = Account.from_key(DEV_PRIVATE_KEY)  # deploy_all's deployer holds GUARDIAN_ROLE
    registry = w3.eth.contract(
        address=manifest["contracts"]["ModelRegistry"]["address"], abi=REVOKE
    )
    tx = registry.functions.revokeModel(
        bytes.fromhex(entry["modelId"][2:]), entry["version"]
    ).build_transaction(
        {
            "from": guardian.address,
            "nonce": w3.eth.get_transaction_count(guardian.address),
            "gas": 200_000,
            "chainId": w3.eth.chain_id,
        }
    )
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(guardian.sign_transaction(tx).raw_transaction)
    )
    assert receipt["status"] == 1
    page.wait_for_selector(f"[data-testid={key}-status]:text('revoked')", timeout=60_000)
    assert page.evaluate("window.__sameDocument") is True
    assert guardian.address in page.inner_text(f"[data-testid={key}]")
    page.screenshot(path=str(SCREENSHOTS / "registry-revoked.png"), full_page=True)
    page.close()
    done = zkcare(
        "audit",
        "--rpc",
        s.job.rpc,
        "--deployment",
        s.job.deployment,
        "--db",
        tmp_path / "audit.sqlite",
    )
    assert done.returncode == 0, done.stderr
    assert "ok   model zkcare/bounty_eval v1 status: index revoked" in done.stdout
