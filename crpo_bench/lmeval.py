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
(SETTINGS_ENV, and CRPO_MUCE_DATA, CRPO_MUCE_CONFIG, CRPO_MUCE_TEMPLATE,
CRPO_PROMPTS_PER_TASK), else the scoring profile (`profile`: offline by default, or paper). `lm: none` turns surprise off; quality is
reported only when a reward model is given.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lm_eval.api.task import ConfigurableTask

from . import muce, noveltybench, registry
from .card import metric_card
from .metrics.ngrams import NGRAM_ORDERS
from .muce_prompts import user_prompt
from .scoring import NO_MODEL, Scorer, ScoringConfig, counted_mean, profile_config

log = logging.getLogger("crpo_bench.lmeval")

SETTINGS_ENV = {"embedder": "CRPO_EMBEDDER", "lm": "CRPO_LM", "reward_model": "CRPO_REWARD_MODEL",
                "degenerate": "CRPO_DEGENERATE", "stderr": "CRPO_STDERR", "bootstrap_iters": "CRPO_BOOTSTRAP_ITERS",
                "equivalence": "CRPO_EQUIVALENCE", "classifier": "CRPO_CLASSIFIER", "patience": "CRPO_PATIENCE",
                "originality_model": "CRPO_ORIGINALITY_MODEL", "profile": "CRPO_PROFILE",
                "trust_remote_code": "CRPO_TRUST_REMOTE_CODE"}
STDERR_METHODS = ("jackknife", "bootstrap")

# Settings of each task, recorded when lm-eval loads its data (the only hook that sees
# the task's metadata); process_results stamps the task name on every item.
_task_settings: dict[str, dict] = {}
CORPUS_SCOPES = ("task", "prompt")


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
    settings["trust_remote_code"] = str(settings["trust_remote_code"]).lower() in ("1", "true", "yes")
    # the scoring profile decides the models not named; what it resolves to is recorded
    settings["profile"] = settings["profile"] or "offline"
    settings["reward_model"] = profile_config(settings["profile"], reward_model=settings["reward_model"]).reward_model
    settings["corpus"] = metadata.get("corpus", "task")
    if settings["corpus"] not in CORPUS_SCOPES:
        raise ValueError(f"corpus {settings['corpus']!r}: choose one of {CORPUS_SCOPES}")
    return settings


# --- data ----------------------------------------------------------------------------


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
                 prompts_per_task: int | str | None = None, **metadata):
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
    settings = resolve_settings(metadata)
    _task_settings[task_name] = settings
    source = muce_data or os.environ.get("CRPO_MUCE_DATA")
    config = muce_config or os.environ.get("CRPO_MUCE_CONFIG")
    template = template or os.environ.get("CRPO_MUCE_TEMPLATE") or "default"
    limit = prompts_per_task or os.environ.get("CRPO_PROMPTS_PER_TASK")
    rows = muce.load_rows(source, splits=muce.HELDOUT_SPLITS, config=config)
    docs = heldout_documents(rows, muce_task, template, int(limit) if limit else None)
    if not docs:
        raise ValueError(f"{task_name}: no English held-out prompts ({', '.join(muce.HELDOUT_SPLITS)}) of MuCE task "
                         f"{muce.task_name(muce_task)!r} in {source or muce.HUB_ID}")
    log.info("%s: %d prompts from %s (template %s); scorer settings %s", task_name, len(docs),
             source or muce.HUB_ID, template, settings)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([{"task": task_name, **d} for d in docs])})


class CreativityTask(ConfigurableTask):
    """lm-eval's ConfigurableTask plus the metric card: the task's settings, resolved once,
    go into its config's metadata, which lm-eval writes into every results file."""

    def __init__(self, config: dict | None = None, **kwargs):
        config = {k: v for k, v in (config or {}).items() if k != "class"}  # ours, not a TaskConfig field
        super().__init__(config=config, **kwargs)
        metadata = self.config.metadata if isinstance(self.config.metadata, dict) else {}
        self.config.metadata = {**metadata, "card": task_card(self.config, metadata)}
        # what the task reports comes from the registry, not from a metric list in the YAML
        settings = {**resolve_settings(metadata), "kind": "noveltybench" if "noveltybench" in str(self.config.task)
                    else "muce"}
        better = registry.all_reported_fields()
        fields = metrics_for(settings)
        self._metric_fn_list = {f: None for f in fields}
        self._metric_fn_kwargs = {f: {} for f in fields}
        self._aggregation_list = {f: AGGREGATIONS[f] for f in fields}
        self._higher_is_better = {f: better[f] for f in fields}


def task_card(config, metadata: dict) -> dict:
    """The metric card of one task: scorer settings, corpus, samples per prompt, template."""
    settings = resolve_settings(metadata)
    noveltybench_task = "noveltybench" in str(config.task)
    protocol = {"profile": settings["profile"], "corpus": "prompt" if noveltybench_task else settings["corpus"],
                "samples_per_prompt": int(config.repeats or 1) * max(len(metadata.get("decoding") or []), 1)}
    if noveltybench_task:
        protocol["equivalence"] = settings["equivalence"]
    else:
        protocol["template"] = metadata.get("template") or os.environ.get("CRPO_MUCE_TEMPLATE") or "default"
    return metric_card(scorer_config(settings), surprise=settings["lm"] != "none" and not noveltybench_task,
                       **protocol)


class PooledDecodingTask(CreativityTask):
    """A task that samples each prompt under several decoding settings, `repeats` times each,
    and hands all the answers to the metrics as one item (the paper's 4 settings x 4 = 16).

    The settings are `metadata.decoding` of the YAML, each laid over `generation_kwargs`;
    lm-eval's models take generation arguments per request, so one task can mix them.
    """

    def __init__(self, config: dict | None = None, **kwargs):
        super().__init__(config=config, **kwargs)
        self.decoding = list((self.config.metadata or {}).get("decoding") or [])
        if not self.decoding:
            raise ValueError(f"{self.config.task}: metadata.decoding lists no decoding settings")
        # the YAML's generation_kwargs, before lm-eval lays --gen_kwargs over them
        self.yaml_generation = dict(self.config.generation_kwargs or {})

    def construct_requests(self, doc: dict, ctx, **kwargs):
        request = super().construct_requests(doc, ctx, **kwargs)
        context, generation = request.arguments[0], request.arguments[1]
        # a value the user set with --gen_kwargs wins over every setting's
        user = {k: v for k, v in generation.items() if self.yaml_generation.get(k, object()) != v}
        # fresh resps lists: dataclasses.replace would share the one list of `request`
        return [dataclasses.replace(request, arguments=(context, {**generation, **setting, **user}), idx=k,
                                    resps=[], filtered_resps={}) for k, setting in enumerate(self.decoding)]


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

def task_kind(settings: dict) -> str:
    return registry.NOVELTYBENCH if settings.get("kind") == "noveltybench" else registry.MUCE


def available_models(settings: dict) -> set[str]:
    """What a task's scorer has (registry.NEEDS): the LM unless `lm` is none, a reward model where named."""
    return ({"embedder", "item"} | ({"lm"} if settings["lm"] != "none" else set())
            | ({"reward_model"} if settings["reward_model"] else set()))


def metrics_for(settings: dict) -> tuple[str, ...]:
    """The values a task reports: the registry's, for its kind and the models it has."""
    return registry.reported_fields(task_kind(settings), available_models(settings))


def answer_metrics(settings: dict) -> tuple[str, ...]:
    """Scorer metrics averaged over a MuCE task's answers (semantic distance, originality,
    surprise, quality, and any registered per-answer metric)."""
    return registry.answer_metrics(task_kind(settings), available_models(settings))


@functools.lru_cache(maxsize=None)
def _notice_no_quality(task: str) -> None:
    log.warning("%s: no reward model configured, so `quality` is not reported "
                "(give one with --metadata '{\"reward_model\": \"NAME_OR_FOLDER\"}')", task)


def process_results(doc: dict, results: list) -> dict:
    """Hand all answers of one prompt (K samples of each request; several requests where a
    task pools decoding settings) to every metric as one item: (task, prompt, answers,
    MuCE item, MuCE task)."""
    answers = [a for result in results for a in (result if isinstance(result, list) else [result])]
    settings = _task_settings.get(doc["task"], resolve_settings({}))
    if not settings["reward_model"]:
        _notice_no_quality(doc["task"])
    item = (doc["task"], doc["prompt"], tuple(str(a) for a in answers), doc.get("item", doc["prompt"]),
            doc.get("muce_task", ""))
    return {metric: item for metric in metrics_for(settings)}


# --- scoring a task's answers ----------------------------------------------------------


def scorer_config(settings: dict) -> ScoringConfig:
    """The ScoringConfig of resolved settings: the profile, with the models they name winning
    (`reward_model` is already the profile's resolved choice; None means no reward model)."""
    return profile_config(settings["profile"], embedder=settings["embedder"],
                          lm=None if settings["lm"] == "none" else settings["lm"],
                          reward_model=settings["reward_model"] or NO_MODEL, degenerate=settings["degenerate"],
                          originality_model=settings["originality_model"],
                          trust_remote_code=settings["trust_remote_code"] or None)


@functools.lru_cache(maxsize=8)
def _scorer(settings_json: str) -> Scorer:
    return Scorer(scorer_config(json.loads(settings_json)))


def _flatten(items: list) -> tuple[list[str], list[str], list[int]]:
    """answers, their prompts, and the index of the item (prompt) each came from."""
    answers, prompts, owner = [], [], []
    for k, (_, prompt, responses, *_) in enumerate(items):
        answers += responses
        prompts += [prompt] * len(responses)
        owner += [k] * len(responses)
    return answers, prompts, owner


def _mean(values, keep) -> float:
    chosen = [v for v, k in zip(values, keep) if k and v is not None]
    return float(np.mean(chosen)) if chosen else float("nan")


def corpus_values(items: list, scorer: Scorer, per_answer: dict, corpus: str = "task") -> dict[str, float]:
    """Every corpus metric of one task's items. With `corpus` "task" the task's answers form
    one corpus; with "prompt" each prompt's answers do (the paper's 16 pooled samples), and
    num_themes and the corpus n-gram diversities are means over prompts. prompt_* metrics
    always use one corpus per prompt. `per_answer` caches surprise/quality."""
    answers, prompts, owner = _flatten(items)
    prompt_scores = scorer.score(answers, corpus_ids=owner, prompts=prompts, metrics=["novelty", "diversity"])
    scores = scorer.score(answers, corpus_ids=owner if corpus == "prompt" else None, prompts=prompts,
                          metrics=["dsi", "novelty", "diversity", "theme_uniqueness", "ngram_diversity"])
    keep = [row["degenerate"] is None or scorer.config.degenerate == "reference_compat" for row in scores.rows]
    out = {m: _mean([r[m] for r in scores.rows], keep) for m in ("novelty", "diversity", "dsi", "theme_uniqueness")}
    corpora = list(scores.corpora.values())
    out["num_themes"] = float(np.mean([c.get("num_themes", 0) for c in corpora]))
    for n in NGRAM_ORDERS:
        values = [c[f"ngram_diversity_{n}"] for c in corpora if c[f"ngram_diversity_{n}"] is not None]
        out[f"ngram_diversity_{n}"] = float(np.mean(values)) if values else float("nan")
    out["prompt_novelty"] = _mean([r["novelty"] for r in prompt_scores.rows], keep)
    out["prompt_diversity"] = _mean([r["diversity"] for r in prompt_scores.rows], keep)
    for field, values in per_answer.items():
        out[field] = _mean([values[(p, a)] for p, a in zip(prompts, answers)], keep)
    return out


def _per_answer_scores(items: list, scorer: Scorer, settings: dict) -> dict:
    """Scores of each distinct (prompt, answer) that do not depend on the corpus (the
    registry's answer-scope metrics: semantic distance, originality, surprise, quality, ...)."""
    answers, prompts, _ = _flatten(items)
    pairs = sorted(set(zip(prompts, answers)))
    wanted = list(answer_metrics(settings))
    if not pairs or not wanted:
        return {}
    item_of = {(prompt, answer): (item, muce_task) for _, prompt, answers, item, muce_task in items
               for answer in answers}
    item_of = [item_of[pair] for pair in pairs]
    rows = scorer.score([a for _, a in pairs], prompts=[p for p, _ in pairs], metrics=wanted,
                        items=[i for i, _ in item_of], tasks=[t for _, t in item_of]).rows
    fields = [f for m in wanted for f in registry.REGISTRY[m].fields]
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
    for k, (_, prompt, gens, *_) in enumerate(items):
        rows = [i for i, o in enumerate(owner) if o == k]
        labels = noveltybench.partition(gens, equivalent)
        values = {"distinct": max(labels) + 1,
                  "prompt_novelty": _nan_if_none(counted_mean([semantic[i] for i in rows], "novelty",
                                                              scorer.config.degenerate)),
                  "prompt_diversity": _nan_if_none(counted_mean([semantic[i] for i in rows], "diversity",
                                                                scorer.config.degenerate))}
        if rewards is not None:
            ratings = [noveltybench.rating(rewards[i]["quality"]) for i in rows]
            values["utility"] = noveltybench.utility(noveltybench.generation_scores(labels, ratings),
                                                     settings["patience"])
        out[(prompt, gens)] = values
    return out


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value


def noveltybench_values(items: list, per_prompt: dict) -> dict[str, float]:
    """Means over prompts of the per-prompt values (a prompt whose generations are all
    degenerate has no novelty or diversity and is left out of those two)."""
    rows = [per_prompt[(prompt, gens)] for _, prompt, gens, *_ in items]
    out = {}
    for m in rows[0]:
        known = [r[m] for r in rows if not np.isnan(r[m])]
        out[m] = float(np.mean(known)) if known else float("nan")
    return out


@functools.lru_cache(maxsize=16)
def _task_report(key: str, items_json: str) -> dict:
    """Point estimates and standard errors of every metric of one task (cached: lm-eval
    calls each metric's aggregation and stderr separately on the same items)."""
    items = [(t, p, tuple(r), i, m) for t, p, r, i, m in json.loads(items_json)]
    settings = _task_settings.get(items[0][0], resolve_settings({}))
    scorer = _scorer(json.dumps(settings, sort_keys=True))
    if settings.get("kind") == "noveltybench":
        per_prompt = _noveltybench_per_prompt(items, scorer, settings)
        values = functools.partial(noveltybench_values, per_prompt=per_prompt)
    else:
        per_answer = _per_answer_scores(items, scorer, settings)
        values = functools.partial(corpus_values, scorer=scorer, per_answer=per_answer, corpus=settings["corpus"])
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
    items_json = json.dumps([[t, p, list(r), i, m] for t, p, r, i, m in items])
    return _task_report(hashlib.sha256(items_json.encode()).hexdigest(), items_json)


def _aggregation(metric: str) -> Callable[[list], float]:
    def aggregate(items: list) -> float:
        return _report(items)["point"][metric]

    def stderr(items: list) -> float:
        return _report(items)["stderr"][metric]

    aggregate.__name__ = f"aggregate_{metric}"
    aggregate.crpo_stderr = stderr
    return aggregate


class _Aggregations(dict):
    """field -> its aggregation, made on first use, so metrics registered later have one too."""

    def __missing__(self, field: str):
        self[field] = _aggregation(field)
        return self[field]


AGGREGATIONS = _Aggregations()


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
