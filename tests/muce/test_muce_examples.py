"""The embedded MuCE example data (crpo_bench/data/muce_examples.jsonl): the offline default
evaluation prompts of the `muce_<slug>` lm-eval tasks, in MuCE's raw layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crpo_bench import muce
from crpo_bench.lmeval.data import heldout_documents
from crpo_bench.muce.prompts import full_prompt

EXAMPLES = Path(muce.__file__).parents[1] / "data" / "muce_examples.jsonl"
KEYS = {"TaskType", "Language", "TasksNamesFull", "Dataset", "Prompt", "Set", "Response", "facsco_grm_scaled",
        "RatingLabel"}
# Composites' wording never fills in its item (the paper's literal "{prompt}"), so its three
# items give one distinct instruction, and the paper's evaluation keeps one document per instruction
DOCS_PER_TASK = {slug: 1 if slug == "composites" else 3 for slug in muce.TASKS.values()}


def raw_lines() -> list[dict]:
    text = EXAMPLES.read_text(encoding="ascii")  # ASCII only
    assert text.endswith("\n")
    lines = text.splitlines()
    assert all(line.strip() for line in lines), "no blank lines"
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def rows():
    return muce.load_rows(str(EXAMPLES), splits=muce.HELDOUT_SPLITS)


def test_raw_layout():
    lines = raw_lines()
    assert len(lines) == 3 * len(muce.TASKS) == 78
    for k, line in enumerate(lines, start=1):
        assert isinstance(line, dict) and set(line) == KEYS, f"line {k}: {sorted(line)}"
        assert line["TaskType"] == "text" and line["Language"] == "English"
        assert line["Response"] == "" and line["facsco_grm_scaled"] is None and line["RatingLabel"] == "originality"
        assert line["TasksNamesFull"] in muce.TASKS, f"line {k}"
        slug = muce.TASKS[line["TasksNamesFull"]]
        assert line["Set"] == ("HeldoutItem" if slug in muce.PAPER_TASKS else "HeldoutTask"), f"line {k}"
        assert isinstance(line["Dataset"], str) and line["Dataset"]
        assert isinstance(line["Prompt"], str) and line["Prompt"] == line["Prompt"].strip()
        assert 0 < len(line["Prompt"]) < 300, f"line {k}"


def test_three_distinct_items_per_task_grouped_in_task_order():
    lines = raw_lines()
    assert [line["TasksNamesFull"] for line in lines] == [name for name in muce.TASKS for _ in range(3)]
    for name in muce.TASKS:
        items = [line["Prompt"] for line in lines if line["TasksNamesFull"] == name]
        assert len(set(items)) == 3, name


def test_every_row_is_held_out_and_kept(rows):
    assert len(rows) == 78
    assert {r["split"] for r in rows} == set(muce.HELDOUT_SPLITS)


@pytest.mark.parametrize("slug", list(muce.TASKS.values()))
def test_documents_are_the_papers_full_prompts(rows, slug):
    name = muce.TASK_NAMES[slug]
    expected = []
    for line in raw_lines():
        if line["TasksNamesFull"] == name:
            full = full_prompt(name, line["Dataset"], line["Prompt"])
            assert full is not None, f"{name} / {line['Dataset']}: a dataset the paper leaves out"
            if full not in expected:
                expected.append(full)
    docs = heldout_documents(rows, slug)
    assert len(docs) == DOCS_PER_TASK[slug]
    assert [d["prompt"] for d in docs] == expected
    assert [d["full_prompt"] for d in docs] == expected
    for doc in docs:
        assert doc["muce_task"] == slug
        assert ".." not in doc["prompt"] and "?." not in doc["prompt"], doc["prompt"]
        unfilled = doc["prompt"].replace("{prompt}", "") if slug == "composites" else doc["prompt"]
        assert "{" not in unfilled and "}" not in unfilled, doc["prompt"]
        assert doc["prompt"].isascii()


def test_document_counts(rows):
    counts = {slug: len(heldout_documents(rows, slug)) for slug in muce.TASKS.values()}
    assert counts == DOCS_PER_TASK


def test_poems_ask_for_choice(rows):
    prompts = [d["prompt"] for d in heldout_documents(rows, "poems")]
    assert len(prompts) == 3
    assert any(p.endswith("concept: choice.") for p in prompts)
    assert prompts[0] == "Come up with an original and creative poem about the following concept: choice."


def test_composites_keep_the_papers_literal_wording(rows):
    (doc,) = heldout_documents(rows, "composites")
    assert doc["prompt"].endswith("as part of the compound word: {prompt}.")
