"""MuCE data in every published layout: the hub dataset, local files, and ocsai files.

MuCE (`CNCL-Penn-State/MuCE`) rows carry `TasksNamesFull` (the creativity test, e.g.
"Alternate Uses of Objects Task"), `Dataset` (the study it comes from), `Prompt` (the
item, e.g. "brick"), `Response`, `facsco_grm_scaled` (human score on a 10-50 scale),
`RatingLabel`, `Language`, `TaskType` (text or image) and `Set`. Two layouts exist:

- raw: one split (`train`) whose `Set` column says where a row belongs, in CamelCase
  (`Training`, `Validation`, `Test`, `HeldoutItem`, `HeldoutTask`, `HeldoutLanguage`);
- processed (the paper's `prepare_raw_data.py`): a DatasetDict with splits `train`,
  `val`, `test`, `heldout_item`, `heldout_task`, `heldout_language` and a `FullPrompt`.

Every row read here gets `split` (the processed name), from `Set` where the row has one,
else from the split or file it came from. Task names map to short slugs (`aut`,
`poems`, `rlcps`, ...) so that tasks, pairs and reports agree on one spelling; an
unknown task name is an error that lists the known ones.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from ..jsonl import bounded_lines, decode_line, parse_line, read_jsonl
from .prompts import ENGLISH, full_prompt

HUB_ID = "CNCL-Penn-State/MuCE"
SET_TO_SPLIT = {"Training": "train", "Validation": "val", "Test": "test", "HeldoutItem": "heldout_item",
                "HeldoutTask": "heldout_task", "HeldoutLanguage": "heldout_language"}
SPLITS = tuple(SET_TO_SPLIT.values())
HELDOUT_SPLITS = ("heldout_item", "heldout_task")  # the paper evaluates on these

# The 26 task types of the paper's code (TasksNamesFull) -> our slug.
TASKS = {
    "Consequences": "consequences",
    "Alternate Uses of Objects Task": "aut",
    "Design Solutions": "design_solutions",
    "Real-Life Creative Problem Solving": "rlcps",
    "Metaphors": "metaphors",
    "Research Questions": "research_questions",
    "Hypothesis Generation": "hypothesis_generation",
    "Experiment Design": "experiment_design",
    "Malevolent Problems": "malevolent_problems",
    "Question Asking": "question_asking",
    "Sentence Completion": "sentence_completion",
    "Instances of Common Concepts": "instances",
    "Analogies": "analogies",
    "Stories": "stories",
    "Associations": "associations",
    "Essays": "essays",
    "Poems": "poems",
    "Emotions in Everyday Situations": "everyday_emotions",
    "Evoking Emotional Responses from People": "evoking_emotions",
    "Emotional Trials": "emotional_trials",
    "Invent Nicknames": "nicknames",
    "Composites": "composites",
    "Alternate Titles Generation": "alternate_titles",
    "Situation Redescription": "situation_redescription",
    "Plot Titles Generation": "plot_titles",
    "Combining Objects": "combining_objects",
}
TASK_NAMES = {slug: name for name, slug in TASKS.items()}  # slug -> TasksNamesFull
PAPER_TASKS = ("rlcps", "aut", "design_solutions", "hypothesis_generation", "metaphors", "poems",
               "sentence_completion")  # the paper's evaluation set

# Older and other spellings (normalised to lowercase_with_underscores) -> our slug.
TASK_ALIASES = {
    **{re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_"): slug for name, slug in TASKS.items()},
    **{slug: slug for slug in TASKS.values()},
    "alternate_uses": "aut", "alternative_uses": "aut", "alternate_uses_task": "aut", "uses": "aut",
    "real_life_problem_solving": "rlcps", "creative_problem_solving": "rlcps", "completion": "sentence_completion",
    "poem": "poems", "poetry": "poems", "story": "stories", "short_story": "stories", "short_stories": "stories",
    "metaphor": "metaphors", "essay": "essays", "question": "question_asking", "questions": "question_asking",
    "research_question": "research_questions", "hypothesis": "hypothesis_generation",
    "hypotheses": "hypothesis_generation", "design_solution": "design_solutions", "design": "design_solutions",
    "association": "associations", "word_associations": "associations", "consequence": "consequences",
    "instance": "instances", "instances_of_concepts": "instances", "experimental_design": "experiment_design",
    "malevolent_problem": "malevolent_problems", "malevolent_creativity": "malevolent_problems",
    "analogy": "analogies", "nickname": "nicknames", "composite": "composites", "alternate_titles": "alternate_titles",
    "plot_titles": "plot_titles",
}

# ocsai prompt prefixes -> MuCE task names
OCSAI_TASKS = {"DT Uses": "Alternate Uses of Objects Task", "AUT": "Alternate Uses of Objects Task",
               "DT Instances": "Instances of Common Concepts", "DT Consequences": "Consequences",
               "DT Completion": "Sentence Completion"}
OCSAI_LINE = re.compile(r"^(?P<task>.+?) Prompt:(?P<item>.*?)\nResponse:(?P<response>.*)\nScore:\n?$", re.S)


def task_slug(name: str, strict: bool = True) -> str:
    """'Alternate Uses of Objects Task' (or 'Alternate Uses', 'aut') -> 'aut'.

    An unknown name is an error listing the known ones; with strict=False it becomes
    lowercase_with_underscores (free-text task fields of files to score).
    """
    slug = re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")
    if slug in TASK_ALIASES:
        return TASK_ALIASES[slug]
    if strict:
        raise ValueError(f"unknown MuCE task {name!r}; known task types: {', '.join(TASKS)}")
    return slug


def task_name(task: str) -> str:
    """Any spelling of a task -> its TasksNamesFull ('aut' -> 'Alternate Uses of Objects Task')."""
    return TASK_NAMES[task_slug(task)]


def split_of(set_value) -> str:
    """`Set` in either layout ('HeldoutItem' or 'heldout_item') -> 'heldout_item'."""
    value = str(set_value).strip()
    if value in SET_TO_SPLIT:
        return SET_TO_SPLIT[value]
    if value in SPLITS:
        return value
    raise ValueError(f"unknown MuCE Set {set_value!r}: expected one of {', '.join(SET_TO_SPLIT)} "
                     f"(raw layout) or {', '.join(SPLITS)} (processed)")


def row_full_prompt(row: dict) -> str | None:
    """The paper's instruction for a row: its `FullPrompt` where it has one, else built."""
    if row.get("FullPrompt") not in (None, ""):
        return str(row["FullPrompt"])
    return full_prompt(task_name(row["TasksNamesFull"]), row.get("Dataset"), str(row["Prompt"]),
                       row.get("Language"))


def is_english(language) -> bool:
    return language is None or str(language).strip().lower() in ENGLISH


def read_ocsai(path: str | Path, split: str) -> list[dict]:
    """ocsai lines {"prompt": "<Task> Prompt:<item>\\nResponse:<text>\\nScore:\\n", "completion": "<score>"}
    as MuCE rows of split `split`."""
    rows = []
    for lineno, data in bounded_lines(Path(path)):  # bytes: a bad byte is named by its line
        line = decode_line(data, f"{path}:{lineno}")
        if not line.strip():
            continue
        record = parse_line(line, f"{path}:{lineno}")
        try:
            match = OCSAI_LINE.match(record["prompt"])
            score = float(record["completion"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}:{lineno}: not an ocsai line ({type(err).__name__}: {err})") from None
        if match is None or match["task"] not in OCSAI_TASKS:
            raise ValueError(f"{path}:{lineno}: not an ocsai prompt: {record['prompt'][:60]!r}")
        if not math.isfinite(score):
            raise ValueError(f"{path}:{lineno}: completion: not a finite score: {record['completion']!r}")
        rows.append({
            "TasksNamesFull": OCSAI_TASKS[match["task"]], "Dataset": "ocsai", "Prompt": match["item"].strip(),
            "Response": match["response"].strip(), "facsco_grm_scaled": score, "RatingLabel": score,
            "Language": "English", "TaskType": "text", "Set": split, "split": split,
            "_where": f"{path}:{lineno}",
        })
    return rows


def _with_split(rows: list[dict], origin: str, default_split: str | None,
                lines: list[int] | None = None) -> list[dict]:
    """Text rows only, each with `split` from its `Set` (either layout), else `default_split`,
    and `_where` ("FILE:LINE", or "SOURCE, row K") for messages about it."""
    out = []
    for k, row in enumerate(rows, start=1):
        where = f"{origin.removeprefix('MuCE data file ')}:{lines[k - 1]}" if lines else f"{origin}, row {k}"
        missing = [c for c in ("TasksNamesFull", "Prompt") if c not in row]
        if missing:
            raise ValueError(f"{where}: missing column(s) {missing}")
        if str(row.get("TaskType") or "text").lower() != "text":
            continue  # the paper keeps text tasks; image rows have no prompt text to ask
        if row.get("Set") not in (None, ""):
            try:
                split = split_of(row["Set"])
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
        elif default_split is not None:
            split = default_split
        else:
            raise ValueError(f"{where}: no `Set` column, and the file name does not name a split "
                             f"({', '.join(SPLITS)})")
        out.append({**row, "split": split, "_where": where})
    return out


def read_table(path: str | Path) -> list[dict]:
    """Local MuCE data in either layout: a JSONL, CSV or parquet file (split from `Set`, or from
    a file named after a split, e.g. heldout_item.jsonl), a folder of such per-split files, or
    a DatasetDict folder written by `datasets.save_to_disk`."""
    path = Path(path)
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            import datasets

            data = datasets.load_from_disk(str(path))
            return [r for split in data for r in _with_split(list(data[split]), f"{path}[{split}]", split)]
        files = sorted(p for p in path.iterdir() if p.stem in SPLITS and p.suffix.lower() in (".jsonl", ".csv", ".parquet"))
        if not files:
            raise FileNotFoundError(f"MuCE data folder {path} holds neither a saved DatasetDict nor per-split files "
                                    f"({', '.join(SPLITS)}).jsonl/.csv/.parquet")
        return [r for f in files for r in read_table(f)]
    if not path.is_file():
        raise FileNotFoundError(f"MuCE data file {path} does not exist")
    suffix = path.suffix.lower()
    numbers = None
    if suffix in (".jsonl", ".json"):
        records = read_jsonl(path)  # FILE:LINE for bad bytes, bad JSON and non-objects
        numbers, rows = [n for n, _ in records], [r for _, r in records]
    elif suffix == ".csv":
        import csv

        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        raise ValueError(f"MuCE data file {path}: expected .jsonl, .csv or .parquet")
    return _with_split(rows, f"MuCE data file {path}", path.stem if path.stem in SPLITS else None, numbers)


def load_hub(config: str | None = None) -> list[dict]:
    """MuCE from the hub, raw (one split, `Set` per row) or processed (one split per `Set`)."""
    import datasets

    try:
        hub = datasets.load_dataset(HUB_ID, name=config)
    except Exception as err:
        raise RuntimeError(
            f"cannot load {HUB_ID} (config {config or 'default'}) from the hub ({type(err).__name__}). Without "
            "network access pass a local file in MuCE's schema: --metadata '{\"muce_data\": \"/path/muce.jsonl\"}' "
            "or CRPO_MUCE_DATA=/path/muce.jsonl"
        ) from err
    return [r for split in hub for r in _with_split(list(hub[split]), f"{HUB_ID}[{split}]",
                                                    split if split in SPLITS else None)]


def load_rows(source: str | None = None, splits=SPLITS, config: str | None = None) -> list[dict]:
    """MuCE rows of `splits` from a local file or folder, or from the hub when `source` is
    None, "hub" or the hub id (`config` names a hub configuration, e.g. full_agreement)."""
    rows = load_hub(config) if source in (None, "", "hub", HUB_ID) else read_table(source)
    return [r for r in rows if r["split"] in splits]


def read_rated(source: str | Path, split: str | None = None, config: str | None = None,
               notice=None) -> list[dict]:
    """Human-rated rows in MuCE's schema from an ocsai file (all of split `split`, default
    train), a local MuCE file or folder in either layout, or "hub" (`config` names a hub
    configuration); for MuCE data, `split` keeps that split only (None: every split).

    Rows without a score (empty or null) are unrated and left out (`notice` is told how
    many); a score that is not a finite number, or a row without `Response`, is an error
    naming the row."""
    if str(source) == "hub":
        rows = load_rows(None, config=config)
    else:
        path = Path(source)
        first = ""
        if path.is_file():
            with path.open(encoding="utf-8", errors="replace") as f:
                first = f.readline()
        try:
            is_ocsai = path.suffix == ".jsonl" and first.strip() and {"prompt", "completion"} <= set(json.loads(first))
        except (ValueError, TypeError, RecursionError):  # ValueError includes JSONDecodeError
            is_ocsai = False  # read_table names the bad line
        if is_ocsai:
            return _scored(read_ocsai(path, split or "train"), notice)
        rows = read_table(path)
    return _scored([r for r in rows if split is None or r["split"] == split], notice)


def _scored(rows: list[dict], notice=None) -> list[dict]:
    rated, unrated = [], 0
    for r in rows:
        where = r.get("_where", "MuCE row")
        if "Response" not in r:
            raise ValueError(f"{where}: missing column 'Response'")
        value = r.get("facsco_grm_scaled")
        if value is None or (isinstance(value, str) and not value.strip()):
            unrated += 1
            continue
        try:
            score = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: facsco_grm_scaled: not a number: {value!r}") from None
        if not math.isfinite(score):
            raise ValueError(f"{where}: facsco_grm_scaled: not a finite number: {value!r}")
        rated.append({**r, "facsco_grm_scaled": score})
    if unrated and notice:
        notice(f"{unrated} row(s) without a score (facsco_grm_scaled) left out as unrated")
    return rated
