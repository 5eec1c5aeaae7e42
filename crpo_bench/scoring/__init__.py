"""Scoring: the Scorer (scorer.py), the metric registry, the metric card, the embedding cache, originality fitting.

    from crpo_bench.scoring import Scorer, ScoringConfig, profile_config

The Scorer's names load on first use (as the top package's do), so the registry and the card
import without the metrics; patch the Scorer's internals in crpo_bench.scoring.scorer.
"""

__all__ = ["DEGENERATE_POLICIES", "METRIC_FIELDS", "METRICS", "NO_MODEL", "PROFILES", "PROFILE_SETTINGS",
           "REWARD_INPUTS", "ScoreResult", "Scorer", "ScoringConfig", "add_device_options", "available_models",
           "check_metrics", "counted_mean", "counts", "default_metrics", "profile_config"]


def __getattr__(name: str):
    if name in __all__:
        from . import scorer

        return getattr(scorer, name)
    raise AttributeError(f"module 'crpo_bench.scoring' has no attribute {name!r}")
