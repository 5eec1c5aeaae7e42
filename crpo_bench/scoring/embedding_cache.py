"""A disk cache of embeddings keyed by (model key, text), so reruns skip known texts.

One SQLite file: concurrent readers and writers are safe, and each `put` is one
transaction, so a crash never leaves a half-written entry.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import numpy as np

_LOOKUP_CHUNK = 500  # SQLite caps the number of bound parameters per statement


class CacheError(ValueError):
    """The cache cannot be used; the message names it and the ways out."""


class EmbeddingCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        with self._named_errors("cannot be opened"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS embedding (model TEXT, text TEXT, vector BLOB, PRIMARY KEY (model, text))"
            )

    @contextlib.contextmanager
    def _named_errors(self, doing: str):
        """A damaged, read-only or misplaced cache is one clear error, not a sqlite traceback."""
        try:
            yield
        except (sqlite3.Error, OSError) as err:
            raise CacheError(f"embedding cache {self.path} {doing} ({err}); move or delete it, set "
                             "CRPO_BENCH_CACHE to another folder, or score with --no-cache") from None

    def get(self, model: str, texts: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._named_errors("cannot be read"):
            for start in range(0, len(texts), _LOOKUP_CHUNK):
                part = texts[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT text, vector FROM embedding WHERE model = ? AND text IN ({marks})", [model, *part]
                )
                found.update((text, np.frombuffer(blob, dtype=np.float32)) for text, blob in rows)
        return found

    def put(self, model: str, texts: list[str], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        with self._named_errors("cannot be written"), self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO embedding VALUES (?, ?, ?)",
                ((model, text, vec.tobytes()) for text, vec in zip(texts, vectors)),
            )

    def close(self) -> None:
        self._db.close()


def embed_with_cache(embedder, texts: list[str], cache: EmbeddingCache | None,
                     progress: bool = False, desc: str = "embedding", batch_size: int = 32) -> np.ndarray:
    """Embeddings of distinct `texts` (rows in the same order); only unknown texts are encoded."""
    known = cache.get(embedder.key, texts) if cache is not None else {}
    missing = [t for t in texts if t not in known]
    fresh = embedder.encode(missing, progress=progress, desc=desc, batch_size=batch_size)
    if cache is not None and missing:
        cache.put(embedder.key, missing, fresh)
    known.update(zip(missing, fresh))
    if not texts:
        return np.zeros((0, embedder.dimension), dtype=np.float32)
    return np.stack([known[t] for t in texts])
