"""`crpo-bench noveltybench --eval-dir DIR`: NoveltyBench partitions, scores and summary.

Reads DIR/generations.jsonl in NoveltyBench's format ({"id", "prompt", "generations", ...};
`--samples FILE` converts an lm-eval samples file of our noveltybench tasks first) and
writes, with NoveltyBench's field names:
- partitions.jsonl: the row plus `partition` and `distinct` (= classes - 1, exactly as the
  reference partition step writes it) and `num_classes`;
- scores.jsonl: plus `generation_scores`, `partition_scores`, `utility` (null without a
  reward model), and our per-prompt `novelty` and `diversity`;
- summary.json: `mean_distinct` (number of classes per prompt, averaged) and `mean_utility`
  (or null, with the reason), as the reference summary names them, plus our own fields.
A partitions.jsonl already in the folder (ours, or the reference's) is used as it is.
Both JSONL files are appended one prompt at a time and a rerun resumes after the last
finished prompt, so a crash loses at most the prompt in progress.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import noveltybench as nb
from ..scoring import counted_mean
from ..jsonl import InputError, read_jsonl

SETTINGS_FILE = "noveltybench_settings.json"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("noveltybench", help="NoveltyBench partitions, utility and summary for a folder",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval-dir", required=True, type=Path, help="folder with generations.jsonl; outputs go here")
    p.add_argument("--samples", type=Path, help="an lm-eval samples_noveltybench_*.jsonl to convert first")
    # The default matches the lm-eval tasks': offline, where the classifier cannot load.
    p.add_argument("--equivalence", choices=nb.BACKENDS, default="embedding",
                   help="embedding (offline, the default), unigram, or classifier (the reference's; needs the hub "
                        "or --classifier FOLDER)")
    p.add_argument("--classifier", default=nb.CLASSIFIER_ID, help="equivalence classifier: hub id or local folder")
    p.add_argument("--embedder", help="sentence embedder for --equivalence embedding (default: packaged MiniLM)")
    p.add_argument("--reward-model", help="reward model for utility (the reference uses Skywork-Reward-Gemma-2-27B-v0.2)")
    p.add_argument("--patience", type=float, default=nb.PATIENCE)
    p.add_argument("--k", type=int, default=10, help="generations needed per prompt (default 10)")


def samples_to_generations(samples: Path, target: Path) -> None:
    """lm-eval samples of a noveltybench task -> NoveltyBench generations.jsonl."""
    rows = []
    for lineno, sample in read_jsonl(samples):
        try:
            doc, answers = sample["doc"], sample["filtered_resps"][0]
            rows.append({"id": doc["id"], "prompt": doc["prompt"], "generations": list(answers)})
        except (KeyError, IndexError, TypeError) as err:
            raise InputError(f"{samples}:{lineno}: not an lm-eval sample of a noveltybench task ({err!r})") from None
    target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_generations(path: Path, k: int) -> list[dict]:
    rows, seen = [], set()
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        for field, kind in (("id", str), ("prompt", str), ("generations", list)):
            if not isinstance(row.get(field), kind):
                raise InputError(f"{where}: field {field!r} must be a {kind.__name__}")
        where += f" (prompt id {row['id']})"
        if row["id"] in seen:
            raise InputError(f"{where}: duplicate prompt id")
        seen.add(row["id"])
        if len(row["generations"]) < k:
            raise InputError(f"{where}: {len(row['generations'])} generations, NoveltyBench needs {k}")
        for j, g in enumerate(row["generations"]):
            if not isinstance(g, str) or not g.strip():
                raise InputError(f"{where}: generation {j} is empty or not a string")
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no prompts")
    return rows


def finished_ids(path: Path) -> set[str]:
    """Ids already written; a torn last line (a crash mid-write) is dropped so it is redone."""
    if not path.exists():
        return set()
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    good = []
    for line in lines:
        try:
            good.append(json.loads(line)["id"])
        except (json.JSONDecodeError, KeyError):
            break
    if len(good) < len(lines):
        path.write_text("".join(lines[: len(good)]), encoding="utf-8")
    return set(good)


def append(path: Path, record: dict) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())


def check_settings(eval_dir: Path, settings: dict) -> None:
    """Resuming with other settings would mix two evaluations in one file: refuse."""
    path = eval_dir / SETTINGS_FILE
    if path.exists():
        before = json.loads(path.read_text())
        if before != settings:
            changed = sorted(k for k in settings if before.get(k) != settings[k])
            raise InputError(f"{eval_dir} holds results made with other settings ({', '.join(changed)}); "
                             "use a new --eval-dir or delete partitions.jsonl, scores.jsonl and " + SETTINGS_FILE)
    else:
        path.write_text(json.dumps(settings, indent=1))


def score_record(partition_row: dict, ratings: list[int] | None, patience: float) -> dict:
    """A scores.jsonl row: the partitions row plus its scores (null without ratings).
    `num_classes` is recomputed: the reference's partitions rows do not carry it."""
    labels = partition_row["partition"]
    record = {**partition_row, "num_classes": max(labels) + 1,
              "generation_scores": None, "partition_scores": None, "utility": None}
    if ratings is not None:
        record["generation_scores"] = nb.generation_scores(labels, ratings)
        record["partition_scores"] = nb.partition_scores(labels, ratings)
        record["utility"] = nb.utility(record["generation_scores"], patience)
    return record


def _mean_of_known(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def summarize(scores: list[dict], with_utility: bool) -> dict:
    """summary.json's values: the reference's `mean_distinct` (classes per prompt, averaged;
    the reference averages len(partition_scores), one entry per class) and `mean_utility`."""
    mean_distinct = float(np.mean([max(r["partition"]) + 1 for r in scores]))
    mean_utility = float(np.mean([r["utility"] for r in scores])) if with_utility else None
    summary = {
        "mean_distinct": mean_distinct,
        "mean_utility": mean_utility,
        # Our earlier names for the same two values, still read by tests/test_lmeval_cli.py.
        "distinct": mean_distinct,
        "utility": mean_utility,
        "novelty": _mean_of_known([r["novelty"] for r in scores]),
        "diversity": _mean_of_known([r["diversity"] for r in scores]),
        "num_prompts": len(scores),
        "distinct_means": "number of equivalence classes per prompt, averaged (partitions.jsonl's "
                          "`distinct` is classes - 1, as in the reference files)",
    }
    if not with_utility:
        summary["utility_unavailable"] = "no reward model given (--reward-model)"
    return summary


def run(args: argparse.Namespace) -> int:
    from ..scoring import Scorer, ScoringConfig

    eval_dir: Path = args.eval_dir
    eval_dir.mkdir(parents=True, exist_ok=True)
    if args.samples:
        samples_to_generations(args.samples, eval_dir / "generations.jsonl")
    rows = read_generations(eval_dir / "generations.jsonl", args.k)
    settings = {"equivalence": args.equivalence, "classifier": args.classifier if args.equivalence == "classifier"
                else None, "embedder": args.embedder, "reward_model": args.reward_model, "patience": args.patience}
    check_settings(eval_dir, settings)
    scorer = Scorer(ScoringConfig(embedder=args.embedder, reward_model=args.reward_model))  # loads models lazily

    partitions_path, scores_path = eval_dir / "partitions.jsonl", eval_dir / "scores.jsonl"
    todo = [r for r in rows if r["id"] not in finished_ids(partitions_path)]
    if todo:
        equivalent = nb.make_equivalence(
            args.equivalence, [g for r in todo for g in r["generations"]],
            lambda texts: scorer.embed(texts, "embedding generations", scorer.config.text_batch_size, progress=True),
            args.classifier)
        for row in tqdm(todo, desc=f"partitions ({args.equivalence})", unit="prompt"):
            labels = nb.partition(row["generations"], equivalent)
            append(partitions_path, {**row, "partition": labels, "distinct": max(labels),
                                     "num_classes": max(labels) + 1})
    partitions = {r["id"]: r for _, r in read_jsonl(partitions_path)}

    todo = [r for r in rows if r["id"] not in finished_ids(scores_path)]
    if todo:
        for row in tqdm(todo, desc="scores", unit="prompt"):
            gens = row["generations"]
            semantic = scorer.score(gens, prompts=[row["prompt"]] * len(gens), metrics=["novelty", "diversity"]).rows
            ratings = None
            if args.reward_model:
                rewards = scorer.score(gens, prompts=[row["prompt"]] * len(gens), metrics=["quality"]).rows
                ratings = [nb.rating(r["quality"]) for r in rewards]
            record = score_record(partitions[row["id"]], ratings, args.patience)
            record["novelty"] = counted_mean(semantic, "novelty")  # None: every generation degenerate
            record["diversity"] = counted_mean(semantic, "diversity")
            append(scores_path, record)

    scores = [r for _, r in read_jsonl(scores_path) if r["id"] in {row["id"] for row in rows}]
    summary = {**summarize(scores, with_utility=bool(args.reward_model)), **settings}
    tmp = eval_dir / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, eval_dir / "summary.json")
    print(json.dumps({k: summary[k] for k in ("mean_distinct", "mean_utility", "novelty", "diversity",
                                               "num_prompts")}))
    print(f"wrote partitions.jsonl, scores.jsonl and summary.json in {eval_dir}", file=sys.stderr)
    return 0
