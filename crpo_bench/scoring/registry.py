"""The one list of creativity metrics; every part of crpo-bench reads it.

A `Metric` says what it writes (`fields`), what its value depends on (`scope`: the answer
alone, or the corpus of answers it is compared with), which models it needs, which way is
better, how degenerate answers count, which tasks report it, and whether it is a CrPO
dimension and a leaderboard column. The scorer's dispatch and CLI choices, the lm-eval
metric lists and aggregations, the leaderboard's columns and directions, the trainer's
`lambda_*` fields and score columns, and `validate`'s scorers all come from here.

Built-in metrics name the Scorer pass that computes them (`computed_by`: one embedding
pass serves dsi, novelty, diversity and themes). A metric registered with a `compute` function is computed
per answer by calling it, so a new metric is one `register(...)` call:

    register(Metric("exclamations", fields=("exclamations",), compute=lambda responses, **_:
                    [r.count("!") for r in responses], leaderboard=("exclamations",)))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SCOPES = ("answer", "prompt", "task")  # the answer alone; the corpus of its prompt; of its task
PASSES = ("embedding", "ngrams", "lm", "item", "reward_model")  # the Scorer's passes for built-ins
NEEDS = ("embedder", "lm", "reward_model", "item")
MUCE, NOVELTYBENCH = "muce", "noveltybench"


@dataclass(frozen=True)
class Metric:
    name: str
    fields: tuple[str, ...]
    scope: str = "answer"  # answer: the answer alone; prompt / task: the corpus of its prompt / task
    needs: tuple[str, ...] = ()
    higher_is_better: bool = True
    degenerate: str = "left out of means"  # how degenerate answers count
    reported_by: tuple[str, ...] = (MUCE,)  # kinds of lm-eval task that report its fields
    scorer: bool = True  # computed by Scorer.score (False: a task-level value, e.g. NoveltyBench's distinct)
    default: bool = True  # in the default metric set of `crpo-bench score` (where its needs are met)
    crpo: bool = False  # a CrPO dimension: lambda_<name>, columns <name>_chosen / <name>_rejected
    leaderboard: tuple[str, ...] = ()  # fields shown as leaderboard columns, in registration order
    compute: Callable | None = None  # fn(responses, prompts=, items=, tasks=, scorer=) -> one value per answer
    computed_by: str | None = None  # built-ins: the Scorer pass that computes it (PASSES); else `compute`
    description: str = ""

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"metric {self.name}: scope {self.scope!r}, choose one of {SCOPES}")
        unknown = set(self.needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"metric {self.name}: unknown needs {sorted(unknown)}; choose from {NEEDS}")
        if self.scorer and (self.compute is None) == (self.computed_by is None):
            raise ValueError(f"metric {self.name}: give it a compute function (or, built in, a Scorer pass)")
        if self.computed_by is not None and self.computed_by not in PASSES:
            raise ValueError(f"metric {self.name}: pass {self.computed_by!r}, choose one of {PASSES}")


REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    if metric.name in REGISTRY:
        raise ValueError(f"metric {metric.name!r} is already registered")
    taken = {f for m in REGISTRY.values() for f in m.fields} & set(metric.fields)
    if taken:
        raise ValueError(f"metric {metric.name!r}: field(s) {sorted(taken)} already belong to another metric")
    REGISTRY[metric.name] = metric
    return metric


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


# --- queries -----------------------------------------------------------------------------


def scorer_metrics() -> tuple[str, ...]:
    return tuple(m.name for m in REGISTRY.values() if m.scorer)


def metric_fields() -> dict[str, tuple[str, ...]]:
    """Scorer metric name -> the fields it writes on each response."""
    return {m.name: m.fields for m in REGISTRY.values() if m.scorer}


def default_metrics(available: set[str]) -> tuple[str, ...]:
    """The default scorer metrics whose needs are among `available` models."""
    return tuple(m.name for m in REGISTRY.values() if m.scorer and m.default and set(m.needs) <= available)


def reported_fields(kind: str, available: set[str]) -> tuple[str, ...]:
    """The values an lm-eval task of `kind` reports, given the models it has."""
    return tuple(f for m in REGISTRY.values() if kind in m.reported_by and set(m.needs) <= available
                 for f in m.fields)


def all_reported_fields() -> dict[str, bool]:
    """Every value any task may report -> higher_is_better."""
    return {f: m.higher_is_better for m in REGISTRY.values() if m.reported_by for f in m.fields}


def crpo_dimensions() -> tuple[str, ...]:
    return tuple(m.name for m in REGISTRY.values() if m.crpo)


def leaderboard_columns() -> tuple[str, ...]:
    return tuple(f for m in REGISTRY.values() for f in m.leaderboard)


# Passes whose answer-scope metrics tasks take from their corpus scoring rather than per
# answer (dsi comes with novelty; n-gram diversity is reported for the corpus).
CORPUS_PASSES = ("embedding", "ngrams")


def answer_metrics(kind: str, available: set[str]) -> tuple[str, ...]:
    """Scorer metrics of answer scope that a task of `kind` averages over its answers."""
    return tuple(m.name for m in REGISTRY.values()
                 if m.scorer and m.scope == "answer" and kind in m.reported_by and set(m.needs) <= available
                 and m.computed_by not in CORPUS_PASSES)


# --- the built-in metrics (docs: metrics-spec; order = leaderboard column order) -----------

register(Metric("dsi", ("dsi",), needs=("embedder",), computed_by="embedding", degenerate="0; left out of means",
                description="mean pairwise cosine distance of the answer's unique words"))
register(Metric("novelty", ("novelty",), scope="task", needs=("embedder",), computed_by="embedding", crpo=True,
                leaderboard=("novelty",),
                degenerate="0 and out of the corpus; left out of means",
                description="2 * |DSI(answer) - DSI(all answers of the corpus joined)|"))
register(Metric("diversity", ("diversity",), scope="task", needs=("embedder",), computed_by="embedding", crpo=True,
                leaderboard=("diversity",), degenerate="0 and out of the corpus; left out of means",
                description="mean cosine distance of the answer to the other answers of its corpus"))
register(Metric("theme_uniqueness", ("theme_uniqueness", "num_themes"), scope="task", needs=("embedder",),
                computed_by="embedding",
                leaderboard=("theme_uniqueness",), degenerate="0 and out of the corpus; left out of means",
                description="Ward clustering (threshold 0.7) of answer embeddings; 1 / cluster size"))
register(Metric("ngram_diversity", tuple(f"ngram_diversity_{n}" for n in range(1, 6)),
                computed_by="ngrams", degenerate="out of the corpus's n-grams",
                description="distinct / total n-grams, n = 1..5 (tasks report the corpus's)"))
register(Metric("surprise", ("surprise", "perplexity"), needs=("lm",), computed_by="lm", crpo=True,
                leaderboard=("surprise",),
                description="mean NLL of the answer's tokens given the prompt (paper profile: of the whole chat)"))
register(Metric("originality", ("originality",), needs=("item",), computed_by="item", crpo=True,
                leaderboard=("originality",),
                degenerate="answers without words get the lowest score (10)",
                description="human-like originality on MuCE's 10-50 scale, learned from human ratings"))
register(Metric("semantic_distance", ("semantic_distance",), needs=("embedder", "item"), computed_by="item",
                leaderboard=("semantic_distance",),
                description="1 - cosine between the item and the answer"))
register(Metric("quality", ("quality",), needs=("reward_model",), computed_by="reward_model", crpo=True,
                leaderboard=("quality",),
                description="raw logit of a one-output reward model on [prompt, answer]"))
register(Metric("prompt_novelty", ("prompt_novelty",), scope="prompt", scorer=False, reported_by=(MUCE, NOVELTYBENCH),
                description="novelty with one corpus per prompt"))
register(Metric("prompt_diversity", ("prompt_diversity",), scope="prompt", scorer=False,
                reported_by=(MUCE, NOVELTYBENCH), description="diversity with one corpus per prompt"))
register(Metric("distinct", ("distinct",), scope="prompt", scorer=False, reported_by=(NOVELTYBENCH,),
                leaderboard=("distinct",), description="NoveltyBench: equivalence classes per prompt"))
# As published with a NoveltyBench run (`crpo-bench import`): the reference judge's figures,
# never mixed into the columns crpo-bench measures itself. No task reports them.
register(Metric("distinct_reported", ("distinct_reported",), scope="prompt", scorer=False, reported_by=(),
                leaderboard=("distinct_reported",),
                description="NoveltyBench as published: the reference judge's classes per prompt"))
register(Metric("utility_reported", ("utility_reported",), scope="prompt", scorer=False, reported_by=(),
                leaderboard=("utility_reported",),
                description="NoveltyBench as published: the reference reward model's utility"))
register(Metric("utility", ("utility",), scope="prompt", scorer=False, needs=("reward_model",),
                reported_by=(NOVELTYBENCH,), leaderboard=("utility",),
                description="NoveltyBench: patience-weighted quality of the first member of each class"))
