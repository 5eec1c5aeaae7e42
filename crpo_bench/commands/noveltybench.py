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
Both JSONL files are appended one prompt at a time, so a crash loses at most the prompt in
progress. A rerun keeps a prompt's record only while it still describes that prompt: our
records carry `input_sha256` (of the prompt, its generations and the settings) and are
redone when it no longer matches; a record without it (the reference's partitions.jsonl)
is kept while its prompt and generations are the current ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import noveltybench as nb
from ..scoring import counted_mean
from ..jsonl import InputError, check_finite, json_line, read_jsonl, write_text_atomic

SETTINGS_FILE = "noveltybench_settings.json"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("noveltybench", help="NoveltyBench partitions, utility and summary for a folder",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval-dir", required=True, type=Path, help="folder with generations.jsonl; outputs go here")
    p.add_argument("--samples", type=Path, help="an lm-eval samples_noveltybench_*.jsonl to convert first")
    # The default matches the lm-eval tasks': offline, where the classifier cannot load.
    p.add_argument("--equivalence", choices=nb.BACKENDS, default="surrogate",
                   help="surrogate (offline, the default: learned to agree with the reference's partitions), "
                        "embedding (offline), unigram, or classifier (the reference's; needs the hub or "
                        "--classifier FOLDER)")
    p.add_argument("--classifier", default=nb.CLASSIFIER_ID, help="equivalence classifier: hub id or local folder")
    p.add_argument("--embedder", help="sentence embedder for novelty, diversity and --equivalence embedding "
                                      "(default: packaged MiniLM; the surrogate always reads MiniLM)")
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
    write_text_atomic(target, "".join(json_line(r) for r in rows))


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
        check_finite(row, where)  # the row is copied into partitions.jsonl and scores.jsonl
        if len(row["generations"]) < k:
            raise InputError(f"{where}: {len(row['generations'])} generations, NoveltyBench needs {k}")
        for j, g in enumerate(row["generations"]):
            if not isinstance(g, str) or not g.strip():
                raise InputError(f"{where}: generation {j} is empty or not a string")
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no prompts")
    return rows


HASH_FIELD = "input_sha256"


def input_hash(row: dict, settings: dict) -> str:
    """What a prompt's records were computed from: its prompt, generations and the settings."""
    payload = json.dumps([row["id"], row["prompt"], row["generations"], settings], sort_keys=True,
                         ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def read_appended(path: Path) -> tuple[list[dict], bool]:
    """The records of an appended file up to a torn line (a crash mid-write), and whether
    anything was cut off there."""
    if not path.exists():
        return [], False
    records = []
    # bytes, split on newlines: a line torn inside a UTF-8 character is a torn line like any other
    for line in path.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return records, True
        if not isinstance(record, dict) or "id" not in record:
            return records, True
        records.append(record)
    return records, False


def still_valid(record: dict, row: dict, digest: str) -> bool:
    """Whether `record` describes `row` as it is now. Ours carry the hash; the reference's
    partitions do not, and are trusted while their prompt and generations are the current ones."""
    if HASH_FIELD in record:
        return record[HASH_FIELD] == digest
    return record.get("prompt") == row["prompt"] and record.get("generations") == row["generations"]


def keep_valid(path: Path, rows: list[dict], digests: dict[str, str], valid=still_valid) -> dict[str, dict]:
    """id -> record of `path` that still describes its prompt. Torn and stale records are
    removed from the file (rewritten atomically), so appending the redone ones leaves one
    record per prompt; records of ids no longer in generations.jsonl are left as they are."""
    by_id = {row["id"]: row for row in rows}
    records, torn = read_appended(path)
    kept = [r for r in records if r["id"] not in by_id or valid(r, by_id[r["id"]], digests[r["id"]])]
    if torn or len(kept) < len(records):
        write_text_atomic(path, "".join(json_line(r) for r in kept))
    return {r["id"]: r for r in kept if r["id"] in by_id}


def append(path: Path, record: dict) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(json_line(record))
        out.flush()
        os.fsync(out.fileno())


def has_results(eval_dir: Path) -> bool:
    return any((eval_dir / name).exists() and (eval_dir / name).stat().st_size > 0
               for name in ("partitions.jsonl", "scores.jsonl"))


def check_settings(eval_dir: Path, settings: dict) -> None:
    """Resuming with other settings would mix two evaluations in one folder: refuse. Settings
    bind only once results exist: a run that failed before its first result (a classifier that
    cannot load offline) must not lock the folder to the settings that failed."""
    path = eval_dir / SETTINGS_FILE
    if not path.exists() or not has_results(eval_dir):
        return
    before = json.loads(path.read_text())
    if before != settings:
        changed = sorted(k for k in settings if before.get(k) != settings[k])
        raise InputError(f"{eval_dir} holds results made with other settings ({', '.join(changed)}); "
                         "use a new --eval-dir or delete partitions.jsonl, scores.jsonl and " + SETTINGS_FILE)


def record_settings(eval_dir: Path, settings: dict) -> None:
    """Called just before a result is written, so the settings file only ever describes results."""
    path = eval_dir / SETTINGS_FILE
    if not path.exists() or json.loads(path.read_text()) != settings:
        write_text_atomic(path, json.dumps(settings, indent=1))


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


def settings_of(args: argparse.Namespace) -> dict:
    return {"equivalence": nb.recorded_backend(args.equivalence),
            "classifier": args.classifier if args.equivalence == "classifier" else None,
            "embedder": args.embedder, "reward_model": args.reward_model, "patience": args.patience}


def write_partitions(args, eval_dir: Path, rows: list[dict], digests: dict, scorer, settings: dict) -> dict:
    """id -> partitions record for every prompt, computing those missing or stale."""
    path = eval_dir / "partitions.jsonl"
    done = keep_valid(path, rows, digests)
    todo = [r for r in rows if r["id"] not in done]
    if not todo:
        return done
    equivalent = nb.make_equivalence(
        args.equivalence, [g for r in todo for g in r["generations"]],
        lambda texts: scorer.embed(texts, "embedding generations", scorer.config.text_batch_size, progress=True),
        args.classifier, args.embedder)
    for row in tqdm(todo, desc=f"partitions ({args.equivalence})", unit="prompt"):
        labels = nb.partition(row["generations"], equivalent)
        record = {**row, "partition": labels, "distinct": max(labels), "num_classes": max(labels) + 1,
                  HASH_FIELD: digests[row["id"]]}
        record_settings(eval_dir, settings)
        append(path, record)
        done[row["id"]] = record
    return done


def write_scores(args, eval_dir: Path, rows: list[dict], digests: dict, partitions: dict, scorer,
                 settings: dict) -> list[dict]:
    """scores.jsonl records in generations order, computing those missing or stale; a score
    record made from another partition than the current one is stale too."""
    path = eval_dir / "scores.jsonl"

    def valid(record, row, digest):
        return (record.get(HASH_FIELD) == digest
                and record.get("partition") == partitions[row["id"]]["partition"])

    done = keep_valid(path, rows, digests, valid)
    for row in tqdm([r for r in rows if r["id"] not in done], desc="scores", unit="prompt"):
        gens = row["generations"]
        semantic = scorer.score(gens, prompts=[row["prompt"]] * len(gens), metrics=["novelty", "diversity"]).rows
        ratings = None
        if args.reward_model:
            rewards = scorer.score(gens, prompts=[row["prompt"]] * len(gens), metrics=["quality"]).rows
            ratings = [nb.rating(r["quality"]) for r in rewards]
        record = score_record(partitions[row["id"]], ratings, args.patience)
        record["novelty"] = counted_mean(semantic, "novelty")  # None: every generation degenerate
        record["diversity"] = counted_mean(semantic, "diversity")
        record[HASH_FIELD] = digests[row["id"]]
        record_settings(eval_dir, settings)
        append(path, record)
        done[row["id"]] = record
    return [done[r["id"]] for r in rows]


def run(args: argparse.Namespace) -> int:
    from ..scoring import Scorer, ScoringConfig

    eval_dir: Path = args.eval_dir
    eval_dir.mkdir(parents=True, exist_ok=True)
    if args.samples:
        samples_to_generations(args.samples, eval_dir / "generations.jsonl")
    rows = read_generations(eval_dir / "generations.jsonl", args.k)
    settings = settings_of(args)
    check_settings(eval_dir, settings)
    digests = {row["id"]: input_hash(row, settings) for row in rows}
    scorer = Scorer(ScoringConfig(embedder=args.embedder, reward_model=args.reward_model))  # loads models lazily

    partitions = write_partitions(args, eval_dir, rows, digests, scorer, settings)
    scores = write_scores(args, eval_dir, rows, digests, partitions, scorer, settings)

    summary = {**summarize(scores, with_utility=bool(args.reward_model)), **settings}
    write_text_atomic(eval_dir / "summary.json", json.dumps(summary, indent=2, allow_nan=False))
    print(json.dumps({k: summary[k] for k in ("mean_distinct", "mean_utility", "novelty", "diversity",
                                               "num_prompts")}))
    print(f"wrote partitions.jsonl, scores.jsonl and summary.json in {eval_dir}", file=sys.stderr)
    return 0
