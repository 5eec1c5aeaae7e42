"""DSI, novelty and diversity in closed form over unit embeddings.

For unit vectors e_1..e_n with sum s, sum over ordered pairs i != j of cos(e_i, e_j)
is ||s||^2 - n. Every "mean pairwise cosine distance" in the spec therefore needs one
vector sum, not a loop over pairs. Sums are taken in float64 so the closed forms
agree with a pairwise loop to ~1e-12.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, in float64."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def dsi_from_sum(vector_sum: np.ndarray, n: np.ndarray) -> np.ndarray:
    """DSI of word sets given the sum of their n unit word vectors; 0 where n < 2.

    mean_i mean_{j!=i} (1 - cos) = 1 - (||s||^2 - n) / (n (n - 1))
    """
    vector_sum = np.atleast_2d(vector_sum)
    n = np.atleast_1d(np.asarray(n, dtype=np.float64))
    pair_cos_total = np.einsum("ij,ij->i", vector_sum, vector_sum) - n
    pairs = n * (n - 1)
    return np.where(n >= 2, 1.0 - pair_cos_total / np.where(pairs > 0, pairs, 1.0), 0.0)


def bag_of_words(word_ids: list[list[int]], vocab_size: int) -> sparse.csr_matrix:
    """Binary texts x vocabulary matrix: row t has a 1 for each unique word of text t."""
    indptr = np.cumsum([0] + [len(ids) for ids in word_ids])
    indices = np.fromiter((i for ids in word_ids for i in ids), dtype=np.int64, count=indptr[-1])
    data = np.ones(len(indices), dtype=np.float64)
    return sparse.csr_matrix((data, indices, indptr), shape=(len(word_ids), vocab_size))


def dsi_and_novelty(bags: sparse.csr_matrix, word_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-text DSI, per-text novelty, and the DSI of the joined corpus.

    `bags` holds the texts of one corpus (rows) over a vocabulary whose unit vectors
    are `word_vectors`. The joined corpus's word set is the union of the rows' sets.
    novelty(r) = 2 |DSI(r) - DSI(corpus joined)|; the factor 2 is the paper's.
    """
    text_dsi = dsi_from_sum(bags @ word_vectors, np.asarray(bags.sum(axis=1)).ravel())
    in_corpus = np.asarray(bags.sum(axis=0)).ravel() > 0
    corpus_dsi = float(dsi_from_sum(word_vectors[in_corpus].sum(axis=0), in_corpus.sum())[0])
    return text_dsi, 2.0 * np.abs(text_dsi - corpus_dsi), corpus_dsi


def diversity(text_vectors: np.ndarray) -> np.ndarray:
    """Mean cosine distance of each text to the other texts of its corpus; 0 alone.

    mean_{r'!=r} (1 - e_r . e_r') = 1 - (e_r . S - 1) / (N - 1), S = sum of all e.
    """
    n = len(text_vectors)
    if n < 2:
        return np.zeros(n)
    return 1.0 - (text_vectors @ text_vectors.sum(axis=0) - 1.0) / (n - 1)
