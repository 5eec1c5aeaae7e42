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


# Bounds on every JSONL input, checked as each line is read (before any model loads):
MAX_LINE_BYTES = 16 * 2**20  # one line (a row of answers); `score /dev/zero` stops at the first line
MAX_DEPTH = 64  # nesting of objects and lists in a row
MAX_INTEGER = 2**63  # larger integers are refused (Python's own limit, 4,300 digits, gives a bare error)


def bounded_lines(path: Path):
    """(line number, bytes) of each line of `path`, refusing a line over MAX_LINE_BYTES before
    reading the rest of it."""
    with _open_input(path) as f:
        for lineno in range(1, 2**62):
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            if len(raw) > MAX_LINE_BYTES:
                raise InputError(f"{path}:{lineno}: line longer than {MAX_LINE_BYTES // 2**20} MiB (the cap on one "
                                 "JSONL line)")
            yield lineno, raw


def parse_line(line: str, where: str):
    """One JSON value, within the bounds above; anything else an InputError naming `where`."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise InputError(f"{where}: malformed JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise InputError(f"{where}: JSON nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as err:  # an integer of more than 4,300 digits
        what = "integer too large (more than 2^63 in size)" if "integer" in str(err) else f"unreadable JSON ({err})"
        raise InputError(f"{where}: {what}") from None
    problem = out_of_bounds(value)
    if problem:
        raise InputError(f"{where}: {problem}")
    return value


def out_of_bounds(value) -> str | None:
    """What in a parsed JSON value is out of bounds (depth, integer size, a lone surrogate in a
    string, which UTF-8 output cannot hold), or None. Iterative: depth itself cannot overflow it."""
    stack = [(value, "", 1)]
    while stack:
        item, name, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"JSON nested more than {MAX_DEPTH} levels deep"
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and abs(item) > MAX_INTEGER:
            return f"field {name or '(row)'!r}: integer too large (more than 2^63 in size)"
        for text, what in ([(item, "")] if isinstance(item, str) else
                           [(k, " (a key)") for k in item] if isinstance(item, dict) else []):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                return f"field {name or '(row)'!r}{what}: a lone surrogate (\\u{ord(text[err.start]):04x}) is not text"
        if isinstance(item, dict):
            stack += [(v, f"{name}.{k}" if name else str(k), depth + 1) for k, v in item.items()]
        elif isinstance(item, list):
            stack += [(v, f"{name}[{i}]", depth + 1) for i, v in enumerate(item)]
    return None


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; malformed or out-of-bounds lines raise
    InputError naming FILE:LINE."""
    path = Path(path)
    records = []
    # Bytes, decoded line by line: a bad byte is reported with its line, not as a bare codec error.
    for lineno, raw in bounded_lines(path):
        where = f"{path}:{lineno}"
        line = decode_line(raw, where)
        if not line.strip():
            continue
        record = parse_line(line, where)
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}")
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


OUTPUT_MANIFEST = ".crpo-bench-output.json"  # in a folder we wrote: the entries we put there


def write_folder_atomic(target: str | Path, write: Callable[[Path], object], owner: str = "crpo-bench") -> None:
    """Build a folder with `write(staging)`, then put what it made at `target`, owning only that.

    A new target is the staged folder renamed into place (a crash leaves none, never half a
    folder). An existing target keeps everything this writer did not put there: its manifest
    (OUTPUT_MANIFEST) names the writer (`owner`, e.g. the command) and the entries of its
    previous write, which a write of the same owner replaces (entries no longer written are
    removed); a file or folder of anyone else's (another command's too) with a name
    the write needs stops it with a ValueError naming it, before anything is moved. So
    `--out .` or `--out` a folder holding notes or the input never deletes them."""
    target = Path(target).absolute()
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target}: exists and is not a folder")
    existed = target.is_dir()
    home = target if existed else target.parent  # staging on the same filesystem as the target
    home.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=home, prefix=f".{target.name}.staging."))
    try:
        write(staging)
        names = sorted(os.listdir(staging))
        (staging / OUTPUT_MANIFEST).write_text(json.dumps({"owner": owner, "written": names}) + "\n")
        # mkdtemp makes it private; outputs and caches are shared, as far as the umask allows
        staging.chmod(0o777 & ~current_umask())
        if not existed:
            os.replace(staging, target)
            return
        ours = _previously_written(target, owner)
        theirs = [n for n in names if (target / n).exists() and n not in ours]
        if theirs:
            raise ValueError(f"{target / theirs[0]}: not written by this command, and the output needs that name; "
                             "nothing was changed (choose a new or empty output folder)")
        for name in sorted(set(ours) - set(names)):
            _remove(target / name)
        for name in names:
            if (target / name).is_dir() and not (target / name).is_symlink():
                _remove(target / name)  # ours (listed): os.replace cannot put a folder over a folder
            os.replace(staging / name, target / name)
        os.replace(staging / OUTPUT_MANIFEST, target / OUTPUT_MANIFEST)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _previously_written(folder: Path, owner: str) -> list[str]:
    try:
        manifest = json.loads((folder / OUTPUT_MANIFEST).read_text())
        written = manifest["written"] if manifest["owner"] == owner else []
    except (OSError, ValueError, KeyError, TypeError):
        return []
    # names only: a manifest never points outside its folder
    return [n for n in written if isinstance(n, str) and n not in ("", ".", "..") and "/" not in n and "\\" not in n]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


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
