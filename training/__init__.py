"""CrPO training: rated answers -> preference pairs -> creativity scores -> CrPOTrainer.

    from crpo_bench.training import CrPOConfig, CrPOTrainer

The data steps and recipes run from the `crpo-train` command (crpo_bench/training/cli.py).
"""

from .trainer import CrPOConfig, CrPOTrainer
from .weights import crpo_weight

__all__ = ["CrPOConfig", "CrPOTrainer", "crpo_weight"]
