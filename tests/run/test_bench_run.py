"""`crpo-bench run`: model specs, API baselines over real HTTP (with failures that are
retried, and a dead server), API keys that never reach a file or a log, resume."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from crpo_bench.run import runner as bench
from http_stubs import reply_json

BIN = Path(sys.executable).parent
SECRET = "sk-crpo-test-0123456789abcdef"
MUCE_ROWS = [{"Set": "heldout_item", "TasksNamesFull": "Alternate Uses", "Prompt": item, "Response": "x",
              "facsco_grm_scaled": 20, "Language": "eng"} for item in ("brick", "spoon")]


@pytest.fixture(scope="module")
def muce_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("muce") / "muce.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in MUCE_ROWS))
    return path


def crpo_bench_run(args: list, cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([str(BIN / "crpo-bench"), "run", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def common(muce_file: Path, out: Path) -> list:
    return ["--tasks", "muce_aut", "--limit", "1", "--gen-kwargs", json.dumps({"max_gen_toks": 12}),
            "--metadata", json.dumps({"muce_data": str(muce_file), "lm": "none"}), "--out", out]


def test_specs(tmp_path, tiny_lm_folder):
    spec = bench.parse_spec("gpt4o=openai:gpt-4o")
    assert (spec.name, spec.kind, spec.base_url, spec.baseline) == ("gpt4o", "api", bench.OPENAI_CHAT_URL, True)
    assert "api_key" not in spec.model_args and "auth_token" not in spec.model_args
    spec = bench.parse_spec("api:my-model@http://127.0.0.1:9/", max_retries=7)
    assert spec.base_url == "http://127.0.0.1:9/v1/chat/completions" and spec.model_args["max_retries"] == 7
    assert bench.parse_spec("api:m", base_url="http://h:1/v1/chat/completions").base_url == "http://h:1/v1/chat/completions"
    with pytest.raises(bench.BenchError, match="needs an endpoint"):
        bench.parse_spec("api:m")
    spec = bench.parse_spec(str(tiny_lm_folder))
    assert spec.kind == "hf" and spec.model_args["pretrained"] == str(tiny_lm_folder) and not spec.baseline
    adapter = tmp_path / "ckpt"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_lm_folder)}))
    spec = bench.parse_spec(f"mine={adapter}")
    assert spec.name == "mine" and spec.model_args["pretrained"] == str(tiny_lm_folder)
    assert spec.model_args["peft"] == str(adapter)
    with pytest.raises(bench.BenchError, match="does not exist"):
        bench.parse_spec(str(tmp_path / "missing"))


class FlakyProxy:
    """Forwards to the real chat server; the 1st request gets HTTP 500, the 2nd stalls past
    the client's timeout. Records every request's Authorization header."""

    def __init__(self, target: str, stall_s: float):
        self.target, self.stall_s = target, stall_s
        self.events: list[str] = []
        self.auth: list[str | None] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy.auth.append(self.headers.get("Authorization"))
                n = len(proxy.events)
                if n == 0:
                    proxy.events.append("500")
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b'{"error": "injected"}')
                    return
                if n == 1:
                    proxy.events.append("stall")
                    time.sleep(proxy.stall_s)
                else:
                    proxy.events.append("ok")
                req = urllib.request.Request(proxy.target, data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=120) as answer:
                    payload = answer.read()
                reply_json(self, 200, payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/chat/completions"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_api_baseline_retries_errors_and_timeouts_and_never_writes_the_key(tmp_path, muce_file, chat_server_url):
    proxy = FlakyProxy(chat_server_url, stall_s=4)
    out = tmp_path / "results"
    proc = crpo_bench_run(["--model", f"base=api:tiny@{proxy.url}", "--timeout", "2", "--max-retries", "5",
                           "--concurrency", "1", "--api-key-env", "MY_PROVIDER_KEY", *common(muce_file, out)],
                          cwd=tmp_path, env_extra={"MY_PROVIDER_KEY": SECRET})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proxy.events[:2] == ["500", "stall"] and proxy.events.count("ok") >= 4  # 4 samples after 2 failures
    assert set(proxy.auth) == {f"Bearer {SECRET}"}  # the key was sent ...
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert out / "base" / "muce_aut.json" in written and out / "base" / "muce_aut.samples.jsonl" in written
    for path in written:  # ... and written nowhere
        assert SECRET not in path.read_text(errors="ignore"), path
    assert SECRET not in proc.stdout + proc.stderr
    meta = json.loads((out / "base" / "muce_aut.json").read_text())["crpo_bench"]
    assert meta["baseline"] is True and meta["model_args"]["base_url"] == proxy.url


def test_dead_server_gives_a_clear_error(tmp_path, muce_file):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    proc = crpo_bench_run(["--model", f"api:x@http://127.0.0.1:{port}", *common(muce_file, tmp_path / "r")],
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert f"cannot connect to http://127.0.0.1:{port}/v1/chat/completions" in proc.stderr
    assert not (tmp_path / "r" / "x").exists()


def test_resume_skips_finished_pairs(tmp_path, muce_file, tiny_lm_folder):
    out = tmp_path / "results"
    args = ["--model", f"tiny={tiny_lm_folder}", "--tasks", "muce_aut", "muce_aut_16", *common(muce_file, out)[2:]]
    first = crpo_bench_run(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    done = {p.name: p.stat().st_mtime_ns for p in (out / "tiny").glob("*.json")}
    assert set(done) == {"muce_aut.json", "muce_aut_16.json"}
    (out / "tiny" / "muce_aut_16.json").unlink()  # as if the run had stopped before this pair
    second = crpo_bench_run(args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-4000:]
    assert f"skip tiny / muce_aut: done" in second.stdout and "1 pair(s) run, 1 skipped" in second.stdout
    assert (out / "tiny" / "muce_aut.json").stat().st_mtime_ns == done["muce_aut.json"]
    assert (out / "tiny" / "muce_aut_16.json").is_file()


def test_chat_template_by_default_and_raw_prompts_on_request(tmp_path, muce_file, tiny_lm_folder):
    for flag, templated in (([], True), (["--no-chat-template"], False)):
        out = tmp_path / f"r{len(flag)}"
        proc = crpo_bench_run(["--model", f"tiny={tiny_lm_folder}", *flag, *common(muce_file, out)], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-4000:]
        sample = json.loads((out / "tiny" / "muce_aut.samples.jsonl").read_text().splitlines()[0])
        prompt = sample["arguments"][0][0]  # (context, generation settings) of the first request
        assert ("<|user|>" in prompt) is templated, prompt  # the tiny tokenizer's chat template marks turns


# --- issue 13.1: a model or task name becomes a file name and stays inside --out ---------


@pytest.mark.parametrize("spec", ["..=smollm2", ".=smollm2", "a/b=smollm2"])
def test_unsafe_model_name_is_refused_before_any_work(tmp_path, spec):
    """As reported: `..=` wrote box/muce_aut.json beside --out, `.=` into its root, and
    `a/b=smollm2` dropped the name and died in the hub with a traceback."""
    proc = crpo_bench_run(["--model", spec, "--tasks", "muce_aut", "--limit", "1", "--out", "box/out"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-4000:]
    assert f"model spec {spec!r}" in proc.stderr and bench.NAME_RULE in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "box").exists()  # refused before anything was written, or any model resolved


@pytest.mark.parametrize("name", ["<script>", "a|b", "a\nb", "$HOME", "x" * 65, ""])
def test_names_with_shell_or_html_syntax_are_refused(tmp_path, capsys, name):
    from crpo_bench.cli import main

    out = tmp_path / "out"
    assert main(["run", "--model", f"{name}=smollm2", "--tasks", "muce_aut", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"model name {name!r} is not allowed" in err and bench.NAME_RULE in err
    assert not out.exists()


def test_unsafe_task_name_is_refused(tmp_path, capsys):
    from crpo_bench.cli import main

    out = tmp_path / "box" / "out"
    assert main(["run", "--model", "m=api:m@http://127.0.0.1:9/v1", "--tasks", "../../muce_aut", "--out", str(out)]) == 2
    assert "task name '../../muce_aut' is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "box").exists()


def test_safe_names_and_derived_names(tmp_path, tiny_lm_folder):
    assert bench.split_spec("crpo-v1.2+lora_b=smollm2") == ("crpo-v1.2+lora_b", "smollm2")
    assert bench.split_spec("api:m@http://h/v1?x=y") == (None, "api:m@http://h/v1?x=y")  # "=" of a URL query
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "lr=1e-4").symlink_to(tiny_lm_folder)  # an existing folder with "=" in its path is WHAT
    spec = bench.parse_spec(str(runs / "lr=1e-4"))
    assert (spec.name, spec.renamed_from) == ("lr_1e-4", "lr=1e-4")  # escaped, and the notice knows from what
    spec = bench.parse_spec("api:org/model@http://h")
    assert (spec.name, spec.renamed_from) == ("org_model", "org/model")
    assert bench.parse_spec("api:..@http://h").name == "model"  # a derived name never starts with "."
    with pytest.raises(bench.BenchError, match="nothing after '='"):
        bench.split_spec("name=")


def test_every_written_path_resolves_inside_out(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "linked").symlink_to(elsewhere)  # a model folder that points outside --out
    with pytest.raises(bench.BenchError, match="outside --out"):
        bench.result_path(out, "linked", "muce_aut")
    spec = bench.ModelSpec("..", "hf", "hf")  # built without parse_spec
    with pytest.raises(bench.BenchError, match="model name '..' is not allowed"):
        bench.plan([spec], ["muce_aut"], out)
    assert bench.result_path(out, "m", "muce_aut") == out / "m" / "muce_aut.json"


# --- issue 13.5: endpoint URLs, and which key goes where ----------------------------------


def test_endpoint_url_is_normalised_once():
    for url in ("http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/", "http://h:1/v1/chat/completions",
                "http://h:1/v1/chat/completions/"):
        assert bench.parse_spec(f"api:m@{url}").base_url == "http://h:1/v1/chat/completions", url
    assert bench.parse_spec("api:m@https://h/v1beta/openai").base_url == "https://h/v1beta/openai/chat/completions"
    assert bench.parse_spec("openai:gpt-4o", base_url="http://h/v1").base_url == "http://h/v1/chat/completions"
    assert bench.parse_spec("openai:gpt-4o").base_url == bench.OPENAI_CHAT_URL
    for bad, message in (("ftp://h/v1", "not an http"), ("h/v1", "not an http"), ("http://h:port/", "not an http"),
                         (f"http://user:{SECRET}@h/v1", "user name or password")):
        with pytest.raises(bench.BenchError, match=message) as err:
            bench.parse_spec(f"api:m@{bad}")
        assert SECRET not in str(err.value)


def test_openai_key_goes_only_to_openai(monkeypatch, capsys):
    from crpo_bench.commands.run import _api_keys

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("MY_KEY", raising=False)
    openai, custom = bench.parse_spec("openai:gpt-4o"), bench.parse_spec("api:m@http://h/v1")
    lookalike = bench.parse_spec("api:m2@https://api.openai.com.example.org/v1")
    assert _api_keys([openai, custom, lookalike], None) == {"gpt-4o": SECRET, "m": None, "m2": None}
    assert "model m: no API key sent to http://h/v1/chat/completions" in capsys.readouterr().out
    with pytest.raises(bench.BenchError, match="--api-key-env MY_KEY: that environment variable is not set"):
        _api_keys([custom], "MY_KEY")
    monkeypatch.setenv("MY_KEY", "other")
    assert _api_keys([custom], "MY_KEY") == {"m": "other"}
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(bench.BenchError, match="need an API key: set OPENAI_API_KEY"):
        _api_keys([openai], None)


class StubChat:
    """A chat-completions endpoint that answers every POST with a fixed reply and records
    each request's method, path and headers."""

    def __init__(self):
        self.requests: list[tuple[str, str, dict]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self):
                stub.requests.append((self.command, self.path, dict(self.headers.items())))

            def do_GET(self):  # noqa: N802 -- crpo-bench's "is anything listening" probe
                self._record()
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._record()
                payload = json.dumps({"id": "stub", "object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "a doorstop"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"  # a base URL, as providers document it
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def auth(self, method: str = "POST") -> list:
        return [{k.lower(): v for k, v in h.items()}.get("authorization") for m, _, h in self.requests if m == method]


def test_custom_endpoint_gets_its_path_right_and_no_openai_key(tmp_path, muce_file):
    """As reported: api:MODEL@http://host/v1 posted to /v1/v1/chat/completions, and the
    OPENAI_API_KEY of the environment went to any custom endpoint as a bearer token."""
    stub = StubChat()
    try:
        unasked = crpo_bench_run(["--model", f"stub=api:tiny@{stub.base}", "--concurrency", "1",
                                  *common(muce_file, tmp_path / "r1")], cwd=tmp_path, env_extra={"OPENAI_API_KEY": SECRET})
        assert unasked.returncode == 0, unasked.stderr[-4000:]
        posts = [path for method, path, _ in stub.requests if method == "POST"]
        assert len(posts) >= 4 and set(posts) == {"/v1/chat/completions"}
        assert stub.auth("POST") == [None] * len(posts) and set(stub.auth("GET")) == {None}  # no header at all
        assert "model stub: no API key sent to" in unasked.stdout

        stub.requests.clear()
        asked = crpo_bench_run(["--model", f"stub=api:tiny@{stub.base}", "--concurrency", "1", "--api-key-env",
                                "MY_PROVIDER_KEY", *common(muce_file, tmp_path / "r2")], cwd=tmp_path,
                               env_extra={"OPENAI_API_KEY": "sk-openai-must-not-travel", "MY_PROVIDER_KEY": SECRET})
        assert asked.returncode == 0, asked.stderr[-4000:]
        assert set(stub.auth("POST")) == {f"Bearer {SECRET}"}  # the key that was asked for, and only that one
    finally:
        stub.server.shutdown()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert tmp_path / "r1" / "stub" / "muce_aut.json" in written and tmp_path / "r2" / "stub" / "muce_aut.json" in written
    for path in written:
        text = path.read_text(errors="ignore")
        assert SECRET not in text and "sk-openai-must-not-travel" not in text, path
    for proc in (unasked, asked):
        assert SECRET not in proc.stdout + proc.stderr
    meta = json.loads((tmp_path / "r2" / "stub" / "muce_aut.json").read_text())["crpo_bench"]
    assert meta["model_args"]["base_url"] == f"{stub.base}/chat/completions"


class NumberingChat(StubChat):
    """A chat endpoint whose every answer is new: `idea 1`, `idea 2`, ... in arrival order."""

    def __init__(self):
        super().__init__()
        stub, handler = self, self.server.RequestHandlerClass
        stub.count = 0

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._record()
            stub.count += 1
            reply_json(self, 200, json.dumps({"id": "stub", "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": f"idea number {stub.count} of many"},
                 "finish_reason": "stop"}], "usage": {}}).encode())

        handler.do_POST = do_POST

    def posts(self) -> int:
        return sum(method == "POST" for method, _, _ in self.requests)


def test_a_rerun_after_a_crash_sends_no_request_that_was_answered(tmp_path, muce_file):
    """The pair's result never written (a crash after some or all answers arrived): the rerun
    takes every answered request from out/<model>/requests.sqlite and sends only the others."""
    import sqlite3

    stub = NumberingChat()
    out = tmp_path / "results"
    args = ["--model", f"stub=api:tiny@{stub.base}", "--concurrency", "1", *common(muce_file, out)]
    try:
        first = crpo_bench_run(args, cwd=tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]
        sent = stub.posts()
        assert sent == 4  # one item, 4 samples
        answers = lambda: [s["resps"] for s in map(json.loads, (out / "stub" / "muce_aut.samples.jsonl").open())]
        before = answers()
        cache = out / "stub" / "requests.sqlite"
        with sqlite3.connect(cache) as db:
            assert db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 4
        (out / "stub" / "muce_aut.json").unlink()  # the crash: no result
        again = crpo_bench_run(args, cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        assert stub.posts() == sent and answers() == before
        assert "4 request(s) answered from" in again.stdout
        # a crash after 2 of 4 answers: the rerun sends the 2 others
        with sqlite3.connect(cache) as db:
            db.execute("DELETE FROM answers WHERE rowid IN (SELECT rowid FROM answers LIMIT 2)")
        (out / "stub" / "muce_aut.json").unlink()
        third = crpo_bench_run(args, cwd=tmp_path)
        assert third.returncode == 0, third.stderr[-3000:]
        assert stub.posts() == sent + 2
        assert len(set(answers()[0][0])) == 4, answers()  # still four different samples
    finally:
        stub.server.shutdown()


def test_kill_9_mid_run_then_a_rerun_sends_no_answered_request_again(tmp_path, muce_file):
    """A real kill -9: the endpoint holds the third request until the run is killed; the rerun
    sends only the third and fourth (the third was never answered), never the first two."""
    import sqlite3

    stub = NumberingChat()
    numbered, held, release, arrivals = stub.server.RequestHandlerClass.do_POST, threading.Event(), \
        threading.Event(), []

    def do_post(handler):
        arrivals.append(1)
        if len(arrivals) == 3:
            held.set()
            release.wait(120)  # then answers into a closed connection
        numbered(handler)

    stub.server.RequestHandlerClass.do_POST = do_post
    out = tmp_path / "results"
    args = ["run", "--model", f"stub=api:tiny@{stub.base}", "--concurrency", "1", *common(muce_file, out)]
    try:
        proc = subprocess.Popen([str(BIN / "crpo-bench"), *map(str, args)], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert held.wait(600), proc.communicate(timeout=60)[1][-3000:]
        proc.kill()  # SIGKILL: no handler, no cleanup
        proc.wait(timeout=60)
        release.set()
        with sqlite3.connect(out / "stub" / "requests.sqlite") as db:
            assert db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 2
        assert not (out / "stub" / "muce_aut.json").exists()
        before = len(arrivals)
        again = crpo_bench_run(args[1:], cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        assert len(arrivals) - before == 2  # the unanswered third and the fourth; the first two from the cache
        assert "2 request(s) answered from" in again.stdout
    finally:
        release.set()
        stub.server.shutdown()
