"""An offline surrogate of NoveltyBench's equivalence classifier.

The reference decides whether two generations are the same with a fine-tuned
deberta-v3-large that reads each text cut to 128 tokens; it needs the hub. This backend
predicts that decision from cheap comparisons of the two texts, most of them on each text
cut to its first 128 tokens as the classifier would see it (MiniLM's WordPiece tokens
standing in for DeBERTa's): MiniLM cosines, word overlap, lengths, shared numbers and bold
spans; the short-text flags, identical words and first sentence read the whole text.
The predictor is a small gradient-boosted tree ensemble fitted on the reference's own verdicts, read from its
partitions (`crpo_bench/noveltybench/surrogate_training.py`). Two short texts are decided by the
reference's short-text rule, as NoveltyBench's code does; `short_rule=False` lets the trees decide
them instead, as the reference did before it had the rule (partitions made before 2025-03-19, such
as Gemini-1.5-pro's published ones). It is stored as plain arrays and
evaluated here with numpy, so scoring needs neither scikit-learn nor pickle.

The surrogate partitions a prompt's generations itself (`linkage_partition`): a generation
joins the class it matches best on average over all the class's members, where the
reference's greedy loop asks only the class's first member. One predicted probability is
noisy; the mean over a class is not, and on held-out prompts it agrees better with the
reference's partitions (see the card's cross-validated figures).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import rules as nb
from ..models import ARTIFACTS
from ..text import word_sequence

FORMAT_VERSION = 3  # 2: the threshold applies to linkage_partition; 3: the short-text rule decides two short texts
CUT_TOKENS = 128  # what the reference classifier reads of each text (in its own tokens)
FEATURES = ("cosine", "first_line_cosine", "rouge1", "bigram_jaccard", "min_log_tokens", "max_log_tokens",
            "log_token_gap", "both_short", "same_words", "bold_jaccard", "common_prefix", "one_short",
            "same_numbers", "same_first_sentence", "word_jaccard")
PREFIX_WORDS = 20
# Features are rounded to this many decimals, in fitting and in scoring alike. Another CPU
# computes the same embeddings with other float rounding (cosines agree to ~1e-7, not
# exactly); unrounded, that moves the trees' bin edges and retraining picks other trees and
# thresholds. Rounded, retraining gives identical trees under 1e-6 relative noise on every
# embedding component (benchmarks/training_spread.py), and 1e-4 is far below what a pair's
# verdict depends on.
FEATURE_DECIMALS = 4


class SurrogateError(ValueError):
    """A missing or damaged surrogate artifact."""


@dataclass
class View:
    """A text as the features see it, everything a pair needs of one side worked out once:
    its first 128 tokens (their count, words, bigrams, bold spans, numbers), the whole text's
    whitespace word count, words and first sentence, and the unit embeddings of the cut text
    and of its first line."""

    text: str
    cut: str
    tokens: int
    words: int
    vector: np.ndarray
    first_line_vector: np.ndarray
    cut_words: list[str] = field(init=False)
    cut_bigrams: set = field(init=False)
    bold: set = field(init=False)
    numbers: set = field(init=False)
    text_words: list[str] = field(init=False)
    first_sentence: list[str] = field(init=False)

    def __post_init__(self):
        self.cut_words = word_sequence(self.cut)
        self.cut_bigrams = set(zip(self.cut_words, self.cut_words[1:]))
        self.bold = set(re.findall(r"\*\*(.+?)\*\*", self.cut.lower()))
        self.numbers = set(re.findall(r"\d+", self.cut))
        self.text_words = word_sequence(self.text)
        self.first_sentence = word_sequence(re.split(r"(?<=[.!?])\s", self.text.strip(), maxsplit=1)[0])


def cut_to_tokens(text: str, tokenizer, n: int = CUT_TOKENS) -> tuple[str, int]:
    """The text up to the end of its n-th token (original characters kept) and its token count."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                        verbose=False)["offset_mapping"]
    return (text if len(offsets) <= n else text[:offsets[n - 1][1]]), len(offsets)


def first_line(text: str) -> str:
    return text.strip().split("\n")[0] or text


def make_views(texts: Sequence[str], embed: Callable[[list[str]], np.ndarray], tokenizer) -> dict[str, View]:
    """One View per distinct text; `embed` (texts -> unit vectors) is called once, on all cuts
    and first lines together, so it can batch and cache."""
    texts = sorted(set(texts))
    cuts = [cut_to_tokens(t, tokenizer) for t in texts]
    firsts = [first_line(t) for t in texts]
    vectors = np.asarray(embed([c for c, _ in cuts] + firsts), dtype=np.float64)
    n = len(texts)
    return {t: View(t, cut, count, len(t.split()), vectors[i], vectors[n + i])
            for i, (t, (cut, count)) in enumerate(zip(texts, cuts))}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    while n < min(len(a), len(b), PREFIX_WORDS) and a[n] == b[n]:
        n += 1
    return n


def pair_features(a: View, b: View) -> list[float]:
    """The FEATURES of a pair, in order, rounded to FEATURE_DECIMALS; symmetric in a and b."""
    la, lb = np.log(min(a.tokens, CUT_TOKENS) + 1), np.log(min(b.tokens, CUT_TOKENS) + 1)
    short_a, short_b = a.words <= nb.SHORT_WORDS, b.words <= nb.SHORT_WORDS
    return [round(value, FEATURE_DECIMALS) for value in (
        float(a.vector @ b.vector),
        float(a.first_line_vector @ b.first_line_vector),
        nb.rouge1_f(a.cut, b.cut),
        _jaccard(a.cut_bigrams, b.cut_bigrams),
        min(la, lb), max(la, lb), abs(la - lb),
        float(short_a and short_b),
        float(a.text_words == b.text_words),
        _jaccard(a.bold, b.bold),
        _common_prefix(a.cut_words, b.cut_words) / PREFIX_WORDS,
        float(short_a != short_b),
        float(a.numbers == b.numbers),
        float(a.first_sentence == b.first_sentence),
        _jaccard(set(a.cut_words), set(b.cut_words)),
    )]


@dataclass
class TreeEnsemble:
    """Gradient-boosted binary trees as flat node arrays (all trees' nodes concatenated, child
    indices global): P(same) = sigmoid(baseline + sum over trees of the reached leaf's value).
    A sample goes left when feature <= threshold."""

    feature: np.ndarray    # int, per node
    threshold: np.ndarray  # float, per node
    left: np.ndarray       # int, per node (global index)
    right: np.ndarray
    value: np.ndarray      # float, leaf value
    leaf: np.ndarray       # bool
    roots: np.ndarray      # int, the first node of each tree
    baseline: float

    def probability(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64).reshape(-1, len(FEATURES))
        if not np.isfinite(X).all():  # the trees were fitted without missing values
            raise ValueError("surrogate features must be finite")
        rows = np.arange(len(X))
        raw = np.full(len(X), self.baseline)
        for root in self.roots:
            node = np.full(len(X), root)
            while not self.leaf[node].all():
                inner = ~self.leaf[node]
                n = node[inner]
                goes_left = X[rows[inner], self.feature[n]] <= self.threshold[n]
                node[inner] = np.where(goes_left, self.left[n], self.right[n])
            raw += self.value[node]
        return 1.0 / (1.0 + np.exp(-raw))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"feature": self.feature, "threshold": self.threshold, "left": self.left, "right": self.right,
                "value": self.value, "leaf": self.leaf, "roots": self.roots, "baseline": np.array([self.baseline])}

    @classmethod
    def from_arrays(cls, arrays) -> TreeEnsemble:
        ensemble = cls(**{k: np.asarray(arrays[k]) for k in ("feature", "threshold", "left", "right", "value",
                                                             "roots")},
                       leaf=np.asarray(arrays["leaf"]).astype(bool), baseline=float(np.asarray(arrays["baseline"])[0]))
        ensemble._check()
        return ensemble

    def _check(self) -> None:
        n = len(self.feature)
        if not all(len(a) == n for a in (self.threshold, self.left, self.right, self.value, self.leaf)):
            raise SurrogateError("node arrays of different lengths")
        inner = ~self.leaf
        for name, index in (("left", self.left[inner]), ("right", self.right[inner]), ("roots", self.roots)):
            if index.size and (index.min() < 0 or index.max() >= n):
                raise SurrogateError(f"{name} points outside the {n} nodes")
            # children come after their parent, so every walk ends at a leaf
            if name != "roots" and (index <= np.flatnonzero(inner)).any():
                raise SurrogateError(f"{name} points back to an earlier node")
        if inner.any() and (self.feature[inner].min() < 0 or self.feature[inner].max() >= len(FEATURES)):
            raise SurrogateError(f"a node splits on a feature outside the {len(FEATURES)} known")


@dataclass
class SurrogateModel:
    trees: TreeEnsemble
    threshold: float  # equivalent when P(same) > threshold
    card: dict

    def probabilities(self, pairs: Sequence[tuple[View, View]]) -> np.ndarray:
        """P(same) of each pair, all in one pass through the trees."""
        return self.trees.probability([pair_features(a, b) for a, b in pairs])

    def probability(self, a: View, b: View) -> float:
        return float(self.probabilities([(a, b)])[0])

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "trees.npz", **self.trees.arrays())
        card = {**self.card, "format_version": FORMAT_VERSION, "threshold": self.threshold, "features": list(FEATURES)}
        (folder / "card.json").write_text(json.dumps(card, indent=1) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> SurrogateModel:
        folder = Path(folder)
        card_path, trees_path = folder / "card.json", folder / "trees.npz"
        for path in (card_path, trees_path):
            if not path.is_file():
                raise SurrogateError(f"equivalence surrogate {folder}: {path.name} is missing")
        try:
            card = json.loads(card_path.read_text())
            version, threshold, features = card["format_version"], float(card["threshold"]), card["features"]
        except (ValueError, KeyError, TypeError) as err:
            raise SurrogateError(f"{card_path}: not a surrogate card ({err!r})") from None
        if version != FORMAT_VERSION:
            raise SurrogateError(f"{card_path}: format_version {version}, this version reads {FORMAT_VERSION}")
        if tuple(features) != FEATURES:
            raise SurrogateError(f"{card_path}: fitted on features {features}, this version computes {list(FEATURES)}")
        try:
            with np.load(trees_path, allow_pickle=False) as arrays:
                trees = TreeEnsemble.from_arrays(arrays)
        except SurrogateError as err:
            raise SurrogateError(f"{trees_path}: {err}") from None
        except Exception as err:  # a truncated or foreign file: numpy raises several types
            raise SurrogateError(f"{trees_path}: not a surrogate tree file ({type(err).__name__}: {err})") from None
        return cls(trees, threshold, card)


def packaged_path() -> Path:
    return ARTIFACTS / "equivalence-surrogate-v6"


def pair_matrix(n: int, probabilities: Sequence[float]) -> np.ndarray:
    """The symmetric n x n matrix of P(same), ones on the diagonal, from the probabilities of
    the pairs in itertools.combinations(range(n), 2) order."""
    same = np.eye(n)
    for (i, j), q in zip(itertools.combinations(range(n), 2), probabilities):
        same[i, j] = same[j, i] = q
    return same


def linkage_partition(texts: Sequence[str], same: np.ndarray, threshold: float) -> list[int]:
    """Class index of each text, classes numbered in order of appearance. In order, a text
    joins the earlier class with the highest mean P(same) over its members (`same[i, j]`;
    every member counts, copies included) when that mean is above `threshold`, else it
    starts a new class; a tie goes to the earlier class. A copy of an earlier text joins
    that text's class, as it would in the reference's loop."""
    labels: list[int] = []
    members: list[list[int]] = []
    for j, text in enumerate(texts):
        first_copy = texts.index(text)
        if first_copy < j:
            label = labels[first_copy]
        else:
            means = [same[j, m].mean() for m in members]
            label = int(np.argmax(means)) if means and max(means) > threshold else len(members)
        if label == len(members):
            members.append([])
        members[label].append(j)
        labels.append(label)
    return labels


@dataclass
class SurrogateJudge:
    """The backend over a set of texts whose views are made: `partition` decides a prompt's
    classes (what NoveltyBench needs); calling it on two texts gives their pairwise decision."""

    model: SurrogateModel
    views: dict[str, View] = field(repr=False)
    short_rule: bool = True  # NoveltyBench's code since 2025-03-19

    def probabilities(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """P(same) of each pair: 1 for identical texts, the rule's verdict (1 or 0) where it
        decides (with `short_rule`), else the trees' (all pairs in one pass)."""
        found = np.array([1.0 if a == b else np.nan for a, b in pairs])
        if self.short_rule:
            for k, (a, b) in enumerate(pairs):
                if a != b and (rule := nb.short_texts_equivalent(a, b)) is not None:
                    found[k] = float(rule)
        ask = np.flatnonzero(np.isnan(found))
        if ask.size:
            found[ask] = self.model.probabilities([(self.views[pairs[k][0]], self.views[pairs[k][1]]) for k in ask])
        return found

    def __call__(self, a: str, b: str) -> bool:
        return bool(self.probabilities([(a, b)])[0] > self.model.threshold)

    def partition(self, generations: Sequence[str]) -> list[int]:
        found = self.probabilities(list(itertools.combinations(generations, 2)))
        return linkage_partition(list(generations), pair_matrix(len(generations), found), self.model.threshold)


def surrogate_equivalence(texts: Sequence[str], embed: Callable[[list[str]], np.ndarray], tokenizer,
                          model: SurrogateModel | None = None, short_rule: bool = True) -> SurrogateJudge:
    """The surrogate as a backend over `texts` (embedded once, up front). With `short_rule`
    (the default, NoveltyBench's code since 2025-03-19) the rule decides two short texts (1 or
    0, which then counts in the class means like any other probability); without it the trees
    decide them too, as the reference's classifier did in partitions made before the rule
    (they learned that from Gemini-1.5-pro's)."""
    model = model or SurrogateModel.load(packaged_path())
    return SurrogateJudge(model, make_views(texts, embed, tokenizer), short_rule)
