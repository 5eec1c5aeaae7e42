"""Run models x tasks through lm-eval's Python API and keep the results, resumably.

A model SPEC is `[NAME=]WHAT`, where WHAT is
- a local folder or hub id of a causal LM (`hf:` prefix optional; `smollm2` is the
  packaged SmolLM2); a LoRA adapter folder from `crpo-train` runs on its base model;
- `vllm:MODEL_OR_FOLDER`, the same on vLLM (LoRA adapters through vLLM's LoRA support);
- `openai:MODEL`, an OpenAI chat model (key from OPENAI_API_KEY);
- `anthropic:MODEL`, Anthropic's Messages API (key from ANTHROPIC_API_KEY);
- `gemini:MODEL`, Google's OpenAI-compatible Gemini endpoint (key from GEMINI_API_KEY);
- `api:MODEL@URL` or `api:MODEL` with --base-url, any OpenAI-compatible chat endpoint;
- `litellm:PROVIDER/MODEL`, any provider LiteLLM routes to (LiteLLM reads its keys).
openai:, anthropic: and gemini: take @URL or --base-url too (a proxy, a test server).
API models are baselines on the leaderboard. Their key is read from the environment and
set on the model object in memory; it is never put into model_args, which lm-eval
writes out. A provider's own variable (OPENAI_API_KEY, ...) goes only to its own host.
An endpoint URL that may hold a credential (user info, a query, a fragment) is refused,
and redirects of API calls are never followed (the key header would go with them).
A sampling parameter an API does not take (SAMPLING_ACCEPTED: OpenAI's and Gemini's take no
top_k or typical_p) is not sent, and each result records per decoding setting what was asked,
sent and dropped.

NAME becomes a folder under --out, so it must be a safe file name (NAME_RULE); an
unsafe NAME is refused, never rewritten. A name derived from WHAT (a hub id, ...) has
its other characters replaced by `_`.

Each finished (model, task) pair is written to `<out>/<model>/<task>.json` (lm-eval's
results, plus what crpo-bench knows about the model) and `<task>.samples.jsonl`; a rerun
skips pairs whose results file exists.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..jsonl import write_jsonl_atomic, write_text_atomic
from ..lmeval_hook import tasks_dir

log = logging.getLogger(__name__)

OPENAI_CHAT_URL = "https://api.openai.com/v1/chat/completions"
KEY_ENV = "OPENAI_API_KEY"  # the default key, sent only to OpenAI's own endpoint
OPENAI_HOST = "api.openai.com"
# Model and task names become folder and file names under --out: no separators, no
# leading dot ("." and ".." would leave or flatten the tree), nothing a shell or an HTML
# page would read as syntax.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,63}")
NAME_RULE = "1-64 characters from A-Z a-z 0-9 . _ - +, not starting with '.'"
# an "=" after these is part of WHAT (a URL query, a folder such as runs/lr=1e-4)
WHOLE_SPEC_PREFIXES = ("openai:", "anthropic:", "gemini:", "api:", "litellm:", "hf:", "vllm:")
ANTHROPIC_MESSAGES_URL = "https://api.anthropic.com/v1/messages"  # lm-eval's AnthropicChat default
GEMINI_CHAT_URL = "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"
# optional backends: the package each needs, and the extra of ours that installs it
EXTRAS = {"vllm": "vllm", "litellm": "litellm"}


class BenchError(ValueError):
    """A run that cannot go on; the message says which model, task or input."""


@dataclass
class ModelSpec:
    name: str  # the leaderboard's name, also the results folder
    kind: str  # "hf", "vllm" or "api"
    lm_eval_model: str  # lm-eval's model type
    model_args: dict = field(default_factory=dict)
    base_url: str | None = None
    renamed_from: str | None = None  # the text a derived name was made safe from, for a notice
    provider: str | None = None  # an API model's PROVIDERS key, or "litellm"

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
    check_name("model", name, f"model spec {_shown(spec)!r} (NAME=WHAT)")
    if not what:
        raise BenchError(f"model spec {_shown(spec)!r}: nothing after '='; write NAME=WHAT")
    return name, what


def _port_ok(parts) -> bool:
    try:
        parts.port  # noqa: B018 -- urllib checks the port only when asked
    except ValueError:
        return False
    return True


def _shown(text: str) -> str:
    """A spec or URL as a message may show it: a URL's query, fragment and user info can
    hold a key, so they are left out (a refused URL is never echoed whole)."""
    if "://" not in text:
        return text
    text = re.sub(r"[?#]\S*", "?...", text)
    return re.sub(r"//[^/\s]*@", "//...@", text)


def _endpoint(url: str, label: str, default_path: str, suffix: str) -> str:
    """`url` checked (http(s), a host, a port, no credentials) and completed as a client
    reads a base URL: a bare host gets `default_path`, any other path gets `suffix` once,
    and a URL already ending in `suffix` is kept. The URL is written to the results and
    logged, so one that may carry a credential (user info, a query such as ?api_key=...,
    a fragment) is refused, and not echoed in the message either."""
    text = url.strip()
    if "?" in text or "#" in text:
        raise BenchError(f"model {label}: the endpoint URL has a query string or fragment (?... or #...), which can "
                         "hold a key (api_key=, token=, sig=, ...) and would be written to the results and logs; "
                         "endpoint URLs with one are refused: give the URL without it, put the key in an "
                         "environment variable and pass --api-key-env NAME")
    if "@" in text:  # user:password@host
        raise BenchError(f"model {label}: the endpoint URL holds a user name or password, which would be written "
                         "to the results; put the key in an environment variable and pass --api-key-env NAME")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or not _port_ok(parts):
        raise BenchError(f"model {label}: endpoint {url!r} is not an http:// or https:// URL")
    path = parts.path.rstrip("/")
    if not path:
        path = default_path
    elif not path.endswith(suffix):
        path += suffix
    return urlunsplit(parts._replace(path=path))


def chat_url(url: str, label: str) -> str:
    """The chat-completions URL of an endpoint, as the OpenAI client reads a base URL:
    a bare host gets /v1/chat/completions, any other path (/v1, /v1beta/openai) gets
    /chat/completions once, and a URL already ending in /chat/completions is kept."""
    return _endpoint(url, label, "/v1/chat/completions", "/chat/completions")


def messages_url(url: str, label: str) -> str:
    """The Messages URL of an Anthropic-style endpoint, as Anthropic's client reads a base
    URL: a bare host gets /v1/messages, /v1 gets /messages, .../messages is kept."""
    return _endpoint(url, label, "/v1/messages", "/messages")


@dataclass(frozen=True)
class Provider:
    """An HTTP API backend: which lm-eval model speaks it, where, and whose key it gets."""

    lm_eval_model: str
    url: str | None  # the default endpoint; None: the spec must name one
    host: str | None  # the only host that gets key_env's key without --api-key-env
    key_env: str | None
    endpoint: Callable[[str, str], str] = chat_url  # how a given URL is completed
    key_header: str = "Authorization"  # "x-api-key" for Anthropic, which takes the bare key


PROVIDERS = {
    "openai": Provider("local-chat-completions", OPENAI_CHAT_URL, OPENAI_HOST, KEY_ENV),
    # Gemini speaks OpenAI's chat protocol at its own URL, so lm-eval's generic client fits
    "gemini": Provider("local-chat-completions", GEMINI_CHAT_URL, "generativelanguage.googleapis.com",
                       "GEMINI_API_KEY"),
    "anthropic": Provider("anthropic-chat-completions", ANTHROPIC_MESSAGES_URL, "api.anthropic.com",
                          "ANTHROPIC_API_KEY", messages_url, "x-api-key"),
    "api": Provider("local-chat-completions", None, None, None),
}


# What each API accepts, in ONE table: the sampling parameters (what a decoding setting or
# --gen-kwargs sets beyond the fields lm-eval's client builds for that API itself) that each
# provider documents. A parameter missing here is not sent to that provider, and the result
# records it, per decoding setting (decoding_record). `api:` endpoints (any OpenAI-compatible
# server, e.g. vLLM's, which takes top_k) and local models get everything as given.
SAMPLING_ACCEPTED: dict[str, frozenset[str]] = {
    # OpenAI Chat Completions (platform.openai.com/docs/api-reference/chat/create): temperature,
    # top_p, seed, n, presence_penalty, frequency_penalty, logit_bias, logprobs, top_logprobs,
    # besides max_tokens / max_completion_tokens and stop. No top_k and no typical_p: a request
    # carrying either is refused with HTTP 400 "Unrecognized request argument supplied: top_k".
    # (The paper's own code ran its OpenAI baselines this way: its setting 3 became T 0.7, top-p 1.)
    "openai": frozenset({"temperature", "top_p", "seed", "n", "presence_penalty", "frequency_penalty",
                         "logit_bias", "logprobs", "top_logprobs"}),
    # Gemini's OpenAI-compatible endpoint (ai.google.dev/gemini-api/docs/openai): OpenAI's
    # chat-completions fields, mapped onto generationConfig: temperature, top_p, seed, n,
    # presence_penalty, frequency_penalty, besides max_tokens / max_completion_tokens and stop.
    # No top_k (generationConfig.topK is not among the compatible fields), no typical_p.
    "gemini": frozenset({"temperature", "top_p", "seed", "n", "presence_penalty", "frequency_penalty"}),
    # Anthropic Messages (docs.anthropic.com/en/api/messages): temperature, top_p, top_k, besides
    # max_tokens, stop_sequences, system and metadata. No typical_p and no seed: unknown fields
    # are refused with HTTP 400.
    "anthropic": frozenset({"temperature", "top_p", "top_k"}),
}
# litellm:PROVIDER/MODEL takes OpenAI's request shape and maps it onto PROVIDER's API: the
# table row of PROVIDER where there is one, OpenAI's for any other (a model without PROVIDER/
# is an OpenAI model to LiteLLM).
LITELLM_ROUTES = {"openai": "openai", "azure": "openai", "anthropic": "anthropic", "gemini": "gemini"}
# Fields lm-eval's client builds for each API from max_gen_toks and until (max_tokens or
# max_completion_tokens, stop or stop_sequences) and the message itself: always sent.
REQUEST_FIELDS = frozenset({"model", "messages", "system", "stream", "max_tokens", "max_completion_tokens", "stop",
                            "stop_sequences"})
# The "not used" values of the paper's explicit neutral settings (top_k 0 is off; transformers
# would apply top-k 50 without it) and an empty stop list: an API applies no such default, so
# leaving the field out is the same setting, and these are never sent to a provider of the table
# (Anthropic documents top_k but not what 0 means; OpenAI refuses an empty stop array).
OFF_VALUES = {"top_k": (0, None), "typical_p": (1, None), "stop": ([],)}
# A dropped parameter with one of these values leaves the decoding setting as it was asked.
NEUTRAL_VALUES = {**OFF_VALUES, "top_p": (1, None), "seed": (None,), "min_p": (0, None),
                  "repetition_penalty": (1, None), "presence_penalty": (0, None), "frequency_penalty": (0, None)}
# generation settings that lm-eval's client turns into the API's own fields (REQUEST_FIELDS):
# not sampling parameters, so not in a decoding record
LMEVAL_BUILT = frozenset({"do_sample", "max_gen_toks", "max_tokens", "until"})


def accepted_parameters(spec: "ModelSpec") -> frozenset[str] | None:
    """The sampling parameters `spec`'s API accepts (SAMPLING_ACCEPTED); None: all, as given
    (local models and `api:` endpoints)."""
    if not spec.baseline:
        return None
    if spec.provider == "litellm":
        route, slash, _ = str(spec.model_args.get("model", "")).partition("/")
        return SAMPLING_ACCEPTED[LITELLM_ROUTES.get(route if slash else "openai", "openai")]
    return SAMPLING_ACCEPTED.get(spec.provider or "")


def _off(name: str, value, values: dict) -> bool:
    return name in values and not isinstance(value, bool) and any(
        value == v and (v is None) == (value is None) for v in values[name])


def split_parameters(params: dict, accepted: frozenset[str] | None) -> tuple[dict, dict]:
    """(sent, dropped) of a request's fields or a decoding setting: what `accepted` (a row of
    SAMPLING_ACCEPTED) does not name, and the OFF_VALUES, are dropped; None: all is sent."""
    if accepted is None:
        return dict(params), {}
    sent, dropped = {}, {}
    for name, value in params.items():
        keep = not _off(name, value, OFF_VALUES) and (name in REQUEST_FIELDS or name in accepted)
        (sent if keep else dropped)[name] = value
    return sent, dropped


def decoding_record(spec: "ModelSpec", config: dict, gen_kwargs: dict | None = None) -> list[dict]:
    """What each decoding setting of a task asked for and what was sent to `spec`'s API:
    [{"setting": 1.., "asked", "sent", "dropped": [names], "neutral"}], `neutral` true where
    every dropped value leaves the setting as asked (top_k 0, typical_p 1, seed null). A task
    without `metadata.decoding` has one setting, its generation_kwargs. `gen_kwargs` (the run's
    --gen-kwargs) win over every setting, as the tasks lay them."""
    accepted = accepted_parameters(spec)
    generation = dict(config.get("generation_kwargs") or {})
    decoding = (config.get("metadata") or {}).get("decoding") or [{}]
    records = []
    for number, setting in enumerate(decoding, 1):
        asked = {k: v for k, v in {**generation, **setting, **(gen_kwargs or {})}.items() if k not in LMEVAL_BUILT}
        sent, dropped = split_parameters(asked, accepted)
        records.append({"setting": number, "asked": asked, "sent": sent, "dropped": sorted(dropped),
                        "neutral": all(_off(k, v, NEUTRAL_VALUES) for k, v in dropped.items())})
    return records


def _send_only_accepted(lm, accepted: frozenset[str] | None) -> None:
    """Every request of an API model leaves out what its provider does not accept
    (split_parameters over the whole request lm-eval built)."""
    if accepted is None:
        return
    create = lm._create_payload

    def create_payload(*args, **kwargs):
        return split_parameters(create(*args, **kwargs), accepted)[0]

    lm._create_payload = create_payload


# Named protocols of `crpo-bench run --protocol`: the MuCE template of API baselines and of
# checkpoints (local and vllm: models). "paper": the CrPO paper asked its baselines with `scr`
# and its own models with `default` (experiments/evaluation/inference_lm.sh).
PROTOCOLS = {"paper": {"baseline": "scr", "checkpoint": "default"}}


def protocol_template(protocol: str, spec: "ModelSpec") -> str:
    return PROTOCOLS[protocol]["baseline" if spec.baseline else "checkpoint"]


def default_key_env(spec: "ModelSpec") -> str | None:
    """The variable whose key `spec` gets without --api-key-env: its provider's own, and only
    when the URL is that provider's host over https (not a proxy, a lookalike, a test server)."""
    provider = PROVIDERS.get(spec.provider or "")
    if provider is None or provider.host is None:
        return None
    parts = urlsplit(spec.base_url or "")
    return provider.key_env if parts.scheme == "https" and parts.hostname == provider.host else None


def is_openai(url: str | None) -> bool:
    """OpenAI's own endpoint, the only one that gets OPENAI_API_KEY by default."""
    parts = urlsplit(url or "")
    return parts.scheme == "https" and parts.hostname == OPENAI_HOST


def _prefix(what: str) -> str | None:
    head, colon, _ = what.partition(":")
    return head if colon and f"{head}:" in WHOLE_SPEC_PREFIXES else None


def check_spec(spec: str, base_url: str | None = None) -> None:
    """The cheap checks of parse_spec (NAME, endpoint URL, optional package), for every spec
    before any model folder is resolved: resolving `smollm2` converts a model on first use."""
    name, what = split_spec(spec)
    prefix = _prefix(what)
    if prefix in PROVIDERS or prefix == "litellm":
        _api_spec(name, what, spec, base_url, {})
    if prefix in EXTRAS:
        check_extra(prefix, spec)


def check_extra(backend: str, label: str) -> None:
    """An optional backend's package is installed, or the error names the extra that installs it."""
    package = EXTRAS[backend]
    if find_spec(package) is None:
        raise BenchError(f"model {label}: the {backend} backend needs the {package} package, which is not "
                         f'installed; pip install "crpo-bench[{backend}]"')


def _api_spec(name: str | None, what: str, spec: str, base_url: str | None, api: dict) -> ModelSpec:
    prefix = _prefix(what)
    model, at, url = what.removeprefix(f"{prefix}:").partition("@")
    if not model:
        raise BenchError(f"model spec {_shown(spec)!r}: no model name after {prefix}:")
    if prefix == "litellm":  # LiteLLM picks the endpoint from PROVIDER/ itself
        if at:
            raise BenchError(f"model spec {_shown(spec)!r}: litellm: takes no @URL; LiteLLM routes by PROVIDER/MODEL")
        args, url = dict(model=model, **api), None
        lm_eval_model = "litellm"
    else:
        provider = PROVIDERS[prefix]
        url = (url if at else None) or base_url
        if not url and provider.url is None:
            raise BenchError(f"model {spec!r}: an api: model needs an endpoint, api:MODEL@URL or --base-url URL")
        url = provider.endpoint(url, model) if url else provider.url
        args, lm_eval_model = dict(model=model, base_url=url, **api), provider.lm_eval_model
    derived = _safe_name(model)
    return ModelSpec(name or derived, "api", lm_eval_model, args, url,
                     renamed_from=None if name or derived == model else model, provider=prefix)


def _adapter_base(adapter: Path) -> str:
    base = json.loads(adapter.read_text()).get("base_model_name_or_path")
    if not base:
        raise BenchError(f"{adapter}: no base_model_name_or_path, so the adapter's base model is unknown")
    return base


def _vllm_args(path: str, adapter: Path, base: str | None, vllm: dict) -> dict:
    """lm-eval vllm's model_args. vLLM schedules its own batches, so batch_size is "auto";
    a LoRA adapter runs on its base model through `lora_local_path`, with `max_lora_rank`
    raised to the adapter's rank (vLLM refuses a rank above it; lm-eval's default is 16)."""
    args = dict(pretrained=path, batch_size="auto", **{k: v for k, v in vllm.items() if v is not None})
    if base is None:
        return args
    rank = json.loads(adapter.read_text()).get("r") or 0
    return dict(args, pretrained=base, lora_local_path=path, **({"max_lora_rank": rank} if rank > 16 else {}))


def parse_spec(spec: str, base_url: str | None = None, concurrency: int = 4, max_retries: int = 5,
               timeout: int = 120, batch_size: int = 8, vllm: dict | None = None) -> ModelSpec:
    """The ModelSpec of `spec` (see the module docstring). `vllm` holds the vLLM engine's
    settings (tensor_parallel_size, data_parallel_size, gpu_memory_utilization, max_model_len;
    None: lm-eval's default) for vllm: specs."""
    name, what = split_spec(spec)
    api = dict(num_concurrent=concurrency, max_retries=max_retries, timeout=timeout, tokenizer_backend=None)
    prefix = _prefix(what)
    if prefix in PROVIDERS or prefix == "litellm":
        return _api_spec(name, what, spec, base_url, api)
    from ..models import causal_lm_path, device

    local = what.removeprefix(f"{prefix}:") if prefix else what
    path = causal_lm_path(local)
    folder = Path(path)
    adapter = folder / "adapter_config.json"
    base = causal_lm_path(_adapter_base(adapter)) if adapter.is_file() else None
    if base is None and local.startswith((".", "/", "~")) and not folder.is_dir():
        raise BenchError(f"model {spec!r}: folder {path} does not exist")
    if prefix == "vllm":
        kind, args = "vllm", _vllm_args(path, adapter, base, vllm or {})
    else:
        kind, args = "hf", dict(pretrained=base or path, batch_size=batch_size, device=device(),
                                **({"peft": path} if base else {}))
    default_name = local if not folder.is_dir() or "/" not in local else folder.name  # alias, hub id, folder
    if folder.name == "merged" and folder.is_dir():
        default_name = folder.parent.name + "-merged"
    derived = _safe_name(default_name)
    return ModelSpec(name or derived, kind, kind, args,
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


_SECRETS: set[str] = set()  # the keys of this run, kept out of every log record and error message


def redact(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return text


def _redacting_factory(make_record):
    """A log record factory that blanks the keys: lm-eval logs a failed request's exception
    with repr(), and aiohttp's repr of an HTTP error carries the request headers, key included."""

    def factory(*args, **kwargs):
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a record whose args do not fit its format is left as it is
            return record
        if any(secret in message for secret in _SECRETS):
            record.msg, record.args = redact(message), ()
        if record.exc_info and _SECRETS:  # a Formatter uses exc_text as it is when set
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    return factory


def keep_secret(key: str | None) -> None:
    """From now on `key` appears in no log record of this process and no BenchError of evaluate_pair."""
    if not key:
        return
    if not _SECRETS:
        logging.setLogRecordFactory(_redacting_factory(logging.getLogRecordFactory()))
    _SECRETS.add(key)


def _key_header(spec: ModelSpec, lm, api_key: str | None) -> dict:
    """The request headers of an HTTP API model: its key (if any) in its provider's header,
    plus the API version Anthropic requires on every request."""
    provider = PROVIDERS[spec.provider or "api"]
    header = {"anthropic-version": lm.anthropic_version} if spec.provider == "anthropic" else {}
    if api_key:
        header[provider.key_header] = api_key if provider.key_header == "x-api-key" else f"Bearer {api_key}"
    return header


def _litellm_per_call(lm, api_key: str | None, timeout: int) -> None:
    """LiteLLM sends no HTTP request of lm-eval's, so headers and the session timeout do not
    reach it: the key and the timeout ride on each call's payload instead, in memory only."""
    create = lm._create_payload
    extra = {"timeout": timeout, **({"api_key": api_key} if api_key else {})}

    def create_payload(*args, **kwargs):
        return {**create(*args, **kwargs), **extra}

    lm._create_payload = create_payload


class ApiError(Exception):
    """An API request that failed, said in one line: the status and the start of the body,
    a timeout, a cut-off or non-JSON answer, an answer without choices."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after  # seconds, from a 429/503's Retry-After header


class ApiRefused(ApiError):
    """A failure no retry mends: a redirect, an HTTP 4xx other than 408, 409, 425 and 429."""


RETRIED_4XX = {408, 409, 425, 429}


def _excerpt(body: bytes | str, limit: int = 200) -> str:
    """The start of a response body on one line, keys blanked."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(redact(text).split())
    return text[:limit] + ("..." if len(text) > limit else "") or "(empty body)"


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP date: the usual backoff instead
        return None


def _check_status(status: int, headers, body: bytes, number: str) -> None:
    if 300 <= status < 400:
        # never followed: the key header would go wherever the Location points (aiohttp and
        # requests strip only Authorization on a redirect to another host, not x-api-key)
        location = re.sub(r"//[^/]*@", "//...@", re.sub(r"[?#].*", "?...", headers.get("Location") or "(none)"))
        raise ApiRefused(f"request {number}: the endpoint answered HTTP {status}, a redirect to {location}; "
                         "crpo-bench does not follow redirects of API calls (the key would go with them): give "
                         "the final URL as the endpoint")
    if status >= 400:
        message = f"request {number}: HTTP {status}: {_excerpt(body)}"
        if status < 500 and status not in RETRIED_4XX:
            raise ApiRefused(message)
        raise ApiError(message, _retry_after(headers.get("Retry-After")))


def _anthropic_generations(outputs: dict) -> list[str]:
    """One answer per Messages reply: its text blocks joined (lm-eval's parser gives one
    answer per block, which misaligns answers and prompts when a reply has two or none)."""
    return ["".join(b.get("text") or "" for b in outputs["content"] if isinstance(b, dict) and b.get("type") == "text")]


def _answers(lm, spec: ModelSpec, number: str, prompts: int, body: bytes, generate: bool, messages, ctxlen):
    """The answers of one reply, or an ApiError that says what is wrong with it."""
    from lm_eval.models.api_models import LMEVAL_MODEL_NONE_ANSWER_PLACEHOLDER

    try:
        outputs = json.loads(body)
    except ValueError:
        raise ApiError(f"the answer to request {number} is not JSON: {_excerpt(body)}") from None
    if not isinstance(outputs, dict):
        raise ApiError(f"the answer to request {number} is a JSON {type(outputs).__name__}, not an object")
    if not generate:
        return lm.parse_logprobs(outputs=outputs, tokens=messages, ctxlens=ctxlen)
    error = f" (error: {_excerpt(json.dumps(outputs['error']))})" if outputs.get("error") else ""
    if spec.provider == "anthropic":
        if not isinstance(outputs.get("content"), list):
            raise ApiError(f"{spec.provider} returned no content for request {number}{error}")
        answers = _anthropic_generations(outputs)
    else:
        choices = outputs.get("choices")
        if not isinstance(choices, list) or not choices:
            what = "an empty choices list" if isinstance(choices, list) else "no choices"
            raise ApiError(f"{spec.provider} returned {what} for request {number}{error}")
        answers = lm.parse_generations(outputs=outputs)
    if len(answers) != prompts:
        raise ApiError(f"{spec.provider} returned {len(answers)} answers for request {number}, which had "
                       f"{prompts} prompt(s)")
    return [LMEVAL_MODEL_NONE_ANSWER_PLACEHOLDER if a is None else a for a in answers]


async def _post(lm, spec: ModelSpec, session, number: str, messages, generate: bool, ctxlen, kwargs: dict):
    """One HTTP request of lm-eval's TemplateAPI, without following redirects."""
    import aiohttp

    payload = lm._create_payload(lm.create_message(messages), generate=generate, seed=lm._seed,
                                 **copy.deepcopy(kwargs))
    try:
        async with session.post(lm.base_url, json=payload, headers=lm.header, allow_redirects=False) as response:
            body = await response.read()
            status, headers = response.status, response.headers
    except TimeoutError:  # aiohttp's total timeout, the session's ClientTimeout
        raise ApiError(f"no answer to request {number} within --timeout {lm.timeout} s") from None
    except aiohttp.ClientPayloadError as err:
        raise ApiError(f"the answer to request {number} was cut off ({_excerpt(str(err))})") from None
    except aiohttp.ClientError as err:
        raise ApiError(f"request {number} failed: {type(err).__name__}: {_excerpt(str(err))}") from None
    _check_status(status, headers, body, number)
    return _answers(lm, spec, number, len(messages), body, generate, messages, ctxlen)


async def _with_retries(call, spec: ModelSpec, attempts: int, number: str):
    """`call()`, retried with lm-eval's backoff (1, 1, 2, 4, 8, 10 s ...; a Retry-After
    header's wait, up to 60 s) until `attempts` tries have failed; an ApiRefused is not retried."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except ApiRefused:
            raise
        except Exception as err:  # noqa: BLE001 -- retried, and said in one line at the end
            message = str(err) if isinstance(err, ApiError) else f"request {number}: {type(err).__name__}: {err}"
            if attempt >= attempts:
                tries = f" (tried {attempt} times)" if attempt > 1 else ""
                raise ApiError(redact(message) + tries) from None
            wait = getattr(err, "retry_after", None)
            wait = min(wait, 60.0) if wait is not None else max(1.0, min(10.0, 0.5 * 2 ** (attempt - 1)))
            log.warning("model %s: %s; retry %d of %d in %.0f s", spec.name, message, attempt, attempts - 1, wait)
            await asyncio.sleep(wait)


async def _all_or_none(coroutines: list) -> list:
    """The results of `coroutines`, run as tasks; when one fails, the others are cancelled
    and awaited before its error is raised, so no task's exception goes unretrieved
    (asyncio's "Task exception was never retrieved" tracebacks at exit)."""
    from tqdm.auto import tqdm

    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        with tqdm(total=len(tasks), desc="Requesting API") as bar:
            for next_done in asyncio.as_completed(tasks):
                await next_done
                bar.update()
        return [t.result() for t in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _harden_requests(lm, spec: ModelSpec, cache=None) -> None:
    """Every request of an API model goes through crpo-bench's own batch runner instead of
    lm-eval's (TemplateAPI.get_batched_requests, and model_call for one request at a time):
    no redirect is followed, a failed reply is said in one line (an empty `choices` list
    is an error, not a misaligned zip), and when one request fails for good its siblings are
    cancelled and awaited. `--concurrency` is the number of requests in flight. With a
    `cache` (request_cache.RequestCache), a request answered before is not sent again."""
    from lm_eval.models.utils import chunks

    limit = max(1, int(spec.model_args.get("num_concurrent") or 1))
    attempts = max(1, int(spec.model_args.get("max_retries") or 1))
    http = spec.provider != "litellm"
    if http:
        lm._concurrent = max(2, lm._concurrent)  # lm-eval's batched branch, which calls get_batched_requests

    async def get_batched_requests(requests: list, cache_keys: list, *, generate: bool = True,
                                   ctxlens: list | None = None, **kwargs) -> list:
        import aiohttp

        batches = list(zip(chunks(requests, n=lm._batch_size), chunks(cache_keys, n=lm._batch_size),
                           chunks(ctxlens or [None] * len(requests), n=lm._batch_size)))
        sem = asyncio.Semaphore(limit)
        method = "generate_until" if generate else "loglikelihood"
        cached = [_cache_key(lm, spec, messages, generate, kwargs) if cache is not None else None
                  for messages, _, _ in batches]

        async def one(index: int, messages, keys, ctxlen):
            number = f"{index + 1} of {len(batches)}"
            if cached[index] is not None:
                answers = cache.get(cached[index])
                if answers is not None:
                    return answers
            answers = await send(number, messages, keys, ctxlen)
            if cached[index] is not None:
                cache.put(cached[index], answers)
            return answers

        async def send(number: str, messages, keys, ctxlen):
            async with sem:
                if http:
                    answers = await _with_retries(
                        lambda: _post(lm, spec, session, number, messages, generate, ctxlen, kwargs),
                        spec, attempts, number)
                else:  # LiteLLM's own call (and cache hook), under our semaphore
                    return await _with_retries(
                        lambda: lm.amodel_call(session=None, sem=asyncio.Semaphore(1), messages=messages,
                                               cache_keys=keys, generate=generate, ctxlens=ctxlen,
                                               **copy.deepcopy(kwargs)),
                        spec, attempts, number)
            for answer, key in zip(answers, keys or []):
                lm.cache_hook.add_partial(method, key, answer)
            return answers

        connector = aiohttp.TCPConnector(limit=limit, ssl=lm.verify_certificate)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=lm.timeout)) as session:
            return await _all_or_none([one(i, *batch) for i, batch in enumerate(batches)])

    lm.get_batched_requests = get_batched_requests


def _cache_key(lm, spec: ModelSpec, messages, generate: bool, settings: dict) -> str:
    """The request's key in the cache: its content plus how many identical requests of this
    task came before it (`evaluate_pair` starts the count for each task)."""
    from .request_cache import RequestCache

    endpoint = {"provider": spec.provider, "model": spec.model_args.get("model"), "url": spec.base_url}
    scope = getattr(lm, "_crpo_scope", "")
    base = RequestCache.key(endpoint, scope, messages, generate, settings, 0)
    if not hasattr(lm, "_crpo_seen"):
        lm._crpo_seen = {}
    seen = lm._crpo_seen
    occurrence = seen.get(base, 0)
    seen[base] = occurrence + 1
    return RequestCache.key(endpoint, scope, messages, generate, settings, occurrence)


def build_lm(spec: ModelSpec, api_key: str | None = None, cache=None):
    """lm-eval's model. An API model's key is set here, on the object in memory: lm-eval
    itself would send OPENAI_API_KEY (or an empty bearer token) to every endpoint."""
    from lm_eval.api.registry import get_model

    for backend in (spec.kind, spec.provider):
        if backend in EXTRAS:
            check_extra(backend, spec.name)
    keep_secret(api_key)
    lm = get_model(spec.lm_eval_model).create_from_arg_obj(dict(spec.model_args))
    _send_only_accepted(lm, accepted_parameters(spec))  # before LiteLLM's key and timeout are laid on
    if spec.provider == "litellm":
        _litellm_per_call(lm, api_key, spec.model_args.get("timeout", 120))
    elif spec.baseline:
        # TemplateAPI.header is a cached_property, so the instance attribute wins; without a
        # key no Authorization / x-api-key header is sent at all
        lm.header = _key_header(spec, lm, api_key)
    if spec.baseline:
        _harden_requests(lm, spec, cache)
    return lm


def evaluate_pair(lm, spec: ModelSpec, task: str, limit: int | None, gen_kwargs: dict | None, manager,
                  chat_template: bool = True) -> dict:
    """One (model, task) through lm-eval; chat models get the chat template (API models always)."""
    import lm_eval

    try:  # the request cache counts identical requests per task (a rerun replays the task's order)
        lm._crpo_scope, lm._crpo_seen = task, {}
    except AttributeError:
        pass  # an object that takes no attributes has no request cache either
    try:
        return lm_eval.simple_evaluate(
            model=lm, tasks=[task], task_manager=manager, limit=limit, gen_kwargs=gen_kwargs or None,
            apply_chat_template=chat_template, log_samples=True,
        )
    except Exception as err:
        where = f" at {spec.base_url}" if spec.base_url else ""
        what = str(err) if isinstance(err, ApiError) else f"{type(err).__name__}: {err}"
        # one line: the CLI prints it as its one error line
        raise BenchError(redact(" ".join(f"model {spec.name}{where}, task {task}: {what}".split()))) from err


def _one_or_each(values: dict):
    """A value shared by every task of a result as itself, else the task -> value map (None if none)."""
    distinct = {json.dumps(v, sort_keys=True) for v in values.values()}
    return next(iter(values.values())) if len(distinct) == 1 else (values or None)


def write_pair(out: Path, spec: ModelSpec, task: str, evaluation: dict, gen_kwargs: dict | None = None) -> Path:
    """`task`'s result (a group such as muce_paper: each of its tasks) with what crpo-bench knows:
    the model, the MuCE template (and protocol) of the row, and per task and decoding setting what
    was asked, sent and dropped (`dropped_settings`; the settings where something was dropped also
    go into each task's metric card). `gen_kwargs`: the run's --gen-kwargs."""
    from lm_eval.utils import handle_non_serializable

    samples = evaluation.pop("samples", {}) or {}
    configs = evaluation.get("configs", {}) or {}
    dropped, templates, protocols = {}, {}, {}
    for name, config in configs.items():
        dropped[name] = decoding_record(spec, config, gen_kwargs)
        card = (config.get("metadata") or {}).get("card")
        if isinstance(card, dict):
            card["dropped_settings"] = [r for r in dropped[name] if r["dropped"]]
            templates[name] = card.get("row_template") or card.get("template")
            protocols[name] = card.get("protocol")
    card = ((configs.get(task) or {}).get("metadata") or {}).get("card")
    evaluation["crpo_bench"] = {"model": spec.name, "kind": spec.kind, "baseline": spec.baseline, "task": task,
                                "model_args": dict(spec.model_args), "template": _one_or_each(templates),
                                "protocol": _one_or_each(protocols),
                                "accepted_parameters": sorted(a) if (a := accepted_parameters(spec)) else None,
                                "dropped_settings": dropped, "card": card}
    path = result_path(out, spec.name, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a group's samples are its tasks' (each sample's doc names its task)
    rows = [json.loads(json.dumps(s, default=handle_non_serializable))
            for s in (samples[task] if task in samples else [s for each in samples.values() for s in each])]
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

