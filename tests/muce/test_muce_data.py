"""MuCE-schema data: ocsai parsing, local files in three formats, held-out prompt selection, prompts."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from crpo_bench import lmeval, muce

ROWS = [
    {"TasksNamesFull": "Alternate Uses", "Prompt": "brick", "Response": "a doorstop", "facsco_grm_scaled": 20.0,
     "RatingLabel": 20.0, "Language": "eng", "Set": "heldout_item"},
    {"TasksNamesFull": "Alternate Uses", "Prompt": "brick ", "Response": "grind to pigment", "facsco_grm_scaled": 35.0,
     "RatingLabel": 35.0, "Language": "eng", "Set": "heldout_item"},
    {"TasksNamesFull": "Alternate Uses", "Prompt": "shoe", "Response": "a plant pot", "facsco_grm_scaled": 30.0,
     "RatingLabel": 30.0, "Language": "eng", "Set": "heldout_task"},
    {"TasksNamesFull": "Alternate Uses", "Prompt": "ziegel", "Response": "ein Türstopper", "facsco_grm_scaled": 20.0,
     "RatingLabel": 20.0, "Language": "ger", "Set": "heldout_item"},
    {"TasksNamesFull": "Alternate Uses", "Prompt": "paperclip", "Response": "a hook", "facsco_grm_scaled": 25.0,
     "RatingLabel": 25.0, "Language": "eng", "Set": "train"},
    {"TasksNamesFull": "Poems", "Prompt": "rain", "Response": "drops", "facsco_grm_scaled": 25.0,
     "RatingLabel": 25.0, "Language": "eng", "Set": "heldout_item"},
]


def write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_ocsai_lines_become_muce_rows(tmp_path):
    src = tmp_path / "o.jsonl"
    src.write_text(
        '{"prompt": "DT Uses Prompt:brick\\nResponse:seat around a campfire\\nScore:\\n", "completion": "17"}\n'
        '{"prompt": "AUT Prompt:shoe\\nResponse:a boat\\nfor a mouse\\nScore:\\n", "completion": "31"}\n'
        '{"prompt": "DT Completion Prompt:My friend called me\\nResponse:to say hi\\nScore:\\n", "completion": "22"}\n'
    )
    rows = muce.read_ocsai(src, "heldout_item")
    assert rows[0] == {"TasksNamesFull": "Alternate Uses of Objects Task", "Dataset": "ocsai", "Prompt": "brick",
                       "Response": "seat around a campfire", "facsco_grm_scaled": 17.0, "RatingLabel": 17.0,
                       "Language": "English", "TaskType": "text", "Set": "heldout_item", "split": "heldout_item",
                       "_where": f"{src}:1"}
    assert rows[1]["Response"] == "a boat\nfor a mouse" and rows[1]["TasksNamesFull"] == "Alternate Uses of Objects Task"
    assert muce.task_slug(rows[2]["TasksNamesFull"]) == "sentence_completion"


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "DT Uses Prompt:brick\\nResponse:x\\nScore:\\n", "completion": "high"}', "o.jsonl:1: not an ocsai line"),
    ('{"prompt": "Tell me a joke", "completion": "10"}', "o.jsonl:1: not an ocsai prompt"),
    ('{"prompt": "DT Uses Prompt:brick', "o.jsonl:1: malformed JSON"),
])
def test_bad_ocsai_lines_are_named(tmp_path, line, message):
    src = tmp_path / "o.jsonl"
    src.write_text(line + "\n")
    with pytest.raises(ValueError, match=re.escape(message)):
        muce.read_ocsai(src, "train")


def test_real_ocsai_files_parse(shared_data):
    rows = muce.read_ocsai(shared_data / "ocsai1" / "alltests_val.jsonl", "heldout_item")
    assert len(rows) == 1263
    assert {muce.task_slug(r["TasksNamesFull"]) for r in rows} == {"aut", "instances", "consequences",
                                                                  "sentence_completion"}
    assert all(10 <= r["facsco_grm_scaled"] <= 50 for r in rows)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_local_files_in_three_formats_load_the_same_rows(tmp_path, suffix):
    rows = muce.load_rows(str(write(tmp_path / f"muce{suffix}", ROWS)), splits=muce.HELDOUT_SPLITS)
    assert [(r["Prompt"], r["split"]) for r in rows] == [(r["Prompt"], r["Set"]) for r in ROWS
                                                         if r["Set"] in muce.HELDOUT_SPLITS]


def test_local_file_missing_a_column_is_named(tmp_path):
    path = write(tmp_path / "m.jsonl", [{"Prompt": "brick", "Set": "test"}])
    with pytest.raises(ValueError, match=r"m.jsonl:1: missing column\(s\) \[.TasksNamesFull.\]"):
        muce.load_rows(str(path))


def test_task_documents_are_unique_english_heldout_prompts(tmp_path):
    path = write(tmp_path / "m.jsonl", ROWS)
    docs = lmeval.muce_dataset(muce_task="aut", task_name="muce_aut", muce_data=str(path))["test"]
    # "brick" twice (one with a trailing space) is one full prompt; German, train and poems are out
    assert docs["item"] == ["brick", "shoe"]
    assert docs["prompt"][0] == "Come up with an original and creative use for the following object: brick"
    assert set(docs["task"]) == {"muce_aut"}
    with pytest.raises(ValueError, match=r"no English held-out prompts \(heldout_item, heldout_task\) of MuCE task "
                                         "'Essays'"):
        lmeval.muce_dataset(muce_task="essays", task_name="muce_essays", muce_data=str(path))


def test_every_task_type_has_a_plain_and_a_pooled_yaml():
    from lm_eval.tasks._yaml_loader import load_yaml

    folder = Path(lmeval.__file__).parents[1] / "tasks" / "muce"
    if not folder.is_dir():
        folder = Path(__file__).resolve().parents[2] / "tasks" / "muce"
    base = load_yaml(folder / "_muce_template.yaml", resolve_func=False)
    pooled = load_yaml(folder / "_muce_16_template.yaml", resolve_func=False)
    assert {k: base["generation_kwargs"][k] for k in ("temperature", "top_p", "seed", "max_gen_toks")} == {
        "temperature": 0.7, "top_p": 0.95, "seed": None, "max_gen_toks": 1024}
    assert not {"top_k", "typical_p"} & set(base["generation_kwargs"])  # API models refuse them
    assert [(d["temperature"], d["top_p"], d["top_k"]) for d in pooled["metadata"]["decoding"]] == [
        (0.7, 0.95, 0), (0.9, 0.99, 0), (0.7, 1.0, 50), (0.8, 0.97, 0)]
    assert pooled["metadata"]["corpus"] == "prompt"
    for task in muce.TASK_NAMES:
        for suffix in ("", "_16"):
            config = load_yaml(folder / f"muce_{task}{suffix}.yaml", resolve_func=False)
            assert config["task"] == f"muce_{task}{suffix}"
            assert config["dataset_kwargs"] == {"muce_task": task, "task_name": f"muce_{task}{suffix}"}
            assert config["class"].endswith("PooledDecodingTask" if suffix else "CreativityTask")
    paper = load_yaml(folder / "_muce_paper.yaml", resolve_func=False)
    assert paper["task"] == [f"muce_{t}_16" for t in muce.PAPER_TASKS]


def test_muce_any_takes_its_task_type_from_metadata(tmp_path):
    path = write(tmp_path / "m.jsonl", ROWS)
    docs = lmeval.muce_dataset(task_name="muce_any", muce_task="poems", muce_data=str(path))["test"]
    assert docs["item"] == ["rain"]
    assert docs["prompt"] == ["Come up with an original and creative poem about the following concept: rain."]
    with pytest.raises(ValueError, match="unknown MuCE task 'humor'"):
        lmeval.muce_dataset(task_name="muce_any", muce_task="humor", muce_data=str(path))
    with pytest.raises(ValueError, match="muce_any: say which MuCE task type"):
        lmeval.muce_dataset(task_name="muce_any", muce_data=str(path))


def test_regenerating_the_task_yamls_changes_nothing(tmp_path):
    import importlib.util

    folder = Path(__file__).resolve().parents[2] / "tasks" / "muce"
    spec = importlib.util.spec_from_file_location("generate_configs", folder / "_generate_configs.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    generator.main(tmp_path)
    generated = {p.name: p.read_text() for p in tmp_path.glob("*.yaml")}
    committed = {p.name: p.read_text() for p in folder.glob("*.yaml") if not p.name.endswith("_template.yaml")}
    assert generated == committed  # rerun tasks/muce/_generate_configs.py after changing muce.TASKS
