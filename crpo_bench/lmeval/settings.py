"""A task's settings, resolved once into one typed object: metadata, then environment variables,
then the profile.

Every setting comes from the task metadata (`--metadata '{"embedder": ...}'`, written into the
results JSON under `configs`), else from its documented environment variable (ENVIRONMENT, read
only by `given_or_environment`), else the scoring profile (`profile`: offline by default, or
paper) and the defaults. The result is a `TaskSettings`: the task's own choices (kind, corpus,
standard errors, NoveltyBench's judge) and the `ScoringConfig` the profile and overrides resolve
to. It is made once per task and travels with the task's items as JSON (lm-eval hands an
aggregation nothing but the items), read back as the same object. `lm: none` turns surprise off;
quality is reported only where a reward model is given. What a task reports follows from its
kind and the models it has, through the metric registry.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

from .. import noveltybench
from ..scoring import registry
from ..scoring.card import metric_card
from ..scoring import ScoringConfig, available_models, profile_config

# Each setting's documented fallback (README, "Data and scorer settings"). The data loaders'
# settings (muce_data, ..., noveltybench_data) are read through the same table.
ENVIRONMENT = {"embedder": "CRPO_EMBEDDER", "lm": "CRPO_LM", "reward_model": "CRPO_REWARD_MODEL",
               "degenerate": "CRPO_DEGENERATE", "stderr": "CRPO_STDERR", "bootstrap_iters": "CRPO_BOOTSTRAP_ITERS",
               "equivalence": "CRPO_EQUIVALENCE", "classifier": "CRPO_CLASSIFIER", "patience": "CRPO_PATIENCE",
               "originality_model": "CRPO_ORIGINALITY_MODEL", "profile": "CRPO_PROFILE",
               "trust_remote_code": "CRPO_TRUST_REMOTE_CODE", "scorer_device": "CRPO_SCORER_DEVICE",
               "scorer_dtype": "CRPO_SCORER_DTYPE", "template": "CRPO_MUCE_TEMPLATE", "muce_data": "CRPO_MUCE_DATA",
               "muce_config": "CRPO_MUCE_CONFIG", "prompts_per_task": "CRPO_PROMPTS_PER_TASK",
               "noveltybench_data": "CRPO_NOVELTYBENCH_DATA"}
STDERR_METHODS = ("jackknife", "bootstrap")
CORPUS_SCOPES = ("task", "prompt")
KINDS = (registry.MUCE, registry.NOVELTYBENCH)
OFF = ("none", "off", "false")


def given_or_environment(key: str, given=None):
    """A setting as given (metadata, an argument), else its environment variable, else None."""
    return given if given not in (None, "") else os.environ.get(ENVIRONMENT[key]) or None


@dataclasses.dataclass(frozen=True)
class TaskSettings:
    """What one task was asked to do. `scoring` is the profile with the overrides laid over it,
    resolved once; everything downstream reads it, never the profile again."""

    kind: str
    scoring: ScoringConfig
    profile: str = "offline"
    surprise: bool = True  # False: `lm: none`
    corpus: str = "task"  # one corpus per task, or per prompt (the paper's 16 pooled samples)
    stderr: str = "jackknife"
    bootstrap_iters: int = 200
    equivalence: str = "surrogate"  # NoveltyBench's judge; offline by default, "classifier" = the reference
    classifier: str = noveltybench.CLASSIFIER_ID
    patience: float = noveltybench.PATIENCE

    @property
    def reward_model(self) -> str | None:
        return self.scoring.reward_model

    def available_models(self) -> set[str]:
        """What the task's scorer has (registry.NEEDS): its ScoringConfig's models, less the LM
        where `lm` is none."""
        models = available_models(self.scoring)
        return models if self.surprise else models - {"lm"}

    def metrics(self) -> tuple[str, ...]:
        """The values the task reports: the registry's, for its kind and the models it has."""
        return registry.reported_fields(self.kind, self.available_models())

    def answer_metrics(self) -> tuple[str, ...]:
        """Scorer metrics averaged over a MuCE task's answers (semantic distance, originality,
        surprise, quality, and any registered per-answer metric)."""
        return registry.answer_metrics(self.kind, self.available_models())

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        fields["scoring"] = {k: None if v is None else str(v) if k == "cache_path" else v
                             for k, v in fields["scoring"].items()}
        return json.dumps(fields, sort_keys=True)

    @staticmethod
    @functools.lru_cache(maxsize=32)
    def from_json(text: str) -> TaskSettings:
        fields = json.loads(text)
        return TaskSettings(**{**fields, "scoring": ScoringConfig(**fields["scoring"])})


def resolve_settings(metadata: dict, kind: str = registry.MUCE) -> TaskSettings:
    """Metadata first, then environment variables, then the profile and the defaults."""
    given = {key: given_or_environment(key, metadata.get(key)) for key in ENVIRONMENT}
    if kind not in KINDS:
        raise ValueError(f"task kind {kind!r}: choose one of {KINDS}")
    stderr = given["stderr"] or "jackknife"
    if stderr not in STDERR_METHODS:
        raise ValueError(f"stderr method {stderr!r}: choose one of {STDERR_METHODS}")
    # NoveltyBench compares the generations of one prompt; MuCE tasks say which corpus
    corpus = "prompt" if kind == registry.NOVELTYBENCH else metadata.get("corpus", "task")
    if corpus not in CORPUS_SCOPES:
        raise ValueError(f"corpus {corpus!r}: choose one of {CORPUS_SCOPES}")
    lm = given["lm"]
    surprise = not (isinstance(lm, str) and lm.lower() in OFF)
    profile = given["profile"] or "offline"
    # the profile decides the models not named; what it resolves to is what the card records
    scoring = profile_config(profile, embedder=given["embedder"], lm=lm if surprise else None,
                             reward_model=given["reward_model"] or None, degenerate=given["degenerate"] or "exclude",
                             originality_model=given["originality_model"],
                             trust_remote_code=str(given["trust_remote_code"]).lower() in ("1", "true", "yes") or None,
                             device=given["scorer_device"] or "auto", dtype=given["scorer_dtype"] or "auto")
    return TaskSettings(kind=kind, scoring=scoring, profile=profile, surprise=surprise, corpus=corpus, stderr=stderr,
                        bootstrap_iters=int(given["bootstrap_iters"] or 200),
                        equivalence=given["equivalence"] or "surrogate",
                        classifier=given["classifier"] or noveltybench.CLASSIFIER_ID,
                        patience=float(given["patience"] or noveltybench.PATIENCE))


def muce_template(given: str | None) -> str:
    """The evaluation template of a MuCE task: metadata, else CRPO_MUCE_TEMPLATE, else default."""
    return given_or_environment("template", given) or "default"


def card_template(template: str, protocol: str | None) -> dict:
    """The card fields of a MuCE task's template. `template` is compared (COMPARED_FIELDS): a
    template name, or under a named protocol (`protocol` in the metadata; `crpo-bench run
    --protocol paper`, which gives each model its template) `protocol:<name>`, the same on
    every row of that protocol, so its rows rank in one table; each row then names the template
    it was asked with in `row_template` (recorded, not compared)."""
    if not protocol:
        return {"template": template}
    return {"template": f"protocol:{protocol}", "protocol": protocol, "row_template": template}


def task_card(settings: TaskSettings, metadata: dict, repeats: int) -> dict:
    """The metric card of one task: scorer settings, corpus, samples per prompt, template."""
    protocol = {"profile": settings.profile, "corpus": settings.corpus,
                "samples_per_prompt": int(repeats or 1) * max(len(metadata.get("decoding") or []), 1)}
    if settings.kind == registry.NOVELTYBENCH:
        protocol["equivalence"] = noveltybench.recorded_backend(settings.equivalence)
    else:
        protocol.update(card_template(muce_template(metadata.get("template")), metadata.get("protocol")))
    surprise = settings.surprise and settings.kind == registry.MUCE
    return metric_card(settings.scoring, surprise=surprise, **protocol)
