"""Word extraction, degenerate kinds, n-gram diversity, summaries: hand-worked examples."""

from __future__ import annotations

import pytest

from crpo_bench import text
from crpo_bench.stats.aggregate import summarize
from crpo_bench.metrics.ngrams import corpus_ngram_diversity, ngram_diversity


def test_words_lowercase_drop_punctuation_keep_apostrophes_and_unicode():
    assert text.word_sequence("Don't STOP, don't stop: café!") == ["don't", "stop", "don't", "stop", "café"]
    assert text.unique_words("Don't STOP, don't stop: café!") == ["café", "don't", "stop"]


@pytest.mark.parametrize("answer, kind", [
    ("", text.EMPTY),
    ("   \n\t", text.NO_WORDS),
    ("?!... --", text.NO_WORDS),
    ("Brick.", text.ONE_WORD),
    ("brick Brick BRICK!", text.ONE_WORD),
    ("a brick", None),
])
def test_degenerate_kinds(answer, kind):
    assert text.degenerate_kind(answer) == kind


def test_spacy_tokenizer_missing_says_how_to_install():
    try:
        import spacy  # noqa: F401
        pytest.skip("spaCy is installed here; the missing-spaCy message cannot be triggered")
    except ImportError:
        pass
    with pytest.raises(ImportError, match="pip install spacy"):
        text.word_sequence("a b", tokenizer="spacy")


def test_unknown_tokenizer_is_refused():
    with pytest.raises(ValueError, match="unknown tokenizer 'nltk'"):
        text.word_sequence("a b", tokenizer="nltk")


def brute_ngram_diversity(words, n):
    grams = [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return None
    distinct = []
    for g in grams:
        if g not in distinct:
            distinct.append(g)
    return len(distinct) / len(grams)


def test_ngram_diversity_hand_worked():
    words = text.word_sequence("The cat saw the cat. The cat ran!")
    # the cat saw the cat the cat ran: 8 words, 4 distinct; bigrams: the-cat x3, cat-saw,
    # saw-the, cat-the, cat-ran -> 5 distinct of 7
    assert ngram_diversity(words, 1) == pytest.approx(4 / 8)
    assert ngram_diversity(words, 2) == pytest.approx(5 / 7)
    for n in range(1, 6):
        assert ngram_diversity(words, n) == brute_ngram_diversity(words, n)
    assert ngram_diversity(["one", "two"], 3) is None


def test_corpus_ngram_diversity_does_not_join_texts():
    texts = [["a", "b"], ["b", "a"]]
    # bigrams: (a,b), (b,a): a bigram (b,b) across the boundary must not exist
    assert corpus_ngram_diversity(texts, 2) == 1.0
    assert corpus_ngram_diversity(texts, 1) == 0.5
    assert corpus_ngram_diversity([["a"]], 2) is None


def test_summarize_means_over_non_degenerate():
    rows = [
        {"task": "t", "degenerate": None, "novelty": 0.2, "surprise": None},
        {"task": "t", "degenerate": None, "novelty": 0.4, "surprise": 3.0},
        {"task": "t", "degenerate": "empty", "novelty": 0.0, "surprise": None},
        {"task": "u", "degenerate": "one_word", "novelty": 0.0, "surprise": 9.0},
    ]
    s = summarize(rows, ["novelty", "surprise"], lambda r: r["task"])
    assert s["t"] == {"n": 3, "degenerate": 1, "novelty": pytest.approx(0.3), "surprise": 3.0}
    assert s["u"] == {"n": 1, "degenerate": 1, "novelty": None, "surprise": None}
    compat = summarize(rows, ["novelty"], lambda r: r["task"], include_degenerate=True)
    assert compat["t"]["novelty"] == pytest.approx(0.2)
