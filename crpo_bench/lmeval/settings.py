"""A task's settings, resolved once: metadata, then environment variables, then the profile.

Scorer settings come from the task metadata (`--metadata '{"embedder": ...}'`, written into
the results JSON under `configs`), else from environment variables (SETTINGS_ENV), else
the scoring profile (`profile`: offline by default, or paper). `lm: none` turns surprise
off; quality is reported only where a reward model is given. What a task reports follows
from its kind and the models it has, through the metric registry.
"""

from __future__ import annotations

import os

from .. import noveltybench
from ..scoring import registry
from ..scoring.card import metric_card
from ..scoring import NO_MODEL, ScoringConfig, profile_config

SETTINGS_ENV = {"embedder": "CRPO_EMBEDDER", "lm": "CRPO_LM", "reward_model": "CRPO_REWARD_MODEL",
                "degenerate": "CRPO_DEGENERATE", "stderr": "CRPO_STDERR", "bootstrap_iters": "CRPO_BOOTSTRAP_ITERS",
                "equivalence": "CRPO_EQUIVALENCE", "classifier": "CRPO_CLASSIFIER", "patience": "CRPO_PATIENCE",
                "originality_model": "CRPO_ORIGINALITY_MODEL", "profile": "CRPO_PROFILE",
                "trust_remote_code": "CRPO_TRUST_REMOTE_CODE", "scorer_device": "CRPO_SCORER_DEVICE",
                "scorer_dtype": "CRPO_SCORER_DTYPE"}
STDERR_METHODS = ("jackknife", "bootstrap")
CORPUS_SCOPES = ("task", "prompt")
KINDS = (registry.MUCE, registry.NOVELTYBENCH)


def resolve_settings(metadata: dict, kind: str = registry.MUCE) -> dict:
    """Metadata first, then environment variables, then offline defaults."""
    settings = {key: metadata.get(key, os.environ.get(env)) for key, env in SETTINGS_ENV.items()}
    if kind not in KINDS:
        raise ValueError(f"task kind {kind!r}: choose one of {KINDS}")
    settings["kind"] = kind
    settings["degenerate"] = settings["degenerate"] or "exclude"
    settings["stderr"] = settings["stderr"] or "jackknife"
    if settings["stderr"] not in STDERR_METHODS:
        raise ValueError(f"stderr method {settings['stderr']!r}: choose one of {STDERR_METHODS}")
    settings["bootstrap_iters"] = int(settings["bootstrap_iters"] or 200)
    settings["equivalence"] = settings["equivalence"] or "surrogate"  # offline; "classifier" = the reference
    settings["classifier"] = settings["classifier"] or noveltybench.CLASSIFIER_ID
    settings["patience"] = float(settings["patience"] or noveltybench.PATIENCE)
    if isinstance(settings["lm"], str) and settings["lm"].lower() in ("none", "off", "false"):
        settings["lm"] = "none"
    settings["trust_remote_code"] = str(settings["trust_remote_code"]).lower() in ("1", "true", "yes")
    # the scoring models' device and weights type (models.device, models.dtype_label)
    settings["scorer_device"] = settings["scorer_device"] or "auto"
    settings["scorer_dtype"] = settings["scorer_dtype"] or "auto"
    # the scoring profile decides the models not named; what it resolves to is recorded
    settings["profile"] = settings["profile"] or "offline"
    settings["reward_model"] = profile_config(settings["profile"], reward_model=settings["reward_model"]).reward_model
    # NoveltyBench compares the generations of one prompt; MuCE tasks say which corpus
    settings["corpus"] = "prompt" if kind == registry.NOVELTYBENCH else metadata.get("corpus", "task")
    if settings["corpus"] not in CORPUS_SCOPES:
        raise ValueError(f"corpus {settings['corpus']!r}: choose one of {CORPUS_SCOPES}")
    return settings


def muce_template(given: str | None) -> str:
    """The evaluation template of a MuCE task: metadata, else CRPO_MUCE_TEMPLATE, else default."""
    return given or os.environ.get("CRPO_MUCE_TEMPLATE") or "default"


def scorer_config(settings: dict) -> ScoringConfig:
    """The ScoringConfig of resolved settings: the profile, with the models they name winning
    (`reward_model` is already the profile's resolved choice; None means no reward model)."""
    return profile_config(settings["profile"], embedder=settings["embedder"],
                          lm=None if settings["lm"] == "none" else settings["lm"],
                          reward_model=settings["reward_model"] or NO_MODEL, degenerate=settings["degenerate"],
                          originality_model=settings["originality_model"],
                          trust_remote_code=settings["trust_remote_code"] or None,
                          device=settings["scorer_device"], dtype=settings["scorer_dtype"])


def available_models(settings: dict) -> set[str]:
    """What a task's scorer has (registry.NEEDS): the LM unless `lm` is none, a reward model where named."""
    return ({"embedder", "item"} | ({"lm"} if settings["lm"] != "none" else set())
            | ({"reward_model"} if settings["reward_model"] else set()))


def metrics_for(settings: dict) -> tuple[str, ...]:
    """The values a task reports: the registry's, for its kind and the models it has."""
    return registry.reported_fields(settings["kind"], available_models(settings))


def answer_metrics(settings: dict) -> tuple[str, ...]:
    """Scorer metrics averaged over a MuCE task's answers (semantic distance, originality,
    surprise, quality, and any registered per-answer metric)."""
    return registry.answer_metrics(settings["kind"], available_models(settings))


def card_template(template: str, protocol: str | None) -> dict:
    """The card fields of a MuCE task's template. `template` is compared (COMPARED_FIELDS): a
    template name, or under a named protocol (`protocol` in the metadata; `crpo-bench run
    --protocol paper`, which gives each model its template) `protocol:<name>`, the same on
    every row of that protocol, so its rows rank in one table; each row then names the template
    it was asked with in `row_template` (recorded, not compared)."""
    if not protocol:
        return {"template": template}
    return {"template": f"protocol:{protocol}", "protocol": protocol, "row_template": template}


def task_card(settings: dict, metadata: dict, repeats: int) -> dict:
    """The metric card of one task: scorer settings, corpus, samples per prompt, template."""
    protocol = {"profile": settings["profile"], "corpus": settings["corpus"],
                "samples_per_prompt": int(repeats or 1) * max(len(metadata.get("decoding") or []), 1)}
    if settings["kind"] == registry.NOVELTYBENCH:
        protocol["equivalence"] = noveltybench.recorded_backend(settings["equivalence"])
    else:
        protocol.update(card_template(muce_template(metadata.get("template")), metadata.get("protocol")))
    surprise = settings["lm"] != "none" and settings["kind"] == registry.MUCE
    return metric_card(scorer_config(settings), surprise=surprise, **protocol)
