"""Published NoveltyBench evaluations, read as they were published.

NoveltyBench's repository publishes each model's run as an evaluation folder:
- v1.0: `scores.jsonl` (each prompt's `generations`, the reference judge's `partition`,
  `generation_scores`, `partition_scores`, `utility`) or `partitions.jsonl`, and `summary.json`;
- v1.1: `generations.jsonl` beside `v1.1/{partitions,scores}.jsonl` and `v1.1/summary.json`,
  whose rows drop `generations` (joined back here by prompt id).
A single JSONL file in the v1.0 row format (NoveltyBench's human answers, `humans.jsonl`)
reads the same way. Classes are always counted from `partition`: published `distinct` fields
mean classes in some files and classes - 1 in others.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..jsonl import InputError, read_jsonl

SCORE_FILES = ("scores.jsonl", "partitions.jsonl")  # preferred first: scores carry utility


@dataclass
class PublishedPrompt:
    id: str
    prompt: str
    generations: list[str]
    partition: list[int]  # the reference judge's
    utility: float | None  # the reference reward model's, where published


@dataclass
class Published:
    version: str  # NoveltyBench metric version of the partitions: "1.0" or "1.1"
    model: str | None  # the `model` field of the rows, where they carry one
    prompts: list[PublishedPrompt]
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256 of every file read
    summary: dict | None = None  # the published summary.json, as published

    @property
    def classes(self) -> list[int]:
        return [len(set(p.partition)) for p in self.prompts]


def read_published(source: str | Path) -> Published:
    """A published evaluation folder (v1.0 or v1.1) or a file of v1.0 rows; bad rows are an
    InputError naming FILE:LINE and the field."""
    source = Path(source)
    if source.is_file():
        return _from_rows(source, "1.0", generations=None, summary=None)
    if not source.is_dir():
        raise InputError(f"{source}: no such file or folder")
    versions = sorted(p for p in source.glob("v*") if p.is_dir() and _score_file(p))
    if versions:  # v1.1: partitions under v<version>/, generations beside them
        folder = versions[-1]
        generations = source / "generations.jsonl"
        if not generations.is_file():
            raise InputError(f"{source}: has {folder.name}/ but no generations.jsonl to join its partitions to")
        published = _from_rows(_score_file(folder), folder.name[1:], _generations_by_id(generations),
                               folder / "summary.json")
        published.files[str(generations)] = _sha256(generations)
        return published
    if _score_file(source):
        return _from_rows(_score_file(source), "1.0", generations=None, summary=source / "summary.json")
    raise InputError(f"{source}: not a NoveltyBench evaluation folder (no {' or '.join(SCORE_FILES)}, "
                     "and no v<version>/ folder holding one)")


def _score_file(folder: Path) -> Path | None:
    return next((folder / name for name in SCORE_FILES if (folder / name).is_file()), None)


def _generations_by_id(path: Path) -> dict[str, tuple[str, list[str]]]:
    found = {}
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        pid, gens = _id(row, where), row.get("generations")
        _check_generations(gens, where)
        found[pid] = (str(row.get("prompt", "")), gens)
    return found


def _id(row: dict, where: str) -> str:
    pid = row.get("id")
    if not isinstance(pid, str) or not pid:
        raise InputError(f"{where}: field 'id' must be a non-empty string")
    return pid


def _check_generations(gens, where: str) -> None:
    if not isinstance(gens, list) or not gens or not all(isinstance(g, str) for g in gens):
        raise InputError(f"{where}: field 'generations' must be a non-empty list of strings")


def _from_rows(path: Path, version: str, generations: dict | None, summary: Path | None) -> Published:
    files = {str(path): _sha256(path)}
    prompts, model, seen = [], None, {}
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        pid = _id(row, where)
        if pid in seen:
            raise InputError(f"{where}: field 'id': prompt {pid!r} again (first at line {seen[pid]})")
        seen[pid] = lineno
        if generations is None:
            prompt, gens = row.get("prompt"), row.get("generations")
            _check_generations(gens, where)
        elif pid in generations:
            prompt, gens = generations[pid]
        else:
            raise InputError(f"{where}: field 'id': prompt {pid!r} is not in generations.jsonl")
        part = row.get("partition")
        if part is None:
            raise InputError(f"{where}: field 'partition' is missing")
        if not isinstance(part, list) or len(part) != len(gens) or \
                not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in part):
            raise InputError(f"{where}: field 'partition' must be one class number (0, 1, ...) per generation: "
                             f"{len(gens)} generations, got {_shown(part)}")
        utility = row.get("utility")
        if utility is not None and (isinstance(utility, bool) or not isinstance(utility, (int, float))
                                    or not math.isfinite(utility)):
            raise InputError(f"{where}: field 'utility' must be a finite number or null")
        model = model or (row.get("model") if isinstance(row.get("model"), str) else None)
        prompts.append(PublishedPrompt(pid, str(prompt or ""), gens, part, None if utility is None else float(utility)))
    if not prompts:
        raise InputError(f"{path}: no prompts")
    published_summary = None
    if summary is not None and summary.is_file():
        try:
            published_summary = json.loads(summary.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise InputError(f"{summary}: not JSON ({err})") from None
        files[str(summary)] = _sha256(summary)
    return Published(version, model, prompts, files, published_summary)


def _shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
