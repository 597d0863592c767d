"""The engine's parts without a chain: settings, sealing, a prover's refusals, a lost broker."""

from __future__ import annotations

import asyncio
import threading
import uuid

import psycopg
import pytest
from nacl.public import PrivateKey
from pgcluster import free_port
from pydantic import ValidationError

from prover.exceptions import EngineConfigError, EngineUnavailable, SealedTaskError
from prover.relay.engine import EngineProverWorker, EngineSettings
from prover.relay.engine_common import (
    RESULTS_TABLE,
    TaskPayload,
    bundle_content_hash,
    open_task,
    parse_public_key,
    queue_for,
    read_key_file,
    seal_task,
    write_key_file,
)
from prover.relay.engine_prover import Prover, held_bundles
from prover.relay.worker import ModelRef

FEATURES = (17.99, 10.38, 122.8)
SALT = (11, 22, 33, 44, 55, 66)


def _payload(task_id: str, bundle_hash: str = "ab" * 32) -> TaskPayload:
    return TaskPayload(task_id, "job-1", bundle_hash, FEATURES, SALT)


def test_sealed_tasks_open_only_with_the_provers_key_and_only_for_their_task(tmp_path):
    public = write_key_file(tmp_path / "prover.key")
    key = read_key_file(tmp_path / "prover.key")
    assert (tmp_path / "prover.key").stat().st_mode & 0o777 == 0o600
    sealed = seal_task(parse_public_key(public), _payload("t1"))
    assert "17.99" not in sealed and sealed != seal_task(key.public_key, _payload("t1"))
    opened = open_task(key, "t1", sealed)
    assert (opened.job_id, opened.features, opened.salt) == ("job-1", FEATURES, SALT)
    assert "17.99" not in repr(opened)
    with pytest.raises(SealedTaskError, match="task t2: sealed payload was sealed for another"):
        open_task(key, "t2", sealed)  # moved to another task by someone with broker access
    with pytest.raises(SealedTaskError, match="does not open with this prover's key"):
        open_task(PrivateKey.generate(), "t1", sealed)
    with pytest.raises(EngineConfigError, match="exists; not overwriting a prover key"):
        write_key_file(tmp_path / "prover.key")


def test_engine_settings_refuse_a_bad_public_key_in_one_line():
    with pytest.raises(ValidationError, match="engine public key must be 32 bytes of hex"):
        EngineSettings(dsn="host=127.0.0.1", public_key="not-a-key")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        EngineSettings(dsn="host=127.0.0.1", public_key="00" * 32, queue="mine")


def test_bundle_hash_covers_every_file_and_names_the_queue(diagnostic_bundle, tmp_path):
    import shutil

    copy = tmp_path / diagnostic_bundle.path.name
    shutil.copytree(diagnostic_bundle.path, copy)
    original = bundle_content_hash(diagnostic_bundle.path)
    assert bundle_content_hash(copy) == original
    (copy / "sample_proof.json").write_text((copy / "sample_proof.json").read_text() + " ")
    assert bundle_content_hash(copy) != original
    assert len(f"procrastinate_queue_v1#{queue_for(original)}") <= 63  # NOTIFY channel limit
    assert list(held_bundles(tmp_path)) == [bundle_content_hash(copy)]
    (copy / "pk.key").unlink()
    with pytest.raises(EngineConfigError, match="pk.key is missing"):
        bundle_content_hash(copy)


def test_a_prover_refuses_a_task_for_a_bundle_it_does_not_hold_or_sealed_for_another_key(
    engine_pg, diagnostic_bundle, tmp_path
):
    from prover.relay.engine_common import ensure_schema

    asyncio.run(ensure_schema(engine_pg.dsn))
    public = write_key_file(tmp_path / "prover.key")
    key = read_key_file(tmp_path / "prover.key")
    held = held_bundles(diagnostic_bundle.path)
    prover = Prover(engine_pg.dsn, held, tmp_path / "prover.key", 1, tmp_path / "work")
    not_held, foreign = uuid.uuid4().hex, uuid.uuid4().hex

    async def run() -> None:
        await prover.prove(not_held, seal_task(key.public_key, _payload(not_held, "cd" * 32)))
        other = PrivateKey.generate().public_key
        await prover.prove(foreign, seal_task(other, _payload(foreign, next(iter(held)))))
        await prover._conn.close()

    try:
        asyncio.run(run())
    finally:
        prover.close()
    assert bytes(key.public_key).hex() == public
    with psycopg.connect(engine_pg.dsn) as conn:
        rows = dict(
            conn.execute(
                f"SELECT task_id, reason FROM {RESULTS_TABLE} WHERE NOT ok AND NOT permanent"
            ).fetchall()
        )
    assert rows[not_held].startswith(f"bundle {'cd' * 8}… not held by prover ")
    assert rows[foreign] == f"task {foreign}: sealed payload does not open with this prover's key"


def test_an_unreachable_broker_is_one_line_without_the_dsn(diagnostic_bundle):
    dsn = f"host=127.0.0.1 port={free_port()} user=zkcare password=s3cret-pw connect_timeout=2"
    settings = EngineSettings(dsn=dsn, public_key="00" * 32)
    assert "s3cret-pw" not in repr(settings)
    with pytest.raises(EngineUnavailable) as caught:
        EngineProverWorker(settings, {"m": ModelRef("m", str(diagnostic_bundle.path))})
    assert not [t for t in threading.enumerate() if t.name == "engine"]  # no loop left behind
    message = str(caught.value)
    assert message.startswith("prover engine unavailable: OperationalError: ")
    assert "\n" not in message and "s3cret-pw" not in message


def test_the_engine_section_of_the_relay_settings(tmp_path, monkeypatch):
    from prover.exceptions import RelayConfigError
    from prover.relay.settings import load_settings

    monkeypatch.setenv("ZKCARE_RELAY_NULLIFIER_SECRET", "ab" * 32)
    monkeypatch.setenv("ZKCARE_RELAY_ENGINE__DSN", "host=db.internal user=relay password=pw9")
    path = tmp_path / "relay.toml"
    base = 'rpc_urls = ["http://127.0.0.1:8545"]\n'
    base += 'settlement = "0x5FbDB2315678afecb367f032d93F642f64180aa3"\n'
    base += 'hospital_key = { ape_alias = "h" }\nsubmitter_key = { ape_alias = "s" }\n'
    path.write_text(base + f'[engine]\npublic_key = "{"0a" * 32}"\nparallelism = 8\n')
    settings = load_settings(path)
    assert settings.engine is not None and settings.engine.parallelism == 8
    assert settings.engine.dsn.get_secret_value().endswith("password=pw9")
    assert "pw9" not in repr(settings)
    path.write_text(base + '[engine]\npublic_key = "0a"\n')
    with pytest.raises(RelayConfigError) as caught:
        load_settings(path)
    assert "engine.public_key (env ZKCARE_RELAY_ENGINE__PUBLIC_KEY): Value error, engine " in str(
        caught.value
    )


def test_the_relay_side_refuses_bad_records_before_queueing_and_prunes_old_results(
    engine_pg, engine_key, diagnostic_bundle
):
    from prover.exceptions import ProverFailed
    from prover.relay.worker import ProveTask

    worker = EngineProverWorker(
        EngineSettings(dsn=engine_pg.dsn, public_key=engine_key[1], results_retention_s=3600),
        {"m": ModelRef("m", str(diagnostic_bundle.path))},
    )
    try:
        short = worker.submit(ProveTask("job-short", "m", FEATURES, SALT))
        with pytest.raises(ProverFailed, match="takes 30 features, got 3") as caught:
            short.result(timeout=5)
        assert caught.value.permanent and "17.99" not in str(caught.value)
        unknown = worker.submit(ProveTask("job-x", "other", FEATURES, SALT))
        with pytest.raises(ProverFailed, match="model other not served"):
            unknown.result(timeout=5)
        with psycopg.connect(engine_pg.dsn, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone() == (0,)
            for task_id, age in (("old-result", "2 hours"), ("new-result", "1 minute")):
                conn.execute(
                    f"INSERT INTO {RESULTS_TABLE} (task_id, bundle_hash, ok, worker, created_at)"
                    " VALUES (%s, 'h', false, 'w', now() - %s::interval)",
                    (task_id, age),
                )
            assert worker._call(worker.prune_results(), timeout=10) == 1
            left = {r[0] for r in conn.execute(f"SELECT task_id FROM {RESULTS_TABLE}")}
        assert "old-result" not in left and "new-result" in left
    finally:
        worker.close()


def test_an_engine_relay_keeps_the_relays_data_key_rules(engine_models, engine_key, tmp_path):
    """The engine seals tasks to the provers' key; the relay still seals job inputs at rest
    with its data key, so an engine relay without one (or with one in data_dir) never starts."""
    from eth_account import Account

    from prover.exceptions import RelayError
    from prover.relay.keys import RelayKeys
    from prover.relay.service import Relay
    from prover.relay.settings import KeyConfig, RelaySettings

    base = {
        "rpc_urls": ["http://127.0.0.1:9"],
        "settlement": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "hospital_key": KeyConfig(keystore=tmp_path / "unused-hospital.json"),
        "submitter_key": KeyConfig(keystore=tmp_path / "unused-submitter.json"),
        "nullifier_secret": "11" * 32,
        "data_dir": tmp_path / "data",
        "engine": EngineSettings(dsn="host=127.0.0.1", public_key=engine_key[1]),
    }
    keys = RelayKeys(Account.create(), Account.create())
    with pytest.raises(RelayError, match="^no data key: set ZKCARE_RELAY_DATA_KEY"):
        Relay(RelaySettings(**base), keys=keys, models=engine_models)
    with pytest.raises(ValidationError, match="lies in data_dir"):
        RelaySettings(**base, data_key_file=tmp_path / "data" / "key")
    key_file = tmp_path / "data.key"
    key_file.write_text("5e" * 32)
    key_file.chmod(0o644)
    with pytest.raises(RelayError, match="is mode 0644; make it 0600"):
        Relay(RelaySettings(**base, data_key_file=key_file), keys=keys, models=engine_models)
    key_file.chmod(0o600)
    relay = Relay(RelaySettings(**base, data_key_file=key_file), keys=keys, models=engine_models)
    assert relay.settings.engine is not None and relay.sealer is not None
    relay.store.close()
