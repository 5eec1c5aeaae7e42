"""`crpo-bench serve MODEL [--port N]`: a local OpenAI-compatible chat endpoint."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve a local model behind an OpenAI-compatible /v1/chat/completions",
        description="Serve a causal LM (hub id, local folder, or 'smollm2' for the packaged default) "
        "on http://HOST:PORT/v1/chat/completions until interrupted.")
    p.add_argument("model", nargs="?", default=None, help="model to serve (default: packaged SmolLM2-135M-Instruct)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    p.add_argument("--seed", type=int, help="seed requests that carry none, reproducibly (see crpo_bench/serve.py)")


def run(args: argparse.Namespace) -> int:
    from ..serve import make_server

    server = make_server(args.model, args.host, args.port, args.seed)
    host, port = server.server_address[:2]
    print(f"serving {args.model or 'smollm2'} at http://{host}:{port}/v1/chat/completions", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
