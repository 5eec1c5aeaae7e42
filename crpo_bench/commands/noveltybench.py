"""`crpo-bench noveltybench --eval-dir DIR`: NoveltyBench partitions, scores and summary.

Reads DIR/generations.jsonl in NoveltyBench's format ({"id", "prompt", "generations", ...};
`--samples FILE` converts an lm-eval samples file of our noveltybench tasks first) and
writes, with NoveltyBench's field names, under DIR/v<version>/ (`--version`, default 1.1;
one DIR holds any number of versions side by side):
- partitions.jsonl: the row plus `partition`, `distinct` and `num_classes` (the number of
  classes). v1.1 numbers the classes in order of first appearance and `distinct` is the
  number of classes; v1.0 writes `distinct` = classes - 1, exactly as the reference's v1.0
  partition step does;
- scores.jsonl: plus `generation_scores`, `partition_scores`, `utility` (null without a
  reward model), and our per-prompt `novelty` and `diversity`;
- summary.json: `version`, `mean_distinct` (number of classes per prompt, averaged) and
  `mean_utility` (or null, with the reason), as the reference summary names them, plus our
  own fields and the settings.
`--equivalence llm --judge-model SPEC` is v1.1's judge: one chat request per prompt shows
all of its generations and asks for their groups (see crpo_bench.noveltybench.LlmJudge).
Both JSONL files are appended one prompt at a time, so a crash loses at most the prompt in
progress. A rerun keeps a prompt's record only while it still describes that prompt: our
records carry `input_sha256` (of the prompt, its generations and the settings) and are
redone when it no longer matches; a record without it (the reference's partitions.jsonl)
is kept while its prompt and generations are the current ones.
Older crpo-bench versions wrote the three files (and the settings) flat in DIR. Those
files are never changed: `--version 1.0` starts a DIR/v1.0/ that does not exist yet from
them (they are v1.0 files), and `--version 1.1` leaves them aside.
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
from ..jsonl import InputError, check_finite, json_line, read_jsonl, write_text_atomic

SETTINGS_FILE = "noveltybench_settings.json"
VERSIONS = ("1.0", "1.1")
DEFAULT_VERSION = "1.1"  # the newest, as in the reference
RESULT_FILES = ("partitions.jsonl", "scores.jsonl")
LLM_ONLY = ("judge_model", "seed", "api_key_env", "base_url")  # flags that only the llm backend reads


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("noveltybench", help="NoveltyBench partitions, utility and summary for a folder",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval-dir", required=True, type=Path, help="folder with generations.jsonl; outputs go here")
    p.add_argument("--samples", type=Path, help="an lm-eval samples_noveltybench_*.jsonl to convert first")
    p.add_argument("--version", choices=VERSIONS, default=DEFAULT_VERSION,
                   help="NoveltyBench metric version of the files, written under EVAL_DIR/v<version>/ "
                        f"(default {DEFAULT_VERSION}: `distinct` = classes; 1.0: classes - 1)")
    # The default matches the lm-eval tasks': offline, where the classifier cannot load.
    p.add_argument("--equivalence", choices=nb.PARTITION_BACKENDS, default="surrogate",
                   help="surrogate (offline, the default: learned to agree with the reference's partitions), "
                        "embedding (offline), unigram, classifier (the reference's v1.0 judge; needs the hub or "
                        "--classifier FOLDER), or llm (v1.1's judge: a chat model groups all of a prompt's "
                        "generations in one request; needs --judge-model)")
    p.add_argument("--no-short-rule", dest="short_rule", action="store_false",
                   help="surrogate: emulate the reference before its short-text rule (NoveltyBench's partitions "
                        "made before 2025-03-19, such as Gemini-1.5-pro's published ones); default: the rule decides "
                        "two texts of at most 5 words, as NoveltyBench's code does")
    p.add_argument("--classifier", default=nb.CLASSIFIER_ID, help="equivalence classifier: hub id or local folder")
    p.add_argument("--embedder", help="sentence embedder for novelty, diversity and --equivalence embedding "
                                      "(default: packaged MiniLM; the surrogate always reads MiniLM)")
    p.add_argument("--reward-model", help="reward model for utility (the reference uses Skywork-Reward-Gemma-2-27B-v0.2)")
    p.add_argument("--patience", type=float, default=nb.PATIENCE)
    p.add_argument("--k", type=int, default=10, help="generations needed per prompt (default 10)")
    judge = p.add_argument_group("--equivalence llm", "the chat model that groups the generations")
    judge.add_argument("--judge-model", metavar="SPEC",
                       help="openai:MODEL[@URL], anthropic:MODEL[@URL], gemini:MODEL[@URL] or api:MODEL@URL, "
                            "as in `crpo-bench run`")
    judge.add_argument("--base-url", help="endpoint of a --judge-model spec without @URL")
    judge.add_argument("--api-key-env", metavar="NAME",
                       help="environment variable holding the judge's key; without it a provider's own host gets "
                            "its own variable (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY) and other "
                            "endpoints none; never written")
    judge.add_argument("--seed", type=int,
                       help="shuffle the order in which each prompt's generations are shown to the judge (fixed "
                            "by the seed and the prompt id; a stability check); default: their own order")
    judge.add_argument("--timeout", type=float, default=120, help="seconds per judge request (120)")
    judge.add_argument("--max-retries", type=int, default=5,
                       help="tries per judge request on HTTP failures, with backoff (5)")


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


def version_dir(eval_dir: Path, version: str) -> Path:
    return eval_dir / f"v{version}"


def flat_results(eval_dir: Path) -> list[str]:
    """The result files an older crpo-bench wrote flat in the eval dir (v1.0 files)."""
    return [name for name in RESULT_FILES if (eval_dir / name).is_file()]


def adopt_flat(eval_dir: Path, folder: Path) -> list[str]:
    """A v1.0 folder that holds nothing yet starts from the flat files of an older crpo-bench
    (its results and settings file), which are v1.0 files: their records are copied (up to a
    torn line) and then checked like any others, so a rerun resumes where the flat run
    stopped. The flat files themselves are left as they are. Returns the names copied."""
    names = flat_results(eval_dir)
    if not names or any((folder / name).exists() for name in (*RESULT_FILES, SETTINGS_FILE)):
        return []
    for name in names:
        records, _ = read_appended(eval_dir / name)
        write_text_atomic(folder / name, "".join(json_line(r) for r in records))
    if (eval_dir / SETTINGS_FILE).is_file():
        write_text_atomic(folder / SETTINGS_FILE, (eval_dir / SETTINGS_FILE).read_text(encoding="utf-8"))
        names.append(SETTINGS_FILE)
    return names


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
                         "use a new --eval-dir or delete its partitions.jsonl, scores.jsonl and " + SETTINGS_FILE)


def record_settings(eval_dir: Path, settings: dict) -> None:
    """Called just before a result is written, so the settings file only ever describes results."""
    path = eval_dir / SETTINGS_FILE
    if not path.exists() or json.loads(path.read_text()) != settings:
        write_text_atomic(path, json.dumps(settings, indent=1))


def _mean_of_known(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def summarize(scores: list[dict], with_utility: bool, version: str = DEFAULT_VERSION) -> dict:
    """summary.json's values: the reference's `version`, `mean_distinct` (classes per prompt,
    averaged; the reference averages len(partition_scores), one entry per class) and
    `mean_utility`. Classes are counted from `partition`, whatever a row's `distinct` says."""
    mean_distinct = float(np.mean([len(set(r["partition"])) for r in scores]))
    mean_utility = float(np.mean([r["utility"] for r in scores])) if with_utility else None
    summary = {
        "version": version,
        "mean_distinct": mean_distinct,
        "mean_utility": mean_utility,
        # Our earlier names for the same two values, still read by tests/lmeval/test_lmeval_cli.py.
        "distinct": mean_distinct,
        "utility": mean_utility,
        "novelty": _mean_of_known([r["novelty"] for r in scores]),
        "diversity": _mean_of_known([r["diversity"] for r in scores]),
        "num_prompts": len(scores),
        "distinct_means": "number of equivalence classes per prompt, averaged (partitions.jsonl's `distinct` "
                          + ("is classes - 1, as in the reference's v1.0 files)" if version == "1.0"
                             else "is the number of classes, as in the reference's v1.1 files)"),
    }
    judged = [r for r in scores if "judge_lenient" in r]
    if judged:  # the llm backend: how often its answer had to be read leniently
        lenient = [r["id"] for r in judged if r["judge_lenient"]]
        summary["judge_lenient"] = len(lenient)
        summary["judge_lenient_ids"] = lenient
    if not with_utility:
        summary["utility_unavailable"] = "no reward model given (--reward-model)"
    return summary


def settings_of(args: argparse.Namespace, judge_spec=None) -> dict:
    """What the results depend on: part of every record's hash, and bound to the version
    folder once it holds results. The version is the folder's, so it is not repeated here
    (and the records of an older crpo-bench's flat files keep their hashes)."""
    settings = {"equivalence": nb.recorded_backend(args.equivalence, args.short_rule),
                "classifier": args.classifier if args.equivalence == "classifier" else None,
                "embedder": args.embedder, "reward_model": args.reward_model, "patience": args.patience}
    if judge_spec is not None:  # the judge, without its endpoint (a proxy is the same judge) or key
        settings |= {"judge_model": f"{judge_spec.provider}:{judge_spec.model_args['model']}", "seed": args.seed}
    return settings


def judge_spec_of(args: argparse.Namespace):
    """The --judge-model spec (llm backend only), checked before any work; None otherwise."""
    from ..run import runner as bench

    if args.equivalence != "llm":
        given = [f"--{name.replace('_', '-')}" for name in LLM_ONLY if getattr(args, name) is not None]
        if given:
            raise InputError(f"{', '.join(given)}: only with --equivalence llm")
        return None
    if not args.judge_model:
        raise InputError("--equivalence llm needs --judge-model SPEC (openai:MODEL, anthropic:MODEL, gemini:MODEL "
                         "or api:MODEL@URL)")
    _, what = bench.split_spec(args.judge_model)
    if bench._prefix(what) not in bench.PROVIDERS:  # checked first: resolving a local model can be slow
        raise InputError(f"--judge-model {bench._shown(args.judge_model)!r}: the judge is asked over HTTP; give "
                         "openai:MODEL, anthropic:MODEL, gemini:MODEL or api:MODEL@URL")
    return bench.parse_spec(args.judge_model, args.base_url, max_retries=args.max_retries, timeout=int(args.timeout))


def judge_key(spec, env_name: str | None) -> str | None:
    """The judge's key, by `crpo-bench run`'s rule: --api-key-env NAME for any endpoint, else a
    provider's own variable only at that provider's own host. Kept in memory only."""
    from ..run import runner as bench

    if env_name is not None:
        key = os.environ.get(env_name)
        if not key:
            raise InputError(f"--api-key-env {env_name}: that environment variable is not set or is empty")
        return key
    default = bench.default_key_env(spec)
    key = os.environ.get(default) if default else None
    if default and not key:
        host = bench.PROVIDERS[spec.provider].host
        raise InputError(f"--judge-model at {host} needs an API key: set {default} or pass --api-key-env NAME")
    if not key:
        print(f"judge {spec.name}: no API key sent to {spec.base_url} (provider keys go only to their own "
              "hosts; pass --api-key-env NAME to send one)", file=sys.stderr)
    return key


def partitioner(args, todo: list[dict], scorer, judge: dict | None):
    """row -> (labels, extra fields of the record) for the chosen backend."""
    if judge is not None:
        from ..run import runner as bench

        llm = nb.LlmJudge(judge["spec"], judge["key"], seed=args.seed, timeout=args.timeout,
                          max_retries=args.max_retries, log=lambda message: tqdm.write(message, file=sys.stderr))

        def by_judge(row):
            try:
                return llm.partition(row["id"], row["prompt"], row["generations"])
            except bench.ApiError as err:  # one line, exit 2; the prompts done so far are kept
                raise bench.BenchError(bench.redact(f"judge {judge['spec'].name} at {judge['spec'].base_url}: "
                                                    f"{err}")) from None

        return by_judge
    equivalent = nb.make_equivalence(
        args.equivalence, [g for r in todo for g in r["generations"]],
        lambda texts: scorer.embed(texts, "embedding generations", scorer.config.text_batch_size, progress=True),
        args.classifier, args.embedder, short_rule=args.short_rule)
    return lambda row: (nb.partition(row["generations"], equivalent), {})


def write_partitions(args, folder: Path, rows: list[dict], digests: dict, scorer, settings: dict,
                     judge: dict | None = None) -> dict:
    """id -> partitions record for every prompt, computing those missing or stale."""
    path = folder / "partitions.jsonl"
    done = keep_valid(path, rows, digests)
    todo = [r for r in rows if r["id"] not in done]
    if not todo:
        return done
    partition_of = partitioner(args, todo, scorer, judge)
    for row in tqdm(todo, desc=f"partitions ({args.equivalence})", unit="prompt"):
        labels, extra = partition_of(row)
        if args.version == "1.0":
            distinct = max(labels)  # classes - 1, as the reference's v1.0 partition step writes it
        else:
            labels = nb.canonical(labels)
            distinct = len(set(labels))
        record = {**row, "partition": labels, "distinct": distinct, "num_classes": len(set(labels)), **extra,
                  HASH_FIELD: digests[row["id"]]}
        record_settings(folder, settings)
        append(path, record)
        done[row["id"]] = record
    return done


def write_scores(args, folder: Path, rows: list[dict], digests: dict, partitions: dict, scorer,
                 settings: dict) -> list[dict]:
    """scores.jsonl records in generations order, computing those missing or stale; a score
    record made from another partition than the current one is stale too."""
    path = folder / "scores.jsonl"

    def valid(record, row, digest):
        return (record.get(HASH_FIELD) == digest
                and record.get("partition") == partitions[row["id"]]["partition"])

    done = keep_valid(path, rows, digests, valid)
    for row in tqdm([r for r in rows if r["id"] not in done], desc="scores", unit="prompt"):
        gens = row["generations"]
        semantic = scorer.score(gens, prompts=[row["prompt"]] * len(gens), metrics=["novelty", "diversity"]).rows
        rewards = None
        if args.reward_model:
            rewards = [r["quality"] for r in scorer.score(gens, prompts=[row["prompt"]] * len(gens),
                                                          metrics=["quality"]).rows]
        # num_classes is recomputed: the reference's partitions rows do not carry it
        scores = nb.prompt_scores(partitions[row["id"]]["partition"], semantic, rewards, args.patience,
                                  scorer.config.degenerate)
        record = {**partitions[row["id"]], **scores, HASH_FIELD: digests[row["id"]]}
        record_settings(folder, settings)
        append(path, record)
        done[row["id"]] = record
    return [done[r["id"]] for r in rows]


def run(args: argparse.Namespace) -> int:
    from ..scoring import Scorer, ScoringConfig

    eval_dir: Path = args.eval_dir
    if not args.short_rule and args.equivalence != "surrogate":
        raise ValueError(f"--no-short-rule applies to --equivalence surrogate only, not {args.equivalence}")
    spec = judge_spec_of(args)  # a bad spec or flag combination stops before anything is written
    eval_dir.mkdir(parents=True, exist_ok=True)
    if args.samples:
        samples_to_generations(args.samples, eval_dir / "generations.jsonl")
    rows = read_generations(eval_dir / "generations.jsonl", args.k)
    judge = {"spec": spec, "key": judge_key(spec, args.api_key_env)} if spec is not None else None
    settings = settings_of(args, spec)
    folder = version_dir(eval_dir, args.version)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder; the v{args.version} files go there")
    folder.mkdir(exist_ok=True)
    if args.version == "1.0":
        adopted = adopt_flat(eval_dir, folder)
        if adopted:
            print(f"{folder} starts from the flat {', '.join(adopted)} of an older crpo-bench in {eval_dir} "
                  "(v1.0 files; left as they are)", file=sys.stderr)
    elif flat_results(eval_dir):
        print(f"{eval_dir} holds flat {', '.join(flat_results(eval_dir))} of an older crpo-bench (v1.0 files): "
              f"left as they are; --version 1.0 resumes from them", file=sys.stderr)
    check_settings(folder, settings)
    digests = {row["id"]: input_hash(row, settings) for row in rows}
    scorer = Scorer(ScoringConfig(embedder=args.embedder, reward_model=args.reward_model))  # loads models lazily

    partitions = write_partitions(args, folder, rows, digests, scorer, settings, judge)
    scores = write_scores(args, folder, rows, digests, partitions, scorer, settings)

    summary = {**summarize(scores, with_utility=bool(args.reward_model), version=args.version), **settings}
    if spec is not None:  # the judge as given and where it was asked; never its key
        from ..run.runner import _shown

        summary |= {"judge_spec": _shown(args.judge_model), "judge_endpoint": spec.base_url}
    write_text_atomic(folder / "summary.json", json.dumps(summary, indent=2, allow_nan=False))
    print(json.dumps({k: summary[k] for k in ("version", "mean_distinct", "mean_utility", "novelty", "diversity",
                                               "num_prompts")}))
    print(f"wrote partitions.jsonl, scores.jsonl and summary.json in {folder}", file=sys.stderr)
    return 0
