"""`crpo-bench run`: several models (checkpoints, adapters, API baselines) on several tasks."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..run import runner as bench
from ..run.request_cache import RequestCache


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("run", help="evaluate models x tasks with lm-eval; resumable",
                              description=bench.__doc__)
    p.add_argument("--model", nargs="+", action="extend", required=True, metavar="SPEC",
                   help="[NAME=]PATH|HUB_ID|smollm2|vllm:PATH_OR_HUB_ID|openai:MODEL[@URL]|anthropic:MODEL[@URL]|"
                        "gemini:MODEL[@URL]|api:MODEL[@URL]|litellm:PROVIDER/MODEL; repeatable")
    p.add_argument("--tasks", nargs="+", required=True, help="crpo-bench task names (muce_aut, noveltybench, ...)")
    p.add_argument("--out", default="leaderboard/results", help="results folder (default leaderboard/results)")
    p.add_argument("--limit", type=int, help="documents per task (smoke runs, demos)")
    p.add_argument("--gen-kwargs", help="generation settings for every task, JSON, e.g. '{\"max_gen_toks\": 64}'")
    p.add_argument("--metadata", help="task settings, JSON (muce_data, lm, reward_model, ...); see README")
    p.add_argument("--template", nargs="+", action="extend", metavar="[NAME=]TEMPLATE",
                   help="MuCE template (default, scr, short_response, constrained_response) of every model, "
                        "or NAME=TEMPLATE of one model of the run (e.g. gpt=scr); recorded per result")
    p.add_argument("--protocol", choices=tuple(bench.PROTOCOLS),
                   help="a named protocol: paper = template scr for API baselines, default for checkpoints "
                        "(the paper's comparison); the cards record it, so its rows rank in one table")
    p.add_argument("--profile", choices=("offline", "paper"),
                   help="scoring profile of every task (metadata key profile); default offline")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="let scorer models that ship their own code run it (jina-embeddings-v3 under --profile paper)")
    p.add_argument("--base-url", help="endpoint for api:, openai:, anthropic: and gemini: specs without @URL")
    p.add_argument("--api-key-env", metavar="NAME",
                   help="environment variable holding the key for every API model of the run; without it "
                        "each provider's own host gets its own variable (OPENAI_API_KEY, ANTHROPIC_API_KEY, "
                        "GEMINI_API_KEY) and other endpoints none; never written")
    p.add_argument("--concurrency", type=int, default=4, help="concurrent API requests per model (4)")
    p.add_argument("--max-retries", type=int, default=5, help="attempts per API request, with backoff (5)")
    p.add_argument("--timeout", type=int, default=120, help="seconds per API request (120)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size of local models (8)")
    p.add_argument("--no-chat-template", action="store_true",
                   help="send raw prompts to local models (base models without a chat template)")
    vllm = p.add_argument_group("vllm: models", "the vLLM engine of vllm: specs; unset: lm-eval's default")
    vllm.add_argument("--tensor-parallel-size", type=int, metavar="N", help="GPUs one model copy is split over (1)")
    vllm.add_argument("--data-parallel-size", type=int, metavar="N", help="model copies, each on its own GPUs (1)")
    vllm.add_argument("--gpu-memory-utilization", type=float, metavar="F",
                      help="share of each GPU's memory vLLM may take (0.9)")
    vllm.add_argument("--max-model-len", type=int, metavar="N", help="longest prompt + answer in tokens (the model's)")


def _json_arg(text: str | None, flag: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise bench.BenchError(f"{flag}: not JSON ({err})") from None
    if not isinstance(value, dict):
        raise bench.BenchError(f"{flag}: expected a JSON object")
    return value


def _api_keys(specs, env_name: str | None) -> dict[str, str | None]:
    """The key each API model sends, by model name, kept in this process's memory only.
    A provider's own variable (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY) is the
    default only for that provider's own host: a custom endpoint (a local server, a proxy,
    a mistyped host) must not receive it unasked. LiteLLM reads its providers' variables
    itself, so a litellm: model gets a key from us only through --api-key-env."""
    api = [s for s in specs if s.baseline]
    if not api:
        return {}
    if env_name is not None and not os.environ.get(env_name):
        raise bench.BenchError(f"--api-key-env {env_name}: that environment variable is not set or is empty")
    keys: dict[str, str | None] = {}
    for spec in api:
        default = bench.default_key_env(spec)
        keys[spec.name] = os.environ[env_name] if env_name is not None else default and os.environ.get(default)
    _need_keys(api, keys)
    for spec in api:
        if not keys[spec.name] and spec.base_url:
            print(f"model {spec.name}: no API key sent to {spec.base_url} ({_own_key_rule(spec)}; "
                  "pass --api-key-env NAME to send one)")
    return keys


def _need_keys(api, keys: dict) -> None:
    """A provider's own host answers nothing without a key: stop before any request."""
    missing: dict[str, list[str]] = {}
    for spec in api:
        default = bench.default_key_env(spec)
        if default and not keys[spec.name]:
            missing.setdefault(default, []).append(spec.name)
    for env, names in missing.items():
        host = next(p.host for p in bench.PROVIDERS.values() if p.key_env == env)
        raise bench.BenchError(f"model(s) {names} at {host} need an API key: set {env} or pass --api-key-env NAME")


def _own_key_rule(spec) -> str:
    provider = bench.PROVIDERS[spec.provider or "api"]
    if provider.key_env is None:
        return "provider keys go only to their providers' own hosts"
    return f"{provider.key_env} goes only to {provider.host}"


def _parse_specs(args) -> list:
    """Every spec's NAME and URL are checked before any is resolved: resolving a model
    folder can be slow (`smollm2` is converted on first use)."""
    for text in args.model:
        bench.check_spec(text, args.base_url)
    vllm = dict(tensor_parallel_size=args.tensor_parallel_size, data_parallel_size=args.data_parallel_size,
                gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=args.max_model_len)
    specs = [bench.parse_spec(s, args.base_url, args.concurrency, args.max_retries, args.timeout, args.batch_size,
                              vllm) for s in args.model]
    for spec, text in zip(specs, args.model):
        if spec.renamed_from:  # say so: the results folder is not the text that was given
            print(f"model {text!r}: results under {spec.name}/ (a name is {bench.NAME_RULE}; "
                  "choose one with NAME=SPEC)")
    return specs


def _templates(args, specs, metadata: dict) -> dict[str | None, str]:
    """--template as {model name or None (every model): template}, checked before any work."""
    from ..muce.prompts import TEMPLATES

    given = args.template or []
    if "protocol" in metadata:  # the card's compared template follows it: set only with the templates it names
        raise bench.BenchError("--metadata: protocol is set by --protocol NAME, which gives each model its template")
    if args.protocol and (given or "template" in metadata):
        where = "--template" if given else "--metadata's template"
        raise bench.BenchError(f"--protocol {args.protocol} gives each model its template "
                               f"({bench.PROTOCOLS[args.protocol]}); {where} would contradict it: "
                               "give one or the other")
    names = {s.name for s in specs}
    templates: dict[str | None, str] = {}
    for text in given:
        name, eq, template = text.rpartition("=")
        key = name if eq else None
        if template not in TEMPLATES:
            raise bench.BenchError(f"--template {text!r}: MuCE template {template!r}: choose one of "
                                   f"{', '.join(TEMPLATES)}")
        if eq and name not in names:
            raise bench.BenchError(f"--template {text!r}: no model named {name!r} in this run "
                                   f"(models: {', '.join(sorted(names))})")
        if key in templates and templates[key] != template:
            raise bench.BenchError(f"--template: two templates for {name or 'every model'!r}")
        templates[key] = template
    return templates


def _model_metadata(metadata: dict, spec, templates: dict, protocol: str | None) -> dict:
    """The task metadata of one model: its template (--template NAME=, --template, --protocol)."""
    if protocol:
        return {**metadata, "template": bench.protocol_template(protocol, spec), "protocol": protocol}
    template = templates.get(spec.name, templates.get(None))
    return {**metadata, "template": template} if template else metadata


def run(args) -> int:
    from tqdm.auto import tqdm

    gen_kwargs, metadata = _json_arg(args.gen_kwargs, "--gen-kwargs"), _json_arg(args.metadata, "--metadata")
    if args.profile:
        metadata = {**(metadata or {}), "profile": args.profile}
    if args.trust_remote_code:
        metadata = {**(metadata or {}), "trust_remote_code": True}
    for task in args.tasks:  # before any model is resolved
        bench.check_name("task", task, "--tasks")
    specs = _parse_specs(args)
    templates = _templates(args, specs, metadata)
    keys = _api_keys(specs, args.api_key_env)
    out = Path(args.out)
    todo = bench.plan(specs, args.tasks, out)
    manager = bench.task_manager(metadata)
    managers = {json.dumps(metadata, sort_keys=True, default=str): manager}  # one per model metadata (template)

    def manager_of(spec):
        meta = _model_metadata(metadata, spec, templates, args.protocol)
        key = json.dumps(meta, sort_keys=True, default=str)
        if key not in managers:
            managers[key] = bench.task_manager(meta)
        return managers[key]

    unknown = [t for t in args.tasks if t not in manager.all_tasks]
    if unknown:
        raise bench.BenchError(f"unknown task(s) {unknown}; crpo-bench has {len(manager.all_tasks)} tasks, "
                               "e.g. muce_aut, muce_poems, noveltybench_curated")
    for spec, task in todo.done:
        print(f"skip {spec.name} / {task}: done ({bench.result_path(out, spec.name, task)})")
    by_model: dict[str, list[str]] = {}
    for spec, task in todo.todo:
        by_model.setdefault(spec.name, []).append(task)
    with tqdm(total=len(todo.todo), desc="models x tasks", unit="pair") as bar:
        for spec in specs:
            if spec.name not in by_model:
                continue
            if spec.base_url:
                bench.check_endpoint(spec)
            # an API model's answers are kept as they arrive: a rerun after a crash resends none of them
            cache = RequestCache(bench.result_path(out, spec.name, "requests").with_suffix(".sqlite")) \
                if spec.baseline else None
            lm = bench.build_lm(spec, keys.get(spec.name), cache)
            for task in by_model[spec.name]:
                bar.set_postfix_str(f"{spec.name} / {task}")
                start, hits = time.perf_counter(), cache.hits if cache is not None else 0
                evaluation = bench.evaluate_pair(lm, spec, task, args.limit, gen_kwargs, manager_of(spec),
                                                 chat_template=spec.baseline or not args.no_chat_template)
                path = bench.write_pair(out, spec, task, evaluation, gen_kwargs)
                reused = (f", {cache.hits - hits} request(s) answered from {cache.path}"
                          if cache is not None and cache.hits > hits else "")
                tqdm.write(f"{spec.name} / {task}: {time.perf_counter() - start:.0f} s -> {path}{reused}")
                bar.update()
            del lm
    print(f"{len(todo.todo)} pair(s) run, {len(todo.done)} skipped; results in {out}")
    return 0
