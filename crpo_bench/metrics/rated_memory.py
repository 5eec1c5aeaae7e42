"""The rated answers of each item, kept as compact embeddings: what people said about
answers like this one, to this very item.

Originality is relative to an item: "doorstop" is the commonest use of a brick and says
nothing about a shoe. The human ratings of the training answers to the same item (same
task) carry that directly, so an answer's nearest rated neighbours are its best evidence:

    top-k mean        mean human score of the k most similar rated answers (k = 5, 20)
    softmax mean      sum_j w_j s_j, w = softmax(cos / TEMPERATURE) over all rated answers
    max / mean cos    how close the nearest one is; how typical the answer is of the item
    near fraction     share of rated answers with cos > NEAR (how common the idea is)
    item mean, log n  the item's mean rating and how many ratings there are

Embeddings are stored projected on their top DIMENSIONS principal directions (uncentred,
so dot products survive), renormalised and quantised to int8: 30k answers take 4 MB
instead of 46 MB, and cosines move by about 0.01.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DIMENSIONS = 128
TOP_K = (5, 20)
TEMPERATURE = 0.05
NEAR = 0.7
FEATURES = ("top5_mean", "top20_mean", "softmax_mean", "max_cos", "mean_cos", "near_fraction", "item_mean",
            "log_count")


def item_key(task: str, item: str) -> str:
    """Rows of one task and item share a key: the item lowercased, whitespace collapsed."""
    return f"{task}\t{' '.join(str(item).lower().split())}"


@dataclass
class RatedMemory:
    basis: np.ndarray  # (embedding dims, DIMENSIONS) float32
    codes: np.ndarray  # (answers, DIMENSIONS) int8, grouped by item
    scores: np.ndarray  # (answers,) float32 human scores
    keys: list[str]  # one per item, in the order of `codes`
    offsets: np.ndarray  # (items + 1,) int64: item g holds codes[offsets[g]:offsets[g + 1]]

    @classmethod
    def build(cls, vectors: np.ndarray, scores, tasks: list[str], items: list[str],
              dimensions: int = DIMENSIONS) -> tuple[RatedMemory, np.ndarray]:
        """The memory of rated answers, and where each input row landed in it."""
        vectors = np.asarray(vectors, dtype=np.float64)
        # top right singular vectors of the uncentred matrix; the sign fixed (largest entry
        # positive) so that a rebuild gives the same codes
        _, _, vt = np.linalg.svd(vectors, full_matrices=False)
        basis = vt[:dimensions].T
        basis *= np.sign(basis[np.abs(basis).argmax(axis=0), np.arange(basis.shape[1])])
        keys = [item_key(t, i) for t, i in zip(tasks, items)]
        order = sorted(range(len(keys)), key=lambda k: (keys[k], k))
        unique = sorted(set(keys))
        offsets = np.searchsorted([keys[k] for k in order], unique + [chr(0x10FFFF)], side="left")
        memory = cls(basis.astype(np.float32), quantise(vectors[order] @ basis),
                     np.asarray(scores, dtype=np.float32)[order], unique, offsets.astype(np.int64))
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        return memory, position

    def unit(self, codes: np.ndarray) -> np.ndarray:
        v = codes.astype(np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)

    def features(self, vectors: np.ndarray, tasks: list[str], items: list[str],
                 exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(features, known): FEATURES of each answer against the rated answers of its item;
        `known` is False where the memory has no (other) rated answer of that item.
        `exclude[i]` is a memory row to leave out for answer i (itself, when training)."""
        index = {key: g for g, key in enumerate(self.keys)}
        queries = self.unit(quantise(np.asarray(vectors, dtype=np.float64) @ self.basis))
        out = np.zeros((len(queries), len(FEATURES)))
        known = np.zeros(len(queries), dtype=bool)
        groups: dict[int, list[int]] = {}
        for i, key in enumerate(item_key(t, it) for t, it in zip(tasks, items)):
            if key in index:
                groups.setdefault(index[key], []).append(i)
        for g, rows in groups.items():
            start, stop = int(self.offsets[g]), int(self.offsets[g + 1])
            cos = queries[rows] @ self.unit(self.codes[start:stop]).T  # (answers, rated)
            for r, i in enumerate(rows):
                c, s = cos[r], self.scores[start:stop]
                if exclude is not None and start <= exclude[i] < stop:
                    c, s = np.delete(c, exclude[i] - start), np.delete(s, exclude[i] - start)
                if len(c):
                    out[i], known[i] = neighbour_features(c, s), True
        return out, known

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, basis=self.basis, codes=self.codes, scores=self.scores,
                            keys=np.array(self.keys), offsets=self.offsets)

    @classmethod
    def load(cls, path: str | Path) -> RatedMemory:
        data = np.load(path)
        return cls(data["basis"], data["codes"], data["scores"], [str(k) for k in data["keys"]], data["offsets"])


def quantise(projected: np.ndarray) -> np.ndarray:
    unit = projected / np.maximum(np.linalg.norm(projected, axis=-1, keepdims=True), 1e-12)
    return np.round(unit * 127).astype(np.int8)


def neighbour_features(cos: np.ndarray, scores: np.ndarray) -> list[float]:
    """FEATURES of one answer from its cosines to an item's rated answers and their scores."""
    nearest = np.argsort(-cos, kind="stable")
    weights = np.exp((cos - cos.max()) / TEMPERATURE)
    return [*(float(scores[nearest[:k]].mean()) for k in TOP_K), float(weights @ scores / weights.sum()),
            float(cos.max()), float(cos.mean()), float((cos > NEAR).mean()), float(scores.mean()),
            float(np.log(len(cos)))]
