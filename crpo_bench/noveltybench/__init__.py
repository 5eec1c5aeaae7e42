"""NoveltyBench: partition rules and utility (rules.py), the offline surrogate judge and its fitting, published runs.

rules.py holds the reference's rules and the LLM judge; surrogate.py the offline surrogate of the
equivalence classifier (built on the rules), surrogate_training.py its fitting; backends.py builds a
pairwise backend by name on top of both; prompt_scores.py is one prompt's figures (the command's and
the lm-eval tasks' one rule); published.py reads NoveltyBench's published evaluations.
The names callers use are re-exported here (`from crpo_bench import noveltybench as nb`).
"""

from .backends import make_equivalence, recorded_backend
from .prompt_scores import prompt_scores
from .rules import (ANTHROPIC_MAX_TOKENS, ANTHROPIC_VERSION, BACKENDS, CLASSIFIER_ID, CLASSIFIER_THRESHOLD,
                    EMBEDDING_THRESHOLD, JUDGE_ATTEMPTS, LLM_JUDGE_SYSTEM, PARTITION_BACKENDS, PATIENCE,
                    REWARD_THRESHOLDS, SHORT_WORDS, UNIGRAM_THRESHOLD, BadGrouping, ClassifierEquivalence,
                    Equivalence, LlmJudge, canonical, embedding_equivalence, generation_scores, judge_message,
                    labels_from_groups, lenient_groups, made_with_short_rule, partition, partition_scores, rating, rouge1_f,
                    short_rule_agreement, short_rule_counts, short_rule_then, short_texts_equivalent, shown_order, strict_groups, unigram_equivalence,
                    utility)

__all__ = ["ANTHROPIC_MAX_TOKENS", "ANTHROPIC_VERSION", "BACKENDS", "CLASSIFIER_ID", "CLASSIFIER_THRESHOLD",
           "EMBEDDING_THRESHOLD", "JUDGE_ATTEMPTS", "LLM_JUDGE_SYSTEM", "PARTITION_BACKENDS", "PATIENCE",
           "REWARD_THRESHOLDS", "SHORT_WORDS", "UNIGRAM_THRESHOLD", "BadGrouping", "ClassifierEquivalence",
           "Equivalence", "LlmJudge", "canonical", "embedding_equivalence", "generation_scores", "judge_message",
           "labels_from_groups", "lenient_groups", "made_with_short_rule", "make_equivalence", "partition", "partition_scores", "prompt_scores", "rating",
           "recorded_backend", "rouge1_f", "short_rule_agreement", "short_rule_counts", "short_rule_then", "short_texts_equivalent", "shown_order",
           "strict_groups", "unigram_equivalence", "utility"]
