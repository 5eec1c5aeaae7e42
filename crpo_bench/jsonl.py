"""JSONL in and out: line-numbered errors on read, atomic writes of strict JSON."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path


class InputError(ValueError):
    """Bad input; the message names the file, the line and the field."""


def _open_input(path: Path):
    """The file opened for reading in binary, or an InputError saying why it cannot be."""
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a JSONL file")
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        return path.open("rb")
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from None


def decode_line(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{where}: not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})") from None


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; malformed lines raise InputError."""
    path = Path(path)
    records = []
    # Bytes, decoded line by line: a bad byte is reported with its line, not as a bare codec error.
    with _open_input(path) as lines:
        for lineno, raw in enumerate(lines, start=1):
            line = decode_line(raw, f"{path}:{lineno}")
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


_JSON_SPELLING = {math.inf: "Infinity", -math.inf: "-Infinity"}


def non_finite_field(value, name: str = "") -> tuple[str, str] | None:
    """(field path, JSON spelling) of the first NaN or infinite number in `value`, else None.
    Python's json reads NaN, Infinity and 1e999, none of which strict JSON can write back."""
    if isinstance(value, float) and not math.isfinite(value):
        return name, _JSON_SPELLING.get(value, "NaN")
    if isinstance(value, dict):
        children = ((f"{name}.{k}" if name else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        children = ((f"{name}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for child_name, child in children:
        found = non_finite_field(child, child_name)
        if found:
            return found
    return None


def check_finite(record: dict, where: str) -> None:
    """Refuse a row whose fields would be copied into an output as non-standard JSON."""
    found = non_finite_field(record)
    if found:
        raise InputError(f"{where}: field {found[0]!r}: not a finite number ({found[1]})")


def check_writable(path: str | Path, what: str = "output") -> None:
    """Fail now, naming `path`, if an atomic write to it would fail later: the folder must
    exist and take a new file, and `path` must not be a folder. Run before expensive work."""
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        raise InputError(f"{path}: is a directory; the {what} must be a file path")
    if not parent.is_dir():
        reason = "not a directory" if parent.exists() else "no such directory"
        raise InputError(f"{parent}: {reason} (the folder of the {what} {path})")
    problem = _cannot_create_in(parent)
    if problem:
        raise InputError(f"{path}: cannot write the {what} there ({problem})")


def _cannot_create_in(folder: Path) -> str | None:
    """Why a file cannot be created in `folder`, or None. Creating one is the only reliable
    test (os.access is wrong for root, ACLs and network filesystems); an unnamed temporary
    file (O_TMPFILE where available) leaves nothing behind."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return err.strerror or type(err).__name__
    return None


def current_umask() -> int:
    """The process umask. Linux shows it in /proc; elsewhere it can only be read by setting
    it, which briefly affects files other threads create, so that is the fallback."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _plain_open_mode() -> int:
    """The permissions open() gives a new file: 0o666 minus the umask. mkstemp's 0o600 would
    make every output private. A file being replaced gets them too, not its old ones, so one
    left private by an earlier version is fixed by the next write, by every writer here alike."""
    return 0o666 & ~current_umask()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write all of `text` or nothing: a temporary file beside `path`, then a rename.
    The file ends up with the permissions a plain open() gives a new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, _plain_open_mode())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_texts_atomic(files: dict[str | Path, str]) -> None:
    """Write several files that belong together (a report in two formats) all or none: each
    is first written whole under a staging name beside its target, and only when every one
    was written are they renamed into place, so a failure while writing (a full disk, a
    crash) leaves all the old files. The renames follow one another; no file system renames
    two files at once."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, text in files.items():
            path = Path(path)
            stage = path.with_name(f".{path.name}.{uuid.uuid4().hex}.staged")
            write_text_atomic(stage, text)  # through the single-file writer: the same file modes
            staged.append((stage, path))
        for stage, path in staged:
            os.replace(stage, path)
    except BaseException:
        for stage, _ in staged:
            stage.unlink(missing_ok=True)
        raise


def write_folder_atomic(target: str | Path, write: Callable[[Path], object]) -> None:
    """Build a folder with `write(staging)` beside `target`, then put it in target's place:
    a crash midway leaves the old folder (or none), never a half-written one."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        write(staging)
        # mkdtemp makes it private; outputs and caches are shared, as far as the umask allows
        staging.chmod(0o777 & ~current_umask())
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _non_finite_to_null(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _non_finite_to_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_non_finite_to_null(v) for v in value]
    return value


def json_line(record: dict) -> str:
    """One line of strict JSON. A computed value that is not a finite number (an undefined
    metric) is written as null, the "no value" of every output, never as bare NaN."""
    try:
        return json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError:  # rare: only then is the record walked
        return json.dumps(_non_finite_to_null(record), ensure_ascii=False, allow_nan=False) + "\n"


def write_jsonl_atomic(path: str | Path, records: Iterable[dict]) -> None:
    """Write all records or nothing, as strict JSON."""
    write_text_atomic(path, "".join(json_line(record) for record in records))
