"""Word extraction and degenerate-answer detection.

Words are what DSI and novelty embed one by one, and what n-gram diversity counts.
The default tokenizer is a Unicode-aware regex: a word is a run of letters/digits,
optionally with one apostrophe part ("don't", "children's"). Punctuation is dropped,
words are lowercased, stopwords are kept, nothing is lemmatised. The paper's spaCy
tokenisation (`en_core_web_sm`) can be selected with ``tokenizer="spacy"``.
"""

from __future__ import annotations

import functools
import re

WORD_RE = re.compile(r"\w+(?:['\u2019]\w+)*")

TOKENIZERS = ("regex", "spacy")

# Kinds of degenerate answers, in the order they are checked.
EMPTY = "empty"
NO_WORDS = "no_words"  # whitespace or punctuation only
ONE_WORD = "one_word"  # fewer than two unique words
# No answer at all. A one-word answer is still an answer ("doorstop" for a brick) that
# people rate, so the learned originality scorer rates it; only these get its floor.
WORDLESS = (EMPTY, NO_WORDS)


def word_sequence(text: str, tokenizer: str = "regex") -> list[str]:
    """Lowercased words of `text` in order, with repeats, punctuation removed."""
    if tokenizer == "regex":
        return [w.lower() for w in WORD_RE.findall(text)]
    if tokenizer == "spacy":
        doc = _spacy_pipeline()(text)
        return [t.text.lower() for t in doc if not (t.is_punct or t.is_space)]
    raise ValueError(f"unknown tokenizer {tokenizer!r}; choose one of {TOKENIZERS}")


def unique_words(text: str, tokenizer: str = "regex") -> list[str]:
    """The set of words of `text`, sorted so results never depend on hash order."""
    return sorted(set(word_sequence(text, tokenizer)))


def degenerate_kind(text: str, tokenizer: str = "regex") -> str | None:
    """Why `text` is not a real answer (EMPTY, NO_WORDS, ONE_WORD), or None."""
    if text == "":
        return EMPTY
    n_unique = len(set(word_sequence(text, tokenizer)))
    if n_unique == 0:
        return NO_WORDS
    if n_unique < 2:
        return ONE_WORD
    return None


@functools.lru_cache(maxsize=1)
def _spacy_pipeline():
    try:
        import spacy
    except ImportError as err:
        raise ImportError(
            "tokenizer='spacy' needs spaCy and its English model: "
            "pip install spacy && python -m spacy download en_core_web_sm"
        ) from err
    try:
        return spacy.load("en_core_web_sm", disable=["parser", "ner", "lemmatizer"])
    except OSError as err:
        raise OSError(
            "tokenizer='spacy' needs the spaCy model en_core_web_sm: "
            "python -m spacy download en_core_web_sm"
        ) from err
