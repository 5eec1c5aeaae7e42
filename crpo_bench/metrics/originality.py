"""Originality learned from human ratings: ridge regression on frozen sentence embeddings.

Features of an answer a to item p of task t (unit embeddings e_a, e_p):
    [e_a, e_a * e_p, one-hot(t), log(1 + words), 1 - cos(e_a, e_p)]
e_a says what the answer is about; the elementwise product says how it relates to the
item (the same answer is ordinary for one object and original for another); the task
one-hot and length carry what raters reward regardless of content. The model predicts
the human score on MuCE's 10-50 scale. Ridge in closed form: deterministic, seconds to fit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
SCORE_RANGE = (10.0, 50.0)


def features(answer_vectors: np.ndarray, item_vectors: np.ndarray, tasks: list[str], task_names: list[str],
             n_words: np.ndarray) -> np.ndarray:
    a, p = np.asarray(answer_vectors, dtype=np.float64), np.asarray(item_vectors, dtype=np.float64)
    one_hot = np.array([[t == name for name in task_names] for t in tasks], dtype=np.float64).reshape(len(a), -1)
    length = np.log1p(np.asarray(n_words, dtype=np.float64))[:, None]
    distance = 1.0 - (a * p).sum(axis=1, keepdims=True)
    return np.hstack([a, a * p, one_hot, length, distance])


@dataclass
class OriginalityModel:
    task_names: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    intercept: float
    card: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, task_names: list[str], ridge: float = 10.0) -> OriginalityModel:
        """Standardise the features, then w = (A'A + ridge I)^-1 A'(y - mean y)."""
        mean, scale = X.mean(axis=0), X.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        A = (X - mean) / scale
        w = np.linalg.solve(A.T @ A + ridge * np.eye(A.shape[1]), A.T @ (y - y.mean()))
        return cls(list(task_names), mean, scale, w, float(y.mean()))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.clip(((X - self.mean) / self.scale) @ self.weights + self.intercept, *SCORE_RANGE)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "weights.npz", mean=self.mean, scale=self.scale, weights=self.weights,
                 intercept=np.array(self.intercept))
        card = {**self.card, "format_version": FORMAT_VERSION, "task_names": self.task_names}
        (folder / "card.json").write_text(json.dumps(card, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> OriginalityModel:
        folder = Path(folder)
        if not (folder / "card.json").is_file() or not (folder / "weights.npz").is_file():
            raise FileNotFoundError(f"{folder} is not an originality model (needs card.json and weights.npz)")
        card = json.loads((folder / "card.json").read_text())
        if card.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder}: originality model format {card.get('format_version')}, "
                             f"this crpo-bench reads format {FORMAT_VERSION}")
        arrays = np.load(folder / "weights.npz")
        return cls(card["task_names"], arrays["mean"], arrays["scale"], arrays["weights"],
                   float(arrays["intercept"]), card)
