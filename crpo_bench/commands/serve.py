"""`crpo-bench serve MODEL [--port N]`: a local OpenAI-compatible chat endpoint."""

from __future__ import annotations

import argparse
import ipaddress
import sys
import threading


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= threading.TIMEOUT_MAX:  # a lock's wait refuses more (and nan, inf)
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text}")
    return value


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve a local model behind an OpenAI-compatible /v1/chat/completions",
        description="Serve a causal LM (hub id, local folder, or 'smollm2' for the packaged default) "
        "on http://HOST:PORT/v1/chat/completions until interrupted. Each request's cost is capped "
        "(body, prompt, new tokens, samples); a generation stops when its client disconnects; requests "
        "queue for the model and get HTTP 503 after --queue-timeout.")
    p.add_argument("model", nargs="?", default=None, help="model to serve (default: packaged SmolLM2-135M-Instruct)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    p.add_argument("--seed", type=int, help="seed requests that carry none, reproducibly (see crpo_bench/run/serve.py)")
    limits = p.add_argument_group("limits per request (CONTEXT: the model's positions)")
    limits.add_argument("--max-body-bytes", type=positive_int, metavar="N",
                        help="largest request body (default: 32 x CONTEXT, at least 65536)")
    limits.add_argument("--max-prompt-tokens", type=positive_int, metavar="N",
                        help="longest chat-templated prompt (default and most: CONTEXT - 1)")
    limits.add_argument("--max-tokens", type=positive_int, metavar="N",
                        help="most new tokens per sample; a larger max_tokens is cut to it, and to CONTEXT minus "
                        "the prompt, with finish_reason 'length' (default: CONTEXT)")
    limits.add_argument("--max-n", type=positive_int, default=8, metavar="N",
                        help="most samples per request ('n'; default 8)")
    limits.add_argument("--queue-timeout", type=positive_seconds, default=60.0, metavar="SECONDS",
                        help="longest wait for the model before answering 503 (default 60)")


def warn_if_exposed(host: str) -> None:
    """Anyone who reaches a non-loopback address can use the model: there is no authentication."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        print(f"warning: bound to {host}, reachable from other machines; the endpoint has no authentication",
              file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from ..run.serve import Limits, make_server

    limits = Limits(max_body_bytes=args.max_body_bytes, max_prompt_tokens=args.max_prompt_tokens,
                    max_tokens=args.max_tokens, max_n=args.max_n, queue_timeout=args.queue_timeout)
    server = make_server(args.model, args.host, args.port, args.seed, limits)
    host, port = server.server_address[:2]
    warn_if_exposed(host)
    print(f"serving {args.model or 'smollm2'} at http://{host}:{port}/v1/chat/completions", flush=True)
    lim = server.chat.limits
    print(f"limits: body {lim.max_body_bytes} bytes, prompt {lim.max_prompt_tokens} tokens, {lim.max_tokens} new "
          f"tokens (context {server.chat.context}), n {lim.max_n}, queue timeout {lim.queue_timeout:g} s", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
