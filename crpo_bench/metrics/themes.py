"""Theme uniqueness: Ward clustering of response embeddings, cut at a distance."""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

WARD_DISTANCE_THRESHOLD = 0.7
# scipy's Ward needs the condensed distance matrix, n^2/2 floats: 50,000 answers would take
# 9.3 GiB. Above this budget the vector Ward of fastcluster builds the same tree in O(n d)
# memory (about twice as slow: 15 s against 7 s for 5,000 answers on one thread).
MATRIX_BYTES = 2**30


def theme_labels(text_vectors: np.ndarray, threshold: float = WARD_DISTANCE_THRESHOLD) -> np.ndarray:
    """Cluster label (0..k-1) of each text.

    Ward linkage over Euclidean distances of the vectors; two clusters merge only
    while their Ward distance is below `threshold` (scikit-learn's
    `distance_threshold` convention). scipy's `fcluster` keeps merges at distance
    <= t, so it is given the largest float below the threshold.
    """
    n = len(text_vectors)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    vectors = np.asarray(text_vectors, dtype=np.float64)
    tree = ward_tree(vectors)
    labels = fcluster(tree, t=np.nextafter(threshold, -np.inf), criterion="distance")
    # Relabel in order of first appearance so labels are stable and start at 0.
    _, first_seen, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_seen))
    return order[inverse]


def ward_tree(vectors: np.ndarray, matrix_bytes: int | None = None) -> np.ndarray:
    """The Ward linkage of the vectors: scipy's while its distance matrix fits `matrix_bytes`,
    else fastcluster's vector algorithm (the same tree, memory linear in the answers)."""
    n = len(vectors)
    if n * (n - 1) // 2 * 8 <= (MATRIX_BYTES if matrix_bytes is None else matrix_bytes):
        return linkage(vectors, method="ward")
    import fastcluster

    return fastcluster.linkage_vector(vectors, method="ward")


def theme_uniqueness(labels: np.ndarray) -> np.ndarray:
    """1 / size of the text's cluster."""
    sizes = np.bincount(labels)
    return 1.0 / sizes[labels]
