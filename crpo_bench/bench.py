"""Run models x tasks through lm-eval's Python API and keep the results, resumably.

A model SPEC is `[NAME=]WHAT`, where WHAT is
- a local folder or hub id of a causal LM (`hf:` prefix optional; `smollm2` is the
  packaged SmolLM2); a LoRA adapter folder from `crpo-train` runs on its base model;
- `openai:MODEL`, an OpenAI chat model (key from OPENAI_API_KEY);
- `api:MODEL@URL` or `api:MODEL` with --base-url, any OpenAI-compatible chat endpoint.
API models are baselines on the leaderboard. Their key is read from the environment by
lm-eval at request time; it is never put into model_args, which lm-eval writes out.

Each finished (model, task) pair is written to `<out>/<model>/<task>.json` (lm-eval's
results, plus what crpo-bench knows about the model) and `<task>.samples.jsonl`; a rerun
skips pairs whose results file exists.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .jsonl import write_jsonl_atomic, write_text_atomic
from .lmeval_hook import tasks_dir

OPENAI_CHAT_URL = "https://api.openai.com/v1/chat/completions"
KEY_ENV = "OPENAI_API_KEY"  # what lm-eval's chat-completions models send as the bearer token


class BenchError(ValueError):
    """A run that cannot go on; the message says which model, task or input."""


@dataclass
class ModelSpec:
    name: str  # the leaderboard's name, also the results folder
    kind: str  # "hf" or "api"
    lm_eval_model: str  # lm-eval's model type
    model_args: dict = field(default_factory=dict)
    base_url: str | None = None

    @property
    def baseline(self) -> bool:
        return self.kind == "api"


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def parse_spec(spec: str, base_url: str | None = None, concurrency: int = 4, max_retries: int = 5,
               timeout: int = 120, batch_size: int = 8) -> ModelSpec:
    name, sep, what = spec.partition("=")
    if not sep or "/" in name or ":" in name:
        name, what = "", spec
    api = dict(num_concurrent=concurrency, max_retries=max_retries, timeout=timeout, tokenizer_backend=None)
    if what.startswith("openai:"):
        model = what.removeprefix("openai:")
        url = base_url or OPENAI_CHAT_URL
        return ModelSpec(name or _safe_name(model), "api", "local-chat-completions",
                         dict(model=model, base_url=url, **api), url)
    if what.startswith("api:"):
        model, at, url = what.removeprefix("api:").partition("@")
        url = url if at else base_url
        if not url:
            raise BenchError(f"model {spec!r}: an api: model needs an endpoint, api:MODEL@URL or --base-url URL")
        url = url if url.rstrip("/").endswith("/chat/completions") else url.rstrip("/") + "/v1/chat/completions"
        return ModelSpec(name or _safe_name(model), "api", "local-chat-completions",
                         dict(model=model, base_url=url, **api), url)
    from .models import causal_lm_path, device

    path = causal_lm_path(what.removeprefix("hf:"))
    folder = Path(path)
    args = dict(pretrained=path, batch_size=batch_size, device=device())
    adapter = folder / "adapter_config.json"
    if adapter.is_file():
        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if not base:
            raise BenchError(f"{adapter}: no base_model_name_or_path, so the adapter's base model is unknown")
        args = dict(args, pretrained=causal_lm_path(base), peft=path)
    elif what.removeprefix("hf:").startswith((".", "/", "~")) and not folder.is_dir():
        raise BenchError(f"model {spec!r}: folder {path} does not exist")
    local = what.removeprefix("hf:")
    default_name = local if not folder.is_dir() or "/" not in local else folder.name  # alias, hub id, folder
    if folder.name == "merged" and folder.is_dir():
        default_name = folder.parent.name + "-merged"
    return ModelSpec(name or _safe_name(default_name), "hf", "hf", args)


def task_manager(metadata: dict | None = None):
    """Only our task folder: no 19-second scan of lm-eval's own 14,000 YAMLs. `metadata`
    reaches the tasks' data loaders (muce_data, reward_model, ...)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=tasks_dir(), include_defaults=False, metadata=metadata or None)


def result_path(out: Path, model: str, task: str) -> Path:
    return out / model / f"{task}.json"


def check_endpoint(spec: ModelSpec) -> None:
    """Fail at once, and clearly, when nothing listens at an API model's URL (any HTTP
    answer, even an error status, means a server is there; a GET costs no tokens)."""
    import requests

    try:
        requests.get(spec.base_url, timeout=10)
    except requests.exceptions.ConnectionError as err:
        raise BenchError(f"model {spec.name}: cannot connect to {spec.base_url} ({type(err).__name__}); "
                         "is the server running?") from None


def build_lm(spec: ModelSpec):
    from lm_eval.api.registry import get_model

    return get_model(spec.lm_eval_model).create_from_arg_obj(dict(spec.model_args))


def evaluate_pair(lm, spec: ModelSpec, task: str, limit: int | None, gen_kwargs: dict | None, manager,
                  chat_template: bool = True) -> dict:
    """One (model, task) through lm-eval; chat models get the chat template (API models always)."""
    import lm_eval

    try:
        return lm_eval.simple_evaluate(
            model=lm, tasks=[task], task_manager=manager, limit=limit, gen_kwargs=gen_kwargs or None,
            apply_chat_template=chat_template, log_samples=True,
        )
    except Exception as err:
        where = f" at {spec.base_url}" if spec.base_url else ""
        raise BenchError(f"model {spec.name}{where}, task {task}: {type(err).__name__}: {err}") from err


def write_pair(out: Path, spec: ModelSpec, task: str, evaluation: dict) -> Path:
    from lm_eval.utils import handle_non_serializable

    samples = evaluation.pop("samples", {}) or {}
    card = ((evaluation.get("configs", {}).get(task) or {}).get("metadata") or {}).get("card")
    evaluation["crpo_bench"] = {"model": spec.name, "kind": spec.kind, "baseline": spec.baseline, "task": task,
                                "model_args": dict(spec.model_args), "card": card}
    path = result_path(out, spec.name, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(json.dumps(s, default=handle_non_serializable)) for s in samples.get(task, [])]
    write_jsonl_atomic(path.with_suffix(".samples.jsonl"), rows)
    # the results file last: its presence marks the pair as done
    write_text_atomic(path, json.dumps(evaluation, indent=2, default=handle_non_serializable) + "\n")
    return path


@dataclass
class RunPlan:
    todo: list[tuple[ModelSpec, str]]
    done: list[tuple[ModelSpec, str]]


def plan(specs: list[ModelSpec], tasks: list[str], out: Path) -> RunPlan:
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BenchError(f"two models share the name(s) {duplicates}; name them with NAME=SPEC")
    pairs = [(s, t) for s in specs for t in tasks]
    done = [(s, t) for s, t in pairs if result_path(out, s.name, t).is_file()]
    return RunPlan([p for p in pairs if p not in done], done)

