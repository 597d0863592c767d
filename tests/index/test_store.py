"""The index store (SQLite and a real PostgreSQL cluster) and the indexer on a real anvil chain.

Each test runs on both backends. The indexer is resumable (a new indexer over the same store
goes on from the cursor, nothing twice) and safe across re-organisations: blocks replaced with
anvil's ``evm_snapshot``/``evm_revert`` (and ``anvil_reorg``) have their events replaced.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from web3 import Web3

from prover.exceptions import IndexConfigError, IndexStoreError
from prover.index.audit import Auditor
from prover.index.contracts import Watched
from prover.index.indexer import Indexer
from prover.index.ledger import Ledger
from prover.index.store import Block, Event, Tx, open_store

from .conftest import IndexDevChain


def _event(block: int, index: int, name: str = "PoolFunded", **args: object) -> Event:
    return Event(
        block,
        index,
        f"0x{block:064x}",
        f"0x{block * 100 + index:064x}",
        "ClaimSettlement",
        name,
        dict(args),
    )


def test_store_round_trip_cursor_and_rollback(index_store_url: str) -> None:
    store = open_store(index_store_url)
    store.bind("31337:a,b,c")
    assert store.cursor() is None
    big = 2**255 + 7  # uint256 values survive the JSON column exactly
    store.commit(
        [Block(5, "0x05", 50)],
        [_event(5, 0, poolId=1, amount=big)],
        [Tx(f"0x{500:064x}", 5, "0xabc", 21000)],
        Block(9, "0x09", 90),
    )
    store.commit(
        [Block(12, "0x0c", 120)], [_event(12, 3, poolId=1, amount=1)], [], Block(12, "0x0c", 120)
    )
    assert store.cursor() == Block(12, "0x0c", 120)
    assert [e.args["amount"] for e in store.events(["PoolFunded"])] == [big, 1]
    assert store.txs()[f"0x{500:064x}"].gas_used == 21000
    assert store.rollback_after(9) == 1
    assert store.cursor() == Block(9, "0x09", 90)
    assert [e.block_number for e in store.events()] == [5]
    store.close()
    again = open_store(index_store_url)  # persisted
    assert again.cursor() == Block(9, "0x09", 90)
    with pytest.raises(IndexStoreError, match="holds another deployment's events"):
        again.bind("1:x,y,z")
    again.close()


def test_store_bad_urls_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(IndexStoreError, match="unknown scheme"):
        open_store("mysql://root@localhost/x")
    with pytest.raises(IndexStoreError, match="cannot connect") as err:
        open_store("postgresql://nobody:secret@127.0.0.1:1/none")
    assert "secret" not in str(err.value)  # the password never appears in the message


def test_manifest_errors(tmp_path: Path) -> None:
    bad = tmp_path / "31337.json"
    bad.write_text("{not json")
    with pytest.raises(IndexConfigError, match="not a deployment manifest"):
        Watched.from_manifest(bad)
    bad.write_text('{"chainId": 31337, "contracts": {}}')
    with pytest.raises(IndexConfigError, match="ModelRegistry is not recorded"):
        Watched.from_manifest(bad)


def _policy_coverages(store_url: str) -> list[int]:
    store = open_store(store_url)
    try:
        return [int(e.args["coverage"]) for e in store.events(["PolicyIssued"])]
    finally:
        store.close()


def test_indexer_resumes_and_replaces_reorganised_blocks(
    index_dev_chain: IndexDevChain, index_store_url: str
) -> None:
    dev = index_dev_chain
    w3: Web3 = dev.chain.w3
    watched = Watched.from_manifest(dev.manifest)
    store = open_store(index_store_url)
    indexer = Indexer(w3, watched, store)
    first = indexer.sync()
    before = _policy_coverages(index_store_url)
    assert first.events >= 5  # roles, model, pool, funds, product, trust …
    assert store.cursor() is not None and store.cursor().number == w3.eth.block_number  # type: ignore[union-attr]

    # Resumable: another indexer over the same store adds only what is new, nothing twice.
    dev.chain.issue_policies(1, coverage=11)
    store.close()
    store = open_store(index_store_url)
    resumed = Indexer(w3, watched, store).sync()
    assert resumed.from_block == first.to_block + 1 and resumed.events == 1
    assert _policy_coverages(index_store_url) == [*before, 11]

    # A re-organisation: the policy of 13 is replaced by one of 17 (and two more blocks).
    snapshot = dev.rpc("evm_snapshot", [])
    dev.chain.issue_policies(1, coverage=13)
    Indexer(w3, watched, store).sync()
    assert _policy_coverages(index_store_url) == [*before, 11, 13]
    dev.rpc("evm_revert", [snapshot])
    dev.chain.issue_policies(1, coverage=17)
    dev.rpc("anvil_mine", ["0x2"])
    again = Indexer(w3, watched, store)
    result = again.sync()
    assert result.reorg_dropped == 1
    assert _policy_coverages(index_store_url) == [*before, 11, 17]
    led = Ledger.of(store)
    pool = led.pools[dev.chain.pool_id]
    assert pool.reserved == sum(p.reserved for p in led.policies.values())
    report = Auditor(w3, watched, store).reconcile()
    assert report.ok, report.render()

    # anvil_reorg replaces the newest blocks, from the one holding the policy of 19, with
    # empty ones.
    dev.chain.issue_policies(1, coverage=19)
    again.sync()
    assert _policy_coverages(index_store_url)[-1] == 19
    (issued,) = [e for e in store.events(["PolicyIssued"]) if e.args["coverage"] == 19]
    dev.rpc("anvil_reorg", [w3.eth.block_number - issued.block_number + 1, []])
    dropped = again.sync()
    assert dropped.reorg_dropped == 1
    assert _policy_coverages(index_store_url) == [*before, 11, 17]
    assert Auditor(w3, watched, store).reconcile().ok
    store.close()


def test_indexer_refuses_another_chains_manifest(
    index_dev_chain: IndexDevChain, tmp_path: Path
) -> None:
    dev = index_dev_chain
    other = tmp_path / "1.json"
    other.write_text(dev.manifest.read_text().replace('"chainId": 31337', '"chainId": 1'))
    store = open_store(tmp_path / "i.sqlite")
    with pytest.raises(IndexConfigError, match="the node is chain 31337"):
        Indexer(dev.chain.w3, Watched.from_manifest(other), store)
    store.close()
