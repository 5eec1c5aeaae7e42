"""crpo-bench: measure and train LLM creativity.

    from crpo_bench import Scorer, ScoringConfig
    result = Scorer().score(responses, corpus_ids=tasks, prompts=prompts)

Importing the package is cheap (names load on first use): the lm-eval task hook
(crpo_bench.lmeval_hook) imports it at every interpreter start.
"""

import os as _os

__version__ = "0.1.0"

# The wheel ships the CrPO module as crpo_bench/training; in a checkout (an editable
# install, or PYTHONPATH) it sits at the top level, training/. Let `crpo_bench.training`
# find it there, so an edit is seen without reinstalling. (tasks/ needs nothing:
# lmeval_hook.tasks_dir looks in the checkout where the package has no tasks/.)
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "training")) and _os.path.isfile(
        _os.path.join(_checkout, "training", "__init__.py")):
    __path__.append(_checkout)
__all__ = ["METRICS", "Scorer", "ScoreResult", "ScoringConfig", "__version__"]


def __getattr__(name: str):
    if name in __all__:
        from . import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module 'crpo_bench' has no attribute {name!r}")
