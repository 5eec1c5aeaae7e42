"""dsi, novelty, diversity and theme uniqueness against brute force on real MiniLM embeddings.

The brute force (tests/brute_force.py) is written from the spec, independently of
crpo_bench.metrics: each word is embedded by its own encode call, pairwise cosine
distances are summed in plain Python loops, and Ward clustering is a naive
merge-the-closest-pair loop.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
from brute_force import dsi as brute_dsi
from brute_force import mean_distance_to_others, same_partition, ward_partition
from brute_force import words as brute_words

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


def one_by_one(embedder, texts):
    return {t: embedder.model.encode([t])[0] for t in texts}


def brute_corpus(embedder, corpus: list[str]) -> dict:
    word_vec = one_by_one(embedder, {w for t in corpus for w in brute_words(t)})
    text_vec = one_by_one(embedder, set(corpus))
    joined = " ".join(corpus)
    corpus_dsi = brute_dsi([word_vec[w] for w in brute_words(joined)])
    out = {"dsi": [], "novelty": [], "diversity": []}
    vectors = [text_vec[t] for t in corpus]
    for k, t in enumerate(corpus):
        d = brute_dsi([word_vec[w] for w in brute_words(t)])
        out["dsi"].append(d)
        out["novelty"].append(2 * abs(d - corpus_dsi))
        out["diversity"].append(mean_distance_to_others(vectors, k))
    out["corpus_dsi"] = corpus_dsi
    out["text_vectors"] = [v / np.linalg.norm(v) for v in vectors]
    return out


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
        labels = ward_partition(brute_corpus(embedder, corpus)["text_vectors"])
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
    assert same_partition(labels.tolist(), ward_partition(points))


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
        labels = ward_partition(expected["text_vectors"])
        sizes = [labels.count(lab) for lab in labels]
        assert [r["theme_uniqueness"] for r in got] == pytest.approx([1 / s for s in sizes], abs=TOL), cid
        assert got[0]["num_themes"] == len(set(labels))
