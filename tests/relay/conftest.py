"""Fixtures for the relay tests.

Each test module gets a fresh anvil (interval mining, 0.5 s blocks) with the real generated
verifier, the model registry and a ClaimSettlement (ETH pool, product paying when the logit is
<= 0, the test hospital trusted); ``zoo_product`` registers the second model there too.
In-process relays serve two models at once (the built-in diagnostic model and the test zoo's
regression MLP, built through ``prover.models.build.build_model`` once per session) and share
one session-wide prover pool (two spawned workers, each holding both models: the
:class:`ProverWorker` seam in use); the crash tests run the relay as a subprocess. A session-wide :class:`PrivacyLedger` collects every log, HTTP response, job store
and transaction, and ``test_privacy.py`` (ordered last) scans them.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from toolkit.zoo import ZooModel, make_regression_mlp

from prover.anvil import Anvil
from prover.models.build import BuildOptions, build_model
from prover.models.data import load_rows
from prover.relay.api import create_app
from prover.relay.auth import Scope
from prover.relay.devchain import AT_LEAST, DevChain, DevModel, deploy_dev_chain
from prover.relay.keys import RelayKeys
from prover.relay.service import Relay, ServedModel, resolve_models
from prover.relay.settings import KeyConfig, ModelConfig, RelaySettings
from prover.relay.worker import LocalProverPool, ProverWorker
from prover.zk.circuit import Bundle

from .pgstore_support import make_pgstore, pgstore_dsn, pgstore_server  # noqa: F401 (fixtures)
from .support import MODEL, ZOO_MODEL, ZOO_PAYS_AT_LEAST, PrivacyLedger, token_for

BLOCK_TIME = 0.5


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The privacy scan runs after every other test of the session."""
    last = [i for i in items if "relay/test_privacy.py" in i.nodeid.replace("\\", "/")]
    if last:
        items[:] = [i for i in items if i not in last] + last


@pytest.fixture(scope="session")
def ledger() -> PrivacyLedger:
    return PrivacyLedger()


@pytest.fixture(scope="session")
def relay_log(tmp_path_factory: pytest.TempPathFactory, ledger: PrivacyLedger) -> Iterator[Path]:
    """Every in-process log record of the session, in one file (scanned for leaks)."""
    path = tmp_path_factory.mktemp("logs") / "relay.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    for noisy in ("urllib3", "web3", "httpx", "httpcore", "asyncio", "ape", "hpack"):
        logging.getLogger(noisy).setLevel(logging.INFO)
    ledger.add_path("in-process logs", path)
    yield path
    root.removeHandler(handler)
    root.setLevel(old_level)
    handler.close()


@pytest.fixture(scope="session")
def regression_zoo(tmp_path_factory: pytest.TempPathFactory) -> ZooModel:
    """The zoo's regression MLP and its data files (standardized features: negatives)."""
    return make_regression_mlp(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="session")
def regression_bundle(regression_zoo: ZooModel, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The regression MLP through the public model path (``model build``), in a tmp dir."""
    zoo = regression_zoo
    calibration, _ = load_rows(zoo.calibration, 10)
    return build_model(
        zoo.onnx,
        np.asarray(calibration),
        held_out=zoo.held_out_rows,
        labels=zoo.held_out_labels,
        options=BuildOptions(name=ZOO_MODEL, task="regression"),
        out_root=tmp_path_factory.mktemp("zoo-bundles"),
        export_verifier_to=None,
    )


@pytest.fixture(scope="session")
def relay_models(
    diagnostic_bundle: Bundle, regression_bundle: Bundle, ledger: PrivacyLedger
) -> dict[tuple[str, int], ServedModel]:
    """Two models served at once, each with its own bundle and preprocessing."""
    models = resolve_models(
        [
            ModelConfig(name=MODEL, bundle=diagnostic_bundle.path),
            ModelConfig(name=ZOO_MODEL, bundle=regression_bundle.path),
        ]
    )
    for (name, _), model in models.items():
        ledger.add_model(name, model.loaded)
    return models


@pytest.fixture(scope="session")
def prover_pool(
    relay_models: dict[tuple[str, int], ServedModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalProverPool]:
    pool = LocalProverPool(
        {m.ref.key: m.ref for m in relay_models.values()},
        workers=2,
        work_root=tmp_path_factory.mktemp("prover-work") / "work",
    )
    pool.warm_up()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def hospital(ledger: PrivacyLedger) -> LocalAccount:
    account: LocalAccount = Account.create()
    ledger.add_secret("hospital key", account.key.hex())
    return account


@pytest.fixture(scope="session")
def nullifier_secret(ledger: PrivacyLedger) -> str:
    value = secrets.token_hex(32)
    ledger.add_secret("nullifier secret", value)
    return value


@pytest.fixture(scope="module")
def node() -> Iterator[Anvil]:
    with Anvil(block_time=BLOCK_TIME) as anvil:
        yield anvil


@pytest.fixture(scope="module")
def dev_chain(
    node: Anvil,
    diagnostic_bundle: Bundle,
    hospital: LocalAccount,
    ledger: PrivacyLedger,
    request: pytest.FixtureRequest,
) -> Iterator[DevChain]:
    chain = deploy_dev_chain(node.url, diagnostic_bundle, hospital.address)
    yield chain
    ledger.collect_chain(chain.w3, f"chain of {request.module.__name__}")


@pytest.fixture(scope="module")
def zoo_product(dev_chain: DevChain, regression_bundle: Bundle) -> DevModel:
    """The regression MLP registered on this module's chain, with a product on its output."""
    threshold = round(ZOO_PAYS_AT_LEAST * (1 << regression_bundle.output_scale))
    return dev_chain.add_model(
        regression_bundle, ZOO_MODEL, comparison=AT_LEAST, output=0, threshold=threshold
    )


class RecordingClient(TestClient):
    """A TestClient whose every response goes to the privacy ledger."""

    def __init__(self, app: Any, ledger: PrivacyLedger) -> None:
        super().__init__(app, raise_server_exceptions=False)
        self.ledger = ledger

    def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        response = super().request(*args, **kwargs)
        self.ledger.add_response(response)
        return response


MakeRelay = Callable[..., Relay]


@pytest.fixture
def make_relay(
    node: Anvil,
    dev_chain: DevChain,
    hospital: LocalAccount,
    nullifier_secret: str,
    relay_models: dict[tuple[str, int], ServedModel],
    prover_pool: LocalProverPool,
    relay_log: Path,
    ledger: PrivacyLedger,
    tmp_path: Path,
) -> Iterator[MakeRelay]:
    """Build and start an in-process relay with a fresh, funded submitter key.

    ``models=`` replaces the session's two models; the relay then runs its own prover pool
    (``workers`` processes), unless ``worker=`` is given too. ``store_dsn=`` puts the job store
    on PostgreSQL (instances on one DSN share it: give them the same ``data_key=`` too).
    """
    relays: list[Relay] = []

    def make(
        *,
        process: bool = True,
        fund: int = 10**19,
        rpc_urls: list[str] | None = None,
        models: dict[tuple[str, int], ServedModel] | None = None,
        worker: ProverWorker | None = None,
        **kw: Any,
    ) -> Relay:
        submitter: LocalAccount = Account.create()
        ledger.add_secret("submitter key", submitter.key.hex())
        data_key = kw.pop("data_key", None) or secrets.token_hex(32)  # shared by instances
        ledger.add_secret("data key", data_key)
        if fund:
            dev_chain.set_balance(submitter.address, fund)
        options: dict[str, Any] = {
            "workers": 2,
            "confirmations": 2,
            "poll_interval_s": 0.05,
            "stuck_timeout_s": 30.0,
            **kw,
        }
        settings = RelaySettings(
            rpc_urls=rpc_urls or [node.url],
            settlement=dev_chain.settlement.address,
            hospital_key=KeyConfig(keystore=tmp_path / "unused-hospital.json"),
            submitter_key=KeyConfig(keystore=tmp_path / "unused-submitter.json"),
            nullifier_secret=nullifier_secret,
            data_key=data_key,
            data_dir=tmp_path / f"relay-{len(relays)}",
            **options,
        )
        relay = Relay(
            settings,
            keys=RelayKeys(hospital, submitter),
            worker=worker if models is not None else prover_pool,
            models=models or relay_models,
        )
        relay.start(process=process)
        relays.append(relay)
        return relay

    yield make
    for relay in relays:
        if relay.started:
            relay.stop()
        ledger.add_path("job store", relay.settings.data_dir)


@pytest.fixture
def client_for(ledger: PrivacyLedger) -> Callable[..., RecordingClient]:
    """A TestClient of the relay's app authenticated as a new client with ``scopes`` (default
    all three); ``token=None`` sends no token."""

    def make(relay: Relay, *scopes: Scope, token: str | None | bool = True) -> RecordingClient:
        client = RecordingClient(create_app(relay, manage_relay=False), ledger)
        if token is True:
            token = token_for(relay, *(scopes or tuple(Scope)))
        if isinstance(token, str):
            ledger.add_secret("client token", token)
            client.headers["Authorization"] = f"Bearer {token}"
        return client

    return make
