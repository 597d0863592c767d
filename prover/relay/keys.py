"""Signing keys from encrypted keystores (eth-account) or ape account aliases.

Passphrases come from the environment (``ZKCARE_RELAY_<ROLE>_KEY__PASSPHRASE``; for an ape alias
ape's own ``APE_ACCOUNTS_<alias>_PASSPHRASE`` works too). Errors name the file and the variable,
never the passphrase or key.

:func:`new_keystore` and :func:`new_secret` write the files the relay reads (``python -m
prover.relay keys …``): an eth-account v3 keystore (the format ape accounts use too) and a hex
nullifier secret, each created ``0600`` and never over an existing file.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from prover.exceptions import KeyFileExists, KeyLoadError, RelayConfigError
from prover.relay.settings import ENV_PREFIX, KeyConfig, RelaySettings

#: Bytes of a new nullifier secret (the relay requires at least 32).
SECRET_BYTES = 32


def ape_data_folder() -> Path:
    """Where ape keeps its data (``$APE_DATA_FOLDER`` or ``~/.ape``)."""
    return Path(os.environ.get("APE_DATA_FOLDER") or Path.home() / ".ape")


def ape_keyfile(alias: str) -> Path:
    """The keystore file of ape account ``alias``."""
    return ape_data_folder() / "accounts" / f"{alias}.json"


def load_account(role: str, config: KeyConfig) -> LocalAccount:
    """Decrypt the keystore ``config`` names; :class:`KeyLoadError` on any problem."""
    env = f"{ENV_PREFIX}{role.upper()}_KEY__PASSPHRASE"
    if config.keystore is not None:
        path = config.keystore
    else:
        assert config.ape_alias is not None  # KeyConfig guarantees one source
        path = ape_keyfile(config.ape_alias)
    passphrase = config.passphrase.get_secret_value() if config.passphrase else None
    if passphrase is None and config.ape_alias is not None:
        passphrase = os.environ.get(f"APE_ACCOUNTS_{config.ape_alias}_PASSPHRASE")
    if not path.is_file():
        what = f"ape account {config.ape_alias!r}" if config.ape_alias else "keystore"
        raise KeyLoadError(role, f"{what}: {path} does not exist")
    if passphrase is None:
        raise KeyLoadError(role, f"no passphrase for {path}: set {env}")
    try:
        keyfile = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise KeyLoadError(role, f"{path} is not a keystore file ({type(exc).__name__})") from None
    try:
        key = Account.decrypt(keyfile, passphrase)
    except (ValueError, KeyError, TypeError):
        raise KeyLoadError(
            role, f"cannot decrypt {path}: wrong passphrase in {env} or corrupt keystore"
        ) from None
    return Account.from_key(key)


@dataclass(frozen=True)
class RelayKeys:
    """The hospital's attestation key and the submitter's transaction key."""

    hospital: LocalAccount
    submitter: LocalAccount

    def __repr__(self) -> str:
        return f"RelayKeys(hospital={self.hospital.address}, submitter={self.submitter.address})"


def load_keys(settings: RelaySettings) -> RelayKeys:
    """Both keys, or :class:`RelayConfigError` with one line per key that failed."""
    problems: list[str] = []
    loaded: dict[str, LocalAccount] = {}
    for role, config in (
        ("hospital", settings.hospital_key),
        ("submitter", settings.submitter_key),
    ):
        try:
            loaded[role] = load_account(role, config)
        except KeyLoadError as exc:
            problems.append(str(exc))
    if problems:
        raise RelayConfigError(problems)
    return RelayKeys(loaded["hospital"], loaded["submitter"])


def write_private(path: Path, text: str) -> None:
    """Create ``path`` with ``text``, mode ``0600``; :class:`KeyFileExists` if it exists.

    The file is written next to ``path`` and hard-linked into place, so it appears complete or
    not at all and an existing file is never replaced, even by a concurrent writer.
    """
    if path.exists() or path.is_symlink():
        raise KeyFileExists(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise KeyFileExists(path) from None
    finally:
        os.unlink(tmp)


def new_keystore(path: Path, passphrase: str) -> str:
    """Write a fresh key as an encrypted keystore at ``path`` (``0600``); its address.

    The relay decrypts it with the passphrase in ``ZKCARE_RELAY_<ROLE>_KEY__PASSPHRASE``.
    """
    if not passphrase:
        raise ValueError("the passphrase is empty")
    account: LocalAccount = Account.create()
    keyfile = Account.encrypt(account.key, passphrase)
    write_private(path, json.dumps(keyfile) + "\n")
    return str(account.address)


def new_secret(path: Path) -> None:
    """Write a fresh nullifier secret (32 random bytes, hex) at ``path`` (``0600``).

    The relay reads it from ``ZKCARE_RELAY_NULLIFIER_SECRET`` (``"$(cat PATH)"``).
    """
    write_private(path, secrets.token_hex(SECRET_BYTES) + "\n")


def keystore_address(path: Path) -> str:
    """The address a keystore file declares (no decryption); :class:`KeyLoadError` if none."""
    try:
        declared = json.loads(path.read_text()).get("address")
    except (OSError, ValueError, AttributeError) as exc:
        raise KeyLoadError(
            "keystore", f"{path} is not a keystore file ({type(exc).__name__})"
        ) from None
    if not isinstance(declared, str):
        raise KeyLoadError("keystore", f"{path} does not name its address")
    return str(to_checksum_address(declared if declared.startswith("0x") else "0x" + declared))
