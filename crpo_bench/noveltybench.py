"""NoveltyBench: equivalence classes of a prompt's generations, and patience-discounted utility.

For each prompt, k generations are partitioned greedily in order: a generation joins the
class of the first earlier class whose first member it is equivalent to, else it starts
a new class (the reference's loop; the surrogate backend brings its own, below).
`distinct` is the number of classes. A backend decides equivalence:
- `classifier`: the reference similarity classifier (P(class 1) > 0.102);
- `unigram`: ROUGE-1 F1 > 0.458;
- `surrogate` (ours, the offline default): trees that predict the reference's decisions
  from cheap comparisons of the two texts (crpo_bench/equivalence_surrogate.py); it
  partitions by its own loop, a generation joining the class it matches best on average
  over all members rather than the first member only;
- `embedding` (ours): cosine similarity of the offline MiniLM embeddings above a
  threshold calibrated on the reference classifier's partitions (see EMBEDDING_THRESHOLD).
`classifier` and `embedding` first apply the short-text rule (two texts of at most 5
whitespace unigrams each are equivalent when they share at least half of the longer
one's words); `unigram` does not, as in the reference, nor does `surrogate`, since the
reference partitions it learned from were made without it.
Utility: a reward model's score, mapped to a 1-10 rating by the reference thresholds,
counts only for the first member of each class, weighted by patience^i and normalised.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

CLASSIFIER_ID = "yimingzhang/deberta-v3-large-generation-similarity"
CLASSIFIER_THRESHOLD = 0.102
UNIGRAM_THRESHOLD = 0.458
# Calibrated on ../shared/data/noveltybench/gemini-1.5-pro-curated-calibration.jsonl (50 prompts
# partitioned by the reference classifier, mean 1.80 classes), with the short-text rule applied
# first as for the classifier: at 0.68 MiniLM gives 1.84 classes
# and a mean adjusted Rand index of 0.546 against the reference partitions, within 0.005 of the
# best of the sweep (ARI is flat at 0.52-0.55 from 0.56 to 0.80, so the class count decides).
# benchmarks/calibrate_noveltybench.py prints the sweep.
EMBEDDING_THRESHOLD = 0.68
REWARD_THRESHOLDS = [-7.71875, -6.28125, -6.0, -5.71875, -5.5, -5.0, -4.375, -3.4375, -2.046875]
PATIENCE = 0.8
SHORT_WORDS = 5  # the short-text rule's limit
BACKENDS = ("classifier", "unigram", "embedding", "surrogate")

Equivalence = Callable[[str, str], bool]


def short_texts_equivalent(a: str, b: str) -> bool | None:
    """The short-text rule: None when either text has more than SHORT_WORDS whitespace unigrams."""
    words_a, words_b = a.split(), b.split()
    if len(words_a) > SHORT_WORDS or len(words_b) > SHORT_WORDS:
        return None
    common = len(set(w.lower() for w in words_a) & set(w.lower() for w in words_b))
    return 2 * common >= max(len(words_a), len(words_b))


def short_rule_then(backend: Equivalence) -> Equivalence:
    """`backend`, consulted only when the short-text rule is undecided."""
    if hasattr(backend, "partition"):  # the wrapper would hide it, and partition() fall back to our loop
        raise TypeError("short_rule_then: this backend partitions by its own loop; give it the rule instead")
    def equivalent(a: str, b: str) -> bool:
        rule = short_texts_equivalent(a, b)
        return rule if rule is not None else backend(a, b)

    return equivalent


def partition(generations: Sequence[str], equivalent: Equivalence) -> list[int]:
    """Class index of each generation, classes numbered in order of appearance. The
    short-text rule, where it applies, belongs to `equivalent` (see the backends). A backend
    with its own `partition` method (the surrogate) decides the whole partition."""
    if hasattr(equivalent, "partition"):
        return equivalent.partition(generations)
    representatives: list[str] = []
    labels = []
    for text in generations:
        for k, first in enumerate(representatives):
            if equivalent(first, text):
                labels.append(k)
                break
        else:
            labels.append(len(representatives))
            representatives.append(text)
    return labels


# --- equivalence backends ----------------------------------------------------------------


def rouge1_f(a: str, b: str) -> float:
    """ROUGE-1 F1 over lowercased alphanumeric tokens (clipped unigram overlap)."""
    ta, tb = Counter(re.findall(r"[a-z0-9]+", a.lower())), Counter(re.findall(r"[a-z0-9]+", b.lower()))
    overlap = sum((ta & tb).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(tb.values()), overlap / sum(ta.values())
    return 2 * precision * recall / (precision + recall)


def unigram_equivalence(threshold: float = UNIGRAM_THRESHOLD) -> Equivalence:
    # No short-text rule: the reference's unigram backend compares ROUGE-1 only.
    return lambda a, b: rouge1_f(a, b) > threshold


def embedding_equivalence(vectors: dict[str, np.ndarray], threshold: float = EMBEDDING_THRESHOLD) -> Equivalence:
    """`vectors`: unit embeddings of every generation (embedded once, in batches, beforehand).
    The short-text rule comes first, as in the classifier backend: EMBEDDING_THRESHOLD was
    calibrated with it, as a stand-in for the classifier."""
    return short_rule_then(lambda a, b: float(vectors[a] @ vectors[b]) > threshold)


class ClassifierEquivalence:
    """The reference classifier: [CLS] a [SEP] b [SEP], each side cut to 128 tokens,
    token types 0 then 1; equivalent when P(class 1) > 0.102, unless the short-text rule
    decides first."""

    def __init__(self, name: str = CLASSIFIER_ID, threshold: float = CLASSIFIER_THRESHOLD):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from .models import ModelLoadError

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name)
            self.model = AutoModelForSequenceClassification.from_pretrained(name).eval()
        except Exception as err:
            raise ModelLoadError(
                f"cannot load the equivalence classifier {name!r} ({type(err).__name__}); pass a local folder "
                "with --classifier, or use --equivalence surrogate|embedding|unigram offline") from err
        self.threshold = threshold

    def probability(self, a: str, b: str) -> float:
        import torch

        tok = self.tokenizer
        ids_a = tok(a, add_special_tokens=False)["input_ids"][:128]
        ids_b = tok(b, add_special_tokens=False)["input_ids"][:128]
        ids = [tok.cls_token_id, *ids_a, tok.sep_token_id, *ids_b, tok.sep_token_id]
        types = [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)
        with torch.no_grad():
            logits = self.model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types])).logits[0]
        return float(torch.softmax(logits.float(), -1)[1])

    def __call__(self, a: str, b: str) -> bool:
        # The reference decides two short texts by the short-text rule, without the classifier.
        rule = short_texts_equivalent(a, b)
        return rule if rule is not None else self.probability(a, b) > self.threshold


def make_equivalence(name: str, texts: Sequence[str], embed: Callable[[list[str]], np.ndarray],
                     classifier: str = CLASSIFIER_ID, embedder: str | None = None) -> Equivalence:
    """The backend `name`; `embed` (texts -> unit vectors, from the sentence embedder named
    `embedder`, None for the packaged MiniLM) serves the embedding and surrogate backends,
    which embed all `texts` once, up front."""
    if name == "classifier":
        return ClassifierEquivalence(classifier)
    if name == "unigram":
        return unigram_equivalence()
    if name == "embedding":
        texts = sorted(set(texts))
        return embedding_equivalence(dict(zip(texts, embed(texts))))
    if name == "surrogate":
        from .equivalence_surrogate import surrogate_equivalence
        from .models import DEFAULT_EMBEDDER, EMBEDDER_ALIASES, minilm_tokenizer
        from .scoring import Scorer, ScoringConfig

        if embedder is not None and embedder not in EMBEDDER_ALIASES:
            # its trees read MiniLM's cosines, whatever the other metrics embed with (jina
            # under the paper profile)
            side = Scorer(ScoringConfig(embedder=DEFAULT_EMBEDDER))
            embed = lambda batch: side.embed(batch, "embedding for the surrogate", side.config.text_batch_size)  # noqa: E731
        return surrogate_equivalence(texts, embed, minilm_tokenizer())
    raise ValueError(f"equivalence backend {name!r}: choose one of {BACKENDS}")


def recorded_backend(name: str) -> str:
    """The backend as settings and metric cards record it: a retrained surrogate is another
    judge, so its version is part of the name."""
    if name == "surrogate":
        from .equivalence_surrogate import packaged_path

        return f"{name}/{packaged_path().name}"
    return name


# --- utility -------------------------------------------------------------------------------


def rating(reward: float, thresholds: Sequence[float] = REWARD_THRESHOLDS) -> int:
    """Raw reward -> 1..10 (calibrated for Skywork-Reward-Gemma-2-27B-v0.2)."""
    return bisect.bisect_left(thresholds, reward) + 1


def generation_scores(labels: Sequence[int], ratings: Sequence[int]) -> list[int]:
    """A generation scores its rating only as the first member of its class."""
    seen: set[int] = set()
    scores = []
    for label, r in zip(labels, ratings):
        scores.append(0 if label in seen else r)
        seen.add(label)
    return scores


def utility(scores: Sequence[float], patience: float = PATIENCE) -> float:
    """sum_i p^i s_i / sum_i p^i: a normalised, patience-weighted average."""
    weights = patience ** np.arange(len(scores))
    return float(weights @ np.asarray(scores, dtype=float) / weights.sum())


def partition_scores(labels: Sequence[int], ratings: Sequence[int]) -> list[int]:
    """The rating of each class (that of its first member), in class order."""
    first: dict[int, int] = {}
    for label, r in zip(labels, ratings):
        first.setdefault(label, r)
    return [first[k] for k in sorted(first)]
