"""Word extraction and degenerate-answer detection.

Words are what DSI and novelty embed one by one, and what n-gram diversity counts.
The default tokenizer is a Unicode-aware regex: a word is a run of letters/digits,
optionally with one apostrophe part ("don't", "children's"). Punctuation is dropped,
words are lowercased, stopwords are kept, nothing is lemmatised.

``tokenizer="spacy"`` reproduces the paper's words exactly: spaCy's English tokens
(`en_core_web_sm`, or `spacy.blank("en")`, whose tokenizer rules are the same, when the
model is not installed), tokens with `is_punct` dropped, text lowercased. As in the
paper, nothing else is dropped: whitespace tokens (a blank line) are words too, and
"don't" is two words ("do", "n't").
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


class MissingDependencyError(ImportError, ValueError):
    """An optional package a chosen setting needs is not installed. Also a ValueError, so
    the command line reports it as a usage error, not a traceback."""


def word_sequence(text: str, tokenizer: str = "regex") -> list[str]:
    """Lowercased words of `text` in order, with repeats, punctuation removed."""
    if tokenizer == "regex":
        return [w.lower() for w in WORD_RE.findall(text)]
    if tokenizer == "spacy":
        # The tokenizer alone: is_punct is a lexical attribute, so tagger and parser
        # would change nothing.
        return [t.text.lower() for t in _spacy_tokenizer()(text) if not t.is_punct]
    raise ValueError(f"unknown tokenizer {tokenizer!r}; choose one of {TOKENIZERS}")


def unique_words(text: str, tokenizer: str = "regex") -> list[str]:
    """The set of words of `text`, sorted so results never depend on hash order."""
    return sorted(set(word_sequence(text, tokenizer)))


def degenerate_kind(text: str, tokenizer: str = "regex") -> str | None:
    """Why `text` is not a real answer (EMPTY, NO_WORDS, ONE_WORD), or None."""
    if text == "":
        return EMPTY
    words = set(word_sequence(text, tokenizer))
    # spaCy words include whitespace tokens; an answer of nothing else is still no answer
    # (the paper would keep one with two different whitespace runs, a reward for nothing).
    if not any(w.strip() for w in words):
        return NO_WORDS
    if len(words) < 2:
        return ONE_WORD
    return None


@functools.lru_cache(maxsize=1)
def _spacy_tokenizer():
    """The tokenizer of `en_core_web_sm` (what the paper loads), else of a blank English
    pipeline: the same rules ship inside spaCy itself, so no model download is needed."""
    try:
        import spacy
    except ImportError as err:
        raise MissingDependencyError(
            "tokenizer='spacy' needs spaCy: pip install spacy (or pip install 'crpo-bench[paper]')"
        ) from err
    try:
        nlp = spacy.load("en_core_web_sm")
    except OSError:  # the model package is not installed
        nlp = spacy.blank("en")
    return nlp.tokenizer
