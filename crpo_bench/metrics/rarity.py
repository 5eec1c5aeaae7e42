"""How rare an answer's idea is among the other answers to the same prompt: originality's
classical definition (statistical infrequency), in embedding space.

For answer i of a corpus, with cosines c_j to every other answer j of the corpus:

    diversity       1 - mean_j c_j                     how far it is from the typical answer
    near_0.7        share of j with c_j > 0.7          how many said nearly the same
    near_0.5        share of j with c_j > 0.5          how many said something alike
    top_k (5,10,20) mean of the k largest c_j           how close its nearest neighbours are

They estimate how common an idea is in a population only from a corpus of many answers
(people's answers to one test item); a model's few samples of one prompt are no such corpus.
An answer whose corpus has fewer than MIN_PEERS other answers gets no peer features (valid
False), and the scorer does without them. The top-k values also grow with the corpus size:
`benchmarks/originality_transfer.py` measures how the scorer holds up when a held-out task
type's items are scored in smaller studies (groups of 26-101 answers).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

NEAR = (0.7, 0.5)
TOP_K = (5, 10, 20)
FEATURES = ("diversity", *(f"near_{t}" for t in NEAR), *(f"top{k}" for k in TOP_K))
MIN_PEERS = 20  # the ocsai Consequences items have 33 answers (median)


def corpora(corpus_ids: Sequence[Hashable], keep: np.ndarray | None = None) -> list[list[int]]:
    """The positions of each corpus's answers (those where `keep` is true, if given), in order."""
    members: dict[Hashable, list[int]] = {}
    for i, cid in enumerate(corpus_ids):
        if keep is None or keep[i]:
            members.setdefault(cid, []).append(i)
    return list(members.values())


def peer_features(vectors: np.ndarray, corpus_ids: Sequence[Hashable],
                  min_peers: int = MIN_PEERS) -> tuple[np.ndarray, np.ndarray]:
    """(features, valid): FEATURES of each unit vector against the others of its corpus;
    valid is False where the corpus has fewer than `min_peers` other answers."""
    vectors = np.asarray(vectors, dtype=np.float64)
    out = np.zeros((len(vectors), len(FEATURES)))
    valid = np.zeros(len(vectors), dtype=bool)
    for idx in corpora(corpus_ids):
        if len(idx) - 1 < max(min_peers, 1):
            continue
        cos = vectors[idx] @ vectors[idx].T
        np.fill_diagonal(cos, -np.inf)  # never one's own neighbour
        nearest = -np.sort(-cos, axis=1)[:, :-1]  # each row's others, largest first (self dropped last)
        others = len(idx) - 1
        mean = (cos.sum(axis=1, where=np.isfinite(cos))) / others
        out[idx] = np.column_stack([1.0 - mean, *((nearest > t).sum(axis=1) / others for t in NEAR),
                                    *(nearest[:, :k].mean(axis=1) for k in TOP_K)])
        valid[idx] = True
    return out, valid


def within_corpus_z(features: np.ndarray, corpus_ids: Sequence[Hashable], valid: np.ndarray) -> np.ndarray:
    """Each column of `features` as a z-score among the valid answers of the same corpus (0 elsewhere,
    and where a column is constant in its corpus). The raw features also say how crowded an item's
    answers are overall, which differs from item to item and grows with the corpus size (top_k); the
    z-scores say only how rare the answer is compared with the others to its prompt, which carries to
    items and studies of any size (v5: picked by leave-one-task-type-out transfer)."""
    features = np.asarray(features, dtype=np.float64)
    out = np.zeros_like(features)
    for idx in corpora(corpus_ids, valid):
        block = features[idx]
        spread = block.std(axis=0)
        out[idx] = np.where(spread > 0, (block - block.mean(axis=0)) / np.where(spread > 0, spread, 1.0), 0.0)
    return out
