"""dsi, novelty, diversity and theme uniqueness against brute force on real MiniLM embeddings.

The brute force is written here from the spec, independently of crpo_bench.metrics:
each word is embedded by its own encode call, pairwise cosine distances are summed
in plain Python loops, and Ward clustering is a naive merge-the-closest-pair loop.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict

import numpy as np
import pytest

from crpo_bench import Scorer, ScoringConfig

TOL = 1e-5

ANSWERS = {
    "brick": [
        "Hollow it out and use it as a tiny planter for succulents.",
        "Use the brick as a doorstop on windy days.",
        "Use a brick as a doorstop on a windy day.",
        "Grind it into red powder and paint a mural with it.",
        "Heat it in the oven and wrap it in a towel as a bed warmer.",
    ],
    "paperclip": [
        "Bend it into a tiny sculpture of a bicycle.",
        "Reset a router by pressing the pinhole button with it.",
        "Press the reset pinhole of the router with an unfolded paperclip.",
        "Unfold it into a hook to fish a ring out of a drain.",
    ],
}


def brute_words(text: str) -> list[str]:
    return sorted({w.lower() for w in re.findall(r"\w+(?:['\u2019]\w+)*", text)})


def cosine_distance(a, b) -> float:
    dot = sum(float(x) * float(y) for x, y in zip(a, b))
    na = math.sqrt(sum(float(x) ** 2 for x in a))
    nb = math.sqrt(sum(float(y) ** 2 for y in b))
    return 1.0 - dot / (na * nb)


def brute_dsi(vectors: list) -> float:
    n = len(vectors)
    if n < 2:
        return 0.0
    per_word = []
    for i in range(n):
        per_word.append(sum(cosine_distance(vectors[i], vectors[j]) for j in range(n) if j != i) / (n - 1))
    return sum(per_word) / n


def one_by_one(embedder, texts):
    return {t: embedder.model.encode([t])[0] for t in texts}


def brute_corpus(embedder, corpus: list[str]) -> dict:
    word_vec = one_by_one(embedder, {w for t in corpus for w in brute_words(t)})
    text_vec = one_by_one(embedder, set(corpus))
    joined = " ".join(corpus)
    corpus_dsi = brute_dsi([word_vec[w] for w in brute_words(joined)])
    out = {"dsi": [], "novelty": [], "diversity": []}
    for k, t in enumerate(corpus):
        d = brute_dsi([word_vec[w] for w in brute_words(t)])
        out["dsi"].append(d)
        out["novelty"].append(2 * abs(d - corpus_dsi))
        others = [cosine_distance(text_vec[t], text_vec[o]) for j, o in enumerate(corpus) if j != k]
        out["diversity"].append(sum(others) / len(others) if others else 0.0)
    out["corpus_dsi"] = corpus_dsi
    out["text_vectors"] = [text_vec[t] for t in corpus]
    return out


def brute_ward(vectors, threshold=0.7) -> list[int]:
    """Naive Ward: repeatedly merge the pair of clusters with the smallest Ward distance
    sqrt(2 |A||B| / (|A|+|B|)) * ||mean(A) - mean(B)|| while it is below the threshold."""
    clusters = [[i] for i in range(len(vectors))]
    pts = [np.asarray(v, dtype=np.float64) / np.linalg.norm(v) for v in vectors]
    while len(clusters) > 1:
        best = None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                A, B = clusters[a], clusters[b]
                ca = sum(pts[i] for i in A) / len(A)
                cb = sum(pts[i] for i in B) / len(B)
                dist = math.sqrt(2 * len(A) * len(B) / (len(A) + len(B))) * float(np.linalg.norm(ca - cb))
                if best is None or dist < best[0]:
                    best = (dist, a, b)
        if best[0] >= threshold:
            break
        _, a, b = best
        clusters[a] = clusters[a] + clusters[b]
        del clusters[b]
    label = {}
    for c in clusters:
        for i in c:
            label[i] = min(c)
    return [label[i] for i in range(len(vectors))]


def same_partition(labels_a, labels_b) -> bool:
    n = len(labels_a)
    return all((labels_a[i] == labels_a[j]) == (labels_b[i] == labels_b[j]) for i in range(n) for j in range(n))


@pytest.fixture
def scorer(embedder, isolated_cache):
    return Scorer(ScoringConfig(cache_path=isolated_cache), embedder=embedder)


def score_by_corpus(scorer, corpora: dict[str, list[str]], metrics):
    responses = [t for texts in corpora.values() for t in texts]
    ids = [cid for cid, texts in corpora.items() for _ in texts]
    return scorer.score(responses, corpus_ids=ids, metrics=metrics), responses, ids


def test_dsi_novelty_diversity_match_brute_force(embedder, scorer):
    result, responses, ids = score_by_corpus(scorer, ANSWERS, ["dsi", "novelty", "diversity"])
    for cid, corpus in ANSWERS.items():
        expected = brute_corpus(embedder, corpus)
        got = [row for row, c in zip(result.rows, ids) if c == cid]
        for metric in ("dsi", "novelty", "diversity"):
            assert [r[metric] for r in got] == pytest.approx(expected[metric], abs=TOL), metric
        assert result.corpora[cid]["corpus_dsi"] == pytest.approx(expected["corpus_dsi"], abs=TOL)


def test_one_corpus_by_default_mixes_all_answers(embedder, scorer):
    """Without corpus ids, every answer is compared with every other one."""
    everything = [t for texts in ANSWERS.values() for t in texts]
    result = scorer.score(everything, metrics=["novelty", "diversity"])
    expected = brute_corpus(embedder, everything)
    assert [r["novelty"] for r in result.rows] == pytest.approx(expected["novelty"], abs=TOL)
    assert [r["diversity"] for r in result.rows] == pytest.approx(expected["diversity"], abs=TOL)


def test_theme_uniqueness_matches_naive_ward(embedder, scorer):
    result, responses, ids = score_by_corpus(scorer, ANSWERS, ["theme_uniqueness"])
    for cid, corpus in ANSWERS.items():
        labels = brute_ward(brute_corpus(embedder, corpus)["text_vectors"])
        got = [row for row, c in zip(result.rows, ids) if c == cid]
        sizes = {lab: labels.count(lab) for lab in labels}
        assert [r["theme_uniqueness"] for r in got] == pytest.approx([1 / sizes[lab] for lab in labels], abs=TOL)
        assert all(r["num_themes"] == len(sizes) for r in got)
        assert result.corpora[cid]["num_themes"] == len(sizes)
    # The fixture is built so that the paraphrased answers share a theme and the rest do not.
    assert result.corpora["brick"]["num_themes"] == 4 and result.corpora["paperclip"]["num_themes"] == 3


def test_theme_labels_on_constructed_points():
    """Exact cut at the threshold: a merge at distance >= 0.7 never happens."""
    from crpo_bench.metrics.themes import theme_labels

    points = np.array([[0.0, 0.0], [0.69, 0.0], [5.0, 0.0], [5.0, 0.7]])
    labels = theme_labels(points)
    assert labels.tolist() == [0, 0, 1, 2]
    assert same_partition(labels.tolist(), brute_ward_raw(points))


def brute_ward_raw(points):
    """brute_ward without unit normalisation, for hand-made points."""
    clusters = [[i] for i in range(len(points))]
    while len(clusters) > 1:
        best = min(
            (math.sqrt(2 * len(A) * len(B) / (len(A) + len(B)))
             * float(np.linalg.norm(points[A].mean(0) - points[B].mean(0))), a, b)
            for a, A in enumerate(clusters) for b, B in enumerate(clusters) if a < b
        )
        if best[0] >= 0.7:
            break
        clusters[best[1]] += clusters.pop(best[2])
    return [next(k for k, c in enumerate(clusters) if i in c) for i in range(len(points))]


def test_real_answers_from_shared_data(embedder, scorer, shared_data):
    """Human-written Alternate Uses answers, one corpus per prompt item."""
    by_item = defaultdict(list)
    with open(shared_data / "ocsai1" / "alltests_val.jsonl") as lines:
        for line in lines:
            prompt = json.loads(line)["prompt"]
            head, response = prompt.split("\nResponse:", 1)
            response = response.rsplit("\nScore:", 1)[0]
            if head.startswith("DT Uses Prompt:") and len(brute_words(response)) >= 2:
                by_item[head.split(":", 1)[1]].append(response)
    corpora = {item: answers[:12] for item, answers in sorted(by_item.items())[:3]}
    result, responses, ids = score_by_corpus(scorer, corpora, ["dsi", "novelty", "diversity", "theme_uniqueness"])
    for cid, corpus in corpora.items():
        expected = brute_corpus(embedder, corpus)
        got = [row for row, c in zip(result.rows, ids) if c == cid]
        for metric in ("dsi", "novelty", "diversity"):
            assert [r[metric] for r in got] == pytest.approx(expected[metric], abs=TOL), (cid, metric)
        labels = brute_ward(expected["text_vectors"])
        sizes = [labels.count(lab) for lab in labels]
        assert [r["theme_uniqueness"] for r in got] == pytest.approx([1 / s for s in sizes], abs=TOL), cid
        assert got[0]["num_themes"] == len(set(labels))
