"""What the relay and its remote provers share: bundle content hashes, sealing, the broker schema.

Task payloads are sealed with a libsodium ``SealedBox`` (X25519 + XSalsa20-Poly1305) to the
provers' public key. Public-key sealing, not a shared AEAD key, because the relay then holds no
key that opens a task: only prover hosts (which need the patient values to prove) hold the
private key, and a relay host, a database administrator or a backup of the broker sees
ciphertext only. The sealed plaintext names its task id, so a payload moved to another task is
refused by the prover.

The broker is Procrastinate's schema plus two tables of ours: ``zkcare_engine_bundles`` (the
bundles a relay serves, by content hash, and the public key it seals for: a prover checks
itself against it at start) and ``zkcare_engine_results`` (one row per task, first result
wins). Neither holds a feature value, salt or record id.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from prover.exceptions import EngineConfigError, SealedTaskError

#: The Procrastinate task the relay defers and provers run.
TASK_NAME = "zkcare.prove"
QUEUE_PREFIX = "zk-"  # PostgreSQL channel names (Procrastinate's prefix + queue) stop at 63
RESULTS_TABLE = "zkcare_engine_results"
BUNDLES_TABLE = "zkcare_engine_bundles"
#: NOTIFY channel a prover signals a new result on (payload: the task id only).
RESULTS_CHANNEL = "zkcare_engine_results"
#: ``pg_advisory_xact_lock`` key serialising schema creation between relay and provers.
_SCHEMA_LOCK = 0x7A6B_6361_7265  # "zkcare"
PAYLOAD_VERSION = 1

SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS {BUNDLES_TABLE} (
    bundle_hash text PRIMARY KEY,
    model text NOT NULL,
    public_key text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {RESULTS_TABLE} (
    task_id text PRIMARY KEY,
    bundle_hash text NOT NULL,
    ok boolean NOT NULL,
    proof bytea,
    instances jsonb,
    seconds double precision,
    started_at double precision,
    worker text NOT NULL,
    reason text,
    permanent boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS {RESULTS_TABLE}_created_at ON {RESULTS_TABLE} (created_at);
"""


def bundle_content_hash(path: Path) -> str:
    """SHA-256 over ``manifest.json`` and every file it lists (names and bytes), hex."""
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise EngineConfigError(f"{path}: not a circuit bundle (no manifest.json)")
    names = ["manifest.json", *sorted(json.loads(manifest_path.read_text())["files"])]
    outer = hashlib.sha256()
    for name in names:
        inner = hashlib.sha256()
        try:
            with (path / name).open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    inner.update(chunk)
        except FileNotFoundError:
            raise EngineConfigError(f"{path}: {name} is missing") from None
        outer.update(f"{name}\0{inner.hexdigest()}\n".encode())
    return outer.hexdigest()


def queue_for(bundle_hash: str) -> str:
    """The Procrastinate queue of one bundle (only provers holding it listen there): 128 bits."""
    return QUEUE_PREFIX + bundle_hash[:32]


# ------------------------------------------------------------------------------- keys, sealing


def write_key_file(path: Path) -> str:
    """Create a prover key file (mode 0600, never overwritten); returns the public key (hex)."""
    key = PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise EngineConfigError(f"{path} exists; not overwriting a prover key") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(bytes(key).hex() + "\n")
    return bytes(key.public_key).hex()


def read_key_file(path: Path) -> PrivateKey:
    """A prover private key (64 hex characters) from ``path``."""
    try:
        text = path.read_text().strip()
        return PrivateKey(bytes.fromhex(text))
    except FileNotFoundError:
        raise EngineConfigError(f"prover key {path} does not exist") from None
    except (ValueError, TypeError):
        raise EngineConfigError(f"prover key {path} is not 32 bytes of hex") from None


def parse_public_key(text: str) -> PublicKey:
    """The provers' X25519 public key from 64 hex characters."""
    try:
        raw = bytes.fromhex(text.strip().removeprefix("0x"))
        if len(raw) != 32:
            raise ValueError
        return PublicKey(raw)
    except ValueError:
        raise EngineConfigError("engine public key must be 32 bytes of hex") from None


@dataclass(frozen=True)
class TaskPayload:
    """What a prover needs for one proof. Patient data: never log ``features``/``salt``."""

    task_id: str
    job_id: str
    bundle_hash: str
    features: tuple[float, ...]
    salt: tuple[int, ...]

    def __repr__(self) -> str:
        return f"TaskPayload(task_id={self.task_id!r}, bundle={self.bundle_hash[:12]}…)"


def seal_task(key: PublicKey, payload: TaskPayload) -> str:
    """Base64 of the payload sealed to the provers' public key (random ephemeral key each time)."""
    plain = json.dumps(
        {
            "v": PAYLOAD_VERSION,
            "task": payload.task_id,
            "job": payload.job_id,
            "bundle": payload.bundle_hash,
            "f": [float(v) for v in payload.features],
            "s": [int(v) for v in payload.salt],
            "pad": secrets.token_hex(8),
        }
    ).encode()
    return base64.b64encode(SealedBox(key).encrypt(plain)).decode()


def open_task(key: PrivateKey, task_id: str, sealed: str) -> TaskPayload:
    """Open and check a sealed payload; :class:`SealedTaskError` if it is not for ``task_id``."""
    try:
        data: dict[str, Any] = json.loads(SealedBox(key).decrypt(base64.b64decode(sealed)))
    except (CryptoError, ValueError, TypeError):
        raise SealedTaskError(task_id, "does not open with this prover's key") from None
    if data.get("v") != PAYLOAD_VERSION or data.get("task") != task_id:
        raise SealedTaskError(task_id, "was sealed for another task")
    return TaskPayload(
        task_id=task_id,
        job_id=str(data["job"]),
        bundle_hash=str(data["bundle"]),
        features=tuple(float(v) for v in data["f"]),
        salt=tuple(int(v) for v in data["s"]),
    )


def instances_json(instances: Sequence[int]) -> str:
    """Public instances as a JSON list of decimal strings (field elements exceed 64 bits)."""
    return json.dumps([str(int(v)) for v in instances])


def schema_statements() -> list[str]:
    """Our tables' DDL, one statement each."""
    return [s.strip() for s in SCHEMA_SQL.split(";") if s.strip()]


async def ensure_schema(dsn: str) -> None:
    """Create Procrastinate's schema and our tables once (serialised by an advisory lock)."""
    import procrastinate
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            row = await (await conn.execute("SELECT to_regclass('procrastinate_jobs')")).fetchone()
            if row is None or row[0] is None:
                schema = procrastinate.schema.SchemaManager.get_schema()
                await conn.execute(schema.encode())
            for statement in schema_statements():
                await conn.execute(statement.encode())
