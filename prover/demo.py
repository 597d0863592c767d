"""``./zk demo``: zkcare's whole main job on a throwaway local chain, stage by stage.

1. ``bundles``  build (or reuse) the diagnostic decision bundle ("pay if malignant" compiled
   into the circuit: its only public output is the 0/1 decision, never the logit) and the
   bounty-evaluation circuit bundle;
2. ``chain``    start anvil on a free loopback port and connect ape to it;
3. ``deploy``   :func:`prover.deploy.deploy_all` (what ``ape run deploy all`` runs) as TEST::0:
   both verifiers, the registry, the settlement and the bounty contracts, models registered;
4. ``insurer``  TEST::1, through :mod:`prover.operations` (what ``ape run manage`` runs): an ETH
   pool, its funds, a trusted hospital, a product paying iff the circuit's decision is 1 (the
   model says malignant), one policy per holder;
5. ``relay``    a :class:`prover.relay.service.Relay` behind uvicorn on a loopback port;
6. ``claims``   the hospital posts one claim job per held-out patient over HTTP; each must end
   paid or denied on chain, the relay reporting the same decision (it never sees a score
   leave the prover: neither the chain nor the relay's API carries one);
7. ``dao``      a Governor + Timelock DAO (``contracts/test/ResearchDAO.sol``) passes a proposal
   that funds a research bounty on the deployed ``ResearchBounty``;
8. ``research`` a researcher claims the bounty (:func:`_researcher_claims_bounty`).

Everything started is stopped and every temporary directory removed, on failure, Ctrl-C and
SIGTERM too. Any failure is one :class:`DemoFailed` line naming the stage. For tests, the
environment variable ``ZKCARE_DEMO_FAIL_AT=<stage>`` forces a failure as that stage starts.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from prover.exceptions import InvalidInput, ZkcareError

Echo = Callable[[str], None]

#: Testing only: force a failure when the named stage starts.
FAIL_AT_ENV = "ZKCARE_DEMO_FAIL_AT"
STAGES = ("bundles", "chain", "deploy", "insurer", "relay", "claims", "dao", "research")
#: Held-out patients claimed by default: #0 and #2 malignant, #1 and #5 benign, all far from the
#: decision threshold (#3 is benign at logit +0.13; try it with ``--patients 3``).
DEFAULT_PATIENTS = (0, 2, 1, 5)
E18 = 10**18
POOL_FUNDS = Decimal(10)
PAYOUT = Decimal(1)
COVERAGE = Decimal(1)
POLICY_DAYS = 30
SUBMITTER_FUNDS = 10 * E18
CLAIM_TIMEOUT_S = 180.0
# The DAO: one member holds every vote; delays in blocks (ERC20Votes clock) and seconds.
DAO_SUPPLY = 1_000_000 * E18
DAO_TREASURY = 5 * E18
VOTING_DELAY, VOTING_PERIOD = 1, 10
TIMELOCK_DELAY = 2 * 86400
PROPOSAL_SUCCEEDED, PROPOSAL_EXECUTED = 4, 7
VOTE_FOR = 1
BOUNTY_AMOUNT = 2 * E18
BOUNTY_MIN_ACCURACY = 0.875
BOUNTY_DAYS = 14


class DemoFailed(ZkcareError):
    """A demo stage failed; the message is one line naming the stage and the cause."""

    def __init__(self, stage: str, cause: str) -> None:
        self.stage = stage
        self.cause = cause
        super().__init__(f"demo failed at {stage}: {cause}")


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Patient:
    """A held-out patient of the deterministic split and the dataset's label."""

    index: int
    truth: str  # "malignant" | "benign"
    features: tuple[float, ...]


@dataclass(frozen=True)
class ClaimLine:
    """One claim as the relay and the chain settled it."""

    number: int
    patient: Patient
    policy_id: int
    holder: str
    decision: str  # "paid" | "denied", read from the settlement's event (no score anywhere)
    payout_wei: int
    gas_used: int
    seconds: float  # the relay's job creation (HTTP submission) to final on chain
    balance_before: int
    balance_after: int
    tx_hash: str


@dataclass(frozen=True)
class BountyAward:
    """What the researcher stage achieved (filled in by :func:`_researcher_claims_bounty`)."""

    researcher: str
    metric: float  # proved accuracy on the committed benchmark
    amount_wei: int
    tx_hash: str
    gas_used: int


@dataclass
class Report:
    """What the demo did and measured."""

    facts: list[tuple[str, str]] = field(default_factory=list)
    claims: list[ClaimLine] = field(default_factory=list)
    bounty: str = "not reached"
    stages: list[tuple[str, str, float]] = field(default_factory=list)  # name, title, seconds
    total_s: float = 0.0

    def add(self, key: str, value: object) -> None:
        """A ``key  value`` line of the report's head."""
        self.facts.append((key, str(value)))

    def totals(self) -> str:
        """Claims paid and denied, gas and time to payout."""
        paid = [c for c in self.claims if c.decision == "paid"]
        if not self.claims:
            return "no claims"
        gas = sum(c.gas_used for c in self.claims)
        times = [c.seconds for c in self.claims]
        return (
            f"{len(self.claims)} claims: {len(paid)} paid ({_eth(sum(c.payout_wei for c in paid))}"
            f"), {len(self.claims) - len(paid)} denied; gas {gas:,} in all "
            f"({gas // len(self.claims):,} per claim); submission to payout median "
            f"{statistics.median(times):.2f} s, max {max(times):.2f} s"
        )

    def render(self) -> str:
        """The report as text."""
        width = max([len(k) for k, _ in self.facts] + [7])
        rule = "-" * 100
        out = ["", "zkcare demo report", "=" * 100]
        out += [f"{k:<{width}}  {v}" for k, v in self.facts]
        out += [rule, "claims (proved and submitted by the relay, settled by ClaimSettlement):"]
        out.append(
            f"{'#':>2}  {'patient':<7}  {'truth':<9}  {'decision':<8}  "
            f"{'payout':>7}  {'gas':>9}  {'time':>7}  holder balance before -> after"
        )
        for c in self.claims:
            out.append(
                f"{c.number:>2}  {'#' + str(c.patient.index):<7}  {c.patient.truth:<9}  "
                f"{c.decision:<8}  {_eth(c.payout_wei):>7}  {c.gas_used:>9,}  "
                f"{c.seconds:>5.2f} s  {_short(c.holder)}: {_eth(c.balance_before)} -> "
                f"{_eth(c.balance_after)}"
            )
        out += [f"totals: {self.totals()}", f"bounty: {self.bounty}", rule, "time per stage:"]
        out += [f"  {name:<9} {s:7.2f} s  {title}" for name, title, s in self.stages]
        out.append(f"  {'total':<9} {self.total_s:7.2f} s")
        return "\n".join(out)


def _eth(wei: int) -> str:
    text = f"{Decimal(wei) / E18:f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + " ETH"


def _short(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


# --- patients --------------------------------------------------------------------------------


def parse_patients(text: str | None) -> list[int] | None:
    """``"0,2,1"`` -> ``[0, 2, 1]``; ``None`` stays ``None`` (the default patients)."""
    if text is None:
        return None
    try:
        indices = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise InvalidInput(f"--patients takes comma-separated integers, got {text!r}") from exc
    if not indices:
        raise InvalidInput("--patients names no patient")
    return indices


def held_out_patients(indices: Sequence[int] | None = None) -> list[Patient]:
    """The held-out patients to claim for (default :data:`DEFAULT_PATIENTS`)."""
    from prover.models.breast_cancer import load_dataset

    ds = load_dataset()
    chosen = list(DEFAULT_PATIENTS if indices is None else indices)
    bad = [i for i in chosen if not 0 <= i < len(ds.x_test)]
    if bad:
        raise InvalidInput(f"held-out patients are 0..{len(ds.x_test) - 1}, not {bad[0]}")
    if len(set(chosen)) != len(chosen):
        raise InvalidInput(f"each patient is claimed once; {chosen} repeats one")
    return [
        Patient(i, "benign" if ds.y_test[i] == 1 else "malignant", tuple(map(float, ds.x_test[i])))
        for i in chosen
    ]


# --- the run ---------------------------------------------------------------------------------


@dataclass
class _Run:
    """What the stages share."""

    echo: Echo
    work: Path
    report: Report
    srs_file: Path | None
    #: Tests' contrast only: the old plain diagnostic bundle (public logit) and its product.
    plain: bool = False
    diag: Any = None  # Bundle
    evaluation: Any = None  # Bundle
    node: Any = None  # Anvil
    d: Any = None  # prover.operations.Deployment
    deployer: Any = None  # ape accounts
    insurer: Any = None
    member: Any = None
    hospital: Any = None  # eth_account LocalAccount
    policies: list[tuple[int, str]] = field(default_factory=list)  # (policy id, holder)
    relay_url: str = ""
    relay_token: str = ""
    timelock: str = ""

    def say(self, message: str) -> None:
        """A progress line under the current stage."""
        self.echo(f"    {message}")


def run_demo(
    patients: Sequence[int] | None = None,
    *,
    relay_port: int = 0,
    srs_file: Path | None = None,
    echo: Echo = print,
) -> Report:
    """Run every stage (module docstring) and return the report.

    Raises :class:`DemoFailed` (or :class:`~prover.exceptions.InvalidInput` for bad arguments)
    on any failure; ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM) propagates. Either way anvil,
    the relay and its HTTP server are stopped and the temporary directory removed first.
    """
    chosen = held_out_patients(patients)
    started = time.perf_counter()
    report = Report()
    stack = ExitStack()
    with _interrupts():
        try:
            sock = _reserve_port(relay_port)
            stack.callback(sock.close)
            work = Path(
                stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="zkcare-demo-", ignore_cleanup_errors=True)
                )
            )
            run = _Run(echo, work, report, srs_file)
            _stages(run, stack, chosen, sock)
        finally:
            with _no_interrupts():
                stack.close()
    report.total_s = time.perf_counter() - started
    return report


def _stages(run: _Run, stack: ExitStack, chosen: list[Patient], sock: socket.socket) -> None:
    """Stages 1-8 (cleanups go on ``stack``)."""
    with _stage(run, "bundles", "build or reuse the circuit bundles"):
        _build_bundles(run)
    with _stage(run, "chain", "start the local chain (anvil) and connect ape"):
        _start_chain(run, stack)
    with _stage(run, "deploy", "deploy verifiers, registry, settlement, bounty (deploy all)"):
        _deploy(run)
    with _stage(run, "insurer", "insurer: pool, funds, hospital, product, policies"):
        _insure(run, len(chosen))
    with _stage(run, "relay", "start the prover relay (HTTP)"):
        relay = _start_relay(run, stack, sock)
    with _stage(run, "claims", f"hospital: {len(chosen)} claims through the relay"):
        _claims(run, relay, chosen)
    with _stage(run, "dao", "DAO: a passed proposal funds a research bounty"):
        bounty_id = _dao_funds_bounty(run, BOUNTY_AMOUNT)
        run.report.bounty = _bounty_line(run, bounty_id, None)
    with _stage(run, "research", "researcher: claim the bounty"):
        award = _researcher_claims_bounty(run, bounty_id)
        run.report.bounty = _bounty_line(run, bounty_id, award)


@contextmanager
def _stage(run: _Run, name: str, title: str) -> Iterator[None]:
    """Announce, time and guard one stage: any exception becomes one :class:`DemoFailed`."""
    run.echo(f"» {title} …")
    start = time.perf_counter()
    try:
        if os.environ.get(FAIL_AT_ENV) == name:
            raise DemoFailed(name, f"forced failure ({FAIL_AT_ENV}={name})")
        yield
    except DemoFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - every cause ends in one line naming the stage
        raise DemoFailed(name, _cause(exc)) from exc
    seconds = time.perf_counter() - start
    run.report.stages.append((name, title, seconds))
    run.echo(f"  done in {seconds:.2f} s")


def _cause(exc: Exception) -> str:
    """One line for any exception (ape's decoded custom errors included)."""
    if isinstance(exc, ZkcareError):
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return lines[0] if lines else type(exc).__name__
    from ape.exceptions import ApeException

    if isinstance(exc, ApeException):
        from prover.operations import describe_failure

        return describe_failure(exc)
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else 'no detail'}"


@contextmanager
def _interrupts() -> Iterator[None]:
    """While the demo runs, Ctrl-C and SIGTERM raise ``KeyboardInterrupt`` (cleanups run).

    Importing ape installs a SIGINT handler that calls ``sys.exit(130)``, which would skip the
    one-line report; so ape is imported first and then replaced for the demo's duration.
    """
    import ape  # noqa: F401 - for its side effect on SIGINT, undone below

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _no_interrupts() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while cleaning up (a second Ctrl-C must not skip a stop)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _quietly(echo: Echo, what: str, fn: Callable[[], object]) -> None:
    """Run a cleanup; a failure is reported, never raised over the demo's own error."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - cleanup goes on
        echo(f"  warning: could not {what}: {_cause(exc)}")


def _reserve_port(port: int) -> socket.socket:
    """Bind the relay's loopback port now (``0``: a free one), before anything starts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise DemoFailed(
            "start",
            f"the relay port 127.0.0.1:{port} is not free ({exc.strerror}); "
            "pass another --relay-port, or 0 for a free one",
        ) from None
    return sock


# --- stages 1-4: bundles, chain, deployment, insurer -----------------------------------------


def _build_bundles(run: _Run) -> None:
    from prover.models.bounty_eval import build_eval_bundle
    from prover.models.breast_cancer import build_decision_bundle, build_diagnostic_bundle

    build = build_diagnostic_bundle if run.plain else build_decision_bundle
    run.diag = build(srs_file=run.srs_file, progress=run.say)
    run.evaluation = build_eval_bundle(srs_file=run.srs_file, progress=run.say)
    for bundle in (run.diag, run.evaluation):
        run.say(f"{bundle.path.name}: logrows {bundle.manifest['logrows']}")


def _start_chain(run: _Run, stack: ExitStack) -> None:
    from prover.anvil import Anvil

    node = Anvil()
    stack.callback(_quietly, run.echo, "stop anvil", node.stop)
    node.start()
    run.node = node
    run.say(f"anvil on {node.url} (chain {node.chain_id})")
    from ape import accounts, networks
    from ape.logging import logger

    logger.set_level("ERROR")  # ape's per-transaction INFO lines would drown the progress
    stack.enter_context(networks.parse_network_choice(node.url))
    run.deployer, run.insurer, run.member = (accounts.test_accounts[i] for i in range(3))


def _deploy(run: _Run) -> None:
    from prover.deploy import deploy_all
    from prover.operations import Deployment

    directory = run.work / "deployments"
    deployer = deploy_all(
        run.deployer,
        srs_file=run.srs_file,
        directory=directory,
        log=run.say,
        diagnostic=run.diag if run.plain else None,
    )
    run.d = Deployment.load(directory)
    contracts = deployer.data["contracts"]
    run.report.add(
        "chain", f"anvil at {run.node.url} (chain {run.node.chain_id}), stopped at the end"
    )
    run.report.add(
        "deployed",
        f"by {run.deployer.address} (TEST::0): "
        + ", ".join(f"{k} {_short(v['address'])}" for k, v in contracts.items()),
    )
    m = run.diag.manifest
    run.report.add(
        "model",
        f"zkcare/breast_cancer_lr v1: logrows {m['logrows']}, vk sha256 "
        f"{m['sha256']['vk'][:16]}…, SRS {m['srs']['label']}, "
        + (
            "plain bundle (public logit)"
            if run.plain
            else f"decision bundle ({m['card']['decision']['rule']} in the circuit)"
        ),
    )


def _insure(run: _Run, holders: int) -> None:
    from eth_account import Account

    from prover import operations as ops

    d, insurer = run.d, run.insurer
    run.hospital = Account.create()
    pool = ops.create_pool(d, insurer)
    pool = ops.fund_pool(d, insurer, pool.id, POOL_FUNDS)
    run.say(pool.describe())
    ops.trust_hospital(d, insurer, pool.id, run.hospital.address)
    run.say(f"pool {pool.id} trusts the hospital key {run.hospital.address}")
    # A decision model: the product pays iff the circuit's decision is 1 (its rule, "pay if
    # malignant", is compiled in); the plain contrast reads the public logit (AtMost 0).
    product = ops.create_product(
        d, insurer, pool.id, PAYOUT, pay_if="malignant" if run.plain else None
    )
    run.say(product.describe())
    for _ in range(holders):
        holder = Account.create().address
        policy = ops.issue_policy(d, insurer, product.id, holder, COVERAGE, POLICY_DAYS)
        run.policies.append((policy.id, holder))
        run.say(policy.describe())
    run.report.add(
        "insurer",
        f"{insurer.address} (TEST::1): pool {pool.id} funded {_eth(pool.balance)}, "
        f"trusts hospital {_short(run.hospital.address)}",
    )
    run.report.add(
        "product",
        f"{product.id}: pays {_eth(product.payout)} if the model calls the tumour malignant ("
        + (
            "the logit, output 0, <= 0)"
            if run.plain
            else "decided in the circuit: the chain sees only the decision, never the logit)"
        ),
    )
    run.report.add("policies", f"{holders}, coverage {_eth(int(COVERAGE * E18))} each")


# --- stages 5-6: relay, claims ---------------------------------------------------------------


class _HttpServer:
    """The relay's FastAPI app under uvicorn, in a thread, on a socket bound beforehand."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        import uvicorn

        self.sock = sock
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="demo-http", daemon=True
        )

    def start(self, timeout: float = 20.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise DemoFailed("relay", "the relay's HTTP server did not start")
            self.thread.join(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(15)


def _start_relay(run: _Run, stack: ExitStack, sock: socket.socket) -> Any:
    from eth_account import Account
    from pydantic import SecretStr

    from prover.relay.api import create_app
    from prover.relay.keys import RelayKeys
    from prover.relay.service import Relay, resolve_models
    from prover.relay.settings import KeyConfig, ModelConfig, RelaySettings

    submitter = Account.create()
    run.deployer.transfer(submitter.address, SUBMITTER_FUNDS)
    data = run.work / "relay"
    models = [ModelConfig(bundle=run.diag.path)]
    settings = RelaySettings(
        rpc_urls=[run.node.url],
        chain_id=run.node.chain_id,
        settlement=str(run.d.settlement.address),
        hospital_key=KeyConfig(keystore=data / "unused-hospital.json"),
        submitter_key=KeyConfig(keystore=data / "unused-submitter.json"),
        nullifier_secret=SecretStr(secrets.token_hex(32)),
        data_key=SecretStr(secrets.token_hex(32)),
        data_dir=data,
        models=models,
        workers=max(1, min(2, os.cpu_count() or 1)),
        confirmations=1,
        poll_interval_s=0.05,
    )
    relay = Relay(settings, keys=RelayKeys(run.hospital, submitter), models=resolve_models(models))
    stack.callback(_quietly, run.echo, "stop the relay", relay.stop)
    relay.start()
    from prover.relay.auth import Scope

    _client, run.relay_token = relay.store.create_client(
        "demo-hospital", [Scope.SUBMIT, Scope.READ]
    )
    server = _HttpServer(create_app(relay, manage_relay=False), sock)
    stack.callback(_quietly, run.echo, "stop the relay's HTTP server", server.stop)
    server.start()
    host, port = sock.getsockname()[:2]
    run.relay_url = f"http://{host}:{port}"
    run.say(f"relay at {run.relay_url}: {relay.provers} provers, submitter {submitter.address}")
    run.report.add(
        "relay",
        f"{run.relay_url}, {relay.provers} prover processes, hospital key "
        f"{_short(run.hospital.address)}, submitter {_short(submitter.address)}",
    )
    return relay


def _claims(run: _Run, relay: Any, patients: list[Patient]) -> None:
    import requests
    from ape import chain

    from prover.relay.states import JobState

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {run.relay_token}"
    before = {holder: int(chain.provider.get_balance(holder)) for _, holder in run.policies}
    jobs: dict[int, str] = {}
    for number, (patient, (policy_id, _)) in enumerate(zip(patients, run.policies, strict=True), 1):
        body = {
            "idempotency_key": f"demo-claim-{number}",
            "policy_id": policy_id,
            "model": "breast_cancer_lr",
            "model_version": 1,
            "record_id": f"MRN-demo-{patient.index}",
            "features": list(patient.features),
        }
        response = session.post(f"{run.relay_url}/v1/jobs", json=body, timeout=30)
        if response.status_code != 202:
            raise DemoFailed(
                "claims",
                f"the relay refused claim {number}: HTTP {response.status_code} "
                f"{_detail(response)}",
            )
        jobs[number] = str(response.json()["job_id"])
        run.say(f"claim {number}: patient #{patient.index}, policy {policy_id}: job {jobs[number]}")
    final: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + CLAIM_TIMEOUT_S
    while len(final) < len(jobs):
        if time.monotonic() > deadline:
            waiting = sorted(set(jobs) - set(final))
            raise DemoFailed("claims", f"claims {waiting} not settled within {CLAIM_TIMEOUT_S:g} s")
        for number, job_id in jobs.items():
            if number in final:
                continue
            response = session.get(f"{run.relay_url}/v1/jobs/{job_id}", timeout=30)
            if response.status_code != 200:
                raise DemoFailed("claims", f"job {job_id}: HTTP {response.status_code}")
            job = response.json()
            if JobState(job["state"]).final:
                final[number] = job
                run.say(f"claim {number}: {job['state']}")
        time.sleep(0.1)
    for number, patient in enumerate(patients, 1):
        policy_id, holder = run.policies[number - 1]
        run.report.claims.append(
            _settled(run, number, patient, policy_id, holder, final[number], before[holder])
        )


def _detail(response: Any) -> str:
    try:
        return str(response.json().get("detail"))
    except ValueError:
        return response.text[:200]


def _settled(
    run: _Run,
    number: int,
    patient: Patient,
    policy_id: int,
    holder: str,
    job: dict[str, Any],
    before: int,
) -> ClaimLine:
    """Check a final job against the chain: the event, the relay's decision, the payout."""
    from ape import chain

    what = f"claim {number} (patient #{patient.index}, policy {policy_id})"
    if job["state"] not in ("paid", "denied"):
        raise DemoFailed("claims", f"{what} ended {job['state']}: {job.get('reason')}")
    receipt = chain.provider.get_receipt(job["tx_hash"])
    settlement = run.d.settlement
    paid = [e for e in receipt.decode_logs(settlement.ClaimPaid) if e.policyId == policy_id]
    denied = [e for e in receipt.decode_logs(settlement.ClaimDenied) if e.policyId == policy_id]
    if len(paid) + len(denied) != 1:
        raise DemoFailed("claims", f"{what}: transaction {job['tx_hash']} settled no claim")
    decision = "paid" if paid else "denied"
    # Neither the events nor the relay carry a score: the chain learns whether a claim pays,
    # the relay reports that decision and nothing else.
    if decision != job["state"] or decision != job.get("decision"):
        raise DemoFailed(
            "claims",
            f"{what}: the chain says {decision}, the relay {job['state']} "
            f"(decision {job.get('decision')})",
        )
    after = int(chain.provider.get_balance(holder))
    payout = int(paid[0].amount) if paid else 0
    if after - before != payout:
        raise DemoFailed(
            "claims", f"{what}: the holder's balance moved by {after - before} wei, not {payout}"
        )
    seconds = float(job["final_at"]) - float(job["created_at"])
    return ClaimLine(
        number,
        patient,
        policy_id,
        holder,
        decision,
        payout,
        int(receipt.gas_used),
        seconds,
        before,
        after,
        str(job["tx_hash"]),
    )


# --- stages 7-8: the DAO funds a bounty, a researcher claims it ------------------------------


def _mine(blocks: int = 1, seconds: int = 0) -> None:
    """Advance anvil: ``seconds`` of time travel, then ``blocks`` blocks."""
    from ape import chain

    if seconds:
        chain.provider.make_request("evm_increaseTime", [seconds])
    chain.provider.make_request("anvil_mine", [hex(blocks)])


def _bounty_params(
    run: _Run, amount_wei: int, deadline: int, min_accuracy: float
) -> tuple[Any, ...]:
    """The ``createBounty`` argument, its fields in the order of the deployed ABI.

    The one place that knows what a bounty commits to: the registered evaluation version (whose
    circuit holds the benchmark), the context scale, the minimum metric, the deadline.
    """
    from prover.deploy import EVAL_MODEL_NAME
    from prover.models.bounty_eval import benchmark_size, context_scale
    from prover.operations import ETH, min_metric

    view = run.d.active_model(EVAL_MODEL_NAME)
    size = benchmark_size(run.evaluation)
    values: dict[str, Any] = {
        "asset": ETH,
        "amount": amount_wei,
        "modelId": view.model_id,
        "version": view.version,
        "contextScale": context_scale(run.evaluation),
        "minMetric": min_metric(min_accuracy, size),  # patients of the benchmark classified right
        "deadline": deadline,
    }
    (struct,) = run.d.bounty.contract_type.mutable_methods["createBounty"].inputs
    names = [str(c.name) for c in struct.components or []]
    missing = [n for n in names if n not in values]
    if missing:
        raise DemoFailed("dao", f"createBounty takes {missing}, which _bounty_params does not set")
    return tuple(values[n] for n in names)


def _check_call(contract: Any, sender: str, calldata: bytes, value: int, what: str) -> None:
    """Simulate ``sender`` calling ``contract``; a revert names the contract's custom error."""
    from ape import chain
    from eth_abi import decode
    from eth_utils import keccak
    from web3.exceptions import ContractCustomError, ContractLogicError

    tx = {"from": sender, "to": str(contract.address), "data": calldata, "value": value}
    try:
        chain.provider.web3.eth.call(tx)
    except (ContractCustomError, ContractLogicError) as exc:
        data = bytes.fromhex(str(exc.data or "").removeprefix("0x"))
        for error in contract.contract_type.errors:
            if data[:4] == keccak(text=error.selector)[:4]:
                types = [i.canonical_type for i in error.inputs]
                args = ", ".join(
                    f"{i.name}={'0x' + v.hex() if isinstance(v, bytes) else v}"
                    for i, v in zip(error.inputs, decode(types, data[4:]), strict=True)
                )
                raise DemoFailed("dao", f"{what} would revert: {error.name}({args})") from None
        raise DemoFailed("dao", f"{what} would revert: {exc}") from None


def _dao_funds_bounty(run: _Run, amount_wei: int) -> int:
    """A DAO (token, timelock, governor) passes a proposal funding a bounty; its id.

    One member holds every vote; the proposal goes through voting delay, voting period, the
    timelock's queue and delay (anvil mines the blocks and travels the time), then executes
    ``createBounty`` from the timelock, which escrows ``amount_wei`` of its treasury.
    """
    from ape import chain, project
    from eth_utils import keccak

    from prover.operations import ETH

    member, bounty = run.member, run.d.bounty
    token = member.deploy(project.ResearchDAOToken, DAO_SUPPLY)
    token.invoke_transaction("delegate", member, sender=member)  # `delegate` is an ape attribute
    timelock = member.deploy(project.ResearchDAOTimelock, TIMELOCK_DELAY, [], [ETH], member)
    governor = member.deploy(
        project.ResearchDAOGovernor, token, timelock, VOTING_DELAY, VOTING_PERIOD
    )
    timelock.grantRole(timelock.PROPOSER_ROLE(), governor, sender=member)
    timelock.grantRole(timelock.CANCELLER_ROLE(), governor, sender=member)
    timelock.renounceRole(timelock.DEFAULT_ADMIN_ROLE(), member, sender=member)
    member.transfer(timelock, DAO_TREASURY)
    run.timelock = str(timelock.address)
    run.say(f"DAO: governor {governor.address}, timelock {timelock.address}")

    deadline = int(chain.pending_timestamp) + BOUNTY_DAYS * 86400
    params = _bounty_params(run, amount_wei, deadline, BOUNTY_MIN_ACCURACY)
    targets, values = [bounty.address], [amount_wei]
    calldatas = [bounty.createBounty.encode_input(params)]
    _check_call(bounty, str(timelock.address), calldatas[0], amount_wei, "createBounty")
    description = (
        f"Fund a {_eth(amount_wei)} bounty for a benign/malignant classifier reaching "
        f"{BOUNTY_MIN_ACCURACY:g} accuracy on the committed held-out benchmark"
    )
    receipt = governor.propose(targets, values, calldatas, description, sender=member)
    proposal = int(receipt.decode_logs(governor.ProposalCreated)[0].proposalId)
    run.say(f"proposal {proposal:#x} created: {description}")
    _mine(VOTING_DELAY + 1)
    governor.castVote(proposal, VOTE_FOR, sender=member)
    _mine(VOTING_PERIOD + 1)
    if (state := int(governor.state(proposal))) != PROPOSAL_SUCCEEDED:
        raise DemoFailed("dao", f"the proposal did not pass (state {state})")
    description_hash = keccak(text=description)
    governor.queue(targets, values, calldatas, description_hash, sender=member)
    run.say(f"passed and queued; timelock delay {TIMELOCK_DELAY // 3600} h (time travel)")
    _mine(1, TIMELOCK_DELAY)
    receipt = governor.execute(targets, values, calldatas, description_hash, sender=member)
    if int(governor.state(proposal)) != PROPOSAL_EXECUTED:
        raise DemoFailed("dao", "the proposal was not executed")
    bounty_id = int(receipt.decode_logs(bounty.BountyCreated)[0].bountyId)
    run.say(run.d.bounty_record(bounty_id).describe())
    return bounty_id


def _researcher_claims_bounty(run: _Run, bounty_id: int) -> BountyAward:
    """Stage 8: a researcher trains a model and claims bounty ``bounty_id`` with the CLI's code.

    :class:`prover.research.Submission` proves the model's accuracy on the registered
    benchmark (bound to this chain, contract, bounty and researcher), commits, waits the reveal
    delay and reveals; anvil mines a block every half second meanwhile. The award is read
    back from the submission's state, which the report then checks against the chain.
    """
    from eth_account import Account
    from web3 import Web3

    from prover.models.bounty_eval import weights_of
    from prover.models.breast_cancer import train_diagnostic_model
    from prover.research import Submission, Target

    trained = train_diagnostic_model(run.work / "researcher-model", regularization=0.05)
    researcher = Account.create()
    w3 = Web3(Web3.HTTPProvider(run.node.url, request_kwargs={"timeout": 30}))
    w3.provider.make_request("anvil_setBalance", [researcher.address, hex(10**18)])  # type: ignore[arg-type]
    run.say(f"researcher {_short(researcher.address)} trained a model (C = 0.05)")
    target = Target(run.node.url, str(run.d.bounty.address), bounty_id)
    submission = Submission(target, researcher, run.work / "research", echo=run.say)
    done = threading.Event()

    def mine() -> None:
        while not done.wait(0.5):
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    miner = threading.Thread(target=mine, name="demo-miner", daemon=True)
    miner.start()
    try:
        state = submission.run(run.evaluation, weights_of(trained.onnx_path))
    finally:
        done.set()
        miner.join(5)
    if state["status"] != "awarded":
        raise DemoFailed("research", state.get("error") or f"submission {state['status']}")
    award = state["award"]
    return BountyAward(
        researcher=researcher.address,
        metric=state["correct"] / state["size"],
        amount_wei=int(award["amount"]),
        tx_hash=state["reveal_tx"]["hash"],
        gas_used=int(award["gas"] or 0),
    )


def _bounty_line(run: _Run, bounty_id: int, award: BountyAward | None, note: str = "") -> str:
    """The report's bounty line, from the chain's record."""
    record = run.d.bounty_record(bounty_id)
    sponsor = "the DAO timelock" if record.sponsor == run.timelock else record.sponsor
    if award is not None:
        from prover.operations import BountyStatus

        if record.status is not BountyStatus.AWARDED or record.winner != award.researcher:
            raise DemoFailed(
                "research",
                f"bounty {bounty_id} is {record.status.name.lower()} on chain, "
                f"winner {record.winner}, not awarded to {award.researcher}",
            )
        return (
            f"#{bounty_id} awarded {_eth(award.amount_wei)} to researcher {record.winner} "
            f"(proved accuracy {award.metric:.3f}, at least {BOUNTY_MIN_ACCURACY:g} needed; "
            f"gas {award.gas_used:,}), funded by {sponsor} through a passed proposal"
        )
    text = (
        f"#{bounty_id} {record.status.name.lower()}: {record.asset.format(record.amount)} escrowed "
        f"by {sponsor} {_short(record.sponsor)} through a passed proposal, min accuracy "
        f"{BOUNTY_MIN_ACCURACY:g}"
    )
    return text + (f"; {note}" if note else "")
