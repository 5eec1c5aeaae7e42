"""MuCE-schema data: the hub dataset, local files in its schema, and ocsai files.

MuCE (`CNCL-Penn-State/MuCE`) rows carry `TasksNamesFull` (the creativity test),
`Prompt` (the item, e.g. "brick"), `Response`, `facsco_grm_scaled` (human score on a
10-50 scale), `RatingLabel`, `Language` and `Set` (the split: train, val, test,
heldout_item, heldout_task). Task names are reduced to short slugs (`aut`, `poems`,
`rlcps`, ...) so that tasks, pairs and reports agree on one spelling.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HUB_ID = "CNCL-Penn-State/MuCE"
SPLITS = ("train", "val", "test", "heldout_item", "heldout_task")
HELDOUT_SPLITS = ("heldout_item", "heldout_task")
ENGLISH = {"en", "eng", "english"}

# Spellings of task names seen in MuCE and in the creativity literature -> our slug.
TASK_ALIASES = {
    "alternate_uses": "aut", "alternative_uses": "aut", "alternate_uses_task": "aut", "uses": "aut",
    "aut": "aut", "real_life_creative_problem_solving": "rlcps", "real_life_problem_solving": "rlcps",
    "creative_problem_solving": "rlcps", "rlcps": "rlcps", "completion": "sentence_completion",
    "sentence_completion": "sentence_completion", "poem": "poems", "poetry": "poems", "story": "stories",
    "short_story": "stories", "short_stories": "stories", "metaphor": "metaphors", "essay": "essays",
    "question": "question_asking", "questions": "question_asking", "research_question": "research_questions",
    "hypothesis": "hypothesis_generation", "hypotheses": "hypothesis_generation",
    "design_solution": "design_solutions", "design": "design_solutions", "association": "associations",
    "word_associations": "associations", "consequence": "consequences", "instance": "instances",
    "experimental_design": "experiment_design", "malevolent_problem": "malevolent_problems",
    "malevolent_creativity": "malevolent_problems",
}

# ocsai prompt prefixes -> MuCE task names
OCSAI_TASKS = {"DT Uses": "Alternate Uses", "AUT": "Alternate Uses", "DT Instances": "Instances",
               "DT Consequences": "Consequences", "DT Completion": "Sentence Completion"}
OCSAI_LINE = re.compile(r"^(?P<task>.+?) Prompt:(?P<item>.*?)\nResponse:(?P<response>.*)\nScore:\n?$", re.S)


# One instruction per MuCE task, in the paper's style; {item} is MuCE's `Prompt`.
INSTRUCTIONS = {
    "poems": "Come up with an original and creative poem about the following concept: {item}.",
    "stories": "Write an original and creative short story about the following concept: {item}.",
    "aut": "Come up with an original and creative use for the following object: {item}.",
    "sentence_completion": "Complete the following sentence in an original and creative way: {item}",
    "metaphors": "Come up with an original and creative metaphor for the following concept: {item}.",
    "essays": "Write an original and creative short essay on the following topic: {item}.",
    "rlcps": "Come up with an original and creative solution to the following real-life problem: {item}",
    "question_asking": "Ask an original and creative question about the following object: {item}.",
    "research_questions": "Propose an original and creative research question about the following topic: {item}.",
    "hypothesis_generation": "Come up with an original and creative hypothesis to explain the following "
                             "observation: {item}",
    "design_solutions": "Come up with an original and creative design that addresses the following need: {item}",
    "associations": "Come up with an original and creative association for the following word: {item}.",
    "consequences": "Come up with an original and creative consequence of the following hypothetical "
                    "situation: {item}",
    "instances": "Come up with an original and creative example of something that is {item}.",
    "experiment_design": "Design an original and creative experiment to test the following idea: {item}",
    "malevolent_problems": "Come up with an original and creative way to deal with the following problem: {item}",
}
GENERIC_INSTRUCTION = "Give an original and creative response to the following prompt: {item}"


def instruction(task: str, item: str) -> str:
    """The user message that asks for a response to `item` of MuCE task `task` (a slug)."""
    return INSTRUCTIONS.get(task, GENERIC_INSTRUCTION).format(item=item.strip())


def task_slug(name: str) -> str:
    """'Alternate Uses' -> 'aut'; unknown names become lowercase_with_underscores."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return TASK_ALIASES.get(slug, slug)


def is_english(language) -> bool:
    return language is None or str(language).strip().lower() in ENGLISH


def read_ocsai(path: str | Path, split: str) -> list[dict]:
    """ocsai lines {"prompt": "<Task> Prompt:<item>\\nResponse:<text>\\nScore:\\n", "completion": "<score>"}
    as MuCE rows of split `split`."""
    rows = []
    with Path(path).open(encoding="utf-8") as lines:
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                match = OCSAI_LINE.match(record["prompt"])
                score = float(record["completion"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{path}:{lineno}: not an ocsai line ({type(err).__name__}: {err})") from None
            if match is None or match["task"] not in OCSAI_TASKS:
                raise ValueError(f"{path}:{lineno}: not an ocsai prompt: {record['prompt'][:60]!r}")
            rows.append({
                "TasksNamesFull": OCSAI_TASKS[match["task"]], "Prompt": match["item"].strip(),
                "Response": match["response"].strip(), "facsco_grm_scaled": score, "RatingLabel": score,
                "Language": "eng", "Set": split,
            })
    return rows


def read_table(path: str | Path) -> list[dict]:
    """A local file in MuCE's schema: JSONL, CSV or parquet (the split is in `Set`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MuCE data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as lines:
            rows = [json.loads(line) for line in lines if line.strip()]
    elif suffix == ".csv":
        import csv

        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        raise ValueError(f"MuCE data file {path}: expected .jsonl, .csv or .parquet")
    for k, row in enumerate(rows, start=1):
        missing = [c for c in ("TasksNamesFull", "Prompt", "Set") if c not in row]
        if missing:
            raise ValueError(f"MuCE data file {path}, row {k}: missing column(s) {missing}")
    return rows


def load_rows(source: str | None = None, splits=SPLITS) -> list[dict]:
    """MuCE rows of `splits` from a local file, or from the hub when `source` is None/the hub id."""
    if source and source != HUB_ID:
        return [r for r in read_table(source) if r["Set"] in splits]
    import datasets

    try:
        hub = datasets.load_dataset(HUB_ID)
    except Exception as err:
        raise RuntimeError(
            f"cannot load {HUB_ID} from the hub ({type(err).__name__}). Without network access pass a "
            "local file in MuCE's schema: --metadata '{\"muce_data\": \"/path/muce.jsonl\"}' "
            "or CRPO_MUCE_DATA=/path/muce.jsonl"
        ) from err
    return [dict(r, Set=split) for split in splits if split in hub for r in hub[split]]


def read_rated(source: str | Path, split: str = "train") -> list[dict]:
    """Human-rated rows in MuCE's schema from an ocsai file, a local MuCE-schema file, or
    "hub" (MuCE on the hub); only rows with a numeric score are kept."""
    if str(source) == "hub":
        rows = load_rows(None, splits=(split,))
    else:
        path = Path(source)
        with path.open(encoding="utf-8") as f:
            first = f.readline()
        is_ocsai = path.suffix == ".jsonl" and first.strip() and {"prompt", "completion"} <= set(json.loads(first))
        rows = read_ocsai(path, split) if is_ocsai else read_table(path)
    rated = []
    for r in rows:
        try:
            rated.append({**r, "facsco_grm_scaled": float(r["facsco_grm_scaled"])})
        except (KeyError, TypeError, ValueError):
            continue
    return rated
