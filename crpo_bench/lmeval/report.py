"""A task's report: every metric's value and standard error from the items of its documents.

lm-eval hands all items of a task (one per prompt: its answers, item, task type and the
task's settings) to each metric's aggregation, which is where the corpus exists: the
answers of the task, or of one prompt. Each aggregation carries a resampling standard
error over prompts (`crpo_stderr`: jackknife by default, bootstrap on request), which
compat.install_stderr_hook makes lm-eval report.

Each metric receives a prompt's item as an `AnswerValues`: the item rides along as an
attribute, and the list itself is what lm-eval logs under the metric's name in a samples
file. The aggregation fills it with the prompt's values of that metric, so a logged sample
reads as its answers' scores, not as the item repeated once per metric.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable

import numpy as np

from .. import noveltybench
from ..scoring import registry
from . import generator
from ..metrics.ngrams import NGRAM_ORDERS
from ..scoring import Scorer, counts
from .settings import TaskSettings


LOGGED_DECIMALS = 6  # per-answer values in samples files; the reported aggregates are unrounded


class AnswerValues(list):
    """What one metric of a task receives from one prompt, and what lm-eval logs for it.

    `item` (the prompt's answers and the task's settings, see tasks.results_item) is read
    by the aggregation and never logged. The list starts empty; the aggregation fills it with
    the metric's value for each answer, in `filtered_resps` order, null where the answer is
    left out as degenerate; a corpus-level field (num_themes, n-gram diversity, NoveltyBench's
    distinct and utility) holds the one value of the prompt's own corpus, or nothing when the
    corpus is the whole task.
    """

    def __init__(self, item: tuple = ()):
        super().__init__()
        self.item = item


def _items(values: list) -> list[tuple]:
    return [v.item if isinstance(v, AnswerValues) else v for v in values]


def _logged(value, counted: bool = True):
    return None if value is None or not counted or value != value else round(float(value), LOGGED_DECIMALS)


@functools.lru_cache(maxsize=8)
def _scorer(settings_json: str) -> Scorer:
    return Scorer(TaskSettings.from_json(settings_json).scoring)


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


CORPUS_METRICS = ("dsi", "novelty", "diversity", "theme_uniqueness", "ngram_diversity")


def _corpus_scores(items: list, scorer: Scorer, corpus: str):
    """The scorer's rows over a task's answers (one corpus, or one per prompt), the rows with
    one corpus per prompt, and whether each answer counts."""
    answers, prompts, owner = _flatten(items)
    scores = scorer.score(answers, corpus_ids=owner if corpus == "prompt" else None, prompts=prompts,
                          metrics=list(CORPUS_METRICS))
    # with one corpus per prompt, the prompt_* metrics are the ones just computed
    prompt_scores = scores if corpus == "prompt" else scorer.score(
        answers, corpus_ids=owner, prompts=prompts, metrics=["novelty", "diversity"])
    keep = [counts(row["degenerate"], scorer.config.degenerate) for row in scores.rows]
    return answers, prompts, owner, scores, prompt_scores, keep


def corpus_values(items: list, scorer: Scorer, per_answer: dict, corpus: str = "task", scored=None) -> dict[str, float]:
    """Every corpus metric of one task's items. With `corpus` "task" the task's answers form
    one corpus; with "prompt" each prompt's answers do (the paper's 16 pooled samples), and
    num_themes and the corpus n-gram diversities are means over prompts. prompt_* metrics
    always use one corpus per prompt. `per_answer` caches surprise/quality; `scored` is these
    items' `_corpus_scores` where the caller has them already."""
    answers, prompts, _, scores, prompt_scores, keep = scored or _corpus_scores(items, scorer, corpus)
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


def answer_values(items: list, per_answer: dict, corpus: str, scored) -> list[dict[str, list]]:
    """Per item, what each field logs: its answers' values (None where an answer does not
    count) and, for the corpus-level fields, the prompt's own corpus value when each prompt is
    a corpus (with one corpus per task a prompt has none of its own). `scored`: the items'
    `_corpus_scores`, the same the point estimate reads."""
    answers, prompts, owner, scores, prompt_scores, keep = scored
    out = [{} for _ in items]
    for i, k in enumerate(owner):
        row = {m: scores.rows[i][m] for m in ("novelty", "diversity", "dsi", "theme_uniqueness")}
        row.update({f"prompt_{m}": prompt_scores.rows[i][m] for m in ("novelty", "diversity")})
        row.update({field: values[(prompts[i], answers[i])] for field, values in per_answer.items()})
        for field, value in row.items():
            out[k].setdefault(field, []).append(_logged(value, keep[i]))
    corpus_fields = ("num_themes", *(f"ngram_diversity_{n}" for n in NGRAM_ORDERS))
    for k, values in enumerate(out):
        own = scores.corpora.get(k, {}) if corpus == "prompt" else {}
        for field in corpus_fields:
            value = own.get(field, 0 if field == "num_themes" and own else None)
            values[field] = [] if value is None else [_logged(value)]
    return out


def _per_answer_scores(items: list, scorer: Scorer, settings: TaskSettings) -> dict:
    """Scores of each distinct (prompt, answer) that do not depend on the corpus (the
    registry's answer-scope metrics: semantic distance, originality, surprise, quality, ...)."""
    answers, prompts, _ = _flatten(items)
    pairs = sorted(set(zip(prompts, answers)))
    wanted = list(settings.answer_metrics())
    if not pairs or not wanted:
        return {}
    item_of = {(prompt, answer): (item, muce_task) for _, prompt, answers, item, muce_task, _ in items
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


def _noveltybench_per_prompt(items: list, scorer: Scorer, settings: TaskSettings) -> dict:
    """Classes, utility and per-prompt novelty/diversity of each prompt (`values`), and what
    each field logs for it (`answers`): they depend on that prompt's generations only, so
    resampling prompts reuses them."""
    answers, prompts, owner = _flatten(items)
    equivalent = noveltybench.make_equivalence(
        settings.equivalence, answers,
        lambda texts: scorer.embed(texts, "embedding", scorer.config.text_batch_size), settings.classifier,
        scorer.config.embedder)
    semantic = scorer.score(answers, corpus_ids=owner, prompts=prompts, metrics=["novelty", "diversity"]).rows
    rewards = ([r["quality"] for r in scorer.score(answers, prompts=prompts, metrics=["quality"]).rows]
               if settings.reward_model else None)
    degenerate = scorer.config.degenerate
    by_owner: dict[int, list[int]] = {}  # item -> its answers' indices, found once (not a scan per item)
    for i, o in enumerate(owner):
        by_owner.setdefault(o, []).append(i)
    out = {}
    for k, (_, prompt, gens, *_) in enumerate(items):
        mine = by_owner.get(k, [])
        rows = [semantic[i] for i in mine]
        scores = noveltybench.prompt_scores(noveltybench.partition(gens, equivalent), rows,
                                            None if rewards is None else [rewards[i] for i in mine],
                                            settings.patience, degenerate)
        values = {"distinct": scores["num_classes"], "prompt_novelty": _nan_if_none(scores["novelty"]),
                  "prompt_diversity": _nan_if_none(scores["diversity"])}
        if rewards is not None:
            values["utility"] = scores["utility"]
        logged = {f"prompt_{m}": [_logged(r[m], counts(r["degenerate"], degenerate)) for r in rows]
                  for m in ("novelty", "diversity")}
        logged.update({f: [_logged(v)] for f, v in values.items() if not f.startswith("prompt_")})
        out[(prompt, gens)] = {"values": values, "answers": logged}
    return out


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value


def noveltybench_values(items: list, per_prompt: dict) -> dict[str, float]:
    """Means over prompts of the per-prompt values (a prompt whose generations are all
    degenerate has no novelty or diversity and is left out of those two)."""
    rows = [per_prompt[(prompt, gens)]["values"] for _, prompt, gens, *_ in items]
    out = {}
    for m in rows[0]:
        known = [r[m] for r in rows if not np.isnan(r[m])]
        out[m] = float(np.mean(known)) if known else float("nan")
    return out


@functools.lru_cache(maxsize=16)
def _task_report(key: str, items_json: str) -> dict:
    """Point estimates and standard errors of every metric of one task, and what each item
    logs (cached: lm-eval calls each metric's aggregation and stderr separately on the same items)."""
    generator.step_aside()  # generation is over: its GPU memory goes to the scoring models
    items = [(t, p, tuple(r), i, m, s) for t, p, r, i, m, s in json.loads(items_json)]
    settings = TaskSettings.from_json(items[0][5])  # the task's settings travel in its items
    scorer = _scorer(items[0][5])
    if settings.kind == registry.NOVELTYBENCH:
        per_prompt = _noveltybench_per_prompt(items, scorer, settings)
        values = functools.partial(noveltybench_values, per_prompt=per_prompt)
        logged = [per_prompt[(prompt, gens)]["answers"] for _, prompt, gens, *_ in items]
        point = values(items)
    else:
        per_answer = _per_answer_scores(items, scorer, settings)
        values = functools.partial(corpus_values, scorer=scorer, per_answer=per_answer, corpus=settings.corpus)
        scored = _corpus_scores(items, scorer, settings.corpus)  # once: the point and the log read it
        logged = answer_values(items, per_answer, settings.corpus, scored)
        point = values(items, scored=scored)
    if len(items) < 2:
        return {"point": point, "stderr": {m: float("nan") for m in point}, "logged": logged}
    # Recompute every metric on resampled sets of prompts (embeddings come from memory).
    subsets, spread_to_se = resamples(len(items), settings.stderr, settings.bootstrap_iters)
    draws = {m: [] for m in point}
    for subset in subsets:
        for m, v in values([items[k] for k in subset]).items():
            draws[m].append(v)
    return {"point": point, "stderr": {m: spread_to_se(np.asarray(v, dtype=float)) for m, v in draws.items()},
            "logged": logged}


def _report(values: list) -> dict:
    items = _items(values)
    items_json = json.dumps([[t, p, list(r), i, m, s] for t, p, r, i, m, s in items])
    return _task_report(hashlib.sha256(items_json.encode()).hexdigest(), items_json)


def _aggregation(metric: str) -> Callable[[list], float]:
    def aggregate(values: list) -> float:
        report = _report(values)
        for value, logged in zip(values, report["logged"]):  # what the samples file shows
            if isinstance(value, AnswerValues):
                value[:] = logged.get(metric, [])
        return report["point"][metric]

    def stderr(values: list) -> float:
        return _report(values)["stderr"][metric]

    aggregate.__name__ = f"aggregate_{metric}"
    aggregate.crpo_stderr = stderr
    return aggregate


class _Aggregations(dict):
    """field -> its aggregation, made on first use, so metrics registered later have one too."""

    def __missing__(self, field: str):
        self[field] = _aggregation(field)
        return self[field]


AGGREGATIONS = _Aggregations()
