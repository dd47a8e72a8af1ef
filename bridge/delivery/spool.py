"""The disk spool: one SQLite file per sink that keeps each payload until its backend acknowledged it.

SQLite (stdlib) because a commit is atomic and survives a crash at any
instruction: after a SIGKILL the file holds exactly the payloads that were
stored and not yet deleted, so a restart re-sends exactly the unacknowledged
ones (payload bytes are final, so a re-send is idempotent).

- WAL mode: a commit appends to the write-ahead log instead of rewriting
  pages, and an operator's `sqlite3` shell reading the file never blocks it.
- synchronous=FULL: each commit fsyncs the WAL, so a payload the spool took
  also survives a power cut or a kernel crash. NORMAL would survive only a
  process crash: in WAL mode it syncs at checkpoints, and a power cut can
  roll back the last commits. A Cerebras window lost that way is gone for
  good (the API keeps no history), and the price of FULL is one fsync per
  insert and per delete: a few per minute per sink, on a thread of its own.

All SQLite work runs on one dedicated thread in the order the event loop
issued it, so the scrape path never waits on the disk and the insert, load
and delete of a payload can never be reordered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bridge.delivery.pending import Entry
from bridge.sinks.base import Payload

log = logging.getLogger(__name__)
T = TypeVar("T")

#: After a checkpoint, truncate the WAL back to this. SQLite checkpoints every 1000 pages (4 MiB), so on
#: disk the spool is its payload bytes (spool_max_bytes at most), page overhead, and a WAL of a few MiB.
WAL_SIZE_LIMIT = 4 * 1024 * 1024
_SCHEMA = """
CREATE TABLE IF NOT EXISTS owner (sink TEXT NOT NULL, type TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS payloads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    window_end_ns INTEGER NOT NULL,
    points INTEGER NOT NULL,
    size INTEGER NOT NULL,
    meta TEXT NOT NULL,
    body BLOB NOT NULL
);
"""


class SpoolError(Exception):
    """The spool file cannot be used: unreadable, not a spool, or another sink's."""


@dataclass(frozen=True, slots=True)
class StoredPayload:
    """What start-up needs to know about a payload left by a previous run, without its bytes."""

    row_id: int
    window_end_ns: int
    points: int
    size: int


class Spool:
    def __init__(self, path: str, sink_name: str, sink_type: str) -> None:
        self.path = Path(path)
        self._owner = (sink_name, sink_type)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"spool-{sink_name}")
        self._db: sqlite3.Connection | None = None  # touched only on self._thread

    # -- called on the event loop ---------------------------------------------------------------
    async def open(self) -> list[StoredPayload]:
        """Open (or create) the file and list the payloads a previous run left, oldest row first."""
        return await self._run(self._open)

    def add(self, entry: Entry, payload: Payload) -> None:
        """Store a payload; returns at once (the commit happens on the spool's thread)."""
        self._thread.submit(self._insert, entry, payload)

    def remove(self, entries: list[Entry]) -> None:
        """Forget acknowledged or evicted payloads, in one transaction."""
        if entries:
            self._thread.submit(self._delete, entries)

    async def load(self, entry: Entry) -> Payload | None:
        return await self._run(self._select, entry)

    async def flush(self) -> None:
        """Return once everything issued so far is committed."""
        await self._run(lambda: None)

    async def close(self) -> None:
        await self._run(self._close)
        self._thread.shutdown()

    def disk_bytes(self) -> int:
        """The database and its WAL on disk (what a volume must hold)."""
        total = 0
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
        return total

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    # -- on the spool's thread ----------------------------------------------------------------
    def _open(self) -> list[StoredPayload]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: each statement is a transaction
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise SpoolError(f"spool {self.path}: the filesystem does not support SQLite's WAL mode")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            db.executescript(_SCHEMA)
            owner = db.execute("SELECT sink, type FROM owner").fetchone()
            if owner is None:
                db.execute("INSERT INTO owner (sink, type) VALUES (?, ?)", self._owner)
            elif tuple(owner) != self._owner:
                raise SpoolError(
                    f"spool {self.path} holds payloads of sink {owner[0]!r} ({owner[1]}), not of "
                    f"{self._owner[0]!r} ({self._owner[1]}): give each sink its own spool_path"
                )
            rows = db.execute("SELECT id, window_end_ns, points, size FROM payloads ORDER BY id").fetchall()
        except (sqlite3.Error, OSError) as exc:
            raise SpoolError(f"spool {self.path}: {exc}; move the file aside to start with an empty spool") from None
        self._db = db
        return [StoredPayload(*row) for row in rows]

    def _insert(self, entry: Entry, payload: Payload) -> None:
        assert self._db is not None
        try:
            cursor = self._db.execute(
                "INSERT INTO payloads (window_end_ns, points, size, meta, body) VALUES (?, ?, ?, ?, ?)",
                (payload.window_end_ns, payload.points, len(payload.body), json.dumps(payload.meta), payload.body),
            )
        except sqlite3.Error as exc:  # disk full, I/O error: keep delivering from memory, without durability
            log.error("spool %s: could not store a payload (%s); keeping it in memory only", self.path, exc)
            entry.payload = payload
            return
        entry.row_id = cursor.lastrowid

    def _delete(self, entries: list[Entry]) -> None:
        assert self._db is not None
        rows = [(e.row_id,) for e in entries if e.row_id is not None]
        try:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM payloads WHERE id = ?", rows)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:  # the rows stay and are re-sent after a restart: a duplicate, never a loss
            log.error("spool %s: could not delete %d payload(s) (%s)", self.path, len(rows), exc)
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def _select(self, entry: Entry) -> Payload | None:
        assert self._db is not None
        if entry.row_id is None:  # the insert failed: the bytes stayed in memory
            return entry.payload
        row = self._db.execute("SELECT meta, body FROM payloads WHERE id = ?", (entry.row_id,)).fetchone()
        if row is None:
            return None
        return Payload(row[1], entry.window_end_ns, entry.points, json.loads(row[0]))

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()  # the last connection checkpoints the WAL into the database and removes it
            self._db = None
