"""The pairwise equivalence backends by name (make_equivalence) and the name settings record.

The rules live in rules.py, the surrogate in surrogate.py (which builds on the rules); this
module sits above both, so neither imports the other back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .rules import (BACKENDS, CLASSIFIER_ID, ClassifierEquivalence, Equivalence, embedding_equivalence,
                    unigram_equivalence)


def make_equivalence(name: str, texts: Sequence[str], embed: Callable[[list[str]], np.ndarray],
                     classifier: str = CLASSIFIER_ID, embedder: str | None = None,
                     short_rule: bool = True) -> Equivalence:
    """The backend `name`; `embed` (texts -> unit vectors, from the sentence embedder named
    `embedder`, None for the packaged MiniLM) serves the embedding and surrogate backends,
    which embed all `texts` once, up front. `short_rule=False` has the surrogate emulate the
    reference before it had the short-text rule (see surrogate.surrogate_equivalence)."""
    if name == "classifier":
        return ClassifierEquivalence(classifier)
    if name == "unigram":
        return unigram_equivalence()
    if name == "embedding":
        texts = sorted(set(texts))
        return embedding_equivalence(dict(zip(texts, embed(texts))))
    if name == "surrogate":
        from ..models import DEFAULT_EMBEDDER, EMBEDDER_ALIASES, minilm_tokenizer
        from ..scoring import Scorer, ScoringConfig
        from .surrogate import surrogate_equivalence

        if embedder is not None and embedder not in EMBEDDER_ALIASES:
            # its trees read MiniLM's cosines, whatever the other metrics embed with (jina
            # under the paper profile)
            side = Scorer(ScoringConfig(embedder=DEFAULT_EMBEDDER))
            embed = lambda batch: side.embed(batch, "embedding for the surrogate", side.config.text_batch_size)  # noqa: E731
        return surrogate_equivalence(texts, embed, minilm_tokenizer(), short_rule=short_rule)
    if name == "llm":
        raise ValueError("the llm backend judges all of a prompt's generations at once, not pairs: "
                         "use crpo-bench noveltybench --equivalence llm --judge-model SPEC")
    raise ValueError(f"equivalence backend {name!r}: choose one of {BACKENDS}")


def recorded_backend(name: str, short_rule: bool = True) -> str:
    """The backend as settings and metric cards record it: a retrained surrogate is another
    judge, so its version is part of the name, and so is emulating the reference without its
    short-text rule."""
    if name == "surrogate":
        from .surrogate import packaged_path

        return f"{name}/{packaged_path().name}" + ("" if short_rule else " (no short-text rule)")
    return name
