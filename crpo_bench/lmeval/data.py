"""lm-eval `custom_dataset` loaders: MuCE's held-out prompts and NoveltyBench's prompts.

Each document carries everything its results need: the task name, the prompt asked, and
for MuCE the item and task type (for originality and semantic distance).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .. import muce
from ..muce.prompts import user_prompt
from .settings import given_or_environment, muce_template

log = logging.getLogger("crpo_bench.lmeval")


class DataUnavailable(ValueError):
    """A task's data cannot be had (no hub, no such file, no prompts of the task in it). The
    `lm_eval` command says it in one line and exits 2 (crpo_bench/lmeval_hook.py)."""

    crpo_bench_one_line = True

NOVELTYBENCH_HUB_ID = "yimingzhang/novelty-bench"
# Three held-out prompts of each of the 26 task types in MuCE's raw layout (our own items and
# wordings through the paper's prompt builder): what the tasks evaluate when the hub cannot be
# reached and no data is given, and what `muce_data: "examples"` asks for by name.
MUCE_EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "muce_examples.jsonl"
EXAMPLES_NAMES = ("examples", "embedded")
_hub_failure: list[str] = []  # the hub's first failure in this process: later tasks do not wait for it again
NOVELTYBENCH_FILES = {"curated": "curated.jsonl", "wildchat": "wildchat-1k.jsonl"}


def heldout_documents(rows: list[dict], muce_task: str, template: str = "default",
                      prompts_per_task: int | None = None) -> list[dict]:
    """The paper's evaluation documents of one task: English held-out rows (heldout_item,
    then heldout_task, each in data order), one per distinct full prompt (the first),
    rows the paper excludes left out; `prompts_per_task` keeps the first N (the paper's -np)."""
    order = {split: k for k, split in enumerate(muce.HELDOUT_SPLITS)}
    rows = sorted((r for r in rows if r["split"] in order), key=lambda r: order[r["split"]])  # stable
    docs, seen = [], set()
    for row in rows:
        if muce.task_slug(row["TasksNamesFull"], strict=False) != muce_task or not muce.is_english(row.get("Language")):
            continue
        full = muce.row_full_prompt(row)
        if full is None or full in seen:
            continue
        seen.add(full)
        docs.append({"item": str(row["Prompt"]).strip(), "muce_task": muce_task, "full_prompt": full,
                     "prompt": user_prompt(muce.task_name(muce_task), full, template),
                     "dataset": str(row.get("Dataset") or ""), "split": row["split"]})
    return docs[:prompts_per_task] if prompts_per_task else docs


def muce_dataset(task_name: str, muce_task: str | None = None, muce_data: str | None = None,
                 muce_config: str | None = None, template: str | None = None,
                 prompts_per_task: int | str | None = None, **_):
    """lm-eval `custom_dataset`: the paper's held-out evaluation prompts of one MuCE task.

    `muce_task` comes from the task's YAML; `muce_any` takes it from --metadata instead.
    `template` (default, short_response, constrained_response, scr) and
    `prompts_per_task` come from --metadata or the environment.
    """
    import datasets

    if not muce_task:
        raise ValueError(f"{task_name}: say which MuCE task type to evaluate, e.g. "
                         "--metadata '{\"muce_task\": \"analogies\"}' (a slug or TasksNamesFull)")
    muce_task = muce.task_slug(muce_task)
    source = given_or_environment("muce_data", muce_data)
    config = given_or_environment("muce_config", muce_config)
    template = muce_template(template)
    limit = given_or_environment("prompts_per_task", prompts_per_task)
    try:
        rows, source = heldout_rows(source, config, task_name)
    except (RuntimeError, ValueError, FileNotFoundError) as err:
        raise DataUnavailable(f"{task_name}: {err}") from None
    docs = heldout_documents(rows, muce_task, template, int(limit) if limit else None)
    if not docs:
        raise DataUnavailable(f"{task_name}: no English held-out prompts ({', '.join(muce.HELDOUT_SPLITS)}) of MuCE task "
                         f"{muce.task_name(muce_task)!r} in {source}")
    log.info("%s: %d prompts from %s (template %s)", task_name, len(docs), source, template)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([{"task": task_name, **d} for d in docs])})


def heldout_rows(source: str | None, config: str | None, task_name: str) -> tuple[list[dict], str]:
    """MuCE's held-out rows and where they came from: `source` (a file or folder), the embedded
    examples by name, else the hub, else (hub unreachable) the embedded examples, said in one line."""
    if source in EXAMPLES_NAMES:
        return _examples()
    if source not in (None, "", "hub", muce.HUB_ID):
        return muce.load_rows(source, splits=muce.HELDOUT_SPLITS, config=config), source
    if source or not _hub_failure:
        try:
            return muce.load_rows(None, splits=muce.HELDOUT_SPLITS, config=config), muce.HUB_ID
        except RuntimeError as err:
            if source:  # the hub by name: no stand-in
                raise
            _hub_failure.append(str(err).split(" Without")[0].rstrip("."))
    log.warning("%s: %s; evaluating the embedded example prompts instead (%s, up to 3 per task type: a smoke "
                "test, not the benchmark)", task_name, _hub_failure[0], MUCE_EXAMPLES.name)
    return _examples()


def _examples() -> tuple[list[dict], str]:
    return muce.load_rows(str(MUCE_EXAMPLES), splits=muce.HELDOUT_SPLITS), str(MUCE_EXAMPLES)


def noveltybench_dataset(subset: str, task_name: str, noveltybench_data: str | None = None, **_):
    """lm-eval `custom_dataset`: NoveltyBench prompts from the hub, or a local JSONL in the
    published format (a file, or a folder holding curated.jsonl / wildchat-1k.jsonl)."""
    import datasets

    source = given_or_environment("noveltybench_data", noveltybench_data)
    if source:
        path = Path(source) / NOVELTYBENCH_FILES[subset] if Path(source).is_dir() else Path(source)
        if not path.is_file():
            raise DataUnavailable(f"{task_name}: NoveltyBench data {path} does not exist")
        rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    else:
        try:
            rows = list(datasets.load_dataset(NOVELTYBENCH_HUB_ID, split=subset))
        except Exception as err:
            raise DataUnavailable(f"{task_name}: cannot load {NOVELTYBENCH_HUB_ID} from the hub ({type(err).__name__}); "
                                  "offline, give NoveltyBench's published prompts: --metadata "
                                  "'{\"noveltybench_data\": \"/path/to/novelty-bench/data\"}' or "
                                  "CRPO_NOVELTYBENCH_DATA=/path/to/novelty-bench/data") from None
    docs = [{"task": task_name, "id": str(r["id"]), "prompt": r["prompt"]} for r in rows]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})
