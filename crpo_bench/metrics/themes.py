"""Theme uniqueness: Ward clustering of response embeddings, cut at a distance."""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

WARD_DISTANCE_THRESHOLD = 0.7


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
    tree = linkage(np.asarray(text_vectors, dtype=np.float64), method="ward")
    labels = fcluster(tree, t=np.nextafter(threshold, -np.inf), criterion="distance")
    # Relabel in order of first appearance so labels are stable and start at 0.
    _, first_seen, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_seen))
    return order[inverse]


def theme_uniqueness(labels: np.ndarray) -> np.ndarray:
    """1 / size of the text's cluster."""
    sizes = np.bincount(labels)
    return 1.0 / sizes[labels]
