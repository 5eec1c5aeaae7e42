"""API models over HTTP, hardened: a redirect is never followed (the key header would go with
it to another host), a credential in an endpoint URL (user info, a query, a fragment) is
refused before any request and written nowhere, and a failed request ends the run with one
error line: no "Task exception was never retrieved" tracebacks of its sibling requests, and
an answer without choices said as such."""

from __future__ import annotations

import asyncio
import json
import re
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from crpo_bench.run import runner as bench
from crpo_bench.cli import main

from http_stubs import send_reply, serve
from test_bench_run import SECRET, common, crpo_bench_run, muce_file  # noqa: F401 -- muce_file is a fixture
from test_providers import fake_litellm  # noqa: F401 -- a fixture

OK_CHAT = json.dumps({"id": "stub", "object": "chat.completion", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "a doorstop"}, "finish_reason": "stop"}]}).encode()


class Endpoint:
    """A stub endpoint on 127.0.0.1: `answer(handler, n)` replies to the n-th POST (from 0).
    Records every request's method, path and lower-cased headers."""

    def __init__(self, answer=None):
        self.requests: list[tuple[str, str, dict]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> int:
                endpoint.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                return len(endpoint.posts()) - 1

            def do_GET(self):  # noqa: N802 -- crpo-bench's "is anything listening" probe
                self._record()
                if endpoint.answer_get:
                    return endpoint.answer_get(self)
                send_reply(self, 405)

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                n = self._record()
                (answer or (lambda h, n: send_reply(h, 200, OK_CHAT)))(self, n)

            def log_message(self, *args):
                pass

        self.answer_get = None
        self.server, self.port = serve(Handler)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def posts(self) -> list:
        return [r for r in self.requests if r[0] == "POST"]


@pytest.fixture
def endpoints():
    made: list[Endpoint] = []

    def make(answer=None) -> Endpoint:
        made.append(Endpoint(answer))
        return made[-1]

    yield make
    for endpoint in made:
        endpoint.server.shutdown()


def secret_nowhere(root: Path, *texts: str) -> None:
    for path in (p for p in root.rglob("*") if p.is_file()):
        assert SECRET not in path.read_text(errors="ignore"), path
    for text in texts:
        assert SECRET not in text


def error_lines(stderr: str) -> list[str]:
    return [line for line in re.split(r"[\r\n]", stderr) if "crpo-bench run: error:" in line]


# --- item 5: redirects ------------------------------------------------------------------------


@pytest.mark.parametrize("spec, status, header", [("anthropic:claude-x", 307, "x-api-key"),
                                                  ("api:tiny", 302, "authorization")])
def test_a_redirect_to_another_host_never_carries_the_key(tmp_path, muce_file, endpoints, spec, status, header):
    second = endpoints()  # another port: another origin

    def redirect(handler, n=None):
        send_reply(handler, status, headers={"Location": f"{second.url}/landing"})

    first = endpoints(redirect)
    first.answer_get = redirect  # even the "is anything listening" probe is redirected
    env = "ANTHROPIC_API_KEY" if spec.startswith("anthropic") else "MY_KEY"
    out = tmp_path / "r"
    proc = crpo_bench_run(["--model", f"m={spec}@{first.url}", "--api-key-env", env, "--max-retries", "3",
                           *common(muce_file, out)], cwd=tmp_path, env_extra={env: SECRET})
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert first.posts() and first.posts()[0][2][header].endswith(SECRET)  # the key went to the endpoint given
    assert len(first.posts()) <= 4  # a redirect is not retried: one POST per request (4 samples) at most
    assert not second.posts()  # the POST was not followed ...
    for _, _, headers in second.requests:  # ... and nothing that reached the other host carries the key
        assert not any(SECRET in value for value in headers.values()), headers
    (line,) = error_lines(proc.stderr)
    assert f"HTTP {status}, a redirect to {second.url}/landing" in line and "does not follow redirects" in line
    assert "Traceback" not in proc.stderr and "Task exception was never retrieved" not in proc.stderr
    secret_nowhere(tmp_path, proc.stdout, proc.stderr)
    assert not (out / "m").exists()


# --- item 6: credentials in the endpoint URL -------------------------------------------------


@pytest.mark.parametrize("url, problem", [
    ("{base}?api_key={secret}", "query string"),
    ("{base}/chat/completions?x=1&ACCESS_TOKEN={secret}", "query string"),
    ("{base}?{secret}", "query string"),
    ("{base}#sig={secret}", "query string or fragment"),
    ("http://user:{secret}@127.0.0.1:{port}/v1", "user name or password"),
])
@pytest.mark.parametrize("how", ["@URL", "--base-url"])
def test_a_credential_in_the_url_is_refused_before_any_request(tmp_path, capsys, endpoints, url, problem, how):
    endpoint = endpoints()
    url = url.format(base=endpoint.url, secret=SECRET, port=endpoint.port)
    out = tmp_path / "r"
    model = ["--model", f"m=api:tiny@{url}"] if how == "@URL" else ["--model", "m=api:tiny", "--base-url", url]
    rc = main(["run", *model, "--tasks", "muce_aut", "--limit", "1", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 2
    (line,) = error_lines(captured.err)
    assert problem in line and "--api-key-env" in line
    assert endpoint.requests == []  # not even the probe
    assert not out.exists()
    secret_nowhere(tmp_path, captured.out, captured.err)


@pytest.mark.parametrize("spec", [f"bad/name=api:m@http://h/v1?key={SECRET}", f"api:@http://h/v1?token={SECRET}",
                                  f"api:@http://u:{SECRET}@h/v1", f"litellm:x@http://h/?key={SECRET}"])
def test_messages_that_quote_a_spec_leave_its_url_credentials_out(spec):
    with pytest.raises(bench.BenchError) as err:
        bench.check_spec(spec)
    assert SECRET not in str(err.value) and "http://" in str(err.value)


# --- item 18: a failed request is one error line ---------------------------------------------


def _answer(status: int, body: bytes, headers: dict | None = None, length: int | None = None, stall: float = 0):
    def answer(handler, n):
        time.sleep(stall)
        send_reply(handler, status, body, {"Content-Type": "application/json", **(headers or {})}, length)

    return answer


@pytest.mark.parametrize("answer, retries, expected", [
    (_answer(500, b'{"error": "injected"}'), 2,
     r"request \d of 4: HTTP 500: \{\"error\": \"injected\"\} \(tried 2 times\)"),
    (_answer(429, b'{"error": "slow down"}', {"Retry-After": "0"}), 3,
     r"request \d of 4: HTTP 429: \{\"error\": \"slow down\"\} \(tried 3 times\)"),
    (_answer(200, OK_CHAT[:30], length=len(OK_CHAT)), 1, r"the answer to request \d of 4 was cut off"),
    (_answer(200, b'{"choices": [ not json'), 1,
     r"the answer to request \d of 4 is not JSON: \{\"choices\": \[ not json"),
    (_answer(200, b'{"id": "x", "choices": []}'), 1, r"api returned an empty choices list for request \d of 4"),
    (_answer(200, OK_CHAT, stall=3), 1, r"no answer to request \d of 4 within --timeout 1 s"),
], ids=["500", "429", "truncated", "invalid-json", "empty-choices", "timeout"])
def test_a_failed_request_is_one_error_line_without_task_tracebacks(tmp_path, muce_file, endpoints, answer, retries,
                                                                     expected):
    endpoint = endpoints(answer)
    out = tmp_path / "r"
    proc = crpo_bench_run(["--model", f"m=api:tiny@{endpoint.url}", "--concurrency", "4", "--max-retries", retries,
                           "--timeout", "1", "--api-key-env", "MY_KEY", *common(muce_file, out)], cwd=tmp_path,
                          env_extra={"MY_KEY": SECRET})
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Task exception was never retrieved" not in proc.stderr, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert line.startswith(f"crpo-bench run: error: model m at {endpoint.url}/chat/completions, task muce_aut: ")
    assert re.search(expected, line), line
    assert len(endpoint.posts()) >= retries  # the failing request was tried --max-retries times
    assert not (out / "m" / "muce_aut.json").exists()
    secret_nowhere(tmp_path, proc.stdout, proc.stderr)


def test_when_one_request_fails_its_siblings_are_cancelled_and_awaited():
    """The runner under every API model's requests, in-process: the first failure is raised,
    the requests still running are cancelled, and no task's exception goes unretrieved."""
    unretrieved: list[dict] = []
    cancelled: list[int] = []

    async def request(n: int):
        try:
            await asyncio.sleep(0.01 if n < 2 else 30)
            raise bench.ApiError(f"request {n + 1} of 4: HTTP 500")  # two fail in the same turn of the loop
        except asyncio.CancelledError:
            cancelled.append(n)
            raise

    async def run():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: unretrieved.append(context))
        with pytest.raises(bench.ApiError, match="request 1 of 4"):
            await bench._all_or_none([request(n) for n in range(4)])

    start = time.perf_counter()
    asyncio.run(run())
    import gc

    gc.collect()
    assert time.perf_counter() - start < 5 and sorted(cancelled) == [2, 3] and unretrieved == []


def test_answers_without_content_or_with_two_answers_for_one_prompt_are_errors():
    class Lm:
        @staticmethod
        def parse_generations(outputs):
            return [c["message"]["content"] for c in outputs["choices"]]

    api = bench.parse_spec("api:m@http://h/v1")
    anthropic = bench.parse_spec("anthropic:c@http://h")
    two = json.dumps({"choices": [{"message": {"content": "a"}}, {"message": {"content": "b"}}]}).encode()
    with pytest.raises(bench.ApiError, match="api returned 2 answers for request 1 of 1, which had 1 prompt"):
        bench._answers(Lm, api, "1 of 1", 1, two, True, None, None)
    with pytest.raises(bench.ApiError, match=r"api returned no choices for request 1 of 1 \(error: \{\"message\": "):
        bench._answers(Lm, api, "1 of 1", 1, b'{"error": {"message": "overloaded"}}', True, None, None)
    with pytest.raises(bench.ApiError, match="anthropic returned no content for request 1 of 1"):
        bench._answers(Lm, anthropic, "1 of 1", 1, b'{"type": "message"}', True, None, None)
    blocks = {"content": [{"type": "text", "text": "a "}, {"type": "thinking", "thinking": "x"},
                          {"type": "text", "text": "doorstop"}], "stop_reason": "end_turn"}
    assert bench._answers(Lm, anthropic, "1 of 1", 1, json.dumps(blocks).encode(), True, None, None) == ["a doorstop"]
    assert bench._answers(Lm, anthropic, "1 of 1", 1, b'{"content": [], "stop_reason": "end_turn"}', True, None,
                          None) == [""]  # an empty reply is an empty answer


def test_litellm_requests_in_flight_go_through_the_same_runner(tmp_path, muce_file, fake_litellm):
    """litellm: with --concurrency above 1 calls LiteLLM's acompletion through the runner that
    cancels siblings; its first call fails and is retried."""
    spec = bench.parse_spec("litellm:anthropic/claude-x", concurrency=3, max_retries=2, timeout=17)
    lm = bench.build_lm(spec, SECRET)
    metadata = {"muce_data": str(muce_file), "lm": "none"}
    evaluation = bench.evaluate_pair(lm, spec, "muce_aut", 1, {"max_gen_toks": 12}, bench.task_manager(metadata))
    assert len(fake_litellm.calls) == 5  # 4 samples after 1 failure, retried
    path = bench.write_pair(tmp_path / "out", spec, "muce_aut", evaluation)
    assert "a doorstop" in path.with_suffix(".samples.jsonl").read_text()
