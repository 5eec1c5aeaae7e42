"""lm-evaluation-harness glue for the creativity tasks, split by concern:

- `settings`: a task's settings resolved once into a `TaskSettings` (metadata, then the
  documented environment variables, then the profile), what it reports (the metric registry),
  its metric card;
- `data`: the `custom_dataset` loaders (MuCE's held-out prompts, NoveltyBench's prompts);
- `tasks`: our task classes (`CreativityTask`, `PooledDecodingTask`) and the per-document item;
- `report`: the aggregations: every metric and its standard error from a task's items;
- `generator`: the evaluated model moved off its GPU before the scoring models load;
- `compat`: the one patch of lm-eval internals (standard errors, the model handed to
  `generator`), version-checked.

The task YAMLs under tasks/ name these with `!function crpo_bench.lmeval.<name>`. No
module keeps state between tasks: a task's settings travel in its items.
"""

from .compat import install_generator_hook, install_stderr_hook
from .data import heldout_documents, muce_dataset, noveltybench_dataset
from .report import AGGREGATIONS, corpus_values, noveltybench_values, resamples
from .settings import TaskSettings, resolve_settings, task_card
from .tasks import CreativityTask, PooledDecodingTask, results_item

__all__ = ["AGGREGATIONS", "CreativityTask", "PooledDecodingTask", "TaskSettings", "corpus_values",
           "heldout_documents", "install_generator_hook", "install_stderr_hook", "muce_dataset",
           "noveltybench_dataset", "noveltybench_values", "resamples", "resolve_settings", "results_item", "task_card"]

install_stderr_hook()
install_generator_hook()
