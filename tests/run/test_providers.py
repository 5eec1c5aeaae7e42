"""`crpo-bench run` on more backends: anthropic: and gemini: over real HTTP to local stub
servers (retries on HTTP 500 and on timeouts, a dead server, which key goes where and that
it is never written), litellm: through a stand-in litellm module, vllm: model_args (and a
real run where vLLM and a GPU are present), and the errors that name a missing extra."""

from __future__ import annotations

import importlib.machinery
import json
import socket
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from crpo_bench.run import runner as bench
from crpo_bench.commands.run import _api_keys

from http_stubs import reply_json
from test_bench_run import SECRET, common, crpo_bench_run, muce_file  # noqa: F401 -- muce_file is a fixture

OTHER_SECRET = "sk-other-provider-must-not-travel"


def anthropic_reply(body: dict) -> dict:
    """What lm-eval's AnthropicChat.parse_generations reads: content[*].text."""
    return {"id": "msg_stub", "type": "message", "role": "assistant", "model": body.get("model"),
            "content": [{"type": "text", "text": "a doorstop"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 2}}


def openai_reply(body: dict) -> dict:
    return {"id": "stub", "object": "chat.completion", "model": body.get("model"), "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "a doorstop"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}


class Stub:
    """A provider's endpoint in a thread: the first `fail` POSTs get HTTP 500, the next one
    stalls `stall_s` seconds (past the client's --timeout), the rest get `reply(body)`.
    Records each request's method, path, lower-cased headers and JSON body."""

    def __init__(self, reply, base_path: str, fail: int = 0, stall_s: float = 0):
        self.reply, self.fail, self.stall_s = reply, fail, stall_s
        self.requests: list[tuple[str, str, dict, dict]] = []
        self.events: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self, body: dict):
                stub.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                      body))

            def do_GET(self):  # noqa: N802 -- crpo-bench's "is anything listening" probe
                self._record({})
                self._send(405, b"")

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                self._record(body)
                n = len(stub.events)
                if n < stub.fail:
                    stub.events.append("500")
                    return self._send(500, b'{"error": "injected"}')
                if n == stub.fail and stub.stall_s:
                    stub.events.append("stall")
                    time.sleep(stub.stall_s)
                else:
                    stub.events.append("ok")
                self._send(200, json.dumps(stub.reply(body)).encode())

            def _send(self, status: int, payload: bytes):
                reply_json(self, status, payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}{base_path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self) -> list[tuple[str, dict, dict]]:
        return [(path, headers, body) for method, path, headers, body in self.requests if method == "POST"]


@pytest.fixture
def stub_factory():
    stubs: list[Stub] = []

    def make(*args, **kwargs) -> Stub:
        stubs.append(Stub(*args, **kwargs))
        return stubs[-1]

    yield make
    for stub in stubs:
        stub.server.shutdown()


def assert_secret_kept(root: Path, *procs) -> None:
    written = [p for p in root.rglob("*") if p.is_file()]
    assert written
    for path in written:
        text = path.read_text(errors="ignore")
        assert SECRET not in text and OTHER_SECRET not in text, path
    for proc in procs:
        assert SECRET not in proc.stdout + proc.stderr and OTHER_SECRET not in proc.stdout + proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


# --- anthropic: over HTTP -------------------------------------------------------------------


def test_anthropic_over_http_retries_and_sends_the_key_only_in_x_api_key(tmp_path, muce_file, stub_factory):
    stub = stub_factory(anthropic_reply, "/v1/messages", fail=1, stall_s=4)
    out = tmp_path / "r"
    proc = crpo_bench_run(["--model", f"anth=anthropic:claude-x@{stub.base}", "--api-key-env", "ANTHROPIC_API_KEY",
                           "--timeout", "2", "--max-retries", "5", "--concurrency", "1", *common(muce_file, out)],
                          cwd=tmp_path, env_extra={"ANTHROPIC_API_KEY": SECRET, "OPENAI_API_KEY": OTHER_SECRET})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert stub.events[:2] == ["500", "stall"] and stub.events.count("ok") >= 4  # 4 samples after 2 failures
    posts = stub.posts()
    assert {path for path, _, _ in posts} == {"/v1/messages"}
    for _, headers, body in posts:
        assert headers["x-api-key"] == SECRET and headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in headers
        assert body["model"] == "claude-x" and body["messages"][0]["role"] == "user"
    result = json.loads((out / "anth" / "muce_aut.json").read_text())
    meta = result["crpo_bench"]
    assert meta["baseline"] is True and meta["model_args"]["base_url"] == stub.base
    samples = (out / "anth" / "muce_aut.samples.jsonl").read_text().splitlines()
    assert samples and "a doorstop" in samples[0]
    assert_secret_kept(tmp_path, proc)


def test_anthropic_key_is_not_sent_to_another_host_unasked(tmp_path, muce_file, stub_factory):
    stub = stub_factory(anthropic_reply, "")  # a bare host: the client's /v1/messages is added
    proc = crpo_bench_run(["--model", f"anth=anthropic:claude-x@{stub.base}", "--concurrency", "1",
                           *common(muce_file, tmp_path / "r")], cwd=tmp_path, env_extra={"ANTHROPIC_API_KEY": SECRET})
    assert proc.returncode == 0, proc.stderr[-4000:]
    posts = stub.posts()
    assert posts and {path for path, _, _ in posts} == {"/v1/messages"}
    for _, headers, _ in posts:
        assert "x-api-key" not in headers and "authorization" not in headers
        assert headers["anthropic-version"] == "2023-06-01"  # the API version is no secret
    assert f"model anth: no API key sent to {stub.base}/v1/messages (ANTHROPIC_API_KEY goes only to " \
           "api.anthropic.com" in proc.stdout
    assert_secret_kept(tmp_path, proc)


@pytest.mark.parametrize("spec, url", [("anthropic:claude-x@http://127.0.0.1:{port}", "/v1/messages"),
                                       ("gemini:gemini-x@http://127.0.0.1:{port}/v1beta/openai",
                                        "/v1beta/openai/chat/completions")])
def test_dead_provider_server_gives_a_clear_error(tmp_path, muce_file, spec, url):
    port = free_port()
    proc = crpo_bench_run(["--model", f"dead={spec.format(port=port)}", *common(muce_file, tmp_path / "r")],
                          cwd=tmp_path, env_extra={"ANTHROPIC_API_KEY": SECRET, "GEMINI_API_KEY": SECRET})
    assert proc.returncode == 2
    assert f"model dead: cannot connect to http://127.0.0.1:{port}{url}" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r" / "dead").exists()
    assert SECRET not in proc.stdout + proc.stderr


# --- gemini: over HTTP ----------------------------------------------------------------------


def test_gemini_over_http_retries_and_sends_the_bearer_key(tmp_path, muce_file, stub_factory):
    """Concurrency 2: two requests in flight through crpo-bench's request runner, with its
    timeout and retries (an HTTP 500, then a stalled answer)."""
    stub = stub_factory(openai_reply, "/v1beta/openai", fail=1, stall_s=4)
    out = tmp_path / "r"
    proc = crpo_bench_run(["--model", "gem=gemini:gemini-x", "--base-url", stub.base, "--api-key-env",
                           "GEMINI_API_KEY", "--timeout", "2", "--max-retries", "5", "--concurrency", "2",
                           *common(muce_file, out)], cwd=tmp_path,
                          env_extra={"GEMINI_API_KEY": SECRET, "OPENAI_API_KEY": OTHER_SECRET})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert stub.events[:2] == ["500", "stall"] and stub.events.count("ok") >= 4
    posts = stub.posts()
    assert {path for path, _, _ in posts} == {"/v1beta/openai/chat/completions"}
    assert {headers.get("authorization") for _, headers, _ in posts} == {f"Bearer {SECRET}"}
    assert {body["model"] for _, _, body in posts} == {"gemini-x"}
    meta = json.loads((out / "gem" / "muce_aut.json").read_text())["crpo_bench"]
    assert meta["model_args"]["base_url"] == f"{stub.base}/chat/completions"
    # the retry is logged with the reply, never with the request's headers
    assert 'HTTP 500: {"error": "injected"}; retry 1 of 4' in proc.stderr and "Authorization" not in proc.stderr
    assert_secret_kept(tmp_path, proc)


def test_gemini_key_is_not_sent_to_another_host_unasked(tmp_path, muce_file, stub_factory):
    stub = stub_factory(openai_reply, "/v1beta/openai")
    proc = crpo_bench_run(["--model", f"gem=gemini:gemini-x@{stub.base}", "--concurrency", "1",
                           *common(muce_file, tmp_path / "r")], cwd=tmp_path,
                          env_extra={"GEMINI_API_KEY": SECRET, "OPENAI_API_KEY": OTHER_SECRET})
    assert proc.returncode == 0, proc.stderr[-4000:]
    posts = stub.posts()
    assert posts and all("authorization" not in headers for _, headers, _ in posts)
    assert "model gem: no API key sent to" in proc.stdout and "GEMINI_API_KEY goes only to " \
           "generativelanguage.googleapis.com" in proc.stdout
    assert_secret_kept(tmp_path, proc)


# --- which key goes where, without a request ------------------------------------------------


def test_each_provider_key_goes_only_to_its_own_host(monkeypatch, capsys):
    for env, value in (("OPENAI_API_KEY", "k-openai"), ("ANTHROPIC_API_KEY", "k-anthropic"),
                       ("GEMINI_API_KEY", "k-gemini")):
        monkeypatch.setenv(env, value)
    specs = [bench.parse_spec(s) for s in (
        "o=openai:gpt-4o", "a=anthropic:claude-x", "g=gemini:gemini-x", "a2=anthropic:c@http://127.0.0.1:9",
        "g2=gemini:g@https://generativelanguage.googleapis.com.example.org/v1beta/openai",
        "a3=anthropic:c@http://api.anthropic.com", "l=litellm:anthropic/claude-x", "c=api:m@http://h/v1")]
    assert _api_keys(specs, None) == {"o": "k-openai", "a": "k-anthropic", "g": "k-gemini", "a2": None, "g2": None,
                                      "a3": None, "l": None, "c": None}  # a3: plain http is not the provider
    printed = capsys.readouterr().out
    assert "model a2: no API key sent to http://127.0.0.1:9/v1/messages (ANTHROPIC_API_KEY goes only to" in printed
    assert "model l:" not in printed  # LiteLLM reads its providers' variables itself
    monkeypatch.setenv("MY_KEY", "mine")
    assert set(_api_keys(specs, "MY_KEY").values()) == {"mine"}
    for env, spec in (("ANTHROPIC_API_KEY", specs[1]), ("GEMINI_API_KEY", specs[2])):
        monkeypatch.delenv(env)
        with pytest.raises(bench.BenchError, match=f"need an API key: set {env} or pass --api-key-env"):
            _api_keys([spec], None)


def test_headers_are_set_on_the_model_object_in_memory():
    anthropic = bench.parse_spec("anthropic:claude-x")
    lm = bench.build_lm(anthropic, SECRET)
    assert lm.header == {"x-api-key": SECRET, "anthropic-version": "2023-06-01"}
    assert bench.build_lm(anthropic, None).header == {"anthropic-version": "2023-06-01"}
    lm = bench.build_lm(bench.parse_spec("gemini:gemini-x"), SECRET)
    assert lm.header == {"Authorization": f"Bearer {SECRET}"} and lm.base_url == bench.GEMINI_CHAT_URL
    assert bench.build_lm(bench.parse_spec("gemini:gemini-x"), None).header == {}


def test_keys_are_blanked_in_every_log_record_and_error(caplog):
    import logging

    bench.keep_secret(SECRET)
    try:
        logging.getLogger("lm_eval.models.api_models").error("Exception:%r, retrying.", {"Authorization": SECRET})
        try:
            raise RuntimeError(f"header x-api-key={SECRET}")
        except RuntimeError:
            logging.getLogger("lm_eval").exception("failed")
        assert SECRET not in caplog.text and "'Authorization': '***'" in caplog.text
        spec = bench.ModelSpec("m", "api", "local-chat-completions", base_url="http://h")
        with pytest.raises(bench.BenchError) as err:
            bench.evaluate_pair(object(), spec, f"task-{SECRET}", 1, None, None)
        assert SECRET not in str(err.value) and "model m at http://h, task task-***" in str(err.value)
    finally:
        bench._SECRETS.discard(SECRET)


# --- spec -> lm-eval model and model_args ----------------------------------------------------

API_ARGS = dict(num_concurrent=3, max_retries=7, timeout=30, tokenizer_backend=None)


@pytest.mark.parametrize("spec, model, args", [
    ("openai:gpt-4o", "local-chat-completions", dict(model="gpt-4o", base_url=bench.OPENAI_CHAT_URL)),
    ("anthropic:claude-x", "anthropic-chat-completions", dict(model="claude-x", base_url=bench.ANTHROPIC_MESSAGES_URL)),
    ("anthropic:claude-x@http://h:1", "anthropic-chat-completions", dict(model="claude-x",
                                                                         base_url="http://h:1/v1/messages")),
    ("anthropic:claude-x@http://h:1/v1/", "anthropic-chat-completions",
     dict(model="claude-x", base_url="http://h:1/v1/messages")),
    ("gemini:gemini-2.0-flash", "local-chat-completions", dict(model="gemini-2.0-flash", base_url=bench.GEMINI_CHAT_URL)),
    ("gemini:g@http://h:1/v1beta/openai", "local-chat-completions",
     dict(model="g", base_url="http://h:1/v1beta/openai/chat/completions")),
    ("api:m@http://h:1/v1", "local-chat-completions", dict(model="m", base_url="http://h:1/v1/chat/completions")),
    ("litellm:anthropic/claude-3-5-sonnet", "litellm", dict(model="anthropic/claude-3-5-sonnet")),
])
def test_api_spec_becomes_lm_eval_model_and_args_without_a_key(monkeypatch, spec, model, args):
    for env in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(env, SECRET)
    parsed = bench.parse_spec(spec, concurrency=3, max_retries=7, timeout=30)
    assert parsed.lm_eval_model == model and parsed.model_args == {**args, **API_ARGS}
    assert parsed.kind == "api" and parsed.baseline and parsed.base_url == args.get("base_url")
    assert SECRET not in json.dumps(parsed.model_args)
    assert not {"api_key", "auth_token", "header"} & set(parsed.model_args)


def test_provider_spec_errors():
    with pytest.raises(bench.BenchError, match="no model name after anthropic:"):
        bench.parse_spec("anthropic:")
    with pytest.raises(bench.BenchError, match="litellm: takes no @URL"):
        bench.parse_spec("litellm:openai/gpt-4o@http://h")
    with pytest.raises(bench.BenchError, match="user name or password") as err:
        bench.parse_spec(f"anthropic:c@http://u:{SECRET}@h/v1")
    assert SECRET not in str(err.value)
    assert bench.split_spec("gemini:g@http://h/v1?key=x") == (None, "gemini:g@http://h/v1?key=x")
    assert bench.split_spec("mine=anthropic:claude-x") == ("mine", "anthropic:claude-x")
    assert bench.parse_spec("anthropic:c@http://h", base_url="http://other").base_url == "http://h/v1/messages"
    assert bench.parse_spec("anthropic:c", base_url="http://other").base_url == "http://other/v1/messages"


VLLM = dict(tensor_parallel_size=2, data_parallel_size=1, gpu_memory_utilization=0.8, max_model_len=4096)


def test_vllm_spec_and_lora_folder(tmp_path, tiny_lm_folder):
    spec = bench.parse_spec(f"vllm:{tiny_lm_folder}", vllm=VLLM)
    assert (spec.kind, spec.lm_eval_model, spec.baseline, spec.base_url) == ("vllm", "vllm", False, None)
    assert spec.model_args == dict(pretrained=str(tiny_lm_folder), batch_size="auto", **VLLM)
    unset = bench.parse_spec(f"vllm:{tiny_lm_folder}", vllm=dict(VLLM, max_model_len=None, data_parallel_size=None))
    assert "max_model_len" not in unset.model_args and "data_parallel_size" not in unset.model_args
    adapter = tmp_path / "ckpt"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_lm_folder),
                                                             "r": 8}))
    spec = bench.parse_spec(f"mine=vllm:{adapter}", vllm=VLLM)
    assert spec.name == "mine" and spec.model_args == dict(pretrained=str(tiny_lm_folder), lora_local_path=str(adapter),
                                                           batch_size="auto", **VLLM)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_lm_folder),
                                                             "r": 64}))
    assert bench.parse_spec(f"vllm:{adapter}").model_args["max_lora_rank"] == 64  # vLLM refuses rank > its max
    assert bench.parse_spec(f"vllm:{adapter}").name == "ckpt"
    with pytest.raises(bench.BenchError, match="does not exist"):
        bench.parse_spec(f"vllm:{tmp_path / 'missing'}")


def test_the_vllm_backend_takes_these_model_args():
    """The names crpo-bench passes are lm-eval vllm's own: read from its source, since the
    module imports vllm at its top."""
    import ast
    from importlib.util import find_spec

    source = Path(find_spec("lm_eval.models.vllm_causallms").origin).read_text()
    init = next(node for cls in ast.walk(ast.parse(source)) if isinstance(cls, ast.ClassDef) and cls.name == "VLLM"
                for node in cls.body if isinstance(node, ast.FunctionDef) and node.name == "__init__")
    params = {a.arg for a in init.args.args}
    for name in ("pretrained", "batch_size", "tensor_parallel_size", "data_parallel_size", "max_model_len",
                 "lora_local_path", "max_lora_rank"):
        assert name in params, name
    # gpu_memory_utilization is no parameter: **kwargs goes on to vllm.LLM(...)
    assert init.args.kwarg and "self.model_args.update(kwargs)" in ast.get_source_segment(source, init)


# --- missing extras ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec, extra", [("vllm:smollm2", "vllm"), ("litellm:anthropic/claude-x", "litellm")])
def test_missing_extra_is_named(monkeypatch, tmp_path, capsys, spec, extra):
    from crpo_bench.cli import main

    monkeypatch.setattr(bench, "find_spec", lambda name: None)  # as on a machine without the package
    with pytest.raises(bench.BenchError, match=f'pip install "crpo-bench\\[{extra}\\]"'):
        bench.check_spec(spec)
    out = tmp_path / "out"
    assert main(["run", "--model", spec, "--tasks", "muce_aut", "--out", str(out)]) == 2
    assert f'pip install "crpo-bench[{extra}]"' in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(bench.BenchError, match=f'crpo-bench\\[{extra}\\]'):
        bench.build_lm(bench.ModelSpec("m", "vllm" if extra == "vllm" else "api", extra, provider=None
                                       if extra == "vllm" else "litellm"))


# --- litellm: through a stand-in litellm module ---------------------------------------------


@pytest.fixture
def fake_litellm(monkeypatch):
    """A `litellm` module that answers acompletion/completion like LiteLLM (a response with
    model_dump()), fails its first call, and records every call's keyword arguments."""
    module = types.ModuleType("litellm")
    module.__spec__ = importlib.machinery.ModuleSpec("litellm", None)
    module.calls = []

    class Response:
        def __init__(self, body):
            self.body = body

        def model_dump(self):
            return openai_reply(self.body)

    def completion(**kwargs):
        module.calls.append(kwargs)
        if len(module.calls) == 1:
            raise ConnectionError("injected")
        return Response(kwargs)

    async def acompletion(**kwargs):
        return completion(**kwargs)

    module.completion, module.acompletion = completion, acompletion
    monkeypatch.setitem(sys.modules, "litellm", module)
    return module


def test_litellm_runs_with_key_and_timeout_per_call_never_in_model_args(tmp_path, muce_file, fake_litellm):
    spec = bench.parse_spec("litellm:anthropic/claude-x", concurrency=1, max_retries=3, timeout=17)
    bench.check_spec("litellm:anthropic/claude-x")  # the stand-in counts as installed
    lm = bench.build_lm(spec, SECRET)
    metadata = {"muce_data": str(muce_file), "lm": "none"}
    evaluation = bench.evaluate_pair(lm, spec, "muce_aut", 1, {"max_gen_toks": 12}, bench.task_manager(metadata))
    calls = fake_litellm.calls
    assert len(calls) >= 5  # 4 samples after 1 failure, retried
    assert all(c["api_key"] == SECRET and c["timeout"] == 17 and c["model"] == "anthropic/claude-x" for c in calls)
    path = bench.write_pair(tmp_path / "out", spec, "muce_aut", evaluation)
    assert SECRET not in path.read_text() and SECRET not in path.with_suffix(".samples.jsonl").read_text()
    assert "a doorstop" in path.with_suffix(".samples.jsonl").read_text()
    assert "api_key" not in bench.build_lm(spec, None)._create_payload([{"role": "user", "content": "x"}],
                                                                       generate=True, gen_kwargs={})


# --- vllm: for real, where vLLM and a GPU are present ----------------------------------------


def test_vllm_runs_for_real(tmp_path, muce_file, tiny_lm_folder):
    pytest.importorskip("vllm", reason="vLLM is not installed (pip install \"crpo-bench[vllm]\")")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a GPU and none is available")
    out = tmp_path / "r"
    proc = crpo_bench_run(["--model", f"v=vllm:{tiny_lm_folder}", "--gpu-memory-utilization", "0.3",
                           "--max-model-len", "512", *common(muce_file, out)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    meta = json.loads((out / "v" / "muce_aut.json").read_text())["crpo_bench"]
    assert meta["kind"] == "vllm" and meta["model_args"]["max_model_len"] == 512
