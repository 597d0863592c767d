"""``python -m prover.relay dev``: a local chain, contracts, keys and a relay in one command.

:func:`run_dev` starts anvil (its chain kept in ``<folder>/anvil-state.json``), deploys the
registry with the built-in diagnostic model's verifier and a ClaimSettlement
(:func:`prover.relay.devchain.deploy_dev_chain`: a funded ETH pool, the hospital trusted, a
product paying when the model calls the tumour malignant), issues a policy, funds the
submitter, writes the hospital and submitter keystores, the nullifier secret, the data key
(``data.key``, outside the job store's ``data/``) and a TOML config into the folder, creates the
client ``dev`` (scopes submit, read, admin; token printed and kept in ``client.token``), and
serves the relay until SIGINT/SIGTERM, then stops the relay and anvil.

A second start with the same folder reuses everything: anvil reloads the chain, the relay its
jobs. When the contracts, the model bundle or the keys no longer match what was deployed, the
chain and the jobs are started over (the keys are kept). For a local demo only: anvil's
well-known dev account #0 deploys and insures, and the passphrase and secret lie in the folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from prover.anvil import Anvil
from prover.exceptions import DevRelayError, RelayConfigError, ZkcareError
from prover.paths import ROOT
from prover.relay.keys import keystore_address, new_keystore, new_secret, write_private
from prover.relay.settings import RelaySettings, load_settings
from prover.zk.circuit import Bundle

log = logging.getLogger("zkcare.relay.dev")

DEFAULT_DIR = Path("relay-dev")
DEFAULT_PORT = 8080
CHAIN_ID = 31337
#: anvil's dev account #1 (public, well known): the policy holder who is paid.
HOLDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
PAYOUT_WEI = 10**16
COVERAGE_WEI = 10**18
SUBMITTER_FUNDS_WEI = 10 * 10**18
POLICY_TTL_S = 365 * 86400
#: The example claim shipped with the repository (held-out patient 0, called malignant).
EXAMPLE_JOB = ROOT / "examples" / "job.json"
STATE_DUMP_INTERVAL_S = 10

Echo = Callable[[str], None]


@dataclass(frozen=True)
class DevFolder:
    """The files of one dev relay."""

    root: Path

    @property
    def config(self) -> Path:
        """The relay's TOML settings (rewritten at every start: the anvil port changes)."""
        return self.root / "relay.toml"

    @property
    def hospital_keystore(self) -> Path:
        """The hospital's attestation key (eth-account keystore)."""
        return self.root / "hospital.keystore.json"

    @property
    def submitter_keystore(self) -> Path:
        """The submitter's transaction key (eth-account keystore)."""
        return self.root / "submitter.keystore.json"

    @property
    def passphrase(self) -> Path:
        """The passphrase of both keystores."""
        return self.root / "keystore.passphrase"

    @property
    def secret(self) -> Path:
        """The nullifier secret (hex)."""
        return self.root / "nullifier.secret"

    @property
    def data_key(self) -> Path:
        """The data key sealing patient input at rest (outside ``data``, the job store)."""
        return self.root / "data.key"

    @property
    def token(self) -> Path:
        """The dev client's token (scopes submit, read, admin)."""
        return self.root / "client.token"

    @property
    def state(self) -> Path:
        """anvil's chain state (``--state``)."""
        return self.root / "anvil-state.json"

    @property
    def record(self) -> Path:
        """What was deployed (:class:`DevDeployment`)."""
        return self.root / "dev.json"

    @property
    def data(self) -> Path:
        """The relay's ``data_dir`` (job store, data key, scratch space)."""
        return self.root / "data"

    @property
    def job(self) -> Path:
        """A ready-to-submit job, written when the example's policy id is not the dev one."""
        return self.root / "job.json"


@dataclass(frozen=True)
class DevDeployment:
    """The contracts and ids a dev chain holds (stored as ``dev.json``)."""

    fingerprint: str
    chain_id: int
    registry: str
    settlement: str
    pool_id: int
    product_id: int
    policy_id: int
    holder: str
    hospital: str
    submitter: str

    @classmethod
    def load(cls, path: Path) -> DevDeployment | None:
        """The stored deployment, or None if there is none (or it is unreadable)."""
        try:
            data = json.loads(path.read_text())
            return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, path: Path) -> None:
        """Write it atomically."""
        tmp = path.with_suffix(".partial")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=1) + "\n")
        tmp.replace(path)


def ensure_keys(folder: DevFolder, echo: Echo) -> tuple[str, str, str]:
    """Create whatever key files are missing; (hospital, submitter, passphrase)."""
    if not folder.passphrase.exists():
        write_private(folder.passphrase, secrets.token_urlsafe(24) + "\n")
    passphrase = folder.passphrase.read_text().rstrip("\r\n")
    addresses = []
    for role, path in (
        ("hospital", folder.hospital_keystore),
        ("submitter", folder.submitter_keystore),
    ):
        if path.exists():
            addresses.append(keystore_address(path))
        else:
            addresses.append(new_keystore(path, passphrase))
            echo(f"  {role:<9} key {addresses[-1]} -> {path}")
    if not folder.secret.exists():
        new_secret(folder.secret)
        echo(f"  nullifier secret -> {folder.secret}")
    old_key = folder.data / "input.key"  # where relays before client auth kept it
    if not folder.data_key.exists() and old_key.exists():
        old_key.replace(folder.data_key)
    if not folder.data_key.exists():
        new_secret(folder.data_key)
        echo(f"  data key  -> {folder.data_key}")
    return addresses[0], addresses[1], passphrase


def fingerprint(bundle: Bundle) -> str:
    """A hash of what a dev chain is built from: contract code and the model's verifier."""
    from prover.relay.devchain import compiled

    digest = hashlib.sha256()
    for name in ("ModelRegistry", "ClaimSettlement"):
        digest.update(compiled(name)[1])
    sha = bundle.manifest["sha256"]
    for part in (sha["onnx"], sha["vk"], bundle.verifier_artifact["bytecode"]):
        digest.update(str(part).encode())
    return digest.hexdigest()


def deploy(url: str, bundle: Bundle, hospital: str, submitter: str, fp: str) -> DevDeployment:
    """Deploy the contracts, issue the dev policy and fund the submitter."""
    from prover.relay.devchain import AT_LEAST, deploy_dev_chain

    # The decision bundle's only output is 0/1 ("pay if malignant" runs in the circuit).
    chain = deploy_dev_chain(
        url, bundle, hospital, comparison=AT_LEAST, threshold=1, payout=PAYOUT_WEI
    )
    (policy,) = chain.issue_policies(1, holder=HOLDER, coverage=COVERAGE_WEI, ttl_s=POLICY_TTL_S)
    chain.sender.send({"to": submitter, "value": SUBMITTER_FUNDS_WEI})
    return DevDeployment(
        fp,
        chain.chain_id,
        str(chain.registry.address),
        str(chain.settlement.address),
        chain.pool_id,
        chain.product_id,
        policy,
        HOLDER,
        hospital,
        submitter,
    )


def _has_code(url: str, address: str) -> bool:
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
    return len(w3.eth.get_code(Web3.to_checksum_address(address))) > 0


def write_config(folder: DevFolder, rpc_url: str, dep: DevDeployment, port: int) -> None:
    """The relay's settings for this dev chain (secrets stay out: they are environment-only)."""
    text = f"""# Written by `python -m prover.relay dev` at every start (the anvil port changes).
# To serve it yourself while that anvil runs, give the secrets as environment variables:
#   ZKCARE_RELAY_HOSPITAL_KEY__PASSPHRASE="$(cat {folder.passphrase})"
#   ZKCARE_RELAY_SUBMITTER_KEY__PASSPHRASE="$(cat {folder.passphrase})"
#   ZKCARE_RELAY_NULLIFIER_SECRET="$(cat {folder.secret})"
rpc_urls = [{json.dumps(rpc_url)}]
chain_id = {dep.chain_id}
settlement = {json.dumps(dep.settlement)}
confirmations = 1                 # anvil mines each transaction at once
data_dir = {json.dumps(str(folder.data))}
data_key_file = {json.dumps(str(folder.data_key))}   # outside data_dir
host = "127.0.0.1"
port = {port}

[hospital_key]
keystore = {json.dumps(str(folder.hospital_keystore))}

[submitter_key]
keystore = {json.dumps(str(folder.submitter_keystore))}

[[models]]                        # the built-in diagnostic decision model (built or reused)
name = "breast_cancer_lr"
version = 1
"""
    tmp = folder.config.with_suffix(".partial")
    tmp.write_text(text)
    tmp.replace(folder.config)


def ensure_client(store: Any, folder: DevFolder) -> tuple[str, bool]:
    """The dev client's token (scopes submit, read, admin), kept in ``client.token``: reused
    while it still authenticates, else the client is created or rotated. (token, new)."""
    from prover.exceptions import AuthenticationFailed, ClientNotFound
    from prover.relay.auth import Scope

    if folder.token.exists():
        token = folder.token.read_text().strip()
        try:
            store.authenticate(token)
            return token, False
        except AuthenticationFailed:
            folder.token.unlink()
    try:
        _client, token = store.rotate_client("dev")
    except ClientNotFound:
        _client, token = store.create_client("dev", [Scope.SUBMIT, Scope.READ, Scope.ADMIN])
    write_private(folder.token, token + "\n")
    return token, True


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def job_file(folder: DevFolder, policy_id: int) -> Path:
    """The example job if it names ``policy_id``, else a copy naming it in the folder."""
    body = json.loads(EXAMPLE_JOB.read_text())
    if body.get("policy_id") == policy_id:
        return EXAMPLE_JOB
    body["policy_id"] = policy_id
    folder.job.write_text(json.dumps(body, indent=1) + "\n")
    return folder.job


def python_command() -> str:
    """How to run this Python from a fresh shell in the working directory (the set-up venv's
    ``.venv/bin/python`` when it is that one)."""
    venv = ROOT / ".venv"
    if Path(sys.prefix).resolve() == venv.resolve() and (venv / "bin" / "python").exists():
        return shown(venv / "bin" / "python")
    return shown(Path(sys.executable))


class _Stopped(Exception):
    """SIGTERM or SIGHUP arrived."""


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    raise _Stopped(signal.Signals(signum).name)


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _trap_signals() -> dict[signal.Signals, Any]:
    """SIGINT raises KeyboardInterrupt, SIGTERM/SIGHUP :class:`_Stopped`, so the ``finally``
    blocks stop the relay and anvil (importing ape replaces SIGINT with ``sys.exit(130)``, so
    this runs again after it); the handlers it replaced."""
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stopped)
    return previous


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """:func:`_trap_signals` for the duration; the previous handlers afterwards."""
    previous = _trap_signals()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _folder_lock(folder: DevFolder) -> Iterator[None]:
    """One ``dev`` per folder (two would share anvil's state file)."""
    import fcntl

    handle = (folder.root / "dev.lock").open("a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DevRelayError(
                "folder", f"another `dev` is running with {shown(folder.root)}"
            ) from None
        yield
    finally:
        handle.close()


def _listen(port: int) -> socket.socket:
    """Bind the relay's port now, so a busy port fails before anything starts."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or type(exc).__name__
        raise DevRelayError(
            "relay", f"cannot listen on 127.0.0.1:{port} ({reason}); pick another --port"
        ) from None
    sock.listen(128)
    return sock


def _quiet_ape() -> None:
    """ape's compile messages are not the dev relay's business."""
    from ape.logging import logger as ape_logger

    ape_logger.set_level("WARNING")


def _stage(name: str, call: Callable[[], Any]) -> Any:
    """Run one set-up step; any failure becomes one :class:`DevRelayError` line."""
    try:
        return call()
    except (DevRelayError, RelayConfigError, KeyboardInterrupt, _Stopped):
        raise
    except ZkcareError as exc:
        raise DevRelayError(name, str(exc).splitlines()[0]) from None
    except Exception as exc:  # a CLI boundary: one line, no traceback
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise DevRelayError(name, f"{type(exc).__name__}: {first}".rstrip(": ")) from None


def run_dev(directory: Path, port: int, echo: Echo) -> None:
    """Set up (or resume) the dev chain in ``directory`` and serve the relay on ``port``."""
    folder = DevFolder(directory.resolve())
    with _stop_on_signals():
        try:
            if Path.cwd().resolve() != ROOT:
                raise DevRelayError(
                    "folder",
                    f"run it from the repository root, {ROOT} "
                    "(ape compiles the contracts of the working directory)",
                )
            _stage("folder", lambda: folder.root.mkdir(parents=True, exist_ok=True))
            with _folder_lock(folder):
                _run_locked(folder, port, echo)
        except (KeyboardInterrupt, _Stopped):
            pass
    echo(f"stopped the relay and anvil; `dev --dir {shown(folder.root)}` resumes this chain")


def _run_locked(folder: DevFolder, port: int, echo: Echo) -> None:
    from prover.models.breast_cancer import build_decision_bundle

    sock = _listen(port)
    anvil: Anvil | None = None
    try:
        echo(f"dev relay in {shown(folder.root)}")
        hospital, submitter, passphrase = _stage("keys", lambda: ensure_keys(folder, echo))
        echo("  model     building or reusing the diagnostic circuit bundle ...")
        bundle: Bundle = _stage("model", build_decision_bundle)
        _stage("contracts", _quiet_ape)
        _trap_signals()
        fp = _stage("contracts", lambda: fingerprint(bundle))
        previous = DevDeployment.load(folder.record)
        anvil = _stage("anvil", lambda: _start_anvil(folder))
        url = anvil.url
        reuse = (
            previous is not None
            and previous.fingerprint == fp
            and (previous.hospital, previous.submitter) == (hospital, submitter)
            and _stage("anvil", lambda: _has_code(url, previous.settlement))
        )
        if reuse:
            assert previous is not None
            dep = previous
            echo(f"  chain     resumed from {shown(folder.state)}")
        else:
            if previous is not None or folder.data.exists():
                echo("  chain     contracts, model or keys changed: new chain, jobs cleared")
                anvil.stop()
                folder.state.unlink(missing_ok=True)
                shutil.rmtree(folder.data, ignore_errors=True)
                anvil = _stage("anvil", lambda: _start_anvil(folder))
                url = anvil.url
            echo("  chain     deploying registry, verifier, settlement, pool, product, policy ...")
            dep = _stage("deploy", lambda: deploy(url, bundle, hospital, submitter, fp))
            dep.save(folder.record)
        write_config(folder, url, dep, port)
        settings = _stage("settings", lambda: _settings(folder, passphrase))
        _serve(folder, settings, dep, url, sock, echo)
    finally:
        sock.close()
        if anvil is not None:
            anvil.stop()


def _start_anvil(folder: DevFolder) -> Anvil:
    args = ["--state", str(folder.state), "--state-interval", str(STATE_DUMP_INTERVAL_S)]
    return Anvil(chain_id=CHAIN_ID, extra_args=args).start(timeout=60)


def _settings(folder: DevFolder, passphrase: str) -> RelaySettings:
    secret = folder.secret.read_text().strip()
    return load_settings(
        folder.config,
        nullifier_secret=secret,
        hospital_key={"passphrase": passphrase},
        submitter_key={"passphrase": passphrase},
    )


def _serve(
    folder: DevFolder,
    settings: RelaySettings,
    dep: DevDeployment,
    rpc_url: str,
    sock: socket.socket,
    echo: Echo,
) -> None:
    import uvicorn

    from prover.relay.api import create_app, server_options
    from prover.relay.service import Relay

    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    relay: Relay = _stage("relay", lambda: Relay(settings))
    try:
        _stage("relay", relay.start)
        token, _new = _stage("relay", lambda: ensure_client(relay.store, folder))
        relay_url = f"http://127.0.0.1:{settings.port}"
        auth = f"--token-file {shown(folder.token)}"
        job = job_file(folder, dep.policy_id)
        python = python_command()
        eth = PAYOUT_WEI / 10**18
        echo(f"  chain     {rpc_url} (anvil, chain id {dep.chain_id}), state {shown(folder.state)}")
        echo(f"  contracts registry {dep.registry}, settlement {dep.settlement}")
        echo(
            f"  policy    {dep.policy_id} (holder {dep.holder}): pays {eth:g} ETH when the model "
            "calls the tumour malignant"
        )
        echo(f"  config    {shown(folder.config)} (keys, secret and data key next to it)")
        echo(f"  client    dev (submit, read, admin), token {token} in {shown(folder.token)}")
        echo(f"  watch     {python} -m prover.relay list --url {relay_url} {auth}")
        echo("  stop      Ctrl-C (stops the relay and anvil; the next start resumes the chain)")
        echo(f"relay URL: {relay_url}")
        echo(f"submit:    {python} -m prover.relay submit {shown(job)} --url {relay_url} {auth}")
        config = uvicorn.Config(
            create_app(relay, manage_relay=False),
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=10,
            **server_options(settings),
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        relay.stop()
