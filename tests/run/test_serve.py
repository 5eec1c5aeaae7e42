"""`crpo-bench serve`: real HTTP to a local OpenAI-compatible endpoint."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from crpo_bench.run.serve import Limits, token_budget

NORMAL = {"messages": [{"role": "user", "content": "Uses for a brick?"}], "max_tokens": 8, "temperature": 0.7}
FEW_SECONDS = 5.0  # a normal request of the tiny model takes well under a second


def post(url: str, payload, timeout: float = 60) -> tuple[int, dict]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def timed_post(url: str, payload, timeout: float = 60) -> tuple[int, dict, float]:
    start = time.perf_counter()
    status, body = post(url, payload, timeout)
    return status, body, time.perf_counter() - start


def send_and_hold(url: str, payload: dict) -> http.client.HTTPConnection:
    """Send a request and read nothing: the connection stays open until closed (the client 'leaving')."""
    parts = urlparse(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request("POST", parts.path, body=json.dumps(payload), headers={"Content-Type": "application/json"})
    return conn


def start_server(folder: Path, *flags: str):
    """`crpo-bench serve FOLDER --port 0 FLAGS` as a real process: (process, url)."""
    exe = Path(sys.executable).parent / "crpo-bench"
    proc = subprocess.Popen([str(exe), "serve", str(folder), "--port", "0", *flags], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    line = proc.stdout.readline()
    assert "serving" in line, proc.stderr.read()
    return proc, line.split(" at ")[1].strip()


@pytest.fixture(scope="module")
def long_server_url(tiny_lm_folder, tmp_path_factory):
    """The tiny LM with a context of a million positions and no end token (so a huge max_tokens
    really runs for minutes, never ending early by chance), served with small caps and a 2 s
    queue timeout."""
    folder = tmp_path_factory.mktemp("tiny-long-lm")
    shutil.copytree(tiny_lm_folder, folder, dirs_exist_ok=True)
    for name, changes in [("config.json", {"max_position_embeddings": 1_000_000, "eos_token_id": None}),
                          ("generation_config.json", {"eos_token_id": None})]:
        config = json.loads((folder / name).read_text())
        (folder / name).write_text(json.dumps({**config, **changes}))
    proc, url = start_server(folder, "--queue-timeout", "2", "--max-body-bytes", "4096",
                             "--max-prompt-tokens", "64", "--max-n", "2")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_chat_completion_round_trip(chat_server_url):
    status, body = post(chat_server_url, {"model": "tiny", "messages": [{"role": "user", "content": "Uses for a brick?"}],
                                     "max_tokens": 8, "temperature": 0.7, "top_p": 0.95, "seed": 3})
    assert status == 200
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    assert 0 < body["usage"]["completion_tokens"] <= 8
    # the same seed gives the same sample; no seed gives fresh ones
    again = post(chat_server_url, {"messages": [{"role": "user", "content": "Uses for a brick?"}], "max_tokens": 8,
                              "temperature": 0.7, "top_p": 0.95, "seed": 3})[1]
    assert again["choices"][0]["message"]["content"] == choice["message"]["content"]
    fresh = {post(chat_server_url, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8,
                               "temperature": 1.0})[1]["choices"][0]["message"]["content"] for _ in range(3)}
    assert len(fresh) > 1


@pytest.mark.parametrize("payload, message", [
    (b"{not json", "request body is not JSON"),
    (b"[" * 60000, "request body is nested too deeply"),
    ({"messages": []}, "'messages' must be a non-empty list"),
    ({"messages": "hi"}, "'messages' must be a non-empty list"),
    ({"messages": [{"role": "user", "content": 5}]}, "'messages[0].content' must be a string"),
    ({"messages": [{"content": "x"}]}, "'messages[0].role' must be a string"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}, "'max_tokens' must be an integer"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": True}, "'stream' is not supported"),
])
def test_bad_requests_get_400_with_a_reason(chat_server_url, payload, message):
    status, body = post(chat_server_url, payload)
    assert status == 400 and message in body["error"]["message"]


@pytest.mark.parametrize("field, value", [
    # issue 13: each of these closed the connection with no reply and a traceback in the log
    ("max_tokens", -5), ("top_k", "x"), ("seed", "x"), ("stop", 5),
    # issue 13: n = 1000 silently returned one choice
    ("n", 1000),
    # and the other type and range checks
    ("max_tokens", 0), ("max_tokens", 2.5), ("max_tokens", True), ("max_completion_tokens", -1),
    ("temperature", -0.1), ("temperature", 2.5), ("temperature", "hot"), ("top_p", 1.5), ("top_p", "x"),
    ("top_k", -1), ("top_k", 2.5), ("seed", 1.5), ("seed", 2**64), ("stop", [1, 2]), ("stop", ["a"] * 5),
    ("n", 0), ("n", "2"),
])
def test_each_invalid_field_gets_400_naming_it(chat_server_url, field, value):
    status, body = post(chat_server_url, {**NORMAL, field: value}, timeout=10)
    assert status == 400, body
    assert body["error"]["param"] == field and f"'{field}'" in body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error"


def test_the_server_keeps_answering_after_invalid_requests(chat_server_url):
    for field, value in [("max_tokens", -5), ("top_k", "x"), ("seed", "x"), ("stop", 5)]:
        assert post(chat_server_url, {**NORMAL, field: value}, timeout=10)[0] == 400
    status, body = post(chat_server_url, {**NORMAL, "stop": ["x", ""], "seed": 2.0, "top_k": 0}, timeout=10)
    assert status == 200 and body["choices"][0]["finish_reason"] in ("stop", "length")


def test_n_samples_come_back_as_n_choices(chat_server_url):
    status, body = post(chat_server_url, {**NORMAL, "n": 3, "seed": 5, "temperature": 1.0})
    assert status == 200
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert len({c["message"]["content"] for c in body["choices"]}) > 1  # independent samples
    assert 3 <= body["usage"]["completion_tokens"] <= 3 * 8
    assert post(chat_server_url, {**NORMAL, "n": 3, "seed": 5, "temperature": 1.0})[1]["choices"] == body["choices"]
    greedy = post(chat_server_url, {**NORMAL, "n": 2, "temperature": 0})[1]["choices"]
    assert len(greedy) == 2 and greedy[0]["message"] == greedy[1]["message"]


def test_n_over_the_cap_is_refused(long_server_url):
    status, body = post(long_server_url, {**NORMAL, "n": 3})  # --max-n 2
    assert status == 400 and body["error"]["param"] == "n" and "between 1 and 2" in body["error"]["message"]
    assert len(post(long_server_url, {**NORMAL, "n": 2})[1]["choices"]) == 2


def test_a_1mb_body_gets_413_and_the_server_stays_responsive(chat_server_url):
    prompt = {"messages": [{"role": "user", "content": "a" * 1_000_000}], "max_tokens": 8}
    status, body, seconds = timed_post(chat_server_url, prompt)
    assert status == 413 and "--max-body-bytes" in body["error"]["message"] and seconds < FEW_SECONDS
    status, _, seconds = timed_post(chat_server_url, NORMAL)
    assert status == 200 and seconds < FEW_SECONDS


def test_body_and_prompt_caps_follow_the_flags(long_server_url):
    status, body = post(long_server_url, {**NORMAL, "messages": [{"role": "user", "content": "a" * 5000}]})
    assert status == 413 and "at most 4096" in body["error"]["message"]  # --max-body-bytes 4096
    status, body = post(long_server_url, {**NORMAL, "messages": [{"role": "user", "content": "rain " * 200}]})
    assert status == 400 and body["error"]["param"] == "messages"  # --max-prompt-tokens 64
    assert "at most 64 (--max-prompt-tokens)" in body["error"]["message"]


def test_a_huge_max_tokens_is_cut_to_the_context_and_the_next_request_is_quick(chat_server_url):
    """Issue 13: a max_tokens of 10^9 kept the server busy and the next small request timed out."""
    status, big, big_seconds = timed_post(chat_server_url, {**NORMAL, "max_tokens": 1_000_000}, timeout=60)
    assert status == 200
    usage = big["usage"]
    assert usage["completion_tokens"] <= 256 - usage["prompt_tokens"]  # the tiny LM's 256 positions
    status, body, seconds = timed_post(chat_server_url, NORMAL, timeout=30)
    print(f"\n1,000,000-token request: {big_seconds:.2f} s; the normal request after it: {seconds:.2f} s")
    assert status == 200 and body["choices"][0]["message"]["content"] is not None
    assert seconds < FEW_SECONDS


def test_generation_stops_when_the_client_disconnects(long_server_url):
    """Issue 13: generation went on after the client left. Here a 1,000,000-token request can
    really run for minutes; its client leaves after 1.5 s and a normal request is answered at once."""
    conn = send_and_hold(long_server_url, {**NORMAL, "max_tokens": 1_000_000})
    time.sleep(1.5)
    conn.close()
    status, body, seconds = timed_post(long_server_url, NORMAL, timeout=30)
    print(f"\nnormal request after the 1,000,000-token request's client left: {seconds:.2f} s")
    assert status == 200, body  # not 503: the model was freed within the 2 s queue timeout
    assert seconds < FEW_SECONDS


def test_a_request_queued_past_the_timeout_gets_503(long_server_url):
    """Requests queue for the model; one that waits longer than --queue-timeout (2 s) gets 503."""
    conn = send_and_hold(long_server_url, {**NORMAL, "max_tokens": 1_000_000})
    try:
        time.sleep(0.5)  # the big request holds the model
        status, body, seconds = timed_post(long_server_url, NORMAL, timeout=30)
        assert status == 503 and "--queue-timeout" in body["error"]["message"], body
        assert 2 <= seconds < 2 + FEW_SECONDS
    finally:
        conn.close()
    assert timed_post(long_server_url, NORMAL, timeout=30)[0] == 200


def test_server_binds_to_loopback_by_default(chat_server_url):
    host, port = urlparse(chat_server_url).hostname, urlparse(chat_server_url).port
    assert host == "127.0.0.1"
    # and is not reachable on this machine's other address, where it has one
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # UDP: picks the outgoing interface, sends nothing
        own = probe.getsockname()[0]
    except OSError:
        own = "127.0.0.1"
    finally:
        probe.close()
    if not own.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((own, port), timeout=2).close()


def test_token_budget_is_the_least_of_request_cap_and_context_left():
    limits = Limits(max_tokens=100).fit(context=256)
    assert (limits.max_tokens, limits.max_prompt_tokens, limits.max_body_bytes) == (100, 255, 64 * 1024)
    assert token_budget(1_000_000, prompt_tokens=20, context=256, cap=limits.max_tokens) == 100
    assert token_budget(1_000_000, prompt_tokens=200, context=256, cap=limits.max_tokens) == 56
    assert token_budget(8, prompt_tokens=20, context=256, cap=limits.max_tokens) == 8
    assert Limits().fit(context=8192).max_body_bytes == 32 * 8192
    assert Limits(max_prompt_tokens=10**6).fit(context=256).max_prompt_tokens == 255


def test_unknown_endpoint_is_404(chat_server_url):
    status, body = post(chat_server_url.replace("/chat/completions", "/embeddings"), {"input": "x"})
    assert status == 404 and "no such endpoint" in body["error"]["message"]
