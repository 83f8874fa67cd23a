"""Durable, bounded, ordered outbox of fleet events (sqlite in WAL mode).

Events survive broker outages and reboots. Rows are deleted only once the broker has acknowledged
them (QoS 1 PUBACK), so a crash between send and acknowledgement re-sends (a duplicate that the
receiver removes by event id) and never loses. When full, the oldest rows are dropped first and the
drop count is kept in the file.

A broker acknowledges before it has forwarded or persisted (mosquitto does): if it crashes right
after a PUBACK, that event is gone from the broker. So acknowledged rows are kept for a short while
(`acked_at`), and after an unclean loss of the connection the link marks the recently acknowledged
ones pending again (`unack_since`) and re-sends them: a few duplicates, removable by event id,
instead of a silent loss.

Only the fleet link thread writes; other threads hand events over in memory.
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
                                   payload BLOB NOT NULL, acked_at REAL);
CREATE INDEX IF NOT EXISTS events_acked ON events (acked_at) WHERE acked_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (id TEXT PRIMARY KEY, name TEXT NOT NULL, result TEXT NOT NULL,
                                     at REAL NOT NULL);
"""


class Outbox:
    """sqlite outbox. `append_many` stores, `pending_after` reads in order, `ack` marks delivered,
    `purge_acked` deletes delivered rows once they are old enough."""

    def __init__(self, path: Path, max_events: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_events = max_events
        self._lock = threading.Lock()  # one connection, used by the link thread and at stop()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        # WAL + synchronous=NORMAL: a commit costs no fsync (checkpoints do); survives process crashes.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.execute("DELETE FROM events WHERE acked_at IS NOT NULL")
        self._depth = self._count_pending()
        self._dropped = int(self.get_meta("dropped") or 0)

    # -- events --------------------------------------------------------------------------
    def _count_pending(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM events WHERE acked_at IS NULL").fetchone()[0]

    @property
    def depth(self) -> int:
        """Events not yet acknowledged."""
        return self._depth

    @property
    def dropped(self) -> int:
        return self._dropped

    def append_many(self, rows: Iterable[tuple[str, bytes]]) -> int:
        """Store (topic, payload) rows in one transaction; enforce the bound. Returns rows dropped."""
        rows = list(rows)
        if not rows:
            return 0
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO events (topic, payload) VALUES (?, ?)", rows)
                self._depth += len(rows)
                over = self._depth - self.max_events
                if over > 0:
                    db.execute("DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE acked_at IS NULL "
                               "ORDER BY seq LIMIT ?)", (over,))
                    self._depth -= over
                    self._dropped += over
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('dropped', ?)", (str(self._dropped),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._depth = self._count_pending()
                raise
        return max(over, 0)

    def pending_after(self, seq: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to `limit` stored events with a sequence number above `seq`, oldest first."""
        with self._lock:
            return self._db.execute("SELECT seq, topic, payload FROM events WHERE seq > ? AND acked_at IS NULL "
                                    "ORDER BY seq LIMIT ?", (seq, limit)).fetchall()

    def ack(self, seqs: Iterable[int], now: float) -> None:
        """Mark events acknowledged at `now` (time.monotonic() of this process: acknowledged rows
        left from an earlier run are deleted when the outbox is opened)."""
        runs = _runs(sorted(seqs))  # acknowledgements come in order: a few ranges, not one row each
        if not runs:
            return
        with self._lock:
            done = 0
            self._db.execute("BEGIN")
            try:
                for lo, hi in runs:
                    done += self._db.execute("UPDATE events SET acked_at = ? WHERE seq BETWEEN ? AND ? "
                                             "AND acked_at IS NULL", (now, lo, hi)).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._depth = self._count_pending()
                raise
            self._depth -= max(done, 0)

    def unack_since(self, since: float) -> int:
        """Make events acknowledged at or after `since` pending again (to re-send). Returns how many."""
        with self._lock:
            cur = self._db.execute("UPDATE events SET acked_at = NULL WHERE acked_at >= ?", (since,))
            n = max(cur.rowcount, 0)
            self._depth += n
        return n

    def purge_acked(self, before: float) -> None:
        """Delete events acknowledged before `before`."""
        with self._lock:
            self._db.execute("DELETE FROM events WHERE acked_at IS NOT NULL AND acked_at < ?", (before,))

    def count_dropped(self, n: int) -> None:
        """Count events lost outside the table (refused by the broker, or over the bound in memory)."""
        with self._lock:
            self._dropped += n
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('dropped', ?)", (str(self._dropped),))

    # -- small key/value state -----------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- command request ids (a repeated id is answered from here, not executed again) ---
    def request_result(self, request_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT result FROM requests WHERE id = ?", (request_id,)).fetchone()
        return row[0] if row else None

    def remember_request(self, request_id: str, name: str, result: str, at: float, keep: int = 10000) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO requests VALUES (?, ?, ?, ?)", (request_id, name, result, at))
            self._db.execute("DELETE FROM requests WHERE id IN (SELECT id FROM requests ORDER BY at DESC "
                             "LIMIT -1 OFFSET ?)", (keep,))

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()


def _runs(seqs: list[int]) -> list[tuple[int, int]]:
    """[1, 2, 3, 7, 8] -> [(1, 3), (7, 8)]"""
    runs: list[tuple[int, int]] = []
    for s in seqs:
        if runs and s == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], s)
        elif not runs or s > runs[-1][1]:
            runs.append((s, s))
    return runs
