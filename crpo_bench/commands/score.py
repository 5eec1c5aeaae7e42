"""`crpo-bench score INPUT.jsonl -o OUTPUT.jsonl`: score every response of a JSONL file."""

from __future__ import annotations

import argparse
import json
import os
import sys

from tabulate import tabulate

from ..scoring import registry
from ..stats.aggregate import summarize
from ..scoring.card import card_path, metric_card
from ..jsonl import (InputError, check_finite, check_writable, read_jsonl, write_jsonl_atomic,
                     write_text_atomic)
from ..scoring import (DEGENERATE_POLICIES, PROFILES, Scorer, add_device_options, default_metrics,
                       profile_config)
from ..text import TOKENIZERS

SCOPES = ("task", "prompt", "all")
STRING_FIELDS = ("response", "prompt", "task", "item")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "score",
        help="score the responses of a JSONL file",
        description="Score each row's `response` (rows may also carry `prompt`, `task`, `id`). "
        "Writes the rows plus one field per metric and `degenerate`, and prints a per-task summary. "
        "An `item` field (the object or concept a test asks about) serves semantic_distance and originality.",
    )
    p.add_argument("input", help="JSONL, one object per line with a string `response`")
    p.add_argument("-o", "--output", required=True, help="output JSONL (written atomically)")
    known = registry.scorer_metrics()
    p.add_argument("--metrics", nargs="+", choices=known, metavar="METRIC",
                   help=f"metrics to compute (default: all offline ones, plus quality with --reward-model): {', '.join(known)}")
    p.add_argument("--scope", choices=SCOPES, default="task",
                   help="which responses form a corpus: same task (default), same task and prompt, or all rows")
    # Model, word and policy flags default to None: "not given", so the profile decides.
    p.add_argument("--profile", choices=PROFILES, default="offline",
                   help="offline (default): packaged models, regex words, surprise of the response tokens; "
                   "paper: the CrPO paper's setup (jina-embeddings-v3, spaCy words, whole-chat surprise under "
                   "gemma-2-27b-it, Skywork reward). Explicit flags below override the profile")
    p.add_argument("--embedder", help="sentence embedder: hub id or local folder (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--lm", help="causal LM for surprise: hub id or local folder (default: packaged SmolLM2-135M-Instruct)")
    p.add_argument("--reward-model", help="sequence-classification reward model for quality: hub id or local folder; "
                   "'none' for no quality where the profile names a reward model")
    p.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="allow models that ship their own Python code (jina-embeddings-v3 does); refused without it")
    p.add_argument("--degenerate", choices=DEGENERATE_POLICIES,
                   help="exclude (default): degenerate answers leave every corpus and score 0; "
                   "reference_compat: score them like the paper's code")
    p.add_argument("--tokenizer", choices=TOKENIZERS,
                   help="word tokenizer for DSI, novelty, n-grams (default: regex; spacy in the paper profile)")
    add_device_options(p)
    p.add_argument("--no-cache", action="store_true", help="do not read or write the on-disk embedding cache")
    p.add_argument("--max-response-chars", type=int, default=10_000, metavar="N",
                   help="score each answer's first N characters (rows cut short get `truncated_at`; the card "
                        "records N); bounds memory and time (default 10000, about 2,300 tokens)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def check_row(row: dict, where: str) -> None:
    """Field types, and numbers strict JSON can write back (every field is copied to the output)."""
    if "response" not in row:
        raise InputError(f"{where}: missing field 'response'")
    for name in STRING_FIELDS:
        if name in row and not (isinstance(row[name], str) or (name != "response" and row[name] is None)):
            raise InputError(f"{where}: field {name!r} must be a string, got {type(row[name]).__name__}")
    # bool is an int to Python, but true/false are not ids
    if "id" in row and (not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool)):
        raise InputError(f"{where}: field 'id' must be a string or an integer, got {type(row['id']).__name__}")
    check_finite(row, where)


def read_rows(path: str) -> list[dict]:
    rows, first_line_of_id = [], {}
    for lineno, row in read_jsonl(path):
        check_row(row, f"{path}:{lineno}")
        if "id" in row:
            # keyed with the type: 1 and "1" are different JSON values, as in the output
            key = (type(row["id"]), row["id"])
            if key in first_line_of_id:
                raise InputError(f"{path}:{lineno}: field 'id': duplicate id {row['id']!r}, "
                                 f"first on line {first_line_of_id[key]}")
            first_line_of_id[key] = lineno
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no rows to score")
    return rows


def check_outputs(output: str) -> None:
    """The output and its card must be writable before any model is loaded or row scored."""
    check_writable(output, "output")
    check_writable(card_path(output), "metric card")


def corpus_key(row: dict, scope: str):
    if scope == "task":
        return row.get("task")
    if scope == "prompt":
        return (row.get("task"), row.get("prompt"))
    return None


def run(args: argparse.Namespace) -> int:
    rows = read_rows(args.input)
    check_outputs(args.output)
    if args.quiet:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    config = profile_config(
        args.profile, embedder=args.embedder, lm=args.lm, reward_model=args.reward_model,
        trust_remote_code=args.trust_remote_code, degenerate=args.degenerate, tokenizer=args.tokenizer,
        embedding_cache=not args.no_cache, progress=not args.quiet, max_response_chars=args.max_response_chars,
        device=args.device, dtype=args.dtype,
    )
    metrics = args.metrics or default_metrics(config)
    item_metrics = [m for m in metrics if "item" in registry.REGISTRY[m].needs]
    if not args.metrics and item_metrics and any(r.get("item") is None and r.get("prompt") is None for r in rows):
        metrics = tuple(m for m in metrics if m not in item_metrics)
        print(f"note: {', '.join(item_metrics)} left out: some rows have neither `item` nor `prompt`", file=sys.stderr)
    result = Scorer(config).score(
        [r["response"] for r in rows],
        corpus_ids=[corpus_key(r, args.scope) for r in rows],
        prompts=[r.get("prompt") for r in rows],
        metrics=metrics,
        items=[r.get("item") for r in rows],
        tasks=[r.get("task") for r in rows],
    )
    scored = [{**row, **scores} for row, scores in zip(rows, result.rows)]
    write_jsonl_atomic(args.output, scored)
    card = metric_card(config, surprise="surprise" in metrics, profile=args.profile, corpus=args.scope,
                       metrics=list(metrics))
    write_text_atomic(card_path(args.output), json.dumps(card, indent=1) + "\n")

    fields = [f for m in metrics for f in registry.REGISTRY[m].fields]
    summary = summarize(scored, fields, lambda r: r.get("task") or "-",
                        include_degenerate=config.degenerate == "reference_compat")
    table = [[task, s["n"], s["degenerate"], *(s[f] for f in fields)] for task, s in sorted(summary.items())]
    print(tabulate(table, headers=["task", "n", "degenerate", *fields], floatfmt=".4f", missingval="-"))
    print(f"wrote {len(scored)} rows to {args.output} and its metric card to {card_path(args.output)}",
          file=sys.stderr)
    return 0
