"""Originality learned from human ratings: ridge regression on frozen sentence embeddings,
(v3) on the ratings of the nearest rated answers to the same item (rated_memory.py), and
(v4, v5) on signals that carry across items and task types (rarity.py).

Features of an answer a to item p of task t (unit embeddings e_a, e_p):
    [e_a, e_a * e_p, one-hot(t), log(1 + words), 1 - cos(e_a, e_p)]
e_a says what the answer is about; the elementwise product says how it relates to the
item (the same answer is ordinary for one object and original for another); the task
one-hot and length carry what raters reward regardless of content. The model predicts
the human score on MuCE's 10-50 scale. Ridge in closed form: deterministic, seconds to fit.

A model with a memory of rated answers (v3) has a second ridge head on the features above
plus the memory's neighbour features; it scores the answers to items the memory holds, and
the first head scores the rest (items and tasks nobody rated).

v4 keeps v3's memory head for rated items and scores every other answer with heads chosen
by leave-one-task-type-out transfer, not by a random split:
    peers head (the answer's corpus has >= rarity.MIN_PEERS other answers):
        [log(1 + words), 1 - cos(e_a, e_p), rarity features among the corpus's answers]
    base head (otherwise): [log(1 + words), 1 - cos(e_a, e_p), e_a]
No task one-hot and no e_a * e_p: both fit the rated task types and items and hurt on others.
v5 adds to the peers head the rarity features as z-scores within the corpus
(rarity.within_corpus_z); everything else is v4's.
"""

from __future__ import annotations

import json
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import rarity
from .rated_memory import RatedMemory

# 1: one ridge head; 2: optionally a memory and its head; 3: transfer heads (v4); 4: their peers head
# also reads the rarity features' z-scores within the corpus (v5)
FORMAT_VERSION = 4
READABLE_FORMATS = (1, 2, 3, 4)
SCORE_RANGE = (10.0, 50.0)
# Where a score stands (`originality_domain`): its item was rated (the memory scored it), its
# task type was rated (transfer to a new item), or neither (transfer to a new task type)
DOMAINS = ("rated item", "rated task type", "unvalidated task type")


def features(answer_vectors: np.ndarray, item_vectors: np.ndarray, tasks: list[str], task_names: list[str],
             n_words: np.ndarray) -> np.ndarray:
    a, p = np.asarray(answer_vectors, dtype=np.float64), np.asarray(item_vectors, dtype=np.float64)
    one_hot = np.array([[t == name for name in task_names] for t in tasks], dtype=np.float64).reshape(len(a), -1)
    length = np.log1p(np.asarray(n_words, dtype=np.float64))[:, None]
    distance = 1.0 - (a * p).sum(axis=1, keepdims=True)
    return np.hstack([a, a * p, one_hot, length, distance])


def answer_features(answer_vectors: np.ndarray, item_vectors: np.ndarray, n_words: np.ndarray) -> np.ndarray:
    """v4's base head: [log(1 + words), 1 - cos(e_a, e_p), e_a]."""
    a, p = np.asarray(answer_vectors, dtype=np.float64), np.asarray(item_vectors, dtype=np.float64)
    return np.hstack([_length_and_distance(a, p, n_words), a])


def transfer_features(answer_vectors: np.ndarray, item_vectors: np.ndarray, n_words: np.ndarray,
                      peers: np.ndarray, relative: np.ndarray | None = None) -> np.ndarray:
    """The peers head's features: [log(1 + words), 1 - cos(e_a, e_p), rarity.FEATURES] (v4), then
    (v5) `relative`, the rarity features as z-scores within the corpus."""
    a, p = np.asarray(answer_vectors, dtype=np.float64), np.asarray(item_vectors, dtype=np.float64)
    extra = [] if relative is None else [np.asarray(relative, dtype=np.float64)]
    return np.hstack([_length_and_distance(a, p, n_words), np.asarray(peers, dtype=np.float64), *extra])


def _length_and_distance(a: np.ndarray, p: np.ndarray, n_words) -> np.ndarray:
    return np.column_stack([np.log1p(np.asarray(n_words, dtype=np.float64)), 1.0 - (a * p).sum(axis=1)])


@dataclass
class OriginalityModel:
    task_names: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    intercept: float
    card: dict = field(default_factory=dict)
    memory: RatedMemory | None = None
    with_memory: OriginalityModel | None = None  # the head on [features, memory features]
    with_peers: OriginalityModel | None = None  # v4: the head on transfer_features
    base_features: str = "v2"  # v2: features(); answer: answer_features() (v4)
    relative_peers: bool = False  # v5: the peers head also reads rarity.within_corpus_z

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

    def score(self, answer_vectors, item_vectors, tasks: list[str], items: list[str], n_words,
              corpus_ids=None) -> np.ndarray:
        """Predicted human scores (see score_with_heads)."""
        return self.score_with_heads(answer_vectors, item_vectors, tasks, items, n_words, corpus_ids)[0]

    def score_with_heads(self, answer_vectors, item_vectors, tasks: list[str], items: list[str], n_words,
                         corpus_ids=None) -> tuple[np.ndarray, list[str]]:
        """(predicted human scores, the head of each): answers to items in the memory by the
        memory head; (v4) answers whose corpus (equal `corpus_ids`) is large enough by the
        peers head; the rest by the base head."""
        v2 = features(answer_vectors, item_vectors, tasks, self.task_names, n_words)
        base = v2 if self.base_features == "v2" else answer_features(answer_vectors, item_vectors, n_words)
        out, heads = self.predict(base), np.array(["base"] * len(base), dtype=object)
        if self.with_peers is not None and corpus_ids is not None:
            peers, valid = rarity.peer_features(answer_vectors, corpus_ids)
            if valid.any():
                relative = rarity.within_corpus_z(peers, corpus_ids, valid) if self.relative_peers else None
                out[valid] = self.with_peers.predict(
                    transfer_features(answer_vectors, item_vectors, n_words, peers, relative)[valid])
                heads[valid] = "peers"
        if self.memory is not None:
            M, known = self.memory.features(answer_vectors, tasks, items)
            if known.any():
                out[known] = self.with_memory.predict(np.hstack([v2[known], M[known]]))
                heads[known] = "memory"
        return out, list(heads)

    def domain(self, task: str, head: str) -> str:
        """Where a score of `head` for an answer of `task` stands (one of DOMAINS)."""
        if head == "memory":
            return DOMAINS[0]
        return DOMAINS[1] if task in self.task_names else DOMAINS[2]

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        heads = {"": self, **({"memory_": self.with_memory} if self.memory is not None else {}),
                 **({"peers_": self.with_peers} if self.with_peers is not None else {})}
        np.savez(folder / "weights.npz", **{f"{prefix}{name}": value for prefix, head in heads.items()
                                            for name, value in (("mean", head.mean), ("scale", head.scale),
                                                                ("weights", head.weights),
                                                                ("intercept", np.array(head.intercept)))})
        if self.memory is not None:
            self.memory.save(folder / "memory.npz")
        version = FORMAT_VERSION if self.relative_peers else 3 if self.base_features != "v2" else 2
        card = {**self.card, "format_version": version,
                "task_names": self.task_names, "base_features": self.base_features}
        (folder / "card.json").write_text(json.dumps(card, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> OriginalityModel:
        folder = Path(folder)
        if not (folder / "card.json").is_file() or not (folder / "weights.npz").is_file():
            raise FileNotFoundError(f"{folder} is not an originality model (needs card.json and weights.npz)")
        try:
            card = json.loads((folder / "card.json").read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{folder / 'card.json'}: not a readable card ({err})") from None
        if not isinstance(card, dict) or card.get("format_version") not in READABLE_FORMATS:
            version = card.get("format_version") if isinstance(card, dict) else None
            raise ValueError(f"{folder}: originality model format {version}, "
                             f"this crpo-bench reads formats {', '.join(map(str, READABLE_FORMATS))}")
        if card.get("memory") and not (folder / "memory.npz").is_file():
            raise FileNotFoundError(f"{folder}: the card names a memory of rated answers, but memory.npz is missing")
        with _readable(folder / "weights.npz"):
            arrays = dict(np.load(folder / "weights.npz"))
            head = lambda prefix: cls(card["task_names"], arrays[f"{prefix}mean"], arrays[f"{prefix}scale"],
                                      arrays[f"{prefix}weights"], float(arrays[f"{prefix}intercept"]), card)
            model = head("")
            model.base_features = card.get("base_features", "v2")
            if card.get("memory"):
                model.with_memory = head("memory_")
            if card.get("peers"):
                model.with_peers = head("peers_")
                model.relative_peers = bool(card["peers"].get("relative"))
        if model.with_peers is not None:
            inputs = 2 + len(rarity.FEATURES) * (2 if model.relative_peers else 1)
            if model.with_peers.weights.shape != (inputs,):
                raise ValueError(f"{folder / 'weights.npz'}: the peers head has {model.with_peers.weights.size} "
                                 f"weights where the card's features need {inputs}")
        if card.get("memory"):
            with _readable(folder / "memory.npz"):
                model.memory = RatedMemory.load(folder / "memory.npz")
        return model


@contextmanager
def _readable(path: Path):
    """A damaged or foreign array file is an error that names it, not a zipfile traceback."""
    try:
        yield
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable originality model file ({type(err).__name__}: {err})") from None
