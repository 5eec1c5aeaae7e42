"""Run models x tasks through lm-eval's Python API and keep the results, resumably.

A model SPEC is `[NAME=]WHAT`, where WHAT is
- a local folder or hub id of a causal LM (`hf:` prefix optional; `smollm2` is the
  packaged SmolLM2); a LoRA adapter folder from `crpo-train` runs on its base model;
- `openai:MODEL`, an OpenAI chat model (key from OPENAI_API_KEY);
- `api:MODEL@URL` or `api:MODEL` with --base-url, any OpenAI-compatible chat endpoint.
API models are baselines on the leaderboard. Their key is read from the environment and
set on the model's request headers in memory; it is never put into model_args, which
lm-eval writes out. OPENAI_API_KEY goes only to OpenAI's own endpoint.

NAME becomes a folder under --out, so it must be a safe file name (NAME_RULE); an
unsafe NAME is refused, never rewritten. A name derived from WHAT (a hub id, ...) has
its other characters replaced by `_`.

Each finished (model, task) pair is written to `<out>/<model>/<task>.json` (lm-eval's
results, plus what crpo-bench knows about the model) and `<task>.samples.jsonl`; a rerun
skips pairs whose results file exists.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .jsonl import write_jsonl_atomic, write_text_atomic
from .lmeval_hook import tasks_dir

OPENAI_CHAT_URL = "https://api.openai.com/v1/chat/completions"
KEY_ENV = "OPENAI_API_KEY"  # the default key, sent only to OpenAI's own endpoint
OPENAI_HOST = "api.openai.com"
# Model and task names become folder and file names under --out: no separators, no
# leading dot ("." and ".." would leave or flatten the tree), nothing a shell or an HTML
# page would read as syntax.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,63}")
NAME_RULE = "1-64 characters from A-Z a-z 0-9 . _ - +, not starting with '.'"
WHOLE_SPEC_PREFIXES = ("openai:", "api:", "hf:")  # an "=" after these is part of WHAT (a URL query)


class BenchError(ValueError):
    """A run that cannot go on; the message says which model, task or input."""


@dataclass
class ModelSpec:
    name: str  # the leaderboard's name, also the results folder
    kind: str  # "hf" or "api"
    lm_eval_model: str  # lm-eval's model type
    model_args: dict = field(default_factory=dict)
    base_url: str | None = None
    renamed_from: str | None = None  # the text a derived name was made safe from, for a notice

    @property
    def baseline(self) -> bool:
        return self.kind == "api"


def check_name(kind: str, name: str, where: str) -> str:
    """`name` if it is a safe file name; otherwise the run stops before any work."""
    if not NAME_PATTERN.fullmatch(name):
        raise BenchError(f"{where}: {kind} name {name!r} is not allowed; it names a folder or file under --out, "
                         f"so it must be {NAME_RULE}")
    return name


def _safe_name(text: str) -> str:
    """A derived name (hub id, API model): other characters become `_`, leading dots go."""
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_").lstrip(".")[:64]
    return name if NAME_PATTERN.fullmatch(name) else "model"


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except (OSError, ValueError):  # a NUL byte or an over-long name is no folder
        return False


def split_spec(spec: str) -> tuple[str | None, str]:
    """(NAME or None, WHAT). A spec with "=" is NAME=WHAT unless it is a whole api:/openai:/hf:
    spec or an existing path with "=" in it (runs/lr=1e-4); any other NAME must be safe, so
    `a/b=smollm2` is refused rather than read as the hub id "a/b=smollm2"."""
    if spec.startswith(WHOLE_SPEC_PREFIXES) or "=" not in spec:
        return None, spec
    name, _, what = spec.partition("=")
    if not NAME_PATTERN.fullmatch(name) and _exists(spec):
        return None, spec
    check_name("model", name, f"model spec {spec!r} (NAME=WHAT)")
    if not what:
        raise BenchError(f"model spec {spec!r}: nothing after '='; write NAME=WHAT")
    return name, what


def _port_ok(parts) -> bool:
    try:
        parts.port  # noqa: B018 -- urllib checks the port only when asked
    except ValueError:
        return False
    return True


def chat_url(url: str, label: str) -> str:
    """The chat-completions URL of an endpoint, as the OpenAI client reads a base URL:
    a bare host gets /v1/chat/completions, any other path (/v1, /v1beta/openai) gets
    /chat/completions once, and a URL already ending in /chat/completions is kept."""
    if "@" in url:  # user:password@host; the URL is written to the results, so it is not echoed either
        raise BenchError(f"model {label}: the endpoint URL holds a user name or password, which would be written "
                         "to the results; put the key in an environment variable and pass --api-key-env NAME")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or not _port_ok(parts):
        raise BenchError(f"model {label}: endpoint {url!r} is not an http:// or https:// URL")
    path = parts.path.rstrip("/")
    if not path:
        path = "/v1/chat/completions"
    elif not path.endswith("/chat/completions"):
        path += "/chat/completions"
    return urlunsplit(parts._replace(path=path))


def is_openai(url: str | None) -> bool:
    """OpenAI's own endpoint, the only one that gets OPENAI_API_KEY by default."""
    parts = urlsplit(url or "")
    return parts.scheme == "https" and parts.hostname == OPENAI_HOST


def check_spec(spec: str, base_url: str | None = None) -> None:
    """The cheap checks of parse_spec (NAME, endpoint URL), for every spec before any model
    folder is resolved: resolving `smollm2` converts a model on first use."""
    name, what = split_spec(spec)
    if what.startswith(("openai:", "api:")):
        _api_spec(name, what, spec, base_url, {})


def _api_spec(name: str | None, what: str, spec: str, base_url: str | None, api: dict) -> ModelSpec:
    if what.startswith("openai:"):
        model = what.removeprefix("openai:")
        url = chat_url(base_url, model) if base_url else OPENAI_CHAT_URL
    else:
        model, at, url = what.removeprefix("api:").partition("@")
        url = url if at else base_url
        if not url:
            raise BenchError(f"model {spec!r}: an api: model needs an endpoint, api:MODEL@URL or --base-url URL")
        url = chat_url(url, model)
    if not model:
        raise BenchError(f"model spec {spec!r}: no model name after {what.split(':')[0]}:")
    derived = _safe_name(model)
    return ModelSpec(name or derived, "api", "local-chat-completions", dict(model=model, base_url=url, **api), url,
                     renamed_from=None if name or derived == model else model)


def parse_spec(spec: str, base_url: str | None = None, concurrency: int = 4, max_retries: int = 5,
               timeout: int = 120, batch_size: int = 8) -> ModelSpec:
    name, what = split_spec(spec)
    api = dict(num_concurrent=concurrency, max_retries=max_retries, timeout=timeout, tokenizer_backend=None)
    if what.startswith(("openai:", "api:")):
        return _api_spec(name, what, spec, base_url, api)
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
    derived = _safe_name(default_name)
    return ModelSpec(name or derived, "hf", "hf", args,
                     renamed_from=None if name or derived == default_name else default_name)


def task_manager(metadata: dict | None = None):
    """Only our task folder: no 19-second scan of lm-eval's own 14,000 YAMLs. `metadata`
    reaches the tasks' data loaders (muce_data, reward_model, ...)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=tasks_dir(), include_defaults=False, metadata=metadata or None)


def _inside(out: Path, path: Path) -> Path:
    """`path` if it resolves inside `out`: names are checked, but a symlinked model folder
    could still point elsewhere, and nothing of ours is written outside --out."""
    if not path.resolve().is_relative_to(out.resolve()):
        raise BenchError(f"{path} resolves to {path.resolve()}, outside --out {out}; refusing to write there")
    return path


def result_path(out: Path, model: str, task: str) -> Path:
    return _inside(out, out / model / f"{task}.json")


def check_endpoint(spec: ModelSpec) -> None:
    """Fail at once, and clearly, when nothing listens at an API model's URL (any HTTP
    answer, even an error status, means a server is there; a GET costs no tokens)."""
    import requests

    try:
        requests.get(spec.base_url, timeout=10)
    except requests.exceptions.ConnectionError as err:
        raise BenchError(f"model {spec.name}: cannot connect to {spec.base_url} ({type(err).__name__}); "
                         "is the server running?") from None


def build_lm(spec: ModelSpec, api_key: str | None = None):
    """lm-eval's model. An API model's request headers are set here, in memory: lm-eval
    itself would send OPENAI_API_KEY (or an empty bearer token) to every endpoint."""
    from lm_eval.api.registry import get_model

    lm = get_model(spec.lm_eval_model).create_from_arg_obj(dict(spec.model_args))
    if spec.baseline:
        # TemplateAPI.header is a cached_property, so the instance attribute wins; {} sends
        # no Authorization header at all
        lm.header = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return lm


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
    write_jsonl_atomic(_inside(out, path.with_suffix(".samples.jsonl")), rows)
    # the results file last: its presence marks the pair as done
    write_text_atomic(path, json.dumps(evaluation, indent=2, default=handle_non_serializable) + "\n")
    return path


@dataclass
class RunPlan:
    todo: list[tuple[ModelSpec, str]]
    done: list[tuple[ModelSpec, str]]


def plan(specs: list[ModelSpec], tasks: list[str], out: Path) -> RunPlan:
    """Which pairs to run; every name and path is checked here, before any work."""
    for task in tasks:
        check_name("task", task, "--tasks")
    for spec in specs:  # names from split_spec or _safe_name are safe; a ModelSpec built elsewhere may not be
        check_name("model", spec.name, f"model {spec.name!r}")
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BenchError(f"two models share the name(s) {duplicates}; name them with NAME=SPEC")
    pairs = [(s, t) for s in specs for t in tasks]
    done = [(s, t) for s, t in pairs if result_path(out, s.name, t).is_file()]
    return RunPlan([p for p in pairs if p not in done], done)

