"""`crpo-bench serve`: real HTTP to a local OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest


def post(url: str, payload, timeout: float = 60) -> tuple[int, dict]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


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
    ({"messages": []}, "'messages' must be a non-empty list"),
    ({"messages": [{"role": "user", "content": 5}]}, "'messages' must be a non-empty list"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}, "invalid literal"),
])
def test_bad_requests_get_400_with_a_reason(chat_server_url, payload, message):
    status, body = post(chat_server_url, payload)
    assert status == 400 and message in body["error"]["message"]


def test_unknown_endpoint_is_404(chat_server_url):
    status, body = post(chat_server_url.replace("/chat/completions", "/embeddings"), {"input": "x"})
    assert status == 404 and "no such endpoint" in body["error"]["message"]
