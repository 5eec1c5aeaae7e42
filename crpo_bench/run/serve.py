"""A small OpenAI-compatible chat endpoint for a local causal LM, on 127.0.0.1.

`crpo-bench serve MODEL` puts any local model behind `/v1/chat/completions`, so tests
and demos can exercise the API-baseline path (lm-eval's `local-chat-completions`) with
real HTTP and no network. A request's `seed` is honoured (an integer gives reproducible
samples, null or absent gives fresh ones).

With a server seed (`--seed N`), a request without a seed of its own is seeded from N,
its content and how many identical requests came before it: the n-th repeat of a prompt
always gets the same sample, whatever order concurrent clients send them in, so an
"API baseline" run is reproducible (the demo and CI's regression gate rely on it). A
request that never produced an answer (refused, cancelled, failed) does not count.

One request costs bounded work (`Limits`): the body, the prompt and the new tokens are
capped, a generation stops as soon as its client disconnects, and requests are accepted
concurrently but queue for the model, answering 503 when the wait exceeds the queue timeout.
Every invalid field gets HTTP 400 with a JSON error naming it (`error.param`): integers are
bounded (and read without converting thousands of digits), numbers must be finite, text must
be valid Unicode (no lone surrogates). A temperature below MIN_SAMPLING_TEMPERATURE is greedy
decoding, as 0 is (dividing logits by 1e-300 gives inf/nan probabilities). A burst of
clients waits in a listen backlog of LISTEN_BACKLOG connections, not socketserver's 5, so
it is queued (or answered 503 past the queue timeout) rather than reset.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import select
import socket
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, NamedTuple

from ..models import load_causal_lm

MIN_BODY_BYTES = 64 * 1024
# JSON-escaped text runs to ~4 bytes per token in English and ~12 in escaped non-Latin
# scripts; 32 per position of the context leaves room for that and the message framing.
BODY_BYTES_PER_TOKEN = 32
# An over-long body is read and dropped up to this much before the 413 goes out, so the
# client, still sending, is not reset before it can read the answer; beyond it we just close.
DRAIN_LIMIT = 16 * 1024 * 1024
MAX_STOP_SEQUENCES = 4  # as OpenAI's API
DEFAULT_MAX_TOKENS = 256
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.manual_seed accepts
MAX_TOKENS_FIELD = 2**31 - 1  # most max_tokens / max_completion_tokens / top_k a request may ask for
# Below this a temperature is greedy decoding: dividing logits by 1e-300 overflows to inf and
# sampling fails; at 1e-4 sampling already picks the most likely token unless another's logit
# is within ~1e-3 of it (odds exp(-gap / temperature)), so greedy is what such a request meant.
MIN_SAMPLING_TEMPERATURE = 1e-4
# An integer literal longer than this is not converted (Python refuses over 4300 digits, and
# converting is quadratic below that): its field gets 400. The widest valid one, a seed, has 20.
MAX_INT_DIGITS = 64
# Connections waiting to be accepted (the kernel caps it at net.core.somaxconn); socketserver's
# default, 5, reset 4-21 of 50 simultaneous clients.
LISTEN_BACKLOG = 1024


@dataclass(frozen=True)
class Limits:
    """What one request may cost; None picks the default that fits the model's context."""

    max_body_bytes: int | None = None
    max_prompt_tokens: int | None = None
    max_tokens: int | None = None
    max_n: int = 8
    queue_timeout: float = 60.0

    def fit(self, context: int) -> Limits:
        """These limits for a model of `context` positions: defaults filled in, the prompt
        cap kept below the context so that at least one new token fits."""
        return replace(
            self,
            max_body_bytes=self.max_body_bytes or max(MIN_BODY_BYTES, BODY_BYTES_PER_TOKEN * context),
            max_prompt_tokens=min(self.max_prompt_tokens or context, context - 1),
            max_tokens=min(self.max_tokens or context, context),
        )


def token_budget(requested: int, prompt_tokens: int, context: int, cap: int) -> int:
    """New tokens to generate: the request's max_tokens, at most the server's cap and what
    the context has left after the prompt (an over-long request ends with finish_reason "length")."""
    return max(0, min(requested, cap, context - prompt_tokens))


def context_length(model, tokenizer) -> int:
    """How many positions the model attends over: its config's, else the tokenizer's."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 1:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 1 < limit < 10**7:  # tokenizers without a limit say ~1e30
        return limit
    return 2048  # unknown: a size most causal LMs handle


# --- errors ------------------------------------------------------------------------


class RequestError(Exception):
    """An answer other than 200: the HTTP status, a message, and the request field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param


class BadRequest(RequestError):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(400, message, param)


class ClientGone(Exception):
    """The client closed its connection: nobody is left to answer."""


# --- request validation ------------------------------------------------------------


class LongInteger:
    """A JSON integer literal of more than MAX_INT_DIGITS digits, left unconverted: always invalid."""

    def __init__(self, literal: str):
        self.digits = len(literal.lstrip("-"))

    def __str__(self) -> str:
        return f"a {self.digits}-digit integer"


def _json_int(literal: str):
    return int(literal) if len(literal) <= MAX_INT_DIGITS else LongInteger(literal)


def _shown(value) -> str:
    """A request value as JSON, cut short: error messages quote what was sent, not all of it."""
    if isinstance(value, LongInteger):
        return str(value)
    try:
        text = json.dumps(value, default=str)
    except (ValueError, TypeError, RecursionError):
        text = f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _text(value: str, field: str) -> str:
    """`value` when it is Unicode text; a lone surrogate (JSON "\\ud800", which no encoder
    or tokenizer takes) gets BadRequest naming the field."""
    bad = None if value.isascii() else _SURROGATE.search(value)
    if bad:
        raise BadRequest(f"'{field}' is not valid Unicode: it holds a lone surrogate "
                         f"(\\u{ord(bad.group()):04x}) at character {bad.start()}", field)
    return value


def _integer(request: dict, field: str, default: int | None, low: int, high: int | None = None) -> int | None:
    """request[field] as an integer in [low, high]; null or absent gives `default`."""
    value = request.get(field)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():  # 8.0 is JSON's spelling of 8 for some clients
        value = int(value)
    bounds = f"at least {low}" if high is None else f"between {low} and {high}"
    if isinstance(value, LongInteger):
        raise BadRequest(f"'{field}' must be {bounds}, not {value}", field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{field}' must be an integer, not {_shown(value)}", field)
    if value < low or (high is not None and value > high):
        raise BadRequest(f"'{field}' must be {bounds}, not {_shown(value)}", field)
    return value


def _number(request: dict, field: str, default: float, low: float, high: float) -> float:
    """request[field] as a finite float in [low, high]; null or absent gives `default`."""
    value = request.get(field)
    if value is None:
        return default
    if isinstance(value, LongInteger):
        raise BadRequest(f"'{field}' must be between {low} and {high}, not {value}", field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"'{field}' must be a number, not {_shown(value)}", field)
    if not low <= value <= high:
        raise BadRequest(f"'{field}' must be between {low} and {high}, not {_shown(value)}", field)
    return float(value)


def _temperature(request: dict) -> float:
    """0-2; below MIN_SAMPLING_TEMPERATURE it is 0, greedy decoding (1e-300 would sample from inf/nan)."""
    value = _number(request, "temperature", 1.0, 0.0, 2.0)
    return 0.0 if value < MIN_SAMPLING_TEMPERATURE else value


def _max_tokens(request: dict) -> int:
    """max_completion_tokens (OpenAI's current name) or else max_tokens, 1 to MAX_TOKENS_FIELD
    (then cut to the server's cap and the context in ChatModel.reply)."""
    field = "max_completion_tokens" if request.get("max_completion_tokens") is not None else "max_tokens"
    return _integer(request, field, DEFAULT_MAX_TOKENS, 1, MAX_TOKENS_FIELD)


def _stop(request: dict) -> list[str]:
    stop = request.get("stop")
    if stop is None:
        return []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise BadRequest(f"'stop' must be a string or a list of strings, not {_shown(request['stop'])}", "stop")
    if len(stop) > MAX_STOP_SEQUENCES:
        raise BadRequest(f"'stop' may hold at most {MAX_STOP_SEQUENCES} strings, not {len(stop)}", "stop")
    return [_text(s, "stop") for s in stop]


def _messages(request: dict) -> list[dict]:
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list of {role, content} objects", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"'messages[{i}]' must be a {{role, content}} object", f"messages[{i}]")
        for key in ("role", "content"):
            if not isinstance(message.get(key), str):
                raise BadRequest(f"'messages[{i}].{key}' must be a string, not {_shown(message.get(key))}",
                                 f"messages[{i}].{key}")
            _text(message[key], f"messages[{i}].{key}")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def parse_request(body: bytes, max_n: int = Limits.max_n) -> dict:
    """The generation arguments of a chat-completions request, or BadRequest naming the field.

    Values are normalised as before validation existed (max_tokens an int, temperature and
    top_p floats, top_k an int or None), because the server seed hashes them: the same request must keep
    its seed (a temperature below MIN_SAMPLING_TEMPERATURE reads as 0: greedy, where no seed matters).
    Unknown fields are ignored, as lm-eval sends a task's extra generation kwargs."""
    try:
        request = json.loads(body or b"null", parse_int=_json_int)
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError (bytes that are not UTF-8/16/32)
        raise BadRequest(f"request body is not JSON: {getattr(err, 'msg', err)}") from None
    if not isinstance(request, dict):
        raise BadRequest("request body must be a JSON object")
    if request.get("stream") not in (None, False):
        raise BadRequest("'stream' is not supported: send false or leave it out", "stream")
    return {
        "messages": _messages(request),
        "max_tokens": _max_tokens(request),
        "temperature": _temperature(request),
        "top_p": _number(request, "top_p", 1.0, 0.0, 1.0),
        "top_k": _integer(request, "top_k", None, 0, MAX_TOKENS_FIELD),  # 0: no top-k, as in transformers
        "seed": _integer(request, "seed", None, *SEED_RANGE),
        "stop": _stop(request),
        "n": _integer(request, "n", 1, 1, max_n),
    }


# --- generation --------------------------------------------------------------------


class Choice(NamedTuple):
    text: str
    finish_reason: str
    tokens: int


def cancellation(cancelled: Callable[[], bool]):
    """Stopping criteria that end every sequence as soon as `cancelled()` is true (checked once per token)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), cancelled(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Cancelled()])


def cut_at_stop(text: str, finish: str, stop: list[str]) -> tuple[str, str]:
    """The text up to the first of each stop string in turn (as before: applied after generation)."""
    for s in stop:
        if s and s in text:
            text, finish = text[: text.index(s)], "stop"
    return text, finish


class ChatModel:
    """Chat-template a conversation, sample replies, one request at a time."""

    def __init__(self, name: str | None, seed: int | None = None, limits: Limits | None = None):
        self.model, self.tokenizer = load_causal_lm(name)
        self.name = name or "smollm2"
        self.context = context_length(self.model, self.tokenizer)
        self.limits = (limits or Limits()).fit(self.context)
        self.lock = threading.Lock()  # the model and the seed counter
        self.tokenizer_lock = threading.Lock()  # fast tokenizers fail when used from two threads at once
        self.seed = seed
        self.seen: dict[str, int] = {}  # request content -> how many times it was answered
        eos = self.model.generation_config.eos_token_id
        eos = self.tokenizer.eos_token_id if eos is None else eos
        self.stop_ids = set(eos if isinstance(eos, list) else [eos])  # the tokens generation ends on

    # The seed of a request without one: the n-th answered repeat of the same content gets
    # the n-th seed. Both run under the lock, so a forgotten number is reused by the next repeat.
    def request_seed(self, content: dict) -> int:
        key = json.dumps(content, sort_keys=True)
        repeat = self.seen.get(key, 0)
        self.seen[key] = repeat + 1
        digest = hashlib.sha256(f"{self.seed}|{repeat}|{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % (2**63)

    def forget_seed(self, content: dict) -> None:
        key = json.dumps(content, sort_keys=True)
        self.seen[key] -= 1

    def prompt_ids(self, messages: list[dict]):
        """The prompt's token ids (1 x length), or BadRequest when it is over the prompt cap."""
        tok = self.tokenizer
        with self.tokenizer_lock:
            if getattr(tok, "chat_template", None):
                try:
                    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                except Exception as err:  # a template may refuse e.g. roles that do not alternate
                    raise BadRequest(f"'messages' do not fit the model's chat template: {err}", "messages") from None
            else:
                prompt = "\n".join(m["content"] for m in messages) + "\n"
            ids = tok(prompt, add_special_tokens=not getattr(tok, "chat_template", None),
                      return_tensors="pt")["input_ids"]
        if ids.shape[1] > self.limits.max_prompt_tokens:
            raise BadRequest(f"'messages' are {ids.shape[1]} tokens once chat-templated; this server accepts at "
                             f"most {self.limits.max_prompt_tokens} (--max-prompt-tokens)", "messages")
        return ids.to(self.model.device)

    def reply(self, request: dict, cancelled: Callable[[], bool] = lambda: False) -> tuple[list[Choice], int]:
        """(choices, prompt tokens) for a parsed request; RequestError 503 when the model stays
        busy past the queue timeout, ClientGone when `cancelled()` turns true."""
        ids = self.prompt_ids(request["messages"])
        max_new = token_budget(request["max_tokens"], ids.shape[1], self.context, self.limits.max_tokens)
        if not self.lock.acquire(timeout=self.limits.queue_timeout):
            raise RequestError(503, f"the model stayed busy for {self.limits.queue_timeout:g} s "
                                    "(--queue-timeout); retry later")
        try:
            rows = self._seeded_generation(ids, max_new, request, cancelled)
        finally:
            self.lock.release()
        return [self._choice(row, max_new, request["stop"]) for row in rows], int(ids.shape[1])

    def _seeded_generation(self, ids, max_new: int, request: dict, cancelled: Callable[[], bool]):
        """Generate under the request's seed (call under the lock); the server seed's count is
        undone when no answer comes of it."""
        if cancelled():  # left while queued
            raise ClientGone
        seed, content = request["seed"], None
        if seed is None and self.seed is not None:
            content = {k: request[k] for k in ("messages", "max_tokens", "temperature", "top_p", "top_k")}
            if request["n"] != 1:  # kept out for n = 1 so that such requests keep their seeds
                content["n"] = request["n"]
            seed = self.request_seed(content)
        try:
            rows = self._generate(ids, max_new, request, seed, cancelled)
            if cancelled():
                raise ClientGone
        except BaseException:
            if content is not None:
                self.forget_seed(content)
            raise
        return rows

    def _generate(self, ids, max_new: int, request: dict, seed: int | None, cancelled: Callable[[], bool]):
        """The new tokens of request["n"] samples (n x length, padded after a sample's end)."""
        import torch

        tok, n, temperature = self.tokenizer, request["n"], request["temperature"]
        sampling = {"do_sample": True, "temperature": temperature, "top_p": request["top_p"]} if temperature > 0 \
            else {"do_sample": False}
        if request["top_k"] is not None and temperature > 0:
            sampling["top_k"] = request["top_k"]
        copies = n if sampling["do_sample"] else 1  # greedy decoding gives n identical answers: decode once
        with torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                                      pad_token_id=tok.pad_token_id or tok.eos_token_id,
                                      num_return_sequences=copies, stopping_criteria=cancellation(cancelled),
                                      **sampling)
        return out[:, ids.shape[1]:].repeat(n // copies, 1)

    def _choice(self, row, max_new: int, stop: list[str]) -> Choice:
        """One sample's text, finish reason and token count (up to its end token; padding after it)."""
        tokens = row.tolist()
        end = next((i for i, t in enumerate(tokens) if t in self.stop_ids), None)
        tokens = tokens if end is None else tokens[: end + 1]
        with self.tokenizer_lock:
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        finish = "length" if end is None and len(tokens) >= max_new else "stop"
        text, finish = cut_at_stop(text, finish, stop)
        return Choice(text, finish, len(tokens))


def completion_response(model: str, choices: list[Choice], prompt_tokens: int) -> dict:
    completion_tokens = sum(c.tokens for c in choices)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": c.text}, "finish_reason": c.finish_reason}
                    for i, c in enumerate(choices)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


# --- HTTP --------------------------------------------------------------------------


def client_gone(sock: socket.socket) -> bool:
    """True once the client has closed its end: the socket reads as ready with nothing in it.

    (A client that half-closes after sending its request would look gone too; HTTP clients
    in use, urllib, aiohttp, requests, curl, keep their end open until they read the answer.)"""
    try:
        return readable(sock) and not sock.recv(1, socket.MSG_PEEK)
    except (OSError, ValueError):  # reset, or already closed
        return True


def readable(sock: socket.socket) -> bool:
    """Whether a read would not block, without waiting; poll where there is one, as select
    fails on descriptors past 1024."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])


def make_handler(chat: ChatModel):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 503:
                self.send_header("Retry-After", "1")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, param: str | None = None) -> None:
            kind = "invalid_request_error" if status < 500 else "server_error"
            self._send(status, {"error": {"message": message, "type": kind, "param": param, "code": status}})

        def _body(self) -> bytes:
            """The request body, at most --max-body-bytes (413 otherwise)."""
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True  # the unread chunks would be taken for the next request
                raise RequestError(411, "send the body with a Content-Length, not chunked")
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:
                self.close_connection = True
                raise BadRequest(f"bad Content-Length: {self.headers.get('Content-Length')!r}")
            cap = chat.limits.max_body_bytes
            if length > cap:
                self.close_connection = True
                self._drain(length)
                raise RequestError(413, f"request body is {length} bytes; this server accepts at most {cap} "
                                        "(--max-body-bytes)")
            return self.rfile.read(length)

        def _drain(self, length: int) -> None:
            left = length if length <= DRAIN_LIMIT else 0
            while left > 0:
                chunk = self.rfile.read(min(left, 64 * 1024))
                if not chunk:
                    break
                left -= len(chunk)

        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": chat.name, "object": "model"}]})
            else:
                self._error(404, f"no such endpoint: GET {self.path}")

        def do_POST(self):  # noqa: N802
            try:
                self._answer_or_error()
            except (ClientGone, BrokenPipeError, ConnectionResetError):  # nobody left to answer
                self.close_connection = True

        def _answer_or_error(self) -> None:
            try:
                self._answer()
            except (ClientGone, BrokenPipeError, ConnectionResetError):
                raise
            except RequestError as err:
                self._error(err.status, str(err), err.param)
            except Exception as err:  # a bug: answer 500 and keep serving, with the traceback in the log
                traceback.print_exc(file=sys.stderr)
                self._error(500, f"internal error: {type(err).__name__}: {err}")

        def _answer(self) -> None:
            body = self._body()
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                raise RequestError(404, f"no such endpoint: POST {self.path}")
            request = parse_request(body, chat.limits.max_n)
            choices, prompt_tokens = chat.reply(request, cancelled=lambda: client_gone(self.connection))
            self._send(200, completion_response(chat.name, choices, prompt_tokens))

        def log_message(self, fmt, *args):  # quiet: the request log would drown progress bars
            pass

    return Handler


class ChatServer(ThreadingHTTPServer):
    """A thread per connection, and a listen backlog that holds a burst of clients."""

    request_queue_size = LISTEN_BACKLOG


def make_server(model: str | None, host: str = "127.0.0.1", port: int = 0, seed: int | None = None,
                limits: Limits | None = None) -> ThreadingHTTPServer:
    """A server bound to host:port (0 = any free port); call serve_forever() to run it.
    Its `chat` is the served model, with the limits in force."""
    chat = ChatModel(model, seed, limits)
    server = ChatServer((host, port), make_handler(chat))
    server.chat = chat
    return server
