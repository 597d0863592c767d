"""The contracts the index watches: their ABIs (ape's compiled artifacts) and addresses.

ABIs are read from ape's build manifest (``.build/__local__.json``) without importing ape; if
it is missing, ape compiles the project (:func:`prover.relay.devchain.compiled`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_typing import ChecksumAddress
from eth_utils import event_abi_to_log_topic, to_checksum_address

from prover.exceptions import IndexConfigError
from prover.paths import ROOT

#: The contracts whose events are indexed, in the manifest's names.
WATCHED = ("ModelRegistry", "ClaimSettlement", "ResearchBounty")
#: Event fields never stored: the model's proved output (a patient's score). The claim events
#: carry none (``ClaimPaid(claimId, policyId, holder, amount)``, ``ClaimDenied(claimId,
#: policyId)``); this stays so that an output field in some other build is still never stored.
REDACTED: dict[str, frozenset[str]] = {
    "ClaimPaid": frozenset({"output"}),
    "ClaimDenied": frozenset({"output"}),
}
BUILD_MANIFEST = ROOT / ".build" / "__local__.json"


@cache
def abi_of(name: str) -> tuple[dict[str, Any], ...]:
    """A project contract's ABI from ape's build (compiled first if needed)."""
    if BUILD_MANIFEST.is_file():
        types = json.loads(BUILD_MANIFEST.read_text()).get("contractTypes", {})
        if name in types:
            return tuple(types[name]["abi"])
    from prover.relay.devchain import compiled

    abi, _ = compiled(name)
    return tuple(abi)


def events_of(name: str) -> dict[bytes, dict[str, Any]]:
    """``topic0 -> event ABI`` for every event of contract ``name``."""
    return {
        bytes(event_abi_to_log_topic(e)): e  # type: ignore[arg-type]
        for e in abi_of(name)
        if e.get("type") == "event"
    }


def model_names(manifest: Path) -> dict[str, str]:
    """``model id (0x hex, lower case) -> name`` from a manifest and zkcare's built-in names."""
    from eth_utils import keccak

    builtin = ("zkcare/breast_cancer_lr", "zkcare/bounty_eval")
    names = {"0x" + keccak(text=n).hex(): n for n in builtin}
    try:
        for name, entry in json.loads(manifest.read_text()).get("models", {}).items():
            names[str(entry["modelId"]).lower()] = str(name)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return names


@dataclass(frozen=True)
class Watched:
    """One deployment: its chain, contract addresses and the first block worth scanning."""

    chain_id: int
    addresses: dict[str, ChecksumAddress]  # contract name -> address
    start_block: int

    @classmethod
    def from_manifest(cls, path: Path) -> Watched:
        """Read ``deployments/<chain-id>.json`` (``ape run deploy all`` / ``deploy_all``)."""
        try:
            data = json.loads(path.read_text())
            contracts = data["contracts"]
            chain_id = int(data["chainId"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexConfigError(f"{path}: not a deployment manifest ({exc})") from exc
        addresses: dict[str, ChecksumAddress] = {}
        blocks: list[int] = []
        for name in WATCHED:
            entry = contracts.get(name)
            if not entry or not entry.get("address"):
                raise IndexConfigError(f"{path}: {name} is not recorded; run `ape run deploy all`")
            addresses[name] = to_checksum_address(entry["address"])
            if entry.get("blockNumber") is not None:
                blocks.append(int(entry["blockNumber"]))
        return cls(chain_id, addresses, min(blocks) if blocks else 0)

    @property
    def key(self) -> str:
        """What a store records to refuse another deployment's events."""
        return f"{self.chain_id}:" + ",".join(self.addresses[n].lower() for n in WATCHED)

    def name_of(self, address: str) -> str:
        """The contract name at ``address``."""
        low = address.lower()
        for name, addr in self.addresses.items():
            if addr.lower() == low:
                return name
        raise KeyError(address)
