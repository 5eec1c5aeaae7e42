"""Degenerate answers in both policies, against brute force from the spec."""

from __future__ import annotations

import pytest
from brute_force import dsi as brute_dsi
from brute_force import mean_distance_to_others, words

from crpo_bench import Scorer, ScoringConfig

REAL = [
    "Hollow it out and use it as a tiny planter for succulents.",
    "Grind it into red powder and paint a mural with it.",
    "Heat it in the oven and wrap it in a towel as a bed warmer.",
]
DEGENERATE = {"": "empty", "   ": "no_words", "?!...": "no_words", "Brick.": "one_word", "brick BRICK brick": "one_word"}
METRICS = ["dsi", "novelty", "diversity", "theme_uniqueness", "ngram_diversity"]


@pytest.fixture
def corpus():
    return REAL[:1] + list(DEGENERATE) + REAL[1:]


def test_exclude_flags_zeroes_and_leaves_others_untouched(embedder, isolated_cache, corpus):
    scorer = Scorer(ScoringConfig(cache_path=isolated_cache), embedder=embedder)
    mixed = scorer.score(corpus, metrics=METRICS)
    clean = scorer.score(REAL, metrics=METRICS)
    for answer, row in zip(corpus, mixed.rows):
        if answer in DEGENERATE:
            assert row["degenerate"] == DEGENERATE[answer]
            assert (row["dsi"], row["novelty"], row["diversity"], row["theme_uniqueness"]) == (0, 0, 0, 0)
        else:
            assert row["degenerate"] is None
    real_rows = [r for a, r in zip(corpus, mixed.rows) if a not in DEGENERATE]
    for got, want in zip(real_rows, clean.rows):
        for field in ("dsi", "novelty", "diversity", "theme_uniqueness", "num_themes"):
            assert got[field] == pytest.approx(want[field], abs=1e-9), field
    assert mixed.corpora[None]["n"] == len(corpus)
    assert mixed.corpora[None]["n_degenerate"] == len(DEGENERATE)
    assert mixed.corpora[None]["corpus_dsi"] == pytest.approx(clean.corpora[None]["corpus_dsi"], abs=1e-9)
    assert mixed.corpora[None]["ngram_diversity_1"] == clean.corpora[None]["ngram_diversity_1"]


def test_reference_compat_scores_them_like_the_paper(embedder, isolated_cache, corpus):
    scorer = Scorer(ScoringConfig(cache_path=isolated_cache, degenerate="reference_compat"), embedder=embedder)
    result = scorer.score(corpus, metrics=["dsi", "novelty", "diversity"])
    encode = lambda t: embedder.model.encode([t])[0]  # noqa: E731
    corpus_dsi = brute_dsi([encode(w) for w in words(" ".join(corpus))])
    text_vectors = [encode(t) for t in corpus]
    for k, (answer, row) in enumerate(zip(corpus, result.rows)):
        assert row["degenerate"] == DEGENERATE.get(answer)
        own = brute_dsi([encode(w) for w in words(answer)])
        assert row["dsi"] == pytest.approx(own, abs=1e-5)
        assert row["novelty"] == pytest.approx(2 * abs(own - corpus_dsi), abs=1e-5)
        assert row["diversity"] == pytest.approx(mean_distance_to_others(text_vectors, k), abs=1e-5)
    # the exploit the default policy closes: an empty answer out-scores every real one
    empty_novelty = result.rows[corpus.index("")]["novelty"]
    assert empty_novelty == pytest.approx(2 * corpus_dsi, abs=1e-5)
    assert empty_novelty > 5 * max(r["novelty"] for a, r in zip(corpus, result.rows) if a in REAL)


def test_a_corpus_of_only_degenerate_answers(embedder, isolated_cache):
    scorer = Scorer(ScoringConfig(cache_path=isolated_cache), embedder=embedder)
    result = scorer.score(["", "ok"], metrics=METRICS)
    assert [r["novelty"] for r in result.rows] == [0.0, 0.0]
    assert [r["num_themes"] for r in result.rows] == [0, 0]
    assert result.corpora[None]["ngram_diversity_1"] is None


def test_single_real_answer_has_zero_diversity_and_its_own_theme(embedder, isolated_cache):
    scorer = Scorer(ScoringConfig(cache_path=isolated_cache), embedder=embedder)
    row = scorer.score(REAL[:1], metrics=["novelty", "diversity", "theme_uniqueness"]).rows[0]
    assert (row["novelty"], row["diversity"], row["theme_uniqueness"], row["num_themes"]) == (0.0, 0.0, 1.0, 1)


def test_a_very_long_answer_is_scored_on_its_first_characters():
    """A 5 MB answer is cut at max_response_chars before scoring (memory and time stay
    bounded) and the row says so; a normal answer is untouched."""
    from crpo_bench.metrics.ngrams import ngram_diversity
    from crpo_bench.text import word_sequence

    long = " ".join(f"w{i % 5000}" for i in range(1_000_000))  # about 5.9 MB
    rows = Scorer(ScoringConfig(max_response_chars=20_000)).score([long, "a short answer here"],
                                                                  metrics=["ngram_diversity"]).rows
    assert rows[0]["truncated_at"] == 20_000 and "truncated_at" not in rows[1]
    head = word_sequence(long[:20_000])
    assert rows[0]["ngram_diversity_2"] == pytest.approx(ngram_diversity(head, 2))
    assert rows[1]["ngram_diversity_1"] == 1.0
