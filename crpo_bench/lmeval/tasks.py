"""Our lm-eval task classes: what a task reports and how it samples.

`CreativityTask` is lm-eval's ConfigurableTask with three changes: its settings are
resolved once from its metadata and travel with it (into every item its documents hand
to the aggregations, and as the metric card into the results file); what it reports
comes from the metric registry, not from a metric list in the YAML; and its documents'
answers are handed over as one item per prompt (report.AnswerValues). `PooledDecodingTask` also samples each
prompt under several decoding settings.
"""

from __future__ import annotations

import dataclasses
import logging

from lm_eval.api.task import ConfigurableTask

from ..scoring import registry
from ..scoring.card import originality_domain
from .report import AGGREGATIONS, AnswerValues
from .settings import resolve_settings, task_card

log = logging.getLogger("crpo_bench.lmeval")


class CreativityTask(ConfigurableTask):
    def __init__(self, config: dict | None = None, **kwargs):
        config = {k: v for k, v in (config or {}).items() if k != "class"}  # ours, not a TaskConfig field
        super().__init__(config=config, **kwargs)
        metadata = self.config.metadata if isinstance(self.config.metadata, dict) else {}
        kind = registry.NOVELTYBENCH if str(self.config.task).startswith("noveltybench") else registry.MUCE
        self.settings = resolve_settings(metadata, kind)
        self.settings_json = self.settings.to_json()
        card = task_card(self.settings, metadata, self.config.repeats)
        better = registry.all_reported_fields()
        fields = self.settings.metrics()
        if kind == registry.MUCE and "originality" in fields:  # the leaderboard marks unvalidated task types
            muce_task = (self.config.dataset_kwargs or {}).get("muce_task", "")
            card["originality_domain"] = originality_domain(card.get("originality_validity"), muce_task)
        self.config.metadata = {**metadata, "card": card}
        self._metric_fn_list = {f: None for f in fields}
        self._metric_fn_kwargs = {f: {} for f in fields}
        self._aggregation_list = {f: AGGREGATIONS[f] for f in fields}
        self._higher_is_better = {f: better[f] for f in fields}
        if kind == registry.MUCE and not self.settings.reward_model:
            log.warning("%s: no reward model configured, so `quality` is not reported "
                        "(give one with --metadata '{\"reward_model\": \"NAME_OR_FOLDER\"}')", self.config.task)

    def process_results(self, doc: dict, results: list) -> dict:
        item = results_item(doc, results, self.settings_json)
        # each metric its own list (what the samples file logs under its name), sharing the item
        return {field: AnswerValues(item) for field in self._metric_fn_list}


def results_item(doc: dict, results: list, settings_json: str) -> tuple:
    """All answers of one prompt (K samples of each request; several requests where a task
    pools decoding settings) as the one item every metric of the task receives:
    (task, prompt, answers, MuCE item, MuCE task, the task's settings as JSON)."""
    answers = [a for result in results for a in (result if isinstance(result, list) else [result])]
    return (doc["task"], doc["prompt"], tuple(str(a) for a in answers), doc.get("item", doc["prompt"]),
            doc.get("muce_task", ""), settings_json)


class PooledDecodingTask(CreativityTask):
    """A task that samples each prompt under several decoding settings, `repeats` times each,
    and hands all the answers to the metrics as one item (the paper's 4 settings x 4 = 16).

    The settings are `metadata.decoding` of the YAML, each laid over `generation_kwargs`;
    lm-eval's models take generation arguments per request, so one task can mix them.
    """

    def __init__(self, config: dict | None = None, **kwargs):
        super().__init__(config=config, **kwargs)
        self.decoding = list((self.config.metadata or {}).get("decoding") or [])
        if not self.decoding:
            raise ValueError(f"{self.config.task}: metadata.decoding lists no decoding settings")
        # the YAML's generation_kwargs, before lm-eval lays --gen_kwargs over them
        self.yaml_generation = dict(self.config.generation_kwargs or {})

    def construct_requests(self, doc: dict, ctx, **kwargs):
        request = super().construct_requests(doc, ctx, **kwargs)
        context, generation = request.arguments[0], request.arguments[1]
        # a value the user set with --gen_kwargs wins over every setting's
        user = {k: v for k, v in generation.items() if self.yaml_generation.get(k, object()) != v}
        # fresh resps lists: dataclasses.replace would share the one list of `request`
        return [dataclasses.replace(request, arguments=(context, {**generation, **setting, **user}), idx=k,
                                    resps=[], filtered_resps={}) for k, setting in enumerate(self.decoding)]
