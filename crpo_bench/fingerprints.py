"""Fingerprints of models: what a metric card records and the embedding cache is keyed by.

A folder's fingerprint is a sha256 over its files: the whole content of files up to 64 MB
(configs, tokenizers, pooling settings, small models) and, for larger ones (weights), their
size and 16 evenly spaced 64 KB samples. Hashing a 50 GB checkpoint whole would cost
minutes; weights trained or edited in place differ throughout, so the samples see them.
A hub model's fingerprint is the commit it was downloaded at.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

SMALL_FILE = 64 * 2**20  # files up to this size are hashed whole
SAMPLES, SAMPLE_BYTES = 16, 64 * 2**10  # of larger files


@functools.lru_cache(maxsize=32)
def folder_fingerprint(folder: str) -> str:
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(root)}\0{size}\0".encode())
        if size <= SMALL_FILE:
            digest.update(path.read_bytes())
            continue
        with path.open("rb") as f:
            for k in range(SAMPLES):
                f.seek(k * (size - SAMPLE_BYTES) // (SAMPLES - 1))
                digest.update(f.read(SAMPLE_BYTES))
    return "sha256:" + digest.hexdigest()[:16]


def hub_revision(name: str) -> str | None:
    """The commit of a hub model in the local Hugging Face cache, where it was downloaded."""
    try:
        from huggingface_hub import scan_cache_dir

        for repo in scan_cache_dir().repos:
            if repo.repo_id == name and repo.revisions:
                return "revision:" + max(repo.revisions, key=lambda r: r.last_modified).commit_hash
    except Exception:  # no cache yet, or an unreadable one: the card says so
        return None
    return None


def fingerprint(folder_or_id: str | None) -> str | None:
    """A folder's content fingerprint, or a hub id's downloaded commit ("unresolved" if none)."""
    if folder_or_id is None:
        return None
    if Path(folder_or_id).is_dir():
        return folder_fingerprint(str(Path(folder_or_id).resolve()))
    return hub_revision(folder_or_id) or "unresolved"
