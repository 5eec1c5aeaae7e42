"""The one entry point every part calls: responses + corpora -> per-response metrics.

`Scorer.score(responses, corpus_ids, prompts, metrics)` groups responses into corpora
(the scope: a task, a prompt, or any explicit grouping), embeds every distinct word and
every distinct text of the whole call once, in batches and through the disk cache,
then evaluates each metric's closed form per corpus.

Degenerate answers (empty, whitespace or punctuation only, fewer than two unique
words) are flagged. With the default policy `exclude` they are left out of every
corpus (they change nobody else's novelty, diversity or themes) and get novelty,
diversity and theme uniqueness 0, so a model cannot earn creativity by saying
nothing. `reference_compat` keeps them in their corpus and scores them by the
formulas, as the paper's code does (an empty answer then gets DSI 0 and a large
novelty 2 * DSI(corpus)).

A *profile* is a named set of defaults (`profile_config`): `offline` (packaged models,
regex words, surprise of the response tokens) and `paper` (the CrPO paper's metric
setup: jina-embeddings-v3, spaCy words, whole-chat surprise under gemma-2-27b-it,
Skywork reward).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import models, muce, text
from . import registry
from .embedding_cache import EmbeddingCache, embed_with_cache
from ..metrics import ngrams, originality, quality, semantic, surprise, themes

DEGENERATE_POLICIES = ("exclude", "reference_compat")

# The metrics are declared once, in crpo_bench.scoring.registry; these views are for callers that
# want them at import time (plugins registered later appear in registry calls, not here).
METRIC_FIELDS = registry.metric_fields()
METRICS = registry.scorer_metrics()


@dataclass
class ScoringConfig:
    """How to score. Model names: None = offline default, else a hub id or a local folder.
    `profile_config` fills one in from a named profile."""

    embedder: str | None = None
    lm: str | None = None
    reward_model: str | None = None
    originality_model: str | None = None  # folder of a trained model; default: the packaged one
    degenerate: str = "exclude"
    tokenizer: str = "regex"
    surprise_scope: str = "response"  # or "whole_chat", the paper's (metrics/surprise.py)
    reward_input: str = "chat"  # or "paper": the chat text re-tokenized with special tokens (metrics/quality.py)
    trust_remote_code: bool = False  # the opt-in to models that ship their own code
    # Where the scoring models run and the type of their weights: auto = the GPU where there is
    # one; float32 on the CPU, the checkpoint's own type on a GPU (models.dtype_label)
    device: str = "auto"
    dtype: str = "auto"
    # Answers are scored on their first max_response_chars characters (rows cut short say so
    # in `truncated_at`): memory and time stay bounded whatever a model emits (surprise's
    # attention grows with the square of the length). 10,000 is about 2,300 tokens, twice the
    # paper's longest generation (1,024 new tokens).
    max_response_chars: int | None = 10_000
    embedding_cache: bool = True
    cache_path: Path | None = None  # default: <cache dir>/embeddings.sqlite
    word_batch_size: int = 64  # measured fastest on CPU for MiniLM (benchmarks/)
    text_batch_size: int = 8
    progress: bool = False

    def __post_init__(self):
        if self.degenerate not in DEGENERATE_POLICIES:
            raise ValueError(f"degenerate policy {self.degenerate!r}: choose one of {DEGENERATE_POLICIES}")
        if self.tokenizer not in text.TOKENIZERS:
            raise ValueError(f"tokenizer {self.tokenizer!r}: choose one of {text.TOKENIZERS}")
        if self.surprise_scope not in surprise.SCOPES:
            raise ValueError(f"surprise scope {self.surprise_scope!r}: choose one of {surprise.SCOPES}")
        if self.dtype not in models.DTYPES:
            raise ValueError(f"dtype {self.dtype!r}: choose one of {models.DTYPES}")
        if self.reward_input not in REWARD_INPUTS:
            raise ValueError(f"reward input {self.reward_input!r}: choose one of {REWARD_INPUTS}")
        cap = self.max_response_chars
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ValueError(f"max_response_chars {cap!r}: a positive number of characters (or None for no cap)")


REWARD_INPUTS = ("chat", "paper")
PROFILES = ("offline", "paper")
# What each profile sets; every other field keeps ScoringConfig's default. `paper` does
# not set trust_remote_code: jina-embeddings-v3 ships its own code, and running it stays
# the caller's explicit choice.
PROFILE_SETTINGS = {
    "offline": {},
    "paper": {
        "embedder": "jinaai/jina-embeddings-v3",
        "lm": "google/gemma-2-27b-it",
        "reward_model": "Skywork/Skywork-Reward-Gemma-2-27B-v0.2",
        "tokenizer": "spacy",
        "surprise_scope": "whole_chat",
        "reward_input": "paper",  # two BOS, as the paper's code scores quality
        "degenerate": "exclude",  # the paper drops answers with at most one unique word
    },
}
NO_MODEL = "none"  # reward_model="none": no reward model, even where the profile names one


def profile_config(profile: str = "offline", **overrides) -> ScoringConfig:
    """The ScoringConfig of a named profile, with explicit overrides winning.

    An override of None means "not given" (so optional CLI or lm-eval arguments can be
    passed straight through); reward_model="none" removes the profile's reward model.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r}: choose one of {PROFILES}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(ScoringConfig)}
    if unknown:
        raise ValueError(f"unknown ScoringConfig field(s) {sorted(unknown)}")
    settings = {**PROFILE_SETTINGS[profile], **{k: v for k, v in overrides.items() if v is not None}}
    if settings.get("reward_model") == NO_MODEL:
        settings["reward_model"] = None
    return ScoringConfig(**settings)


def add_device_options(parser) -> None:
    """--device and --dtype of the scoring models, for every command that scores."""
    parser.add_argument("--device", default="auto", help="where the scoring models run: auto (default: the GPU "
                        "where there is one), cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="auto", choices=models.DTYPES,
                        help="the scoring models' weights: auto (default) is float32 on the CPU and the checkpoint's "
                             "own type on a GPU (bf16 for the paper profile's 27B models, so they fit); the card "
                             "records it")


@dataclass
class ScoreResult:
    rows: list[dict]  # per response: "degenerate" (kind or None) and every metric field
    corpora: dict = field(default_factory=dict)  # corpus id -> corpus-level statistics


def available_models(config: ScoringConfig) -> set[str]:
    """What a scorer with `config` can use (registry.NEEDS): an embedder, an LM and items
    always (offline defaults, prompts stand in for items); a reward model only when named."""
    return {"embedder", "lm", "item"} | ({"reward_model"} if config.reward_model else set())


def check_metrics(metrics: Sequence[str], config: ScoringConfig) -> tuple[str, ...]:
    known = registry.scorer_metrics()
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; available: {', '.join(known)}")
    needing = [m for m in metrics if "reward_model" in registry.REGISTRY[m].needs]
    if needing and not config.reward_model:
        raise ValueError(f"metric {needing[0]!r} needs a reward model (--reward-model NAME_OR_FOLDER)")
    return tuple(dict.fromkeys(metrics))


def default_metrics(config: ScoringConfig) -> tuple[str, ...]:
    return registry.default_metrics(available_models(config))


# Models are loaded once per process and shared by every Scorer (lm-eval calls the
# scorer once per task; loading MiniLM or SmolLM2 each time would dominate).
_load_embedder = functools.lru_cache(maxsize=4)(models.load_embedder)
_load_causal_lm = functools.lru_cache(maxsize=2)(models.load_causal_lm)
_load_reward_model = functools.lru_cache(maxsize=2)(models.load_reward_model)


@functools.lru_cache(maxsize=2)
def _load_originality(folder: str | None):
    return originality.OriginalityModel.load(models.originality_model_path(folder))


class Scorer:
    def __init__(self, config: ScoringConfig | None = None, embedder=None):
        self.config = config or ScoringConfig()
        self._embedder = embedder  # an injected Embedder (tests, benchmarks)
        self._cache = None
        self._memory: dict[str, np.ndarray] = {}  # this scorer's embeddings, for repeated calls
        self._originality_scorer: Scorer | None = None  # in the originality model's embedding space

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = _load_embedder(self.config.embedder, self.config.trust_remote_code, self.config.device,
                                            self.config.dtype)
        return self._embedder

    @property
    def cache(self) -> EmbeddingCache | None:
        if self._cache is None and self.config.embedding_cache:
            self._cache = EmbeddingCache(self.config.cache_path or models.cache_dir() / "embeddings.sqlite")
        return self._cache

    def embed(self, texts: list[str], desc: str, batch_size: int, progress: bool | None = None) -> np.ndarray:
        """Unit float64 embeddings, one row per text (repeats allowed): from memory, else the
        disk cache, else the model; each distinct text is embedded at most once."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._memory))
        if missing:
            show = self.config.progress if progress is None else progress
            vectors = embed_with_cache(self.embedder, missing, self.cache, show, desc, batch_size)
            self._memory.update(zip(missing, semantic.unit_rows(vectors)))
        if not texts:
            return np.zeros((0, self.embedder.dimension))
        return np.stack([self._memory[t] for t in texts])

    def score(
        self,
        responses: Sequence[str],
        corpus_ids: Sequence[Hashable] | None = None,
        prompts: Sequence[str | None] | None = None,
        metrics: Sequence[str] | None = None,
        items: Sequence[str | None] | None = None,
        tasks: Sequence[str | None] | None = None,
    ) -> ScoreResult:
        """Score `responses`; responses with equal `corpus_ids` form one corpus (default: one corpus).

        `items` (the object or concept a creativity test asks about, MuCE's `Prompt`) and
        `tasks` serve semantic_distance and originality; without an item the prompt is used.
        """
        cfg = self.config
        metrics = check_metrics(metrics if metrics is not None else default_metrics(cfg), cfg)
        n = len(responses)
        corpus_ids = list(corpus_ids) if corpus_ids is not None else [None] * n
        prompts = list(prompts) if prompts is not None else [None] * n
        if not (len(corpus_ids) == len(prompts) == n):
            raise ValueError("responses, corpus_ids and prompts must have the same length")

        cap = cfg.max_response_chars
        cut = [cap is not None and len(r) > cap for r in responses]
        responses = [r[:cap] if c else r for r, c in zip(responses, cut)]
        kinds = [text.degenerate_kind(r, cfg.tokenizer) for r in responses]
        in_corpus = np.array([counts(k, cfg.degenerate) for k in kinds])
        rows = [{"degenerate": kind, **({"truncated_at": cap} if c else {})} for kind, c in zip(kinds, cut)]
        corpora: dict = {}
        members: dict[Hashable, list[int]] = {}
        for i, cid in enumerate(corpus_ids):
            members.setdefault(cid, []).append(i)
        for cid, idx in members.items():
            corpora[cid] = {"n": len(idx), "n_degenerate": sum(kinds[i] is not None for i in idx)}

        # each built-in metric names the pass that computes it (registry.Metric.computed_by)
        passes = {registry.REGISTRY[m].computed_by for m in metrics}
        if "embedding" in passes:
            self._semantic(responses, members, in_corpus, metrics, rows, corpora)
        if "ngrams" in passes:
            self._ngrams(responses, members, in_corpus, rows, corpora)
        if "lm" in passes:
            model, tokenizer = _load_causal_lm(cfg.lm, cfg.trust_remote_code, cfg.device, cfg.dtype)
            nll = surprise.NLL_FUNCTIONS[cfg.surprise_scope](model, tokenizer, prompts, list(responses),
                                                             progress=cfg.progress)
            for row, value in zip(rows, nll):
                row["surprise"], row["perplexity"] = _num(value), _num(surprise.perplexity(value))
        if "item" in passes:
            items = [i if i is not None else p for i, p in zip(items or [None] * n, prompts)]
            self._relative_to_item(responses, items, list(tasks or [None] * n), kinds, metrics, rows, corpus_ids)
        if "reward_model" in passes:
            model, tokenizer = _load_reward_model(cfg.reward_model, cfg.trust_remote_code, cfg.device, cfg.dtype)
            rewards = quality.reward_scores(model, tokenizer, prompts, list(responses), progress=cfg.progress,
                                            paper_input=cfg.reward_input == "paper")
            for row, value in zip(rows, rewards):
                row["quality"] = _num(value)
        for name in metrics:  # metrics registered with their own function, one value per answer
            metric = registry.REGISTRY[name]
            if metric.compute is not None:
                values = list(metric.compute(list(responses), prompts=prompts, items=items, tasks=tasks, scorer=self))
                if len(values) != n:
                    raise ValueError(f"metric {name}: compute returned {len(values)} values for {n} answers")
                for row, value in zip(rows, values):
                    row[metric.fields[0]] = None if value is None else _num(float(value))
        return ScoreResult(rows, corpora)

    def _semantic(self, responses, members, in_corpus, metrics, rows, corpora) -> None:
        cfg = self.config
        word_metrics = "dsi" in metrics or "novelty" in metrics
        text_metrics = "diversity" in metrics or "theme_uniqueness" in metrics
        if word_metrics:
            # Words of excluded answers are never embedded: they belong to no corpus
            # and their DSI is 0 by definition (< 2 unique words).
            words = [text.unique_words(r, cfg.tokenizer) if keep else [] for r, keep in zip(responses, in_corpus)]
            vocab = sorted({w for ws in words for w in ws})
            index = {w: j for j, w in enumerate(vocab)}
            word_vectors = self.embed(vocab, "embedding words", cfg.word_batch_size)
            bags = semantic.bag_of_words([[index[w] for w in ws] for ws in words], len(vocab))
        if text_metrics:  # all texts in one batched pass; corpora below read them from memory
            self.embed([r for r, keep in zip(responses, in_corpus) if keep], "embedding texts", cfg.text_batch_size)

        for cid, idx in members.items():
            kept = [i for i in idx if in_corpus[i]]
            scores: dict[str, np.ndarray] = {}
            if word_metrics and kept:
                scores["dsi"], scores["novelty"], corpora[cid]["corpus_dsi"] = semantic.dsi_and_novelty(
                    bags[kept], word_vectors)
            if text_metrics and kept:
                vectors = self.embed([responses[i] for i in kept], "embedding texts", cfg.text_batch_size)
                scores["diversity"] = semantic.diversity(vectors)
                labels = themes.theme_labels(vectors)
                scores["theme_uniqueness"] = themes.theme_uniqueness(labels)
                corpora[cid]["num_themes"] = int(labels.max()) + 1
            asked = [m for m in metrics if registry.REGISTRY[m].computed_by == "embedding"]
            for i in idx:  # excluded answers score 0: never a reward for saying nothing
                rows[i].update({m: 0.0 for m in asked})
            for m in asked:
                for i, value in zip(kept, scores.get(m, ())):
                    rows[i][m] = float(value)
            if "theme_uniqueness" in metrics:
                for i in idx:
                    rows[i]["num_themes"] = corpora[cid].get("num_themes", 0)

    def _relative_to_item(self, responses, items, tasks, kinds, metrics, rows, corpus_ids) -> None:
        """semantic_distance = 1 - cos(item, answer); originality from the learned model, with
        `originality_domain` saying whether its item or task type was rated. Answers without
        words get the lowest originality, never a high one; a one-word answer is rated by the
        model (people rate them too). An answer's peers (v4) are the answers with words of its
        corpus."""
        if any(i is None for i in items):
            raise ValueError("semantic_distance and originality need each answer's item or prompt")
        a = self.embed(list(responses), "embedding texts", self.config.text_batch_size)
        p = self.embed(list(items), "embedding items", self.config.text_batch_size)
        if "semantic_distance" in metrics:
            for row, d in zip(rows, 1.0 - (a * p).sum(axis=1)):
                row["semantic_distance"] = float(d)
        if "originality" in metrics:
            model = _load_originality(self.config.originality_model)
            a, p = self._originality_inputs(model, list(responses), list(items), a, p)
            n_words = [len(text.word_sequence(r, "regex")) for r in responses]  # as in its training
            slugs = [muce.task_slug(t.removeprefix("muce_"), strict=False) if t else "" for t in tasks]
            # wordless answers are nobody's peer: each gets a corpus of its own
            corpora = [cid if kind not in text.WORDLESS else ("wordless", i)
                       for i, (cid, kind) in enumerate(zip(corpus_ids, kinds))]
            values, heads = model.score_with_heads(a, p, slugs, list(items), n_words, corpora)
            for row, kind, value, task, head in zip(rows, kinds, values, slugs, heads):
                row["originality"] = originality.SCORE_RANGE[0] if kind in text.WORDLESS else float(value)
                row["originality_domain"] = model.domain(task, head)

    def _originality_inputs(self, model, responses, items, a, p):
        """Answer and item embeddings from the embedder the originality model was trained on
        (its card), whichever embedder this scorer uses for the other metrics (jina under the
        paper profile): its features mean nothing in another embedding space."""
        trained_on = model.card.get("embedder", models.DEFAULT_EMBEDDER)
        mine = self.config.embedder or models.DEFAULT_EMBEDDER
        if mine == trained_on or {mine, trained_on} <= models.EMBEDDER_ALIASES:
            return a, p
        if self._originality_scorer is None:
            self._originality_scorer = Scorer(dataclasses.replace(self.config, embedder=trained_on))
        side = self._originality_scorer
        return (side.embed(responses, "embedding texts", self.config.text_batch_size),
                side.embed(items, "embedding items", self.config.text_batch_size))

    def _ngrams(self, responses, members, in_corpus, rows, corpora) -> None:
        sequences = [text.word_sequence(r, self.config.tokenizer) for r in responses]
        for i, words in enumerate(sequences):
            for n in ngrams.NGRAM_ORDERS:
                rows[i][f"ngram_diversity_{n}"] = ngrams.ngram_diversity(words, n)
        for cid, idx in members.items():
            kept = [sequences[i] for i in idx if in_corpus[i]]
            for n in ngrams.NGRAM_ORDERS:
                corpora[cid][f"ngram_diversity_{n}"] = ngrams.corpus_ngram_diversity(kept, n)


def counts(kind: str | None, degenerate: str = "exclude") -> bool:
    """Whether an answer of degenerate `kind` (None: a real answer) is in its corpus and in
    every summary: degenerate answers are left out under `exclude` (their 0 is a floor, not
    a measurement) and kept under `reference_compat`."""
    return kind is None or degenerate == "reference_compat"


def counted_mean(rows: list[dict], field: str, degenerate: str = "exclude") -> float | None:
    """The mean of a per-answer field over the answers that count (`counts`), the one rule
    of every summary (MuCE tasks, NoveltyBench, reports). None when no answer counts."""
    values = [r[field] for r in rows if counts(r.get("degenerate"), degenerate) and r.get(field) is not None]
    return float(np.mean(values)) if values else None


def _num(value: float) -> float | None:
    """JSON-safe float: NaN (undefined) becomes None."""
    return None if value is None or math.isnan(value) else float(value)
