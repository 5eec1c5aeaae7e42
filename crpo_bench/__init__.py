"""crpo-bench: measure and train LLM creativity.

    from crpo_bench import Scorer, ScoringConfig
    result = Scorer().score(responses, corpus_ids=tasks, prompts=prompts)
"""

from .scoring import METRICS, Scorer, ScoreResult, ScoringConfig

__version__ = "0.1.0"
__all__ = ["METRICS", "Scorer", "ScoreResult", "ScoringConfig", "__version__"]
