"""Answers of an API model's requests, kept on disk as they arrive, so a rerun after a crash
(kill -9 included) sends no request that was already answered.

A request's key is a hash of what decides its answer: the model and endpoint, the task, the
messages, the decoding settings, and its occurrence (the n-th identical request of that task:
lm-eval sends a prompt's K samples as K identical requests, and each must stay its own sample).
lm-eval orders a task's requests the same way every run, so a rerun meets the same keys.
Each answer is committed on arrival (SQLite): what a crash loses is the requests in flight.
The file is made with the first answer: a run that got none leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path


class RequestCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        if self.path.exists():
            self._open()  # a damaged file is said now, before any request is sent

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answers TEXT NOT NULL)")
            except sqlite3.DatabaseError as err:
                raise ValueError(f"{self.path}: not a readable request cache ({err}); move it away to start "
                                 "afresh") from None
            self._db = db
        return self._db

    @staticmethod
    def key(endpoint: dict, scope: str, messages, generate: bool, settings: dict, occurrence: int) -> str:
        text = json.dumps([endpoint, scope, messages, generate, settings, occurrence], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> list | None:
        with self._lock:
            row = None if self._db is None else \
                self._db.execute("SELECT answers FROM answers WHERE key = ?", (key,)).fetchone()
        found = json.loads(row[0]) if row else None
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put(self, key: str, answers: list) -> None:
        with self._lock:
            self._open().execute("INSERT OR REPLACE INTO answers (key, answers) VALUES (?, ?)",
                                 (key, json.dumps(answers)))
