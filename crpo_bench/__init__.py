"""crpo-bench: measure and train LLM creativity.

    from crpo_bench import Scorer, ScoringConfig
    result = Scorer().score(responses, corpus_ids=tasks, prompts=prompts)

Importing the package is cheap (names load on first use): the lm-eval task hook
(crpo_bench.lmeval_hook) imports it at every interpreter start.
"""

__version__ = "0.1.0"

__all__ = ["METRICS", "Scorer", "ScoreResult", "ScoringConfig", "__version__"]


def __getattr__(name: str):
    if name in __all__:
        from . import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module 'crpo_bench' has no attribute {name!r}")
