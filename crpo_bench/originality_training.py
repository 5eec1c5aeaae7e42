"""Train the originality scorer from human-rated answers (MuCE schema) and describe it in a card."""

from __future__ import annotations

import time

import numpy as np
from scipy import stats

from . import muce, text
from .metrics.originality import OriginalityModel, features
from .scoring import Scorer

RIDGE = 10.0


def featurize(rows: list[dict], scorer: Scorer, task_names: list[str]) -> np.ndarray:
    answers = [str(r["Response"]) for r in rows]
    items = [str(r["Prompt"]) for r in rows]
    batch = scorer.config.text_batch_size
    return features(scorer.embed(answers, "embedding answers", batch), scorer.embed(items, "embedding items", batch),
                    [muce.task_slug(str(r["TasksNamesFull"])) for r in rows], task_names,
                    np.array([len(text.word_sequence(a)) for a in answers]))


def train(train_rows: list[dict], val_rows: list[dict] | None, scorer: Scorer, ridge: float = RIDGE,
          data_name: str = "") -> OriginalityModel:
    """Fit on the training answers that have words; the card records data, size and validation agreement."""
    start = time.perf_counter()
    train_rows = [r for r in train_rows if text.degenerate_kind(str(r["Response"])) not in text.WORDLESS]
    task_names = sorted({muce.task_slug(str(r["TasksNamesFull"])) for r in train_rows})
    y = np.array([r["facsco_grm_scaled"] for r in train_rows])
    model = OriginalityModel.fit(featurize(train_rows, scorer, task_names), y, task_names, ridge)
    model.card = {
        "name": "originality", "method": "ridge regression on frozen sentence embeddings "
        "[answer, answer*item, task one-hot, log(1+words), 1-cos(answer, item)]",
        "embedder": scorer.embedder.key, "ridge": ridge, "training_data": data_name,
        "training_answers": len(train_rows), "tasks": task_names, "score_scale": "10-50 (MuCE)",
        "training_seconds": round(time.perf_counter() - start, 1),
    }
    if val_rows:
        val_rows = [r for r in val_rows if text.degenerate_kind(str(r["Response"])) not in text.WORDLESS]
        predicted = model.predict(featurize(val_rows, scorer, task_names))
        human = np.array([r["facsco_grm_scaled"] for r in val_rows])
        model.card["validation"] = {"answers": len(val_rows),
                                    "spearman": round(float(stats.spearmanr(predicted, human).statistic), 4),
                                    "pearson": round(float(stats.pearsonr(predicted, human).statistic), 4)}
    return model
