"""Scan the chain for the watched contracts' events and keep the store in step with it.

:meth:`Indexer.sync` first checks that the blocks it indexed are still on the chain (the
cursor's hash, then older stored blocks): after a re-organisation it drops everything above the
newest block that still matches and scans again from there, so a replaced block's events are
replaced. It then fetches logs in chunks up to ``head - confirmations`` and commits each chunk
with its block hashes, the transactions' gas, and the new cursor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3

from prover.exceptions import ChainUnavailable, IndexConfigError, ReorgTooDeep
from prover.index.contracts import REDACTED, WATCHED, Watched, events_of
from prover.index.store import Block, Event, Store, Tx


@dataclass(frozen=True)
class SyncResult:
    """What one :meth:`Indexer.sync` did."""

    from_block: int
    to_block: int
    events: int
    reorg_dropped: int | None = None  # events dropped by a re-organisation, if one was seen


def connect(rpc_url: str, timeout: float = 30.0) -> Web3:
    """A web3 client for ``rpc_url`` that has answered once."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    try:
        _ = w3.eth.chain_id
    except Exception as exc:  # requests raises many shapes of connection error
        raise ChainUnavailable(rpc_url, type(exc).__name__) from exc
    return w3


def _plain(value: Any, abi_type: dict[str, Any]) -> Any:
    """An ABI-decoded value as JSON-friendly data (bytes -> hex, structs -> dicts)."""
    kind = str(abi_type.get("type", ""))
    if kind.startswith("tuple"):
        comps = abi_type.get("components", [])
        if kind.endswith("]"):
            inner = {**abi_type, "type": kind[: kind.rindex("[")]}
            return [_plain(v, inner) for v in value]
        if isinstance(value, Mapping):
            return {c["name"]: _plain(value[c["name"]], c) for c in comps}
        return {c["name"]: _plain(v, c) for c, v in zip(comps, value, strict=True)}
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        inner = {**abi_type, "type": kind[: kind.rindex("[")]} if kind.endswith("]") else {}
        return [_plain(v, inner) for v in value]
    if kind == "address":
        return to_checksum_address(value)
    return value


class Indexer:
    """Keeps one :class:`Store` in step with one deployment's events."""

    def __init__(
        self,
        w3: Web3,
        watched: Watched,
        store: Store,
        *,
        confirmations: int = 0,
        chunk: int = 2000,
        max_reorg_depth: int = 256,
    ) -> None:
        self.w3 = w3
        self.watched = watched
        self.store = store
        self.confirmations = confirmations
        self.chunk = chunk
        self.max_reorg_depth = max_reorg_depth
        chain_id = int(w3.eth.chain_id)
        if chain_id != watched.chain_id:
            raise IndexConfigError(
                f"the node is chain {chain_id}; the deployment manifest is for chain "
                f"{watched.chain_id}"
            )
        store.bind(watched.key)
        self._abis: dict[tuple[str, bytes], dict[str, Any]] = {}
        for name in WATCHED:
            for topic, abi in events_of(name).items():
                self._abis[(name, topic)] = abi
        self._contracts = {
            name: w3.eth.contract(
                address=addr, abi=[a for (n, _), a in self._abis.items() if n == name]
            )
            for name, addr in watched.addresses.items()
        }

    # -- re-organisations --

    def _chain_hash(self, number: int) -> str | None:
        try:
            block = self.w3.eth.get_block(number)
        except Exception:  # noqa: BLE001 - a block above the head is simply absent
            return None
        return "0x" + bytes(block["hash"]).hex()

    def check_reorg(self) -> int | None:
        """Roll back what the chain no longer holds; the number of events dropped, or None."""
        cursor = self.store.cursor()
        if cursor is None or self._chain_hash(cursor.number) == cursor.hash:
            return None
        for block in self.store.blocks_desc(self.max_reorg_depth):
            if block.number < cursor.number and self._chain_hash(block.number) == block.hash:
                return self.store.rollback_after(block.number)
        if len(self.store.blocks_desc(self.max_reorg_depth + 1)) > self.max_reorg_depth:
            raise ReorgTooDeep(cursor.number, self.max_reorg_depth)
        return self.store.rollback_after(self.watched.start_block - 1)

    # -- scanning --

    def _block(self, number: int) -> Block:
        b = self.w3.eth.get_block(number)
        return Block(number, "0x" + bytes(b["hash"]).hex(), int(b["timestamp"]))

    def _decode(self, log: Any) -> Event | None:
        name = self.watched.name_of(str(log["address"]))
        topics = log["topics"]
        abi = self._abis.get((name, bytes(topics[0]))) if topics else None
        if abi is None:
            return None
        decoded = self._contracts[name].events[abi["name"]]().process_log(log)
        hidden = REDACTED.get(abi["name"], frozenset())
        args = {
            i["name"]: _plain(decoded["args"][i["name"]], i)
            for i in abi["inputs"]
            if i["name"] not in hidden
        }
        return Event(
            int(log["blockNumber"]),
            int(log["logIndex"]),
            "0x" + bytes(log["blockHash"]).hex(),
            "0x" + bytes(log["transactionHash"]).hex(),
            name,
            str(abi["name"]),
            args,
        )

    def _scan(self, start: int, end: int) -> int:
        """Index blocks ``start..end``; returns the number of events stored."""
        logs = self.w3.eth.get_logs(
            {
                "address": list(self.watched.addresses.values()),
                "fromBlock": start,
                "toBlock": end,
            }
        )
        events = [e for e in (self._decode(log) for log in logs) if e is not None]
        blocks = {n: self._block(n) for n in sorted({e.block_number for e in events} | {end})}
        if any(blocks[e.block_number].hash != e.block_hash for e in events):
            return -1  # a block was replaced while we read: the next pass sees the new chain
        txs = []
        for tx_hash in dict.fromkeys(e.tx_hash for e in events):
            receipt = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            txs.append(
                Tx(
                    tx_hash,
                    int(receipt["blockNumber"]),
                    to_checksum_address(receipt["from"]),
                    int(receipt["gasUsed"]),
                )
            )
        self.store.commit(blocks.values(), events, txs, blocks[end])
        return len(events)

    def sync(self) -> SyncResult:
        """Catch up with the chain (after checking for a re-organisation)."""
        dropped = self.check_reorg()
        head = int(self.w3.eth.block_number) - self.confirmations
        cursor = self.store.cursor()
        start = cursor.number + 1 if cursor else self.watched.start_block
        first, total = start, 0
        while start <= head:
            end = min(head, start + self.chunk - 1)
            stored = self._scan(start, end)
            if stored < 0:
                break
            total += stored
            start = end + 1
        return SyncResult(first, start - 1, total, dropped)

    def follow(
        self,
        stop: Callable[[], bool],
        interval: float = 1.0,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """Sync every ``interval`` seconds until ``stop()`` (errors go to ``on_error``)."""
        while not stop():
            try:
                self.sync()
            except Exception as exc:  # noqa: BLE001 - a follower survives a node restart
                if on_error is None:
                    raise
                on_error(exc)
            time.sleep(interval)
