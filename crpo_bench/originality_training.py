"""Train the originality scorer from human-rated answers (MuCE schema) and describe it in a card.

Two methods: `ridge` (v2: one ridge head on embedding features) and `memory` (v3: the same
head for unseen items, plus a memory of the rated answers and a head that also reads each
answer's nearest rated neighbours of the same item). A ridge strength left unset is chosen
by 5-fold cross-validation on the training answers (never on validation data).
"""

from __future__ import annotations

import time

import numpy as np
from scipy import stats

from . import muce, text
from .metrics.originality import OriginalityModel, features
from .metrics.rated_memory import DIMENSIONS, FEATURES, RatedMemory
from .scoring import Scorer

METHODS = ("memory", "ridge")
RIDGE_GRID = (1.0, 10.0, 100.0, 1000.0)
FOLDS = 5


def featurize(rows: list[dict], scorer: Scorer, task_names: list[str]) -> np.ndarray:
    vectors, items = embed(rows, scorer)
    return row_features(rows, vectors, items, task_names)


def embed(rows: list[dict], scorer: Scorer) -> tuple[np.ndarray, np.ndarray]:
    batch = scorer.config.text_batch_size
    return (scorer.embed([str(r["Response"]) for r in rows], "embedding answers", batch),
            scorer.embed(items_of(rows), "embedding items", batch))


def row_features(rows, answer_vectors, item_vectors, task_names) -> np.ndarray:
    return features(answer_vectors, item_vectors, tasks_of(rows), task_names, word_counts(rows))


def tasks_of(rows: list[dict]) -> list[str]:
    return [muce.task_slug(str(r["TasksNamesFull"])) for r in rows]


def items_of(rows: list[dict]) -> list[str]:
    return [str(r["Prompt"]) for r in rows]


def word_counts(rows: list[dict]) -> np.ndarray:
    return np.array([len(text.word_sequence(str(r["Response"]))) for r in rows])


def cross_validated_ridge(X: np.ndarray, y: np.ndarray, grid=RIDGE_GRID, folds: int = FOLDS) -> tuple[float, dict]:
    """The ridge strength of `grid` with the best mean Spearman over `folds` folds of the
    answers (a fixed permutation: the same data gives the same choice)."""
    parts = np.array_split(np.random.default_rng(0).permutation(len(y)), folds)
    found = {}
    for ridge in grid:
        rhos = []
        for k, held in enumerate(parts):
            fit = np.concatenate([p for j, p in enumerate(parts) if j != k])
            model = OriginalityModel.fit(X[fit], y[fit], [], ridge)
            rhos.append(stats.spearmanr(model.predict(X[held]), y[held]).statistic)
        found[ridge] = round(float(np.mean(rhos)), 4)
    return max(grid, key=lambda r: found[r]), found


def train(train_rows: list[dict], val_rows: list[dict] | None, scorer: Scorer, ridge: float | None = None,
          data_name: str = "", method: str = "memory") -> OriginalityModel:
    """Fit on the training answers that have words; the card records data, size, the ridge
    strengths chosen and validation agreement."""
    if method not in METHODS:
        raise ValueError(f"originality method {method!r}: choose one of {METHODS}")
    start = time.perf_counter()
    train_rows = [r for r in train_rows if text.degenerate_kind(str(r["Response"])) not in text.WORDLESS]
    tasks = tasks_of(train_rows)
    task_names = sorted(set(tasks))
    y = np.array([r["facsco_grm_scaled"] for r in train_rows])
    answers, items = embed(train_rows, scorer)
    X = row_features(train_rows, answers, items, task_names)
    chosen, cv = (ridge, None) if ridge is not None else cross_validated_ridge(X, y)
    model = OriginalityModel.fit(X, y, task_names, chosen)
    model.card = {
        "name": "originality", "method": "ridge regression on frozen sentence embeddings "
        "[answer, answer*item, task one-hot, log(1+words), 1-cos(answer, item)]",
        "embedder": scorer.embedder.name, "ridge": chosen, "training_data": data_name,
        "training_answers": len(train_rows), "tasks": task_names, "score_scale": "10-50 (MuCE)",
    }
    if cv:
        model.card["ridge_cv_spearman"] = cv
    if method == "memory":
        memory, position = RatedMemory.build(answers, y, tasks, items_of(train_rows))
        # each training answer against the others of its item (leave one out), as a new answer meets them all
        M, known = memory.features(answers, tasks, items_of(train_rows), exclude=position)
        XM = np.hstack([X, M])[known]
        chosen_m, cv_m = (ridge, None) if ridge is not None else cross_validated_ridge(XM, y[known])
        model.memory, model.with_memory = memory, OriginalityModel.fit(XM, y[known], task_names, chosen_m)
        model.card["method"] = ("v3: for items with rated answers in its memory, ridge regression on the v2 features "
                                f"plus the ratings of the nearest rated answers to the same item {list(FEATURES)}; "
                                "v2's ridge head for other items")
        model.card["memory"] = {"answers": len(y), "items": len(memory.keys), "dimensions": DIMENSIONS,
                                "ridge": chosen_m, **({"ridge_cv_spearman": cv_m} if cv_m else {})}
    model.card["training_seconds"] = round(time.perf_counter() - start, 1)
    if val_rows:
        model.card["validation"] = agreement(model, val_rows, scorer)
    return model


def agreement(model: OriginalityModel, rows: list[dict], scorer: Scorer) -> dict:
    """Spearman and Pearson with human scores over the answers that have words (card figures)."""
    rows = [r for r in rows if text.degenerate_kind(str(r["Response"])) not in text.WORDLESS]
    answers, items = embed(rows, scorer)
    predicted = model.score(answers, items, tasks_of(rows), items_of(rows), word_counts(rows))
    human = np.array([r["facsco_grm_scaled"] for r in rows])
    return {"answers": len(rows), "spearman": round(float(stats.spearmanr(predicted, human).statistic), 4),
            "pearson": round(float(stats.pearsonr(predicted, human).statistic), 4)}
