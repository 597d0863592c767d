"""Signing keys from encrypted keystores (eth-account) or ape account aliases.

Passphrases come from the environment (``ZKCARE_RELAY_<ROLE>_KEY__PASSPHRASE``; for an ape alias
ape's own ``APE_ACCOUNTS_<alias>_PASSPHRASE`` works too). Errors name the file and the variable,
never the passphrase or key.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from prover.exceptions import KeyLoadError, RelayConfigError
from prover.relay.settings import ENV_PREFIX, KeyConfig, RelaySettings


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
