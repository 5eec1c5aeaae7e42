"""n-gram diversity: distinct n-grams / total n-grams of a word sequence."""

from __future__ import annotations

NGRAM_ORDERS = (1, 2, 3, 4, 5)


def ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def ngram_diversity(words: list[str], n: int) -> float | None:
    """Share of distinct n-grams in one text; None when it has fewer than n words."""
    grams = ngrams(words, n)
    return len(set(grams)) / len(grams) if grams else None


def corpus_ngram_diversity(texts_words: list[list[str]], n: int) -> float | None:
    """Distinct n-grams over all texts / total n-grams; n-grams never span two texts."""
    distinct: set[tuple[str, ...]] = set()
    total = 0
    for words in texts_words:
        grams = ngrams(words, n)
        distinct.update(grams)
        total += len(grams)
    return len(distinct) / total if total else None
