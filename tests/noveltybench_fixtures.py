"""Generations folders in NoveltyBench's layout, shared by the noveltybench tests and the hardening tests."""

from __future__ import annotations

import json


def write_generations(path, rows):
    path.mkdir(parents=True, exist_ok=True)
    (path / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
