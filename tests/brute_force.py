"""Brute-force versions of the spec's formulas, written independently of crpo_bench:
plain loops over pairs, for tests to compare the closed forms against."""

from __future__ import annotations

import math
import re

import numpy as np


def words(text: str) -> list[str]:
    return sorted({w.lower() for w in re.findall(r"\w+(?:['\u2019]\w+)*", text)})


def cosine_distance(a, b) -> float:
    dot = sum(float(x) * float(y) for x, y in zip(a, b))
    na = math.sqrt(sum(float(x) ** 2 for x in a))
    nb = math.sqrt(sum(float(y) ** 2 for y in b))
    return 1.0 - dot / (na * nb)


def dsi(vectors: list) -> float:
    """Mean over words of the mean cosine distance to the other words; 0 below 2 words."""
    n = len(vectors)
    if n < 2:
        return 0.0
    per_word = [sum(cosine_distance(vectors[i], vectors[j]) for j in range(n) if j != i) / (n - 1)
                for i in range(n)]
    return sum(per_word) / n


def mean_distance_to_others(vectors: list, k: int) -> float:
    others = [cosine_distance(vectors[k], v) for j, v in enumerate(vectors) if j != k]
    return sum(others) / len(others) if others else 0.0


def ward_partition(points, threshold: float = 0.7) -> list[int]:
    """Naive Ward: merge the pair of clusters with the smallest Ward distance
    sqrt(2 |A||B| / (|A|+|B|)) * ||mean(A) - mean(B)|| while it is below the threshold.
    Returns, for each point, the smallest index of its cluster."""
    points = np.asarray(points, dtype=np.float64)
    clusters = [[i] for i in range(len(points))]
    while len(clusters) > 1:
        best = min(
            (math.sqrt(2 * len(A) * len(B) / (len(A) + len(B)))
             * float(np.linalg.norm(points[A].mean(0) - points[B].mean(0))), a, b)
            for a, A in enumerate(clusters) for b, B in enumerate(clusters) if a < b
        )
        if best[0] >= threshold:
            break
        clusters[best[1]] += clusters.pop(best[2])
    return [min(next(c for c in clusters if i in c)) for i in range(len(points))]


def same_partition(labels_a, labels_b) -> bool:
    n = len(labels_a)
    return all((labels_a[i] == labels_a[j]) == (labels_b[i] == labels_b[j]) for i in range(n) for j in range(n))
