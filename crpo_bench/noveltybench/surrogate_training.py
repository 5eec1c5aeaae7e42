"""Fit the equivalence surrogate on a reference judge's verdicts, and measure it honestly.

Data, one *source* per file: NoveltyBench partition files (`id`, `generations`, `partition`),
such as the reference classifier's partitions of Gemini-1.5-pro's and CrPO-Llama's published
generations and of NoveltyBench's human answers (three regimes: 1.83, 8.30 and 6.58 classes
per prompt). Human-labelled answer pairs (`generation_0`, `generation_1`, `similar`; the
reference classifier's own training data) can be a source too, each pair a two-answer
prompt, but the packaged surrogate leaves them out: people's labels are not the classifier's
verdicts (at its threshold of 0.102 it says "same" far more often), and with them the fit
counts +58% classes on Gemini when Gemini is left out, against +1.6% without them.

The examples are the verdicts the reference actually gave. Its partition is greedy: each
generation is compared with the first member of each earlier class in turn and joins the
first that matches, else starts a class. So a partition states, exactly, "different" for
every first member a generation passed and "same" for the one it joined; it says nothing of
two later members of one class (never compared; in a big class most pairs are such).

Two versions of the reference made the published partitions: with the short-text rule
(NoveltyBench's code since 2025-03-19: CrPO-Llama's and the human answers' files follow it
in all 361 and 1,518 verdicts on two short texts) and without it (Gemini-1.5-pro's: 72 of
327 contradict it, e.g. "Brad Pitt" and "Tom Hanks" judged the same). Each source's version
is read from its verdicts (rules.made_with_short_rule). Where the rule decided, the verdict
is the rule's, not the classifier's: it is no example, and the rule decides it again when
the source is partitioned; elsewhere the trees learn the classifier.

A prompt's partition is the surrogate's own (linkage_partition: a generation joins the
class it matches best on average over all members). The fit chooses the trees' setting (of
GRID) and the decision threshold together, on out-of-fold probabilities (5-fold
cross-validation over prompts: boosted trees are overconfident on the pairs they were
fitted to): the pair whose partitions count classes closest to the reference's, as the mean
over sources of |our mean classes / the reference's - 1| (a leaderboard reads the class
count; each regime counts once, however many prompts it has). Ties go to the earlier setting
of GRID and the smaller threshold. The trees are then refitted on every prompt.
`leave_one_source_out` repeats the whole procedure without each partition source, the
closest offline stand-in for a model the judge never saw. Deterministic: the same data gives
the same model.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from math import comb
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .rules import made_with_short_rule, reference_verdicts, short_texts_equivalent
from .surrogate import (FEATURE_DECIMALS, SurrogateModel, TreeEnsemble, View, linkage_partition,
                        pair_features, pair_matrix)
from ..jsonl import InputError, read_jsonl
from ..models import DEFAULT_EMBEDDER

GRID = ((2, 100, 40), (2, 50, 80), (3, 100, 40), (2, 100, 80), (3, 50, 80))  # depth, trees, min leaf
THRESHOLDS = tuple(round(t, 3) for t in np.arange(0.05, 0.951, 0.025))
FOLDS = 5


def read_pairs(path: Path) -> list[dict]:
    """Human-labelled answer pairs (`generation_0`, `generation_1`, `similar` 0/1) as
    two-answer prompts: partition [0, 0] when similar, else [0, 1]."""
    rows = []
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        pair = [row.get("generation_0"), row.get("generation_1")]
        if not all(isinstance(g, str) and g.strip() for g in pair):
            raise InputError(f"{where}: fields 'generation_0' and 'generation_1' must be non-empty strings")
        if row.get("similar") not in (0, 1, True, False):
            raise InputError(f"{where}: field 'similar' must be 0 or 1")
        rows.append({"generations": pair, "partition": [0, 0] if row["similar"] else [0, 1]})
    if len(rows) < FOLDS:
        raise InputError(f"{path}: {len(rows)} pairs; fitting needs at least {FOLDS}")
    return rows


def source_name(path: Path) -> str:
    """A data file's name as a source: its stem, or for a published run's scores.jsonl or
    partitions.jsonl (under nb-curated/) the run's folder."""
    if path.stem not in ("scores", "partitions"):
        return path.stem
    return path.parent.parent.name if path.parent.name.startswith("nb-") else path.parent.name


def read_partitions(path: Path) -> list[dict]:
    rows = []
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        gens, part = row.get("generations"), row.get("partition")
        if not isinstance(gens, list) or len(gens) < 2 or not all(isinstance(g, str) and g.strip() for g in gens):
            raise InputError(f"{where}: field 'generations' must be a list of at least 2 non-empty strings")
        if not isinstance(part, list) or len(part) != len(gens) or not all(isinstance(c, int) for c in part):
            raise InputError(f"{where}: field 'partition' must be one integer class per generation")
        if part != _renumbered(part):
            raise InputError(f"{where}: field 'partition' must number classes 0, 1, ... in order of appearance")
        rows.append(row)
    if len(rows) < FOLDS:
        raise InputError(f"{path}: {len(rows)} prompts; fitting needs at least {FOLDS}")
    return rows


def _renumbered(labels: list[int]) -> list[int]:
    order: dict[int, int] = {}
    return [order.setdefault(c, len(order)) for c in labels]


def adjusted_rand_index(a: list[int], b: list[int]) -> float:
    """Adjusted Rand index of two partitions (1 when both put everything in one class)."""
    pairs = comb(len(a), 2)
    if pairs == 0:  # fewer than two items: nothing to disagree on
        return 1.0
    same_a = sum(comb(int(c), 2) for c in np.bincount(a))
    same_b = sum(comb(int(c), 2) for c in np.bincount(b))
    both = sum(comb(int(c), 2) for c in np.unique(np.array(a) * (max(b) + 1) + np.array(b), return_counts=True)[1])
    expected = same_a * same_b / pairs
    best = (same_a + same_b) / 2
    return 1.0 if best == expected else (both - expected) / (best - expected)


class Prompt:
    """A prompt's generations, the features of all their pairs, the reference partition and
    the reference's verdicts (`examples`: rows of X, `y`: their labels). `short_rule`: the
    reference applied the short-text rule, so its verdicts on two short texts are the rule's,
    not the classifier's: they are no examples, and the rule decides them in `partition`."""

    def __init__(self, row: dict, views: dict[str, View], source: str = "", short_rule: bool = False):
        self.generations, self.reference, self.source = row["generations"], row["partition"], source
        self.short_rule = short_rule
        self.pairs = list(itertools.combinations(range(len(self.generations)), 2))
        self.X = np.array([pair_features(views[self.generations[i]], views[self.generations[j]])
                           for i, j in self.pairs])
        self.rule = np.array([np.nan if (r := short_texts_equivalent(self.generations[i], self.generations[j])) is None
                              else float(r) for i, j in self.pairs])
        index = {pair: k for k, pair in enumerate(self.pairs)}
        verdicts = [(index[(a, b)], same) for a, b, same in reference_verdicts(self.reference)
                    if not (short_rule and not np.isnan(self.rule[index[(a, b)]]))]
        self.examples = np.array([k for k, _ in verdicts], dtype=np.int64)
        self.y = np.array([same for _, same in verdicts], dtype=np.int64)

    def partition(self, probability: np.ndarray, threshold: float) -> list[int]:
        """The surrogate's partition (linkage_partition) from the pairs' P(same), the rule's
        verdict in place of the trees' on two short texts when the reference applied it."""
        if self.short_rule:
            ruled = ~np.isnan(self.rule)
            probability = np.where(ruled, self.rule, probability)
        return linkage_partition(self.generations, pair_matrix(len(self.generations), probability), threshold)


def source_short_rule(rows: list[dict]) -> bool:
    """Whether a source's reference applied the short-text rule (rules.made_with_short_rule);
    a source with no verdict on two short texts counts as NoveltyBench's code today (it does)."""
    found = made_with_short_rule([(r["generations"], r["partition"]) for r in rows])
    return True if found is None else found


def fit_trees(X: np.ndarray, y: np.ndarray, setting: tuple[int, int, int]) -> TreeEnsemble:
    from sklearn.ensemble import HistGradientBoostingClassifier

    depth, trees, leaf = setting
    model = HistGradientBoostingClassifier(max_depth=depth, max_iter=trees, min_samples_leaf=leaf,
                                           learning_rate=0.05, early_stopping=False, random_state=0).fit(X, y)
    return export_trees(model)


def export_trees(model) -> TreeEnsemble:
    """A fitted binary HistGradientBoostingClassifier as flat arrays (see TreeEnsemble)."""
    feature, threshold, left, right, value, leaf, roots = [], [], [], [], [], [], []
    offset = 0
    for (tree,) in model._predictors:
        nodes = tree.nodes
        roots.append(offset)
        feature.append(nodes["feature_idx"].astype(np.int64))
        threshold.append(nodes["num_threshold"].astype(np.float64))
        left.append(nodes["left"].astype(np.int64) + offset)
        right.append(nodes["right"].astype(np.int64) + offset)
        value.append(nodes["value"].astype(np.float64))
        leaf.append(nodes["is_leaf"].astype(bool))
        offset += len(nodes)
    return TreeEnsemble(np.concatenate(feature), np.concatenate(threshold), np.concatenate(left),
                        np.concatenate(right), np.concatenate(value), np.concatenate(leaf), np.array(roots),
                        float(np.ravel(model._baseline_prediction)[0]))


def by_source(prompts: list[Prompt]) -> dict[str, list[int]]:
    """Source -> the indices of its prompts, sources in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for k, p in enumerate(prompts):
        groups.setdefault(p.source, []).append(k)
    return groups


def class_error(prompts: list[Prompt], probabilities: list[np.ndarray], threshold: float) -> float:
    """Mean over sources of |our mean classes per prompt / the reference's - 1|."""
    errors = []
    for mine in by_source(prompts).values():
        ours = np.mean([max(prompts[k].partition(probabilities[k], threshold)) + 1 for k in mine])
        theirs = np.mean([max(prompts[k].reference) + 1 for k in mine])
        errors.append(abs(ours / theirs - 1))
    return float(np.mean(errors))


def stacked(prompts: list[Prompt]) -> tuple[np.ndarray, np.ndarray]:
    """The reference's verdicts of these prompts: (features, labels)."""
    return np.concatenate([p.X[p.examples] for p in prompts]), np.concatenate([p.y for p in prompts])


def folds_of(n: int, seed: int) -> list[set[int]]:
    return [set(fold.tolist()) for fold in np.array_split(np.random.default_rng(seed).permutation(n), FOLDS)]


def out_of_fold_probabilities(prompts: list[Prompt], setting, seed: int) -> list[np.ndarray]:
    """Each prompt's pair probabilities from trees fitted without its fold."""
    found: list[np.ndarray] = [np.empty(0)] * len(prompts)
    for held in folds_of(len(prompts), seed):
        trees = fit_trees(*stacked([p for k, p in enumerate(prompts) if k not in held]), setting)
        for k in held:
            found[k] = trees.probability(prompts[k].X)
    return found


def choose(prompts: list[Prompt], seed: int = 0) -> tuple[tuple[int, int, int], float, dict]:
    """The setting and threshold whose out-of-fold partitions count classes closest to the
    reference's (class_error), and each setting's best error."""
    found = {}
    for setting in GRID:
        probabilities = out_of_fold_probabilities(prompts, setting, seed)
        errors = [class_error(prompts, probabilities, t) for t in THRESHOLDS]
        best = int(np.argmin(errors))  # the first minimum: the smaller threshold
        found[setting] = (errors[best], THRESHOLDS[best])
    best = min(GRID, key=lambda s: found[s][0])  # the first minimum: the earlier setting
    return best, found[best][1], {s: error for s, (error, _) in found.items()}


def fit(prompts: list[Prompt], seed: int = 0) -> tuple[TreeEnsemble, float, tuple[int, int, int], dict]:
    setting, threshold, scores = choose(prompts, seed)
    return fit_trees(*stacked(prompts), setting), threshold, setting, scores


def per_source(prompts: list[Prompt], trees: TreeEnsemble, threshold: float) -> dict:
    """Each source's mean classes (ours and the reference's) and mean ARI."""
    out = {}
    for source, indices in by_source(prompts).items():
        mine = [prompts[k] for k in indices]
        labels = [p.partition(trees.probability(p.X), threshold) for p in mine]
        out[source] = {"prompts": len(mine), "short_rule": mine[0].short_rule, "mean_classes": round(float(np.mean([max(x) + 1 for x in labels])), 4),
                       "reference_mean_classes": round(float(np.mean([max(p.reference) + 1 for p in mine])), 4),
                       "mean_ari": round(float(np.mean([adjusted_rand_index(x, p.reference)
                                                        for x, p in zip(labels, mine)])), 4)}
    return out


def leave_one_source_out(prompts: list[Prompt], held_out: list[str], progress: bool = False) -> dict:
    """For each source in `held_out`: the whole procedure fitted on the other sources, then
    measured on it (a model the judge never saw)."""
    out = {}
    for source in tqdm(held_out, desc="leaving one source out", disable=not progress):
        trees, threshold, setting, _ = fit([p for p in prompts if p.source != source])
        out[source] = {**per_source([p for p in prompts if p.source == source], trees, threshold)[source],
                       "setting": "/".join(map(str, setting)), "threshold": threshold}
    return out


def train(sources: dict[str, list[dict]], views: dict[str, View], data: dict[str, bytes],
          held_out: list[str] = (), progress: bool = False) -> SurrogateModel:
    """Fit on every source (name -> rows); the card records each file's hash, the fit's
    figures per source, and the leave-one-source-out figures for the sources in `held_out`."""
    start = time.time()
    import sklearn

    prompts = [Prompt(r, views, name, source_short_rule(rows)) for name, rows in sources.items() for r in rows]
    trees, threshold, setting, setting_scores = fit(prompts)
    card = {
        "method": "gradient-boosted trees, fitted on the reference's verdicts (each generation against the first "
                  "member of every class it was compared with; not those the short-text rule gave), on pair features of the texts cut to 128 tokens, rounded to "
                  f"{FEATURE_DECIMALS} decimals "
                  "(scikit-learn HistGradientBoostingClassifier, exported to arrays); a generation joins "
                  "the class with the highest mean P(same) over its members, above the threshold; setting and "
                  "threshold chosen so that out-of-fold class counts match the reference's in every source",
        "embedder": DEFAULT_EMBEDDER,
        "data": {name: "sha256:" + hashlib.sha256(raw).hexdigest() for name, raw in data.items()},
        "prompts": len(prompts), "verdicts": int(sum(len(p.y) for p in prompts)),
        "setting": dict(zip(("max_depth", "max_iter", "min_samples_leaf"), setting)),
        "setting_class_error": {"/".join(map(str, s)): round(v, 4) for s, v in setting_scores.items()},
        "scikit_learn": sklearn.__version__,
        "fitted": per_source(prompts, trees, threshold),
        "leave_one_source_out": leave_one_source_out(prompts, list(held_out), progress) if held_out else None,
    }
    card["train_seconds"] = round(time.time() - start, 1)
    return SurrogateModel(trees, threshold, card)
