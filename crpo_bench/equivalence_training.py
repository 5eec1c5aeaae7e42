"""Fit the equivalence surrogate on a reference classifier's partitions, and measure it honestly.

Data: NoveltyBench partition files (`id`, `generations`, `partition`), such as the reference's
partitions of Gemini-1.5-pro's generations. Every pair of a prompt's generations is an
example, labelled same when the reference put both in one class.

A prompt's partition is the surrogate's own (linkage_partition: a generation joins the
class it matches best on average over all members). The fit has two choices, both made on
out-of-fold probabilities (5-fold cross-validation
over prompts: boosted trees are overconfident on the pairs they were fitted to): for each
of the trees' settings in GRID, the decision threshold whose partitions agree best with the
reference (mean adjusted Rand index) among those whose mean number of classes is within
0.1 of the reference's (or, if none is, the one nearest in classes); then the setting
whose threshold agrees best. The trees are then refitted on every prompt.
`cross_validate` repeats that whole procedure inside each training fold, so its figures
never touch the prompts they are measured on. Deterministic: the same data gives the same
model.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from math import comb
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .equivalence_surrogate import FEATURE_DECIMALS, SurrogateModel, TreeEnsemble, View, linkage_partition, pair_features, pair_matrix
from .jsonl import InputError, read_jsonl
from .models import DEFAULT_EMBEDDER

GRID = ((2, 100, 40), (2, 50, 80), (3, 100, 40), (2, 100, 80), (3, 50, 80))  # depth, trees, min leaf
THRESHOLDS = tuple(round(t, 3) for t in np.arange(0.05, 0.951, 0.025))
CLASS_TOLERANCE = 0.1
FOLDS = 5


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
    """A prompt's generations, the features of all their pairs and the reference partition."""

    def __init__(self, row: dict, views: dict[str, View]):
        self.generations, self.reference = row["generations"], row["partition"]
        self.pairs = list(itertools.combinations(range(len(self.generations)), 2))
        self.X = np.array([pair_features(views[self.generations[i]], views[self.generations[j]])
                           for i, j in self.pairs])
        self.y = np.array([int(self.reference[i] == self.reference[j]) for i, j in self.pairs])

    def partition(self, probability: np.ndarray, threshold: float) -> list[int]:
        """The surrogate's partition (linkage_partition) from the pairs' P(same)."""
        return linkage_partition(self.generations, pair_matrix(len(self.generations), probability), threshold)


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


def agreement(prompts: list[Prompt], probabilities: list[np.ndarray], threshold: float) -> tuple[float, float]:
    """Mean adjusted Rand index against the reference, and mean number of classes."""
    labels = [p.partition(q, threshold) for p, q in zip(prompts, probabilities)]
    return (float(np.mean([adjusted_rand_index(lab, p.reference) for lab, p in zip(labels, prompts)])),
            float(np.mean([max(lab) + 1 for lab in labels])))


def choose_threshold(prompts: list[Prompt], probabilities: list[np.ndarray]) -> float:
    reference = np.mean([max(p.reference) + 1 for p in prompts])
    found = {t: agreement(prompts, probabilities, t) for t in THRESHOLDS}
    close = [t for t, (_, classes) in found.items() if abs(classes - reference) <= CLASS_TOLERANCE]
    if not close:  # no threshold comes that close: the nearest in classes
        return min(THRESHOLDS, key=lambda t: abs(found[t][1] - reference))
    return max(close, key=lambda t: found[t][0])


def stacked(prompts: list[Prompt]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p.X for p in prompts]), np.concatenate([p.y for p in prompts])


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
    """The setting and threshold that agree best on out-of-fold probabilities, and each
    setting's agreement."""
    found = {}
    for setting in GRID:
        probabilities = out_of_fold_probabilities(prompts, setting, seed)
        threshold = choose_threshold(prompts, probabilities)
        found[setting] = (agreement(prompts, probabilities, threshold)[0], threshold)
    best = max(GRID, key=lambda s: found[s][0])
    return best, found[best][1], {s: ari for s, (ari, _) in found.items()}


def fit(prompts: list[Prompt], seed: int = 0) -> tuple[TreeEnsemble, float, tuple[int, int, int], dict]:
    setting, threshold, scores = choose(prompts, seed)
    return fit_trees(*stacked(prompts), setting), threshold, setting, scores


def cross_validate(prompts: list[Prompt], seeds: int = 10, progress: bool = False) -> dict:
    """Agreement on held-out prompts of the whole procedure (setting and threshold chosen
    inside each training fold), for `seeds` different splits into 5 folds."""
    runs = []
    for seed in tqdm(range(seeds), desc="cross-validating the surrogate", disable=not progress):
        aris, classes = [], []
        for held in folds_of(len(prompts), 1000 + seed):
            trees, threshold, _, _ = fit([p for k, p in enumerate(prompts) if k not in held], seed)
            for k in held:
                labels = prompts[k].partition(trees.probability(prompts[k].X), threshold)
                aris.append(adjusted_rand_index(labels, prompts[k].reference))
                classes.append(max(labels) + 1)
        runs.append((float(np.mean(aris)), float(np.mean(classes))))
    ari, classes = np.array(runs).T
    return {"mean_ari": round(float(ari.mean()), 4), "mean_classes": round(float(classes.mean()), 4),
            "ari_per_split": [round(float(a), 4) for a in ari], "splits": seeds, "folds": FOLDS}


def train(rows: list[dict], views: dict[str, View], data_name: str, data_bytes: bytes, seeds: int = 10,
          progress: bool = False) -> SurrogateModel:
    start = time.time()
    import sklearn

    prompts = [Prompt(r, views) for r in rows]
    trees, threshold, setting, setting_scores = fit(prompts)
    fitted_ari, fitted_classes = agreement(prompts, [trees.probability(p.X) for p in prompts], threshold)
    card = {
        "method": "gradient-boosted trees on pair features of the texts cut to 128 tokens, rounded to "
                  f"{FEATURE_DECIMALS} decimals "
                  "(scikit-learn HistGradientBoostingClassifier, exported to arrays); a generation joins "
                  "the class with the highest mean P(same) over its members, above the threshold",
        "embedder": DEFAULT_EMBEDDER,
        "data": data_name, "data_sha256": hashlib.sha256(data_bytes).hexdigest(),
        "prompts": len(prompts), "pairs": int(sum(len(p.pairs) for p in prompts)),
        "reference_mean_classes": round(float(np.mean([max(p.reference) + 1 for p in prompts])), 4),
        "setting": dict(zip(("max_depth", "max_iter", "min_samples_leaf"), setting)),
        "setting_cv_ari": {"/".join(map(str, s)): round(v, 4) for s, v in setting_scores.items()},
        "scikit_learn": sklearn.__version__,
        "fitted_prompts": {"mean_ari": round(fitted_ari, 4), "mean_classes": round(fitted_classes, 4)},
        "cross_validated": cross_validate(prompts, seeds, progress) if seeds else None,
    }
    card["train_seconds"] = round(time.time() - start, 1)
    return SurrogateModel(trees, threshold, card)
