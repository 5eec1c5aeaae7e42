"""lm-evaluation-harness glue for the creativity tasks: data, prompts, metrics, stderr.

The task YAMLs under tasks/ reference this module with `!function`. Each document is
one prompt; lm-eval samples it K times (`repeats`) and `process_results` hands the K
answers to every metric as one item. lm-eval then passes all items of a task to each
metric's aggregation, which is where the corpus (all answers of the task, or of one
prompt) exists: the aggregations score it through crpo_bench.scoring.

lm-eval computes standard errors only for its own aggregation functions and prints
"N/A" for custom ones; each aggregation here carries a resampling standard error over
prompts (`crpo_stderr`: jackknife by default, bootstrap on request), and
`install_stderr_hook` makes lm-eval use it.

Scorer settings come from the task metadata (`--metadata '{"embedder": ...}'`, so they
are written into the results JSON under `configs`), else from environment variables
(CRPO_EMBEDDER, CRPO_LM, CRPO_REWARD_MODEL, CRPO_DEGENERATE, CRPO_STDERR,
CRPO_BOOTSTRAP_ITERS, CRPO_MUCE_DATA), else the offline defaults. `lm: none` turns surprise off; quality is
reported only when a reward model is given.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import muce, noveltybench
from .scoring import METRIC_FIELDS, Scorer, ScoringConfig

log = logging.getLogger("crpo_bench.lmeval")

SETTINGS_ENV = {"embedder": "CRPO_EMBEDDER", "lm": "CRPO_LM", "reward_model": "CRPO_REWARD_MODEL",
                "degenerate": "CRPO_DEGENERATE", "stderr": "CRPO_STDERR", "bootstrap_iters": "CRPO_BOOTSTRAP_ITERS",
                "equivalence": "CRPO_EQUIVALENCE", "classifier": "CRPO_CLASSIFIER", "patience": "CRPO_PATIENCE",
                "originality_model": "CRPO_ORIGINALITY_MODEL"}
STDERR_METHODS = ("jackknife", "bootstrap")

# Settings of each task, recorded when lm-eval loads its data (the only hook that sees
# the task's metadata); process_results stamps the task name on every item.
_task_settings: dict[str, dict] = {}
# (task name, prompt) -> (MuCE item, MuCE task slug), for originality and semantic distance
_prompt_items: dict[tuple[str, str], tuple[str, str]] = {}


def resolve_settings(metadata: dict) -> dict:
    """Metadata first, then environment variables, then offline defaults."""
    settings = {key: metadata.get(key, os.environ.get(env)) for key, env in SETTINGS_ENV.items()}
    settings["degenerate"] = settings["degenerate"] or "exclude"
    settings["stderr"] = settings["stderr"] or "jackknife"
    if settings["stderr"] not in STDERR_METHODS:
        raise ValueError(f"stderr method {settings['stderr']!r}: choose one of {STDERR_METHODS}")
    settings["bootstrap_iters"] = int(settings["bootstrap_iters"] or 200)
    settings["equivalence"] = settings["equivalence"] or "embedding"  # offline; "classifier" = the reference
    settings["classifier"] = settings["classifier"] or noveltybench.CLASSIFIER_ID
    settings["patience"] = float(settings["patience"] or noveltybench.PATIENCE)
    if isinstance(settings["lm"], str) and settings["lm"].lower() in ("none", "off", "false"):
        settings["lm"] = "none"
    return settings


# --- data ----------------------------------------------------------------------------


def muce_dataset(task_name: str, muce_task: str | None = None, muce_data: str | None = None, **metadata):
    """lm-eval `custom_dataset`: the unique English held-out prompts of one MuCE task.

    `muce_task` comes from the task's YAML; `muce_any` takes it from --metadata instead,
    for a task type of the data that has no YAML of its own.
    """
    import datasets

    if not muce_task:
        raise ValueError(f"{task_name}: say which MuCE task type to evaluate, e.g. "
                         "--metadata '{\"muce_task\": \"humor\"}' (a slug of TasksNamesFull)")
    settings = resolve_settings(metadata)
    _task_settings[task_name] = settings
    source = muce_data or os.environ.get("CRPO_MUCE_DATA")
    rows = muce.load_rows(source, splits=muce.HELDOUT_SPLITS)
    items = sorted({str(r["Prompt"]).strip() for r in rows
                    if muce.task_slug(str(r["TasksNamesFull"])) == muce_task and muce.is_english(r.get("Language"))})
    if not items:
        raise ValueError(f"{task_name}: no English held-out prompts of MuCE task {muce_task!r} in "
                         f"{source or muce.HUB_ID}")
    log.info("%s: %d prompts from %s; scorer settings %s", task_name, len(items), source or muce.HUB_ID, settings)
    docs = [{"task": task_name, "item": item, "prompt": muce.instruction(muce_task, item)} for item in items]
    _prompt_items.update({(task_name, d["prompt"]): (item, muce_task) for d, item in zip(docs, items)})
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


NOVELTYBENCH_HUB_ID = "yimingzhang/novelty-bench"
NOVELTYBENCH_FILES = {"curated": "curated.jsonl", "wildchat": "wildchat-1k.jsonl"}


def noveltybench_dataset(subset: str, task_name: str, noveltybench_data: str | None = None, **metadata):
    """lm-eval `custom_dataset`: NoveltyBench prompts from the hub, or a local JSONL in the
    published format (a file, or a folder holding curated.jsonl / wildchat-1k.jsonl)."""
    import datasets

    _task_settings[task_name] = {**resolve_settings(metadata), "kind": "noveltybench"}
    source = noveltybench_data or os.environ.get("CRPO_NOVELTYBENCH_DATA")
    if source:
        path = Path(source) / NOVELTYBENCH_FILES[subset] if Path(source).is_dir() else Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{task_name}: NoveltyBench data {path} does not exist")
        rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    else:
        try:
            rows = list(datasets.load_dataset(NOVELTYBENCH_HUB_ID, split=subset))
        except Exception as err:
            raise RuntimeError(f"cannot load {NOVELTYBENCH_HUB_ID} ({type(err).__name__}); offline, pass the "
                               "published JSONL: CRPO_NOVELTYBENCH_DATA=/path/to/novelty-bench/data") from err
    docs = [{"task": task_name, "id": str(r["id"]), "prompt": r["prompt"]} for r in rows]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


# --- per-document results ------------------------------------------------------------

CORPUS_METRICS = ("novelty", "diversity", "dsi", "theme_uniqueness", "num_themes", "prompt_novelty",
                  "prompt_diversity", *(f"ngram_diversity_{n}" for n in range(1, 6)))


NOVELTYBENCH_METRICS = ("distinct", "prompt_novelty", "prompt_diversity")


def metrics_for(settings: dict) -> tuple[str, ...]:
    if settings.get("kind") == "noveltybench":
        return NOVELTYBENCH_METRICS + (("utility",) if settings["reward_model"] else ())
    metrics = CORPUS_METRICS + ("semantic_distance", "originality")
    if settings["lm"] != "none":
        metrics += ("surprise", "perplexity")
    if settings["reward_model"]:
        metrics += ("quality",)
    return metrics


@functools.lru_cache(maxsize=None)
def _notice_no_quality(task: str) -> None:
    log.warning("%s: no reward model configured, so `quality` is not reported "
                "(give one with --metadata '{\"reward_model\": \"NAME_OR_FOLDER\"}')", task)


def process_results(doc: dict, results: list) -> dict:
    """Hand the K answers of one prompt to every metric as one item."""
    answers = results[0] if isinstance(results[0], list) else list(results)
    settings = _task_settings.get(doc["task"], resolve_settings({}))
    if not settings["reward_model"]:
        _notice_no_quality(doc["task"])
    item = (doc["task"], doc["prompt"], tuple(str(a) for a in answers))
    return {metric: item for metric in metrics_for(settings)}


# --- scoring a task's answers ----------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _scorer(embedder, lm, reward_model, degenerate, originality_model) -> Scorer:
    return Scorer(ScoringConfig(embedder=embedder, lm=None if lm == "none" else lm, reward_model=reward_model,
                                degenerate=degenerate, originality_model=originality_model))


def _flatten(items: list) -> tuple[list[str], list[str], list[int]]:
    """answers, their prompts, and the index of the item (prompt) each came from."""
    answers, prompts, owner = [], [], []
    for k, (_, prompt, responses) in enumerate(items):
        answers += responses
        prompts += [prompt] * len(responses)
        owner += [k] * len(responses)
    return answers, prompts, owner


def _mean(values, keep) -> float:
    chosen = [v for v, k in zip(values, keep) if k and v is not None]
    return float(np.mean(chosen)) if chosen else float("nan")


def corpus_values(items: list, scorer: Scorer, per_answer: dict) -> dict[str, float]:
    """Every corpus metric of one task's items (the task's answers form one corpus;
    prompt_* metrics use one corpus per item). `per_answer` caches surprise/quality."""
    answers, prompts, owner = _flatten(items)
    task_scores = scorer.score(answers, prompts=prompts, metrics=[
        "dsi", "novelty", "diversity", "theme_uniqueness", "ngram_diversity"])
    prompt_scores = scorer.score(answers, corpus_ids=owner, prompts=prompts, metrics=["novelty", "diversity"])
    keep = [row["degenerate"] is None or scorer.config.degenerate == "reference_compat" for row in task_scores.rows]
    out = {m: _mean([r[m] for r in task_scores.rows], keep) for m in ("novelty", "diversity", "dsi", "theme_uniqueness")}
    corpus = task_scores.corpora[None]
    out["num_themes"] = float(corpus.get("num_themes", 0))
    for n in range(1, 6):
        value = corpus[f"ngram_diversity_{n}"]
        out[f"ngram_diversity_{n}"] = float("nan") if value is None else value
    out["prompt_novelty"] = _mean([r["novelty"] for r in prompt_scores.rows], keep)
    out["prompt_diversity"] = _mean([r["diversity"] for r in prompt_scores.rows], keep)
    for metric in ("semantic_distance", "originality", "surprise", "perplexity", "quality"):
        if metric in per_answer:
            out[metric] = _mean([per_answer[metric][(p, a)] for p, a in zip(prompts, answers)], keep)
    return out


def _per_answer_scores(items: list, scorer: Scorer, settings: dict) -> dict:
    """Scores of each distinct (prompt, answer) that do not depend on the corpus: semantic
    distance to the item, originality, surprise, quality."""
    answers, prompts, _ = _flatten(items)
    pairs = sorted(set(zip(prompts, answers)))
    wanted = ["semantic_distance", "originality"] + (["surprise"] if settings["lm"] != "none" else []) \
        + (["quality"] if settings["reward_model"] else [])
    if not pairs:
        return {}
    task = items[0][0]
    item_of = [_prompt_items.get((task, p), (p, "")) for p, _ in pairs]
    rows = scorer.score([a for _, a in pairs], prompts=[p for p, _ in pairs], metrics=wanted,
                        items=[i for i, _ in item_of], tasks=[t for _, t in item_of]).rows
    fields = [f for m in wanted for f in METRIC_FIELDS[m]]
    return {f: {pair: row[f] for pair, row in zip(pairs, rows)} for f in fields}


def resamples(n: int, method: str, iters: int, seed: int = 1234):
    """Index lists of prompts to recompute a metric on, and how to turn the spread of
    the recomputed values into a standard error.

    jackknife (default): leave one prompt out, n times; se = sqrt((n-1)/n * sum (t_i - mean)^2).
      Every answer appears at most once, so corpus-relative metrics (novelty, diversity,
      themes, distinct n-grams) are recomputed on a real corpus.
    bootstrap: draw n prompts with replacement; se = standard deviation of the draws.
      A prompt drawn twice puts identical answers twice into the corpus, which pulls
      diversity, theme uniqueness and distinct n-grams down: prefer the jackknife there.
    """
    if method == "jackknife":
        return [[k for k in range(n) if k != i] for i in range(n)], \
            lambda values: float(np.sqrt((n - 1) / n * np.nansum((values - np.nanmean(values)) ** 2)))
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, n).tolist() for _ in range(iters)], lambda values: float(np.nanstd(values, ddof=1))


def _noveltybench_per_prompt(items: list, scorer: Scorer, settings: dict) -> dict:
    """Classes, utility and per-prompt novelty/diversity of each prompt: they depend on that
    prompt's generations only, so resampling prompts reuses them."""
    answers, prompts, owner = _flatten(items)
    equivalent = noveltybench.make_equivalence(
        settings["equivalence"], answers,
        lambda texts: scorer.embed(texts, "embedding", scorer.config.text_batch_size), settings["classifier"])
    semantic = scorer.score(answers, corpus_ids=owner, prompts=prompts, metrics=["novelty", "diversity"]).rows
    rewards = scorer.score(answers, prompts=prompts, metrics=["quality"]).rows if settings["reward_model"] else None
    out = {}
    for k, (_, prompt, gens) in enumerate(items):
        rows = [i for i, o in enumerate(owner) if o == k]
        labels = noveltybench.partition(gens, equivalent)
        values = {"distinct": max(labels) + 1,
                  "prompt_novelty": float(np.mean([semantic[i]["novelty"] for i in rows])),
                  "prompt_diversity": float(np.mean([semantic[i]["diversity"] for i in rows]))}
        if rewards is not None:
            ratings = [noveltybench.rating(rewards[i]["quality"]) for i in rows]
            values["utility"] = noveltybench.utility(noveltybench.generation_scores(labels, ratings),
                                                     settings["patience"])
        out[(prompt, gens)] = values
    return out


def noveltybench_values(items: list, per_prompt: dict) -> dict[str, float]:
    """Means over prompts of the per-prompt values."""
    rows = [per_prompt[(prompt, gens)] for _, prompt, gens in items]
    return {m: float(np.mean([r[m] for r in rows])) for m in rows[0]}


@functools.lru_cache(maxsize=16)
def _task_report(key: str, items_json: str) -> dict:
    """Point estimates and standard errors of every metric of one task (cached: lm-eval
    calls each metric's aggregation and stderr separately on the same items)."""
    items = [(t, p, tuple(r)) for t, p, r in json.loads(items_json)]
    settings = _task_settings.get(items[0][0], resolve_settings({}))
    scorer = _scorer(settings["embedder"], settings["lm"], settings["reward_model"], settings["degenerate"],
                     settings["originality_model"])
    if settings.get("kind") == "noveltybench":
        per_prompt = _noveltybench_per_prompt(items, scorer, settings)
        values = functools.partial(noveltybench_values, per_prompt=per_prompt)
    else:
        per_answer = _per_answer_scores(items, scorer, settings)
        values = functools.partial(corpus_values, scorer=scorer, per_answer=per_answer)
    point = values(items)
    if len(items) < 2:
        return {"point": point, "stderr": {m: float("nan") for m in point}}
    # Recompute every metric on resampled sets of prompts (embeddings come from memory).
    subsets, spread_to_se = resamples(len(items), settings["stderr"], settings["bootstrap_iters"])
    draws = {m: [] for m in point}
    for subset in subsets:
        for m, v in values([items[k] for k in subset]).items():
            draws[m].append(v)
    return {"point": point, "stderr": {m: spread_to_se(np.asarray(v, dtype=float)) for m, v in draws.items()}}


def _report(items: list) -> dict:
    items_json = json.dumps([[t, p, list(r)] for t, p, r in items])
    return _task_report(hashlib.sha256(items_json.encode()).hexdigest(), items_json)


def _aggregation(metric: str) -> Callable[[list], float]:
    def aggregate(items: list) -> float:
        return _report(items)["point"][metric]

    def stderr(items: list) -> float:
        return _report(items)["stderr"][metric]

    aggregate.__name__ = f"aggregate_{metric}"
    aggregate.crpo_stderr = stderr
    return aggregate


AGGREGATIONS = {m: _aggregation(m) for m in (*CORPUS_METRICS, "semantic_distance", "originality", "surprise",
                                              "perplexity", "quality", "distinct", "utility")}
globals().update({f"aggregate_{m}": f for m, f in AGGREGATIONS.items()})


# --- standard errors inside lm-eval ------------------------------------------------------


def install_stderr_hook() -> None:
    """Make lm-eval use each aggregation's `crpo_stderr` instead of reporting "N/A".

    lm-eval 0.4.x looks the stderr function up by aggregation function in
    `stderr_for_metric`, imported by name into `lm_eval.evaluator_utils`. If that
    layout changes, fail loudly rather than silently report no error bars.
    """
    import lm_eval.evaluator_utils as evaluator_utils

    original = getattr(evaluator_utils, "stderr_for_metric", None)
    if original is None:
        raise RuntimeError("lm_eval.evaluator_utils.stderr_for_metric is gone: crpo_bench's bootstrap "
                           "standard errors need updating for this lm-eval version")
    if getattr(original, "crpo_hooked", False):
        return

    def stderr_for_metric(metric, bootstrap_iters):
        own = getattr(metric, "crpo_stderr", None)
        if own is not None and bootstrap_iters and bootstrap_iters > 0:
            return own
        return original(metric=metric, bootstrap_iters=bootstrap_iters)

    stderr_for_metric.crpo_hooked = True
    evaluator_utils.stderr_for_metric = stderr_for_metric


install_stderr_hook()
