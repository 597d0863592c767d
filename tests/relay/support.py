"""Helpers for the relay tests: patient records, a TCP proxy, a relay subprocess, privacy scans."""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests
import uvicorn

from prover.anvil import free_port
from prover.models.breast_cancer import (
    DIAGNOSTIC_MODEL,
    float_logits,
    load_dataset,
    load_preprocessor,
)
from prover.models.build import LoadedModel
from prover.models.card import ranges_from
from prover.models.preprocess import Preprocessor
from prover.relay.api import create_app, server_options
from prover.zk.commitment import KZG_SALT_LIMBS
from prover.zk.fields import BN254_R

ROOT = Path(__file__).resolve().parents[2]
MODEL = "breast_cancer_lr"
#: The test zoo's regression MLP (10 standardized features, negatives allowed; 1 output).
ZOO_MODEL = "diabetes_mlp"
#: Its dev-chain product pays when the predicted progression is at least this (about the median).
ZOO_PAYS_AT_LEAST = 140.0


# ------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Record:
    """A held-out patient, perturbed so every value is unique text (privacy scans)."""

    index: int
    features: list[float]
    salt: list[int] | None
    logit: float  # the float model's (first) output on the preprocessed record
    model: str = MODEL

    @property
    def pays(self) -> bool:
        """The diagnostic product pays when the logit is <= 0 (malignant)."""
        return self.logit <= 0


def _salt(rng: random.Random, i: int, every: int) -> list[int] | None:
    if every and i % every == 0:
        return [rng.randrange(1 << 23, 1 << 24) for _ in range(KZG_SALT_LIMBS)]
    return None


def _in_ranges(row: Any, ranges: list[tuple[float, float]]) -> bool:
    return all(lo <= float(v) <= hi for v, (lo, hi) in zip(row, ranges, strict=True))


def make_records(n: int, seed: int, *, client_salt_every: int = 2) -> list[Record]:
    """``n`` held-out patients (cycling), each value scaled by 1 + ~1e-9 noise.

    Patients outside the built-in card's ranges (calibration min/max widened by a quarter of
    the span; one of the 114) are skipped: the relay refuses them with a 422.
    """
    rng = random.Random(seed)
    ds = load_dataset()
    pre = load_preprocessor()
    ranges = ranges_from(ds.x_train)
    usable = [i for i, row in enumerate(ds.x_test) if _in_ranges(row, ranges)]
    out = []
    for i in range(n):
        idx = usable[(seed * 7 + i) % len(usable)]
        feats = [float(v) * (1 + rng.uniform(1e-9, 9e-9)) if v else 0.0 for v in ds.x_test[idx]]
        z = np.array([pre.transform(feats)])
        logit = float(float_logits(DIAGNOSTIC_MODEL, z)[0])
        out.append(Record(idx, feats, _salt(rng, i, client_salt_every), logit))
    return out


def float_outputs(model: LoadedModel, features: list[float]) -> list[float]:
    """The float model's outputs (the bundle's ``source.onnx``) on a raw record."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(
        str(model.bundle.path / "source.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    card = model.card
    x = np.asarray(model.preprocessor.transform(features), dtype=np.float32)
    values = session.run(None, {card.input.name: x.reshape(card.input.shape)})
    return [float(v) for out in values for v in np.ravel(out)]


def make_model_records(
    name: str,
    model: LoadedModel,
    rows: np.ndarray,
    n: int,
    seed: int,
    *,
    client_salt_every: int = 2,
) -> list[Record]:
    """``n`` records of any model (its held-out ``rows``, cycling, within the card's ranges),
    perturbed like :func:`make_records`; ``logit`` is the float model's first output."""
    rng = random.Random(seed)
    usable = [i for i, row in enumerate(rows) if _in_ranges(row, model.card.input.ranges)]
    out = []
    for i in range(n):
        idx = usable[(seed * 7 + i) % len(usable)]
        feats = [float(v) * (1 + rng.uniform(1e-9, 9e-9)) if v else 0.0 for v in rows[idx]]
        first = float_outputs(model, feats)[0]
        out.append(Record(idx, feats, _salt(rng, i, client_salt_every), first, name))
    return out


def job_body(record: Record, policy_id: int, key: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of a claim job."""
    body: dict[str, Any] = {
        "idempotency_key": key,
        "policy_id": policy_id,
        "model": record.model,
        "model_version": 1,
        "record_id": f"MRN-{key}",
        "features": record.features,
    }
    if record.salt is not None:
        body["salt"] = record.salt
    body.update(extra)
    return body


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.1) -> Any:
    """Poll ``predicate`` until truthy; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def token_for(relay: Any, *scopes: Any, name: str | None = None) -> str:
    """A new client of ``relay`` with ``scopes`` (default: all three); its token."""
    from prover.relay.auth import Scope

    chosen = scopes or tuple(Scope)
    _client, token = relay.store.create_client(name or f"test-{secrets.token_hex(4)}", chosen)
    return str(token)


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of ``token``."""
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def served(relay: Any, **options: Any) -> Iterator[str]:
    """The relay's app behind a real uvicorn server (threads, chunked bodies); ``options`` go
    to ``uvicorn.Config`` after the relay's own (:func:`prover.relay.api.server_options`)."""
    port = free_port()
    config = uvicorn.Config(
        create_app(relay, manage_relay=False),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        **{**server_options(relay.settings), **options},
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = 200
    while not server.started and deadline:
        thread.join(0.05)
        deadline -= 1
    assert server.started
    scheme = "https" if relay.settings.tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


# ------------------------------------------------------------------------------- proxy


class TcpProxy:
    """A loopback TCP proxy that can be taken down and brought back on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            listener.close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


# ------------------------------------------------------------------------------- subprocess


@dataclass
class RelayProcess:
    """``python -m prover.relay serve`` as a subprocess (for kill -9 tests)."""

    config: Path
    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    exits: list[int] = field(default_factory=list)
    token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header of :attr:`token` (see :meth:`add_client`)."""
        return bearer(self.token)

    def add_client(self, db: Path) -> str:
        """Create an all-scopes client in the job store at ``db`` (before the relay starts, or
        while it runs, as ``clients create`` does); its token is :attr:`token`."""
        from prover.relay.auth import Scope
        from prover.relay.store import JobStore

        store = JobStore(db)
        try:
            _client, self.token = store.create_client(f"proc-{secrets.token_hex(4)}", list(Scope))
        finally:
            store.close()
        return self.token

    def start(self, crash_at: str | None = None) -> RelayProcess:
        env = {**os.environ, **self.env}
        env.pop("ZKCARE_RELAY_CRASH_AT", None)
        if crash_at:
            env["ZKCARE_RELAY_CRASH_AT"] = crash_at
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start (crash_at={crash_at}) ===\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "prover.relay",
                    "serve",
                    "--config",
                    str(self.config),
                    "--port",
                    str(self.port),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if not self.alive:
                raise AssertionError(
                    f"relay exited ({self.proc.returncode if self.proc else None})"
                    f"; log: {self.tail()}"
                )
            try:
                return requests.get(self.url + "/livez", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, timeout, "the relay to serve", poll=0.1)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self.exits.append(code)
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        if self.alive:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.wait_exit(30)

    def terminate(self) -> None:
        if self.proc is not None and self.alive:
            self.proc.terminate()
            try:
                self.wait_exit(30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]


def store_rows(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """Read the relay's job store (another process may be writing it)."""
    conn = sqlite3.connect(db, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql, args))
    finally:
        conn.close()


def state_counts(db: Path) -> dict[str, int]:
    if not db.exists():
        return {}
    try:
        rows = store_rows(db, "SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
    except sqlite3.OperationalError:
        return {}
    return {r["state"]: r["n"] for r in rows}


# ------------------------------------------------------------------------------- privacy


def _felt_bytes(value: int) -> list[bytes]:
    felt = value % BN254_R
    return [felt.to_bytes(32, "little"), felt.to_bytes(32, "big")]


_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")


@dataclass
class Needles:
    """The encodings of one patient's data the relay or its tools could produce."""

    label: str
    texts: set[str]
    blobs: set[bytes]


def record_needles(record: Record, pre: Preprocessor, input_scale: int) -> Needles:
    """Text (decimal float64/float32 of raw and preprocessed values, salt limbs) and binary
    (IEEE-754 either endianness, EZKL's quantized felts at the bundle's input scale) encodings of
    one record, preprocessed with its model's own preprocessing."""
    texts: set[str] = set()
    blobs: set[bytes] = set()
    for value, z in zip(record.features, pre.transform(record.features), strict=True):
        if value == 0.0:
            continue  # zero is not identifying (and appears everywhere)
        for number in (value, z):
            texts.add(repr(number))
            texts.add(repr(float(np.float32(number))))
            for fmt in ("<d", ">d"):
                blobs.add(struct.pack(fmt, number))
        q = round(z * (1 << input_scale))
        # Small positive felts are mostly zero bytes, and r - 1 ... r - 15 are constants (the
        # generated verifiers' bytecode holds r - 1): neither is identifying. At the input
        # scales the tuner picks (2^4 for both models here) q <= -16 is a value below -1.
        if q <= -16:
            blobs.update(_felt_bytes(q))
    for limb in record.salt or []:
        # As text only. As a field element a limb is < 2^31: 28 zero bytes and 4 others, like a
        # small positive felt above, and such patterns occur by chance in binary files (a
        # SQLite interior page's zeroed free space followed by a child page number and a rowid
        # varint once matched one). Witness dumps are still caught by the features' felts.
        texts.add(str(limb))
    texts = {t for t in texts if len(t.lstrip("-")) >= 6}
    return Needles(f"patient #{record.index}", texts, blobs)


class BlobIndex:
    """Finds any of many byte strings (>= 8 bytes) in large buffers, vectorized with numpy.

    Each needle is keyed by its most varied 8-byte chunk; a buffer is viewed as uint64 words at
    the 8 alignments, words are matched against the keys with ``np.isin`` and every hit is
    verified against the full needle.
    """

    def __init__(self, needles: dict[bytes, str]) -> None:
        self.by_key: dict[int, list[tuple[bytes, int, str]]] = {}
        for needle, label in needles.items():
            k = max(range(0, len(needle) - 7), key=lambda i: len(set(needle[i : i + 8])))
            key = int.from_bytes(needle[k : k + 8], "little")
            self.by_key.setdefault(key, []).append((needle, k, label))
        self.keys = np.array(sorted(self.by_key), dtype=np.uint64)

    def find(self, raw: bytes) -> list[tuple[str, bytes]]:
        hits = []
        for offset in range(8):
            n = (len(raw) - offset) // 8
            if n <= 0:
                break
            words = np.frombuffer(raw, dtype="<u8", count=n, offset=offset)
            for index in np.nonzero(np.isin(words, self.keys))[0]:
                pos = offset + 8 * int(index)
                for needle, k, label in self.by_key[int(words[index])]:
                    if raw[pos - k : pos - k + len(needle)] == needle:
                        hits.append((label, needle))
        return hits


def _hex_decoded(text: str) -> bytes:
    """Every long hex run of ``text`` decoded at both nibble alignments, concatenated."""
    out = bytearray()
    for match in _HEX_RUN.finditer(text):
        run = match.group()
        for start in (0, 1):
            part = run[start:]
            out += bytes.fromhex(part[: len(part) // 2 * 2]) + b"\xff" * 8
    return bytes(out)


@dataclass
class PrivacyLedger:
    """Everything a test run produced that could leak: logs, responses, stores, chain data."""

    records: list[Record] = field(default_factory=list)
    #: model name -> (its bundle's own preprocessing, its bundle's input scale)
    models: dict[str, tuple[Preprocessor, int]] = field(default_factory=dict)
    texts: list[tuple[str, str]] = field(default_factory=list)
    paths: list[tuple[str, Path]] = field(default_factory=list)
    blobs: list[tuple[str, bytes]] = field(default_factory=list)
    secrets: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_model(self, name: str, model: LoadedModel) -> None:
        """How ``name``'s records are encoded (its bundle's preprocessing and input scale)."""
        with self.lock:
            self.models[name] = (model.preprocessor, model.bundle.input_scale)

    def add_records(self, records: Iterable[Record]) -> None:
        with self.lock:
            self.records.extend(records)

    def add_text(self, where: str, text: str) -> None:
        with self.lock:
            self.texts.append((where, text))

    def add_path(self, where: str, path: Path) -> None:
        with self.lock:
            self.paths.append((where, path))

    def add_blob(self, where: str, blob: bytes) -> None:
        with self.lock:
            self.blobs.append((where, blob))

    def add_secret(self, label: str, value: str) -> None:
        with self.lock:
            self.secrets.append((label, value))

    def add_response(self, response: Any) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.add_text(f"HTTP {response.status_code} {response.url}", headers + "\n" + response.text)

    def collect_chain(self, w3: Any, where: str) -> int:
        """Every transaction's calldata and every log's topics and data on ``w3``'s chain."""
        count = 0
        for number in range(int(w3.eth.block_number) + 1):
            block = w3.eth.get_block(number, full_transactions=True)
            for tx in block["transactions"]:
                self.add_blob(f"{where} tx {tx['hash'].to_0x_hex()} input", bytes(tx["input"]))
                receipt = w3.eth.get_transaction_receipt(tx["hash"])
                for entry in receipt["logs"]:
                    blob = b"".join(bytes(t) for t in entry["topics"]) + bytes(entry["data"])
                    self.add_blob(f"{where} log in {tx['hash'].to_0x_hex()}", blob)
                count += 1
        return count

    def _sources(self) -> Iterator[tuple[str, str, bytes]]:
        for where, text in self.texts:
            yield where, text, text.encode() + b"\xff" * 8 + _hex_decoded(text)
        for where, blob in self.blobs:
            yield where, blob.decode("latin-1"), blob
        for where, path in self.paths:
            if not path.exists():
                continue
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            for file in files:
                raw = file.read_bytes()
                text = raw.decode("latin-1")
                yield f"{where}: {file.name}", text, raw + b"\xff" * 8 + _hex_decoded(text)

    def scan(self) -> list[str]:
        """Findings: ``where: what`` for every needle found anywhere."""
        text_needles: dict[str, str] = {}
        blob_needles: dict[bytes, str] = {}
        for record in self.records:
            needles = record_needles(record, *self.models[record.model])
            text_needles.update(dict.fromkeys(needles.texts, needles.label))
            blob_needles.update(dict.fromkeys(needles.blobs, needles.label))
        index = BlobIndex(blob_needles) if blob_needles else None
        findings = []
        for where, text, raw in self._sources():
            tokens = set(_NUMBER.findall(text))
            tokens |= {t.lstrip("-") for t in tokens}
            for token in tokens & set(text_needles):
                findings.append(f"{where}: {text_needles[token]} as text {token!r}")
            if index is not None:
                for label, needle in index.find(raw):
                    findings.append(f"{where}: {label} as bytes {needle.hex()}")
            lowered = text.lower()
            for label, secret in self.secrets:
                if secret and secret.lower() in lowered:
                    findings.append(f"{where}: secret {label}")
        return findings

    def source_count(self) -> int:
        return len(self.texts) + len(self.blobs) + len(self.paths)


def encrypt_key(key: bytes, passphrase: str, path: Path) -> Path:
    """Write an eth-account keystore (cheap scrypt parameters: tests only)."""
    from eth_account import Account

    path.write_text(json.dumps(Account.encrypt(key, passphrase, kdf="scrypt", iterations=2**10)))
    return path


def schema_before_instances(schema: str) -> str:
    """The schema as relays before several instances (version 4) wrote it."""
    out = schema.replace("    client_id TEXT,\n    claimed_by TEXT\n", "    client_id TEXT\n")
    out = out.split("CREATE TABLE IF NOT EXISTS relay_instances")[0]
    out = (  # the batch links (version 6) come from SCHEMA too
        out[: out.index("CREATE TABLE IF NOT EXISTS attempt_jobs")]
        + out[out.index("CREATE TABLE IF NOT EXISTS transitions") :]
    )
    assert (
        "claimed_by" not in out
        and "attempt_jobs" not in out
        and "relay_instances" not in out
        and "audit" in out
    )
    return out
