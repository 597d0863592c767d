"""Patient input at rest: AES-256-GCM, bound to its job id, deleted once the job is proved.

The relay must keep a job's features and salt until the proof exists (a crash must not lose the
job), but never in the clear: :class:`Sealer` encrypts them with a 256-bit data key (from the
environment, or a ``0600`` key file outside ``data_dir``: see
:func:`prover.relay.service.load_data_key`) and the job id as associated data, so a sealed blob
cannot be moved to another job.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from Crypto.Cipher import AES

from prover.exceptions import SealedDataError

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
VERSION = b"\x01"


class Sealer:
    """Encrypts and decrypts one job's patient input."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"data key must be {KEY_BYTES} bytes, got {len(key)}")
        self._key = key

    def __repr__(self) -> str:
        return "Sealer(key=<redacted>)"

    @classmethod
    def from_key_file(cls, path: Path) -> Sealer:
        """Load the key file, creating it (random key, mode 0600) if it does not exist."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(bytes.fromhex(path.read_text().strip()))
        key = secrets.token_bytes(KEY_BYTES)
        with os.fdopen(fd, "w") as fh:
            fh.write(key.hex() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return cls(key)

    def seal(self, job_id: str, features: Sequence[float], salt: Sequence[int]) -> bytes:
        """``version || nonce || ciphertext || tag`` of the JSON-encoded input."""
        plain = json.dumps({"f": [float(v) for v in features], "s": [int(v) for v in salt]})
        nonce = secrets.token_bytes(NONCE_BYTES)
        cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce)
        cipher.update(VERSION + job_id.encode())
        body, tag = cipher.encrypt_and_digest(plain.encode())
        return VERSION + nonce + body + tag

    def open(self, job_id: str, blob: bytes) -> tuple[tuple[float, ...], tuple[int, ...]]:
        """Decrypt and authenticate; :class:`SealedDataError` if the key or blob is wrong."""
        if len(blob) < 1 + NONCE_BYTES + TAG_BYTES or blob[:1] != VERSION:
            raise SealedDataError(job_id)
        nonce = blob[1 : 1 + NONCE_BYTES]
        body, tag = blob[1 + NONCE_BYTES : -TAG_BYTES], blob[-TAG_BYTES:]
        cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce)
        cipher.update(VERSION + job_id.encode())
        try:
            data = json.loads(cipher.decrypt_and_verify(body, tag))
        except (ValueError, KeyError) as exc:
            raise SealedDataError(job_id) from exc
        return tuple(float(v) for v in data["f"]), tuple(int(v) for v in data["s"])
