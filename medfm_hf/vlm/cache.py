"""A response cache that makes reruns and resumed runs free and reproducible.

One SQLite file (WAL journal, a busy timeout) holds ``key -> Response`` as JSON. The key is the sha256 of
a canonical JSON of (model id and revision, or endpoint and model name; prompt format; system text;
prompt; image pixel hash; every generation setting), so a change in any of them is a miss. Several
processes (accelerate ranks, a second run resuming the first) can read and write the same file: each
write is one short transaction and the first writer of a key wins (``INSERT OR IGNORE``), so two
processes that answered the same request keep one answer. Transport failures (``status == "error"``)
are never stored; blocked and empty answers are (they are the model's answer to that request).

Keep the file beside the results (``results_dir / "vlm_cache.sqlite"``); it never holds an API key
(only what :meth:`Response.to_dict` writes and the model id).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medfm_hf.vlm.base import Response

logger = logging.getLogger(__name__)

__all__ = ["ResponseCache", "make_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    response TEXT NOT NULL
)
"""


def make_key(**parts: Any) -> str:
    """sha256 hex of the canonical JSON of ``parts`` (sorted keys, no whitespace)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """SQLite-backed ``key -> Response`` store, safe for several threads and processes.

    Parameters
    ----------
    path
        The ``.sqlite`` file (created with its parent folder), or a folder (``vlm_cache.sqlite`` inside).
    timeout
        Seconds a writer waits for another process's lock before failing.
    """

    def __init__(self, path: str | os.PathLike, timeout: float = 60.0) -> None:
        p = Path(path)
        if p.is_dir() or (not p.suffix and not p.exists()):
            p = p / "vlm_cache.sqlite"
        p.parent.mkdir(parents=True, exist_ok=True)
        self.path = p
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        with self._lock:
            conn = self._connect()
            conn.execute(_SCHEMA)

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"

    def __getstate__(self) -> dict[str, Any]:  # picklable for worker processes: reconnect there
        return {"path": self.path, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["timeout"])

    def _connect(self) -> sqlite3.Connection:
        # A connection must not cross a fork: reopen in a child process.
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            for _ in range(50):
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError:  # another process is switching the mode right now
                    time.sleep(0.05)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def get(self, key: str) -> Response | None:
        with self._lock:
            row = self._connect().execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return Response.from_dict(json.loads(row[0]))

    def put(self, key: str, response: Response, model: str = "") -> None:
        self.put_many([(key, response)], model=model)

    def put_many(self, items: Iterable[tuple[str | None, Response]], model: str = "") -> int:
        """Store answers (first writer of a key wins); returns how many rows were new."""
        rows = []
        now = time.time()
        for key, r in items:
            if key is None:
                continue
            if r.status == "error":
                continue
            d = r.to_dict()
            d["cached"] = False
            rows.append((key, model, now, json.dumps(d, ensure_ascii=False, sort_keys=True)))
        if not rows:
            return 0
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.total_changes
                conn.executemany(
                    "INSERT OR IGNORE INTO responses (key, model, created, response) VALUES (?, ?, ?, ?)", rows
                )
                n = conn.total_changes - before
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return n

    def __len__(self) -> int:
        with self._lock:
            return int(self._connect().execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return self._connect().execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone() is not None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
