"""Writers own only what they write (issue 23, item 1): an output folder's other contents,
the input among them, survive every write; a name clash is refused before anything moves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crpo_bench.jsonl import OUTPUT_MANIFEST, write_folder_atomic

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def writer(files: dict[str, str]):
    def write(staging: Path) -> None:
        for name, text in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(text)
    return write


def listing(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_existing_folder_keeps_what_we_did_not_write(tmp_path):
    out = tmp_path / "out"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "thesis.txt").write_text("years of work")
    write_folder_atomic(out, writer({"train/data.arrow": "1", "card.json": "{}"}))
    assert listing(out) == {"notes/thesis.txt": "years of work", "train/data.arrow": "1", "card.json": "{}",
                            OUTPUT_MANIFEST: json.dumps({"owner": "crpo-bench", "written": ["card.json", "train"]}) + "\n"}
    # a rerun replaces its own entries and drops those it no longer writes; the notes stay
    write_folder_atomic(out, writer({"train/data.arrow": "2", "val/data.arrow": "3"}))
    assert listing(out) == {"notes/thesis.txt": "years of work", "train/data.arrow": "2", "val/data.arrow": "3",
                            OUTPUT_MANIFEST: json.dumps({"owner": "crpo-bench", "written": ["train", "val"]}) + "\n"}
    assert not [p for p in out.iterdir() if ".staging." in p.name]


def test_a_name_of_someone_elses_is_refused_before_anything_moves(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "card.json").write_text("mine")
    before = listing(out)
    with pytest.raises(ValueError, match=r"out/card\.json: not written by this command"):
        write_folder_atomic(out, writer({"train/data.arrow": "1", "card.json": "{}"}))
    assert listing(out) == before and sorted(os.listdir(out)) == ["card.json"]


def test_the_working_folder_as_output(tmp_path, monkeypatch):
    (tmp_path / "sentinel.txt").write_text("keep")
    monkeypatch.chdir(tmp_path)
    write_folder_atomic(".", writer({"card.json": "{}"}))
    assert listing(tmp_path) == {"sentinel.txt": "keep", "card.json": "{}",
                                 OUTPUT_MANIFEST: json.dumps({"owner": "crpo-bench", "written": ["card.json"]}) + "\n"}


def test_a_file_as_output_folder_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        write_folder_atomic(tmp_path / "f", writer({"a": "1"}))
    assert (tmp_path / "f").read_text() == "x"


def run(args: list, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "crpo-train"), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900)


def test_crpo_train_pairs_and_score_keep_the_input_and_the_notes_in_out(tmp_path):
    """The reported loss: --out naming a folder that holds the input and notes/thesis.txt."""
    out = tmp_path / "work"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "thesis.txt").write_text("years of work")
    shutil.copy(ROOT / "examples" / "muce_mini.jsonl", out / "muce_mini.jsonl")
    done = run(["pairs", "--data", out / "muce_mini.jsonl", "--out", out], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "notes" / "thesis.txt").read_text() == "years of work"
    assert (out / "muce_mini.jsonl").read_bytes() == (ROOT / "examples" / "muce_mini.jsonl").read_bytes()
    assert (out / "dataset_dict.json").is_file()
    done = run(["score", out, "--out", out / "scored", "--dimensions", "novelty", "diversity"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # scoring into the pairs' own folder: its names clash with the pairs', so it is refused, cleanly
    (out / "scored" / "sentinel.txt").write_text("keep")
    again = run(["score", out, "--out", out, "--dimensions", "novelty"], cwd=tmp_path)
    assert again.returncode == 2 and "not written by this command" in again.stderr
    assert "Traceback" not in again.stderr
    assert (out / "notes" / "thesis.txt").read_text() == "years of work"
    assert (out / "scored" / "sentinel.txt").read_text() == "keep"
    # a rerun into its own previous output replaces it and keeps the sentinel
    done = run(["score", out, "--out", out / "scored", "--dimensions", "novelty"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "scored" / "sentinel.txt").read_text() == "keep"
