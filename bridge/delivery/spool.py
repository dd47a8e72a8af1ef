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

A damaged file must not stop the bridge: at open, a file SQLite calls not a
database or corrupt (truncated, overwritten, failing its quick_check) is moved
aside with its -wal/-shm (kept for forensics, never deleted) and the spool
starts empty. Every failure is counted in bridge_delivery_spool_failures_total
and logged once per bad spell, never once per payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bridge import telemetry
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


#: SQLite's verdicts on a file that is not (or no longer) a sound database; anything else is about access.
_DAMAGE_CODES = frozenset({"SQLITE_NOTADB", "SQLITE_CORRUPT"})


class SpoolError(Exception):
    """No spool can be used at this path: unopenable, damaged and not movable, or another sink's."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # the label in bridge_delivery_spool_failures_total


class _Damaged(SpoolError):
    """The file is not a sound database: it can be moved aside."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__("damaged", f"spool {path} is damaged ({detail})")
        self.detail = detail


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
        self.damage: str | None = None  # set by open() when it moved a damaged file aside
        self._reported: set[str] = set()  # failure reasons logged in the current bad spell

    # -- called on the event loop ---------------------------------------------------------------
    async def open(self) -> list[StoredPayload]:
        """Open (or create) the file and list the payloads a previous run left, oldest row first.

        A damaged file is moved aside and the spool starts empty (`damage` says what and where);
        SpoolError (counted, not logged: the caller decides what the sink does) when no spool can be used.
        """
        try:
            return await self._run(self._open)
        except SpoolError as exc:
            self._count(exc.reason)
            raise

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
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    # -- on the spool's thread ----------------------------------------------------------------
    def _open(self) -> list[StoredPayload]:
        try:
            return self._connect()
        except _Damaged as damaged:
            detail = damaged.detail
        try:
            moved_to = self._move_aside()
        except OSError as exc:
            raise SpoolError(
                "damaged", f"spool {self.path} is damaged ({detail}) and could not be moved aside ({_describe(exc)})"
            ) from None
        self.damage = f"spool {self.path} was damaged ({detail}); moved aside to {moved_to}, started empty"
        self._count("damaged")
        log.error("sink %s: %s", self._owner[0], self.damage)
        return self._connect()

    def _connect(self) -> list[StoredPayload]:
        if self.path.is_dir():
            raise SpoolError("unusable", f"spool {self.path} is a directory, not a file")
        if self.path.exists():
            self._check_sound()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: each statement is a transaction
        except FileExistsError:
            raise SpoolError(
                "unusable", f"spool {self.path} cannot be created ({self.path.parent} is a file)"
            ) from None
        except OSError as exc:
            raise SpoolError("unusable", f"spool {self.path} cannot be created ({_describe(exc)})") from None
        except sqlite3.Error as exc:
            raise SpoolError("unusable", f"spool {self.path} cannot be opened ({exc})") from None
        try:
            rows = self._prepare(db)
        except BaseException:
            db.close()
            raise
        self._db = db
        return [StoredPayload(*row) for row in rows]

    def _check_sound(self) -> None:
        """Raise _Damaged if SQLite finds the file damaged, reading it (and its WAL) without changing a byte.

        Read-only, because closing a read-write connection to a damaged file deletes its -wal and -shm,
        and they belong with it when it is moved aside. Access problems are left to the read-write open.
        """
        try:
            probe = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True)
            try:
                verdict = probe.execute("PRAGMA quick_check(1)").fetchone()[0]  # "ok", or the first problem found
            finally:
                probe.close()
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorname", None) in _DAMAGE_CODES:
                raise _Damaged(self.path, str(exc)) from None
            return
        if verdict != "ok":
            raise _Damaged(self.path, verdict)

    def _prepare(self, db: sqlite3.Connection) -> list[Any]:
        """Set the spool's modes, check the file is ours, list its rows."""
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise SpoolError("unusable", f"spool {self.path}: the filesystem does not support SQLite's WAL mode")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            db.executescript(_SCHEMA)
            owner = db.execute("SELECT sink, type FROM owner").fetchone()
            if owner is None:
                db.execute("INSERT INTO owner (sink, type) VALUES (?, ?)", self._owner)
            elif tuple(owner) != self._owner:
                raise SpoolError(
                    "other_sink",
                    f"spool {self.path} holds payloads of sink {owner[0]!r} ({owner[1]}), not of "
                    f"{self._owner[0]!r} ({self._owner[1]}): give each sink its own spool_path",
                )
            return db.execute("SELECT id, window_end_ns, points, size FROM payloads ORDER BY id").fetchall()
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorname", None) in _DAMAGE_CODES:
                raise _Damaged(self.path, str(exc)) from None
            raise SpoolError("unusable", f"spool {self.path} cannot be opened ({exc})") from None

    def _move_aside(self) -> Path:
        """Rename the file and its -wal/-shm to `<path>.damaged-<UTC time>`: SQLite can still open the copy."""
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        self.path.rename(target)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                self.path.with_name(self.path.name + suffix).rename(target.with_name(target.name + suffix))
        return target

    def _insert(self, entry: Entry, payload: Payload) -> None:
        assert self._db is not None
        try:
            cursor = self._db.execute(
                "INSERT INTO payloads (window_end_ns, points, size, meta, body) VALUES (?, ?, ?, ?, ?)",
                (payload.window_end_ns, payload.points, len(payload.body), json.dumps(payload.meta), payload.body),
            )
        except sqlite3.Error as exc:  # disk full, I/O error: keep delivering from memory, without durability
            self._failed("write_error", f"could not store a payload ({exc}); keeping it in memory only")
            entry.payload = payload
            return
        entry.row_id = cursor.lastrowid
        self._recovered("write_error", "storing payloads again")

    def _delete(self, entries: list[Entry]) -> None:
        assert self._db is not None
        rows = [(e.row_id,) for e in entries if e.row_id is not None]
        try:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM payloads WHERE id = ?", rows)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:  # the rows stay and are re-sent after a restart: a duplicate, never a loss
            self._failed("delete_error", f"could not delete acknowledged payloads ({exc}); a restart re-sends them")
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            return
        self._recovered("delete_error", "deleting acknowledged payloads again")

    def _select(self, entry: Entry) -> Payload | None:
        assert self._db is not None
        if entry.row_id is None:  # the insert failed: the bytes stayed in memory
            return entry.payload
        try:
            row = self._db.execute("SELECT meta, body FROM payloads WHERE id = ?", (entry.row_id,)).fetchone()
            if row is None:
                return None
            meta, body = json.loads(row[0]), row[1]
            if not isinstance(meta, dict) or not isinstance(body, bytes):
                raise TypeError("not a payload the bridge stored")
        except (sqlite3.Error, ValueError, TypeError) as exc:
            # a damaged page or a tampered row: only this payload is lost
            self._failed("corrupt_row", f"a stored payload is unreadable ({exc}); such payloads are dropped")
            return None
        return Payload(body, entry.window_end_ns, entry.points, meta)

    def _failed(self, reason: str, problem: str) -> None:
        """Count every failure; log a reason once, until the spool works again."""
        self._count(reason)
        if reason not in self._reported:
            self._reported.add(reason)
            log.error(
                "sink %s: spool %s: %s (all counted in bridge_delivery_spool_failures_total)",
                self._owner[0],
                self.path,
                problem,
            )

    def _recovered(self, reason: str, news: str) -> None:
        if reason in self._reported:
            self._reported.discard(reason)
            log.info("sink %s: spool %s: %s", self._owner[0], self.path, news)

    def _count(self, reason: str) -> None:
        telemetry.DELIVERY_SPOOL_FAILURES.labels(self._owner[0], reason).inc()

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()  # the last connection checkpoints the WAL into the database and removes it
            self._db = None


def _describe(exc: OSError) -> str:
    return f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc.strerror or exc)
