"""A small OpenAI-compatible chat endpoint for a local causal LM, on 127.0.0.1.

`crpo-bench serve MODEL` puts any local model behind `/v1/chat/completions`, so tests
and demos can exercise the API-baseline path (lm-eval's `local-chat-completions`) with
real HTTP and no network. One request generates at a time; a request's `seed` is
honoured (an integer gives reproducible samples, null or absent gives fresh ones).

With a server seed (`--seed N`), a request without a seed of its own is seeded from N,
its content and how many identical requests came before it: the n-th repeat of a prompt
always gets the same sample, whatever order concurrent clients send them in, so an
"API baseline" run is reproducible (the demo and CI's regression gate rely on it).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .models import load_causal_lm


class ChatModel:
    """Chat-template a conversation, sample a reply."""

    def __init__(self, name: str | None, seed: int | None = None):
        self.model, self.tokenizer = load_causal_lm(name)
        self.name = name or "smollm2"
        self.lock = threading.Lock()
        self.seed = seed
        self.seen: dict[str, int] = {}  # request content -> how many times it was asked

    def request_seed(self, content: dict) -> int:
        """The server seed's seed for this request (call under the lock)."""
        key = json.dumps(content, sort_keys=True)
        repeat = self.seen.get(key, 0)
        self.seen[key] = repeat + 1
        digest = hashlib.sha256(f"{self.seed}|{repeat}|{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % (2**63)

    def reply(self, messages: list[dict], max_tokens: int = 256, temperature: float = 1.0,
              top_p: float = 1.0, top_k: int | None = None, seed: int | None = None,
              stop: list[str] | None = None) -> tuple[str, str, int, int]:
        """(text, finish_reason, prompt tokens, completion tokens)."""
        import torch

        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            prompt = "\n".join(m["content"] for m in messages) + "\n"
        ids = tok(prompt, add_special_tokens=not getattr(tok, "chat_template", None),
                  return_tensors="pt")["input_ids"].to(self.model.device)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 \
            else {"do_sample": False}
        if top_k is not None and temperature > 0:
            sampling["top_k"] = top_k
        with self.lock, torch.no_grad():
            if seed is None and self.seed is not None:
                seed = self.request_seed({"messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                                          "top_p": top_p, "top_k": top_k})
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                                      pad_token_id=tok.pad_token_id or tok.eos_token_id, **sampling)
        new = out[0, ids.shape[1]:]
        text = tok.decode(new, skip_special_tokens=True)
        finish = "length" if len(new) >= max_tokens and new[-1] != tok.eos_token_id else "stop"
        for s in stop or []:
            if s and s in text:
                text, finish = text[: text.index(s)], "stop"
        return text, finish, int(ids.shape[1]), int(len(new))


def completion_response(model: str, text: str, finish: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class BadRequest(ValueError):
    pass


def parse_request(body: bytes) -> dict:
    """The generation arguments of a chat-completions request, or BadRequest naming the field."""
    try:
        request = json.loads(body or b"null")
    except json.JSONDecodeError as err:
        raise BadRequest(f"request body is not JSON: {err.msg}") from None
    if not isinstance(request, dict):
        raise BadRequest("request body must be a JSON object")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str) and isinstance(m.get("role"), str)
            for m in messages):
        raise BadRequest("'messages' must be a non-empty list of {role, content} objects with string values")
    stop = request.get("stop")
    return {
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "max_tokens": int(request.get("max_completion_tokens") or request.get("max_tokens") or 256),
        "temperature": float(request.get("temperature", 1.0)),
        "top_p": float(request.get("top_p", 1.0)),
        "top_k": request.get("top_k"),
        "seed": request.get("seed"),
        "stop": [stop] if isinstance(stop, str) else stop,
    }


def make_handler(chat: ChatModel):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": "invalid_request_error", "code": status}})

        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": chat.name, "object": "model"}]})
            else:
                self._error(404, f"no such endpoint: GET {self.path}")

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                return self._error(404, f"no such endpoint: POST {self.path}")
            try:
                args = parse_request(body)
            except (BadRequest, TypeError, ValueError) as err:
                return self._error(400, str(err))
            text, finish, n_prompt, n_completion = chat.reply(**args)
            self._send(200, completion_response(chat.name, text, finish, n_prompt, n_completion))

        def log_message(self, fmt, *args):  # quiet: the request log would drown progress bars
            pass

    return Handler


def make_server(model: str | None, host: str = "127.0.0.1", port: int = 0,
                seed: int | None = None) -> ThreadingHTTPServer:
    """A server bound to host:port (0 = any free port); call serve_forever() to run it."""
    return ThreadingHTTPServer((host, port), make_handler(ChatModel(model, seed)))
