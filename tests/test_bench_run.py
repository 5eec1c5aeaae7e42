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

from crpo_bench import bench

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
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the stalled client gave up
                    pass

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
