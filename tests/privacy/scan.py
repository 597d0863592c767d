"""A privacy scan of everything a run put on chain: calldata, event logs, storage written.

Every transaction of the blocks ``first..last`` is read back from the node: its calldata (the
32-byte ABI words after the selector), its receipt's logs (topics and data words) and the
storage it wrote (``debug_traceTransaction`` with the ``prestateTracer`` in diff mode; each
written slot is read again with ``eth_getStorageAt``). A finding is a word equal to one of the
words a score could be encoded as (:func:`models.decision_zoo.score_words`), or the score's
float32/float64 bytes anywhere in the calldata or log data.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Scan:
    """What was read, and every finding (``where: what``)."""

    transactions: int = 0
    logs: int = 0
    calldata_words: int = 0
    storage_slots: int = 0
    findings: list[str] = field(default_factory=list)


def _words(data: bytes, start: int = 0) -> Iterator[tuple[int, int]]:
    for offset in range(start, len(data) - 31, 32):
        yield offset, int.from_bytes(data[offset : offset + 32], "big")


def _floats(scores: np.ndarray) -> dict[bytes, str]:
    out = {}
    for k, v in enumerate(np.ravel(scores)):
        out[struct.pack(">d", float(v))] = f"score {k} as float64"
        out[struct.pack("<d", float(v))] = f"score {k} as float64"
        out[struct.pack(">f", float(v))] = f"score {k} as float32"
        out[struct.pack("<f", float(v))] = f"score {k} as float32"
    return out


#: In calldata that is not decoded (contract creations), smaller words may be ABI offsets or
#: lengths; only larger ones are compared there.
RAW_MIN_WORD = 1 << 20


def _leaves(value: Any) -> Iterator[int | bytes]:
    """The ints and byte strings of a decoded argument (structs and arrays flattened)."""
    if isinstance(value, bool):
        yield int(value)
    elif isinstance(value, int):
        yield value
    elif isinstance(value, bytes | bytearray):
        yield bytes(value)
    elif isinstance(value, str):
        if value.startswith("0x"):
            yield int(value, 16) if len(value) <= 66 else bytes.fromhex(value[2:])
    elif isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif hasattr(value, "items"):
        for _, v in value.items():
            yield from _leaves(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _leaves(v)
    else:
        raise TypeError(f"cannot scan a decoded {type(value).__name__}")


def scan_chain(
    provider: Any,
    first: int,
    last: int,
    words: dict[int, str],
    scores: np.ndarray,
    contracts: dict[str, Any],
) -> Scan:
    """Scan blocks ``first..last`` for ``words`` (and the raw float bytes of ``scores``).

    Calldata to ``contracts`` (address -> ape contract) is ABI-decoded and every argument
    compared (byte strings, e.g. proofs, word by word); other calldata word by word from 2^20.
    Storage words are compared whole and as their two 128-bit halves (packed fields).
    """
    w3 = provider.web3
    floats = _floats(scores)
    result = Scan()
    by_address = {a.lower(): c for a, c in contracts.items()}

    def check_bytes(where: str, data: bytes) -> None:
        for raw, label in floats.items():
            if raw in data:
                result.findings.append(f"{where}: {label}")

    for number in range(first, last + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            result.transactions += 1
            tx_hash = tx["hash"].hex()
            data = bytes(tx["input"])
            target = by_address.get(str(tx.get("to") or "").lower())
            if target is not None:
                _, arguments = target.decode_input(data)
                for name, argument in arguments.items():
                    for leaf in _leaves(argument):
                        found = [w for _, w in _words(leaf)] if isinstance(leaf, bytes) else [leaf]
                        result.calldata_words += len(found)
                        for word in found:
                            if word in words:
                                result.findings.append(f"calldata {tx_hash} {name}: {words[word]}")
            else:
                for offset, word in _words(data, 0 if tx.get("to") is None else 4):
                    result.calldata_words += 1
                    if word >= RAW_MIN_WORD and word in words:
                        result.findings.append(f"calldata {tx_hash}@{offset}: {words[word]}")
            check_bytes(f"calldata {tx_hash}", data)
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            for log in receipt["logs"]:
                result.logs += 1
                where = f"log {tx_hash}#{log['logIndex']}"
                for topic in log["topics"]:
                    if int.from_bytes(bytes(topic), "big") in words:
                        result.findings.append(
                            f"{where} topic: {words[int.from_bytes(bytes(topic), 'big')]}"
                        )
                for offset, word in _words(bytes(log["data"])):
                    if word in words:
                        result.findings.append(f"{where} data@{offset}: {words[word]}")
                check_bytes(where, bytes(log["data"]))
            trace = provider.make_request(
                "debug_traceTransaction",
                [tx_hash, {"tracer": "prestateTracer", "tracerConfig": {"diffMode": True}}],
            )
            for address, state in (trace.get("post") or {}).items():
                for slot, value in (state.get("storage") or {}).items():
                    result.storage_slots += 1
                    now = w3.eth.get_storage_at(w3.to_checksum_address(address), int(slot, 16))
                    for label, v in (("slot", slot), ("value", value), ("now", now.hex())):
                        word = int(v, 16) if isinstance(v, str) else int(v)
                        for part, w in (("", word), (" hi", word >> 128), (" lo", word % 2**128)):
                            if w in words or (w >= 2**127 and w - 2**128 + 2**256 in words):
                                result.findings.append(
                                    f"storage {address}[{slot}] {label}{part}: "
                                    f"{words.get(w) or words[w - 2**128 + 2**256]}"
                                )
    return result
