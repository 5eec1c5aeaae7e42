"""JSONL in and out: line-numbered errors on read, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


class InputError(ValueError):
    """Bad input; the message names the file, the line and the field."""


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; malformed lines raise InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    records = []
    with path.open(encoding="utf-8") as lines:
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{path}:{lineno}: malformed JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            records.append((lineno, record))
    return records


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write all of `text` or nothing: a temporary file beside `path`, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_folder_atomic(target: str | Path, write: Callable[[Path], object]) -> None:
    """Build a folder with `write(staging)` beside `target`, then put it in target's place:
    a crash midway leaves the old folder (or none), never a half-written one."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        write(staging)
        staging.chmod(0o755)  # mkdtemp makes it private; outputs and caches are shared
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_jsonl_atomic(path: str | Path, records: Iterable[dict]) -> None:
    """Write all records or nothing."""
    write_text_atomic(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
