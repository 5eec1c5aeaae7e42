"""MuCE: the benchmark's data (tasks, splits, rows: data.py) and its prompt wordings (prompts.py).

The names callers use are re-exported here (`from crpo_bench import muce; muce.load_rows(...)`);
patch them in crpo_bench.muce.data, where they are looked up.
"""

from .data import (HELDOUT_SPLITS, HUB_ID, OCSAI_LINE, OCSAI_TASKS, PAPER_TASKS, SET_TO_SPLIT, SPLITS, TASK_ALIASES,
                   TASK_NAMES, TASKS, is_english, load_rows, read_ocsai, read_rated, read_table, row_full_prompt,
                   split_of, task_name, task_slug)

__all__ = ["HELDOUT_SPLITS", "HUB_ID", "OCSAI_LINE", "OCSAI_TASKS", "PAPER_TASKS", "SET_TO_SPLIT", "SPLITS",
           "TASK_ALIASES", "TASK_NAMES", "TASKS", "is_english", "load_rows", "read_ocsai", "read_rated", "read_table",
           "row_full_prompt", "split_of", "task_name", "task_slug"]
