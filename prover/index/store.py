"""Where indexed events live: SQLite (default) or PostgreSQL, behind one interface.

Tables: ``index_meta`` (which deployment, the cursor), ``index_blocks`` (hash and time of every
block that holds an event, plus the cursor block: what re-organisation checks compare),
``index_events`` (one row per log, args as JSON) and ``index_txs`` (sender and gas of every
transaction that emitted an event). A batch of blocks is written in one transaction, so an
interrupted sync resumes from the last committed cursor.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prover.exceptions import IndexStoreError

#: Blocks without events kept below the cursor for re-organisation checks.
KEEP_CURSOR_BLOCKS = 1024
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS index_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS index_blocks (number BIGINT PRIMARY KEY, hash TEXT NOT NULL,"
    " timestamp BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS index_events (block_number BIGINT NOT NULL,"
    " log_index INTEGER NOT NULL, block_hash TEXT NOT NULL, tx_hash TEXT NOT NULL,"
    " contract TEXT NOT NULL, name TEXT NOT NULL, args TEXT NOT NULL,"
    " PRIMARY KEY (block_number, log_index))",
    "CREATE INDEX IF NOT EXISTS index_events_name ON index_events (name)",
    "CREATE TABLE IF NOT EXISTS index_txs (tx_hash TEXT PRIMARY KEY,"
    " block_number BIGINT NOT NULL, sender TEXT NOT NULL, gas_used BIGINT NOT NULL)",
)


@dataclass(frozen=True)
class Event:
    """One decoded log. ``args``: ints as ints, bytes as ``0x`` hex, structs as dicts."""

    block_number: int
    log_index: int
    block_hash: str
    tx_hash: str
    contract: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tx:
    """A transaction that emitted indexed events."""

    tx_hash: str
    block_number: int
    sender: str
    gas_used: int


@dataclass(frozen=True)
class Block:
    """A block the index checked (number, hash, timestamp)."""

    number: int
    hash: str
    timestamp: int


class Store:
    """The index's database; thread-safe (one connection behind a lock)."""

    def __init__(self, url: str, conn: Any, placeholder: str) -> None:
        self.url = url
        self._conn = conn
        self._ph = placeholder
        self._lock = threading.RLock()
        with self._tx() as cur:
            for statement in SCHEMA:
                cur.execute(statement)

    # -- plumbing --

    def _sql(self, text: str) -> str:
        return text if self._ph == "?" else text.replace("?", self._ph)

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock:
            cur = self._conn.cursor()
            try:
                yield cur
                self._conn.commit()
            except Exception:
                self._conn.rollback()
                raise
            finally:
                cur.close()

    def _rows(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._tx() as cur:
            cur.execute(self._sql(text), tuple(params))
            return [tuple(r) for r in cur.fetchall()]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    # -- meta --

    def meta(self, key: str) -> str | None:
        """A stored setting."""
        rows = self._rows("SELECT value FROM index_meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def bind(self, deployment_key: str) -> None:
        """Tie the store to one deployment; refuse a store filled from another one."""
        known = self.meta("deployment")
        if known is None:
            with self._tx() as cur:
                cur.execute(
                    self._sql("INSERT INTO index_meta (key, value) VALUES (?, ?)"),
                    ("deployment", deployment_key),
                )
        elif known != deployment_key:
            raise IndexStoreError(
                self.url, f"holds another deployment's events ({known}); use another --db"
            )

    # -- cursor and blocks --

    def cursor(self) -> Block | None:
        """The last block fully indexed."""
        value = self.meta("cursor")
        if value is None:
            return None
        rows = self._rows(
            "SELECT number, hash, timestamp FROM index_blocks WHERE number = ?", (int(value),)
        )
        return Block(*map_block(rows[0])) if rows else None

    def blocks_desc(self, limit: int) -> list[Block]:
        """Checked blocks, newest first."""
        rows = self._rows(
            "SELECT number, hash, timestamp FROM index_blocks ORDER BY number DESC LIMIT ?",
            (limit,),
        )
        return [Block(*map_block(r)) for r in rows]

    def block_times(self) -> dict[int, int]:
        """``block number -> timestamp`` of every checked block."""
        return {int(n): int(t) for n, t in self._rows("SELECT number, timestamp FROM index_blocks")}

    def commit(
        self, blocks: Iterable[Block], events: Iterable[Event], txs: Iterable[Tx], cursor: Block
    ) -> None:
        """Write one scanned range and move the cursor to its last block, atomically."""
        up = "INSERT INTO index_blocks (number, hash, timestamp) VALUES (?, ?, ?)"
        with self._tx() as cur:
            seen: set[int] = set()
            for b in [*blocks, cursor]:
                if b.number in seen:
                    continue
                seen.add(b.number)
                cur.execute(self._sql("DELETE FROM index_blocks WHERE number = ?"), (b.number,))
                cur.execute(self._sql(up), (b.number, b.hash, b.timestamp))
            for e in events:
                cur.execute(
                    self._sql(
                        "INSERT INTO index_events (block_number, log_index, block_hash, tx_hash,"
                        " contract, name, args) VALUES (?, ?, ?, ?, ?, ?, ?)"
                    ),
                    (
                        e.block_number,
                        e.log_index,
                        e.block_hash,
                        e.tx_hash,
                        e.contract,
                        e.name,
                        json.dumps(e.args, sort_keys=True),
                    ),
                )
            for t in txs:
                cur.execute(self._sql("DELETE FROM index_txs WHERE tx_hash = ?"), (t.tx_hash,))
                cur.execute(
                    self._sql(
                        "INSERT INTO index_txs (tx_hash, block_number, sender, gas_used)"
                        " VALUES (?, ?, ?, ?)"
                    ),
                    (t.tx_hash, t.block_number, t.sender, t.gas_used),
                )
            self._set_cursor(cur, cursor.number)
            # Cursor-only blocks (no events) matter for re-organisation checks near the head
            # only; older ones are dropped so a long-running follower does not grow the table.
            cur.execute(
                self._sql(
                    "DELETE FROM index_blocks WHERE number < ? AND number NOT IN"
                    " (SELECT DISTINCT block_number FROM index_events)"
                ),
                (cursor.number - KEEP_CURSOR_BLOCKS,),
            )

    def _set_cursor(self, cur: Any, number: int) -> None:
        cur.execute(self._sql("DELETE FROM index_meta WHERE key = ?"), ("cursor",))
        cur.execute(
            self._sql("INSERT INTO index_meta (key, value) VALUES (?, ?)"), ("cursor", str(number))
        )

    def rollback_after(self, number: int) -> int:
        """Forget every block, event and transaction above ``number`` (a re-organisation);
        the cursor moves to ``number`` (or is cleared if that block is not stored).
        Returns how many events were dropped."""
        with self._tx() as cur:
            cur.execute(
                self._sql("SELECT COUNT(*) FROM index_events WHERE block_number > ?"), (number,)
            )
            dropped = int(cur.fetchone()[0])
            for table in ("index_events", "index_txs"):
                cur.execute(self._sql(f"DELETE FROM {table} WHERE block_number > ?"), (number,))
            cur.execute(self._sql("DELETE FROM index_blocks WHERE number > ?"), (number,))
            cur.execute(self._sql("SELECT 1 FROM index_blocks WHERE number = ?"), (number,))
            if cur.fetchone() is not None:
                self._set_cursor(cur, number)
            else:
                cur.execute(self._sql("DELETE FROM index_meta WHERE key = ?"), ("cursor",))
        return dropped

    # -- reads --

    def events(self, names: Sequence[str] | None = None) -> list[Event]:
        """Events in chain order (optionally only these names)."""
        query = (
            "SELECT block_number, log_index, block_hash, tx_hash, contract, name, args"
            " FROM index_events"
        )
        params: list[Any] = []
        if names:
            query += " WHERE name IN (" + ", ".join("?" for _ in names) + ")"
            params.extend(names)
        rows = self._rows(query + " ORDER BY block_number, log_index", params)
        return [
            Event(int(b), int(i), str(bh), str(t), str(c), str(n), json.loads(a))
            for b, i, bh, t, c, n, a in rows
        ]

    def txs(self) -> dict[str, Tx]:
        """Every stored transaction by hash."""
        rows = self._rows("SELECT tx_hash, block_number, sender, gas_used FROM index_txs")
        return {str(h): Tx(str(h), int(b), str(s), int(g)) for h, b, s, g in rows}


def map_block(row: tuple[Any, ...]) -> tuple[int, str, int]:
    """A block row as typed values."""
    return int(row[0]), str(row[1]), int(row[2])


def open_store(url: str | Path) -> Store:
    """``sqlite:///path``, a plain path (SQLite), or ``postgresql://…`` (psycopg)."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - a dependency of zkcare
            raise IndexStoreError(text, "psycopg is not installed (./zk setup)") from exc
        try:
            conn = psycopg.connect(text, connect_timeout=10)
        except psycopg.Error as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise IndexStoreError(_redact(text), f"cannot connect: {detail}") from exc
        return Store(_redact(text), conn, "%s")
    path = Path(text.removeprefix("sqlite:///")) if text.startswith("sqlite:///") else Path(text)
    if text.startswith(("sqlite:", "postgres")) is False and "://" in text:
        raise IndexStoreError(text, "unknown scheme; use a path, sqlite:///PATH or postgresql://…")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lite = sqlite3.connect(path, check_same_thread=False, timeout=30)
        lite.execute("PRAGMA journal_mode=WAL")
    except (OSError, sqlite3.Error) as exc:
        raise IndexStoreError(str(path), f"cannot open: {exc}") from exc
    return Store(str(path), lite, "?")


def _redact(url: str) -> str:
    """A database URL without its password."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}@{host}"
