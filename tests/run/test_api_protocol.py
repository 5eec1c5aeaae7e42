"""The paper's baseline protocol on real APIs: decoding settings a provider refuses are not
sent, and the result and its metric card say per decoding setting what was asked, sent and
dropped; per-model MuCE templates and `--protocol paper` (scr for API baselines, default for
checkpoints), whose rows the leaderboard ranks in one table."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crpo_bench.run import runner as bench
from crpo_bench.scoring.card import COMPARED_FIELDS, differences

from http_stubs import openai_unrecognized_argument, reply_json
from test_bench_run import BIN, crpo_bench_run, muce_file  # noqa: F401 -- muce_file is a fixture
from test_providers import fake_litellm, openai_reply, stub_factory  # noqa: F401 -- fixtures

REFUSED = ("top_k", "typical_p")  # what OpenAI's Chat Completions API answers HTTP 400 to
PAPER_TASKS = ("muce_rlcps_16", "muce_aut_16", "muce_design_solutions_16", "muce_hypothesis_generation_16",
               "muce_metaphors_16", "muce_poems_16", "muce_sentence_completion_16")


class StrictOpenAI:
    """OpenAI's Chat Completions as it treats unknown fields: HTTP 400 with its exact error body
    to any request carrying top_k or typical_p, a completion otherwise. Records every body."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.refused: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 -- crpo-bench's "is anything listening" probe
                reply_json(self, 405, b"")

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                stub.bodies.append(body)
                bad = next((name for name in REFUSED if name in body), None)
                if bad:
                    stub.refused.append(bad)
                    return reply_json(self, 400, openai_unrecognized_argument(bad))
                reply_json(self, 200, json.dumps(openai_reply(body)).encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def openai_stub():
    stub = StrictOpenAI()
    yield stub
    stub.server.shutdown()


def run_args(out, tasks, metadata: dict, *extra) -> list:
    return ["--tasks", *tasks, "--limit", "1", "--concurrency", "4", "--gen-kwargs",
            json.dumps({"max_gen_toks": 8}), "--metadata", json.dumps({"lm": "none", **metadata}), "--out", out,
            *extra]


def assert_paper_settings_recorded(records: list[dict]) -> None:
    """The 4 settings of a _16 task on OpenAI: top_k and typical_p never sent; only setting 3's
    top_k 50 changes what was asked (it becomes T 0.7, top-p 1, as the paper's code ran it)."""
    assert [r["setting"] for r in records] == [1, 2, 3, 4]
    for r in records:
        assert set(r["dropped"]) == set(REFUSED) and not set(REFUSED) & set(r["sent"])
        assert r["sent"]["temperature"] == r["asked"]["temperature"] and "top_p" in r["sent"]
    assert [r["neutral"] for r in records] == [True, True, False, True]
    assert records[2]["asked"]["top_k"] == 50 and records[2]["sent"] == {"temperature": 0.7, "top_p": 1.0,
                                                                          "seed": None}


def test_the_table_names_what_each_provider_takes():
    table = bench.SAMPLING_ACCEPTED
    assert not {"top_k", "typical_p"} & table["openai"] and {"temperature", "top_p", "seed"} <= table["openai"]
    assert not {"top_k", "typical_p"} & table["gemini"]
    assert {"temperature", "top_p", "top_k"} <= table["anthropic"] and not {"typical_p", "seed"} & table["anthropic"]
    spec = bench.parse_spec
    assert bench.accepted_parameters(spec("litellm:anthropic/claude-x")) == table["anthropic"]
    assert bench.accepted_parameters(spec("litellm:gpt-4o")) == table["openai"]
    assert bench.accepted_parameters(spec("litellm:together_ai/m")) == table["openai"]  # LiteLLM's input shape
    assert bench.accepted_parameters(spec("api:m@http://h/v1")) is None  # any server: sent as given
    config = {"generation_kwargs": {"do_sample": True, "temperature": 0.7, "top_p": 0.95, "seed": None,
                                    "max_gen_toks": 1024, "until": []},
              "metadata": {"decoding": [{"temperature": 0.7, "top_p": 1.0, "top_k": 50, "typical_p": 1.0}]}}
    (claude,) = bench.decoding_record(spec("anthropic:claude-x"), config)
    assert claude == {"setting": 1, "asked": {"temperature": 0.7, "top_p": 1.0, "seed": None, "top_k": 50,
                                              "typical_p": 1.0},
                      "sent": {"temperature": 0.7, "top_p": 1.0, "top_k": 50}, "dropped": ["seed", "typical_p"],
                      "neutral": True}
    (gpt,) = bench.decoding_record(spec("openai:gpt-4o"), config, {"top_k": 0})  # --gen-kwargs win
    assert gpt["asked"]["top_k"] == 0 and gpt["dropped"] == ["top_k", "typical_p"] and gpt["neutral"]
    # a whole request: the fields lm-eval builds stay, an empty stop list does not
    sent, dropped = bench.split_parameters({"model": "m", "messages": [], "max_tokens": 8, "stop": [],
                                            "temperature": 0.7, "top_k": 50, "typical_p": 1.0},
                                           table["openai"])
    assert sent == {"model": "m", "messages": [], "max_tokens": 8, "temperature": 0.7}
    assert dropped == {"stop": [], "top_k": 50, "typical_p": 1.0}


def test_a_16_task_runs_on_openai_without_the_settings_it_refuses(tmp_path, muce_file, openai_stub):
    out = tmp_path / "r"
    proc = crpo_bench_run(["--model", f"gpt=openai:gpt-4o@{openai_stub.base}",
                           *run_args(out, ["muce_aut_16"], {"muce_data": str(muce_file)})], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert openai_stub.refused == [] and len(openai_stub.bodies) == 16  # 4 settings x 4 samples, none refused
    assert all(not set(REFUSED) & set(body) for body in openai_stub.bodies)
    assert {(b["temperature"], b["top_p"]) for b in openai_stub.bodies} == {(0.7, 0.95), (0.9, 0.99), (0.7, 1.0),
                                                                            (0.8, 0.97)}
    result = json.loads((out / "gpt" / "muce_aut_16.json").read_text())
    meta = result["crpo_bench"]
    assert meta["accepted_parameters"] == sorted(bench.SAMPLING_ACCEPTED["openai"])
    assert_paper_settings_recorded(meta["dropped_settings"]["muce_aut_16"])
    card = meta["card"]  # the card says so too, and names the template
    assert card["dropped_settings"] == meta["dropped_settings"]["muce_aut_16"]
    assert card["template"] == meta["template"] == "default" and card["protocol"] is None


def test_muce_paper_runs_on_openai_and_each_task_records_what_was_not_sent(tmp_path, openai_stub):
    out = tmp_path / "r"
    proc = crpo_bench_run(["--model", f"gpt=openai:gpt-4o@{openai_stub.base}", "--template", "gpt=scr",
                           *run_args(out, ["muce_paper"], {"muce_data": "examples"})], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert openai_stub.refused == [] and len(openai_stub.bodies) == 16 * len(PAPER_TASKS)
    assert all(not set(REFUSED) & set(body) for body in openai_stub.bodies)
    # the per-model template reached the prompts: scr's limit for AUT
    assert any("at most 17 words" in b["messages"][-1]["content"] for b in openai_stub.bodies)
    result = json.loads((out / "gpt" / "muce_paper.json").read_text())
    meta = result["crpo_bench"]
    assert set(meta["dropped_settings"]) == set(PAPER_TASKS) and meta["template"] == "scr"
    for task in PAPER_TASKS:
        assert_paper_settings_recorded(meta["dropped_settings"][task])
        card = result["configs"][task]["metadata"]["card"]
        assert card["template"] == "scr" and card["dropped_settings"] == meta["dropped_settings"][task]
    samples = (out / "gpt" / "muce_paper.samples.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["doc"]["task"] for line in samples) == sorted(PAPER_TASKS)  # one prompt each


def test_protocol_paper_gives_baselines_scr_and_checkpoints_default_in_one_table(tmp_path, muce_file, openai_stub,
                                                                                  tiny_lm_folder):
    out = tmp_path / "r"
    proc = crpo_bench_run(["--model", f"gpt=openai:gpt-4o@{openai_stub.base}", f"tiny={tiny_lm_folder}",
                           "--protocol", "paper", *run_args(out, ["muce_aut_16"], {"muce_data": str(muce_file)})],
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert openai_stub.refused == [] and all("at most 17 words" in b["messages"][-1]["content"]
                                             for b in openai_stub.bodies)
    gpt, tiny = (json.loads((out / m / "muce_aut_16.json").read_text())["crpo_bench"] for m in ("gpt", "tiny"))
    assert (gpt["template"], tiny["template"]) == ("scr", "default") and gpt["protocol"] == tiny["protocol"] == "paper"
    assert (gpt["card"]["row_template"], tiny["card"]["row_template"]) == ("scr", "default")
    assert gpt["card"]["template"] == tiny["card"]["template"] == "protocol:paper"
    assert differences(gpt["card"], tiny["card"]) == [] and "row_template" not in COMPARED_FIELDS
    assert tiny["dropped_settings"]["muce_aut_16"][2]["sent"]["top_k"] == 50  # a local model gets all
    assert tiny["card"]["dropped_settings"] == [] and len(gpt["card"]["dropped_settings"]) == 4
    sample = json.loads((out / "tiny" / "muce_aut_16.samples.jsonl").read_text().splitlines()[0])
    assert "at most 17 words" not in sample["arguments"][0][0]  # default: the full prompt alone

    board = subprocess.run([str(BIN / "crpo-bench"), "leaderboard", "--results", str(out), "--out",
                            str(tmp_path / "lb")], capture_output=True, text=True, timeout=300)
    assert board.returncode == 0, board.stderr[-4000:]
    text = (tmp_path / "lb" / "LEADERBOARD.md").read_text()
    assert text.count("## muce_aut_16") == 1 and "## muce_aut_16 [" not in text  # one table, not split
    table = text.split("## muce_aut_16", 1)[1].split("\n## ", 1)[0]
    assert "gpt" in table and "tiny" in table
    assert "not ranked together" not in text


# what each API documents, written out here (not read from bench's table): a request with any
# other field is refused with HTTP 400, as Anthropic refuses it ("Extra inputs are not permitted")
DOCUMENTED = {
    "anthropic": {"model", "messages", "system", "max_tokens", "stop_sequences", "temperature", "top_p", "top_k",
                  "metadata", "stream"},
    "gemini": {"model", "messages", "max_tokens", "max_completion_tokens", "stop", "temperature", "top_p", "seed",
               "n", "presence_penalty", "frequency_penalty", "stream"},
}


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_a_16_task_runs_on_anthropic_and_gemini(tmp_path, muce_file, stub_factory, provider):
    from test_providers import anthropic_reply

    refused = []

    def reply(body):
        extra = sorted(set(body) - DOCUMENTED[provider])
        if extra:
            refused.append(extra)
        return anthropic_reply(body) if provider == "anthropic" else openai_reply(body)

    stub = stub_factory(reply, "/v1" if provider == "anthropic" else "/v1beta/openai")
    out = tmp_path / "r"
    proc = crpo_bench_run(["--model", f"m={provider}:model-x@{stub.base}",
                           *run_args(out, ["muce_aut_16"], {"muce_data": str(muce_file)})], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    bodies = [body for _, _, body in stub.posts()]
    assert len(bodies) == 16 and refused == []
    records = json.loads((out / "m" / "muce_aut_16.json").read_text())["crpo_bench"]["dropped_settings"]["muce_aut_16"]
    if provider == "anthropic":  # top_k is Anthropic's: setting 3 keeps its top-k 50; seed and typical_p go
        assert sum(b.get("top_k") == 50 for b in bodies) == 4 and all(b.get("top_k") in (None, 50) for b in bodies)
        assert [r["dropped"] for r in records] == [["seed", "top_k", "typical_p"], ["seed", "top_k", "typical_p"],
                                                   ["seed", "typical_p"], ["seed", "top_k", "typical_p"]]
        assert all(r["neutral"] for r in records)
    else:
        assert_paper_settings_recorded(records)


def test_a_16_task_through_litellm_sends_what_its_provider_takes(tmp_path, muce_file, fake_litellm):
    metadata = {"muce_data": str(muce_file), "lm": "none"}
    manager = bench.task_manager(metadata)
    for model in ("openai/gpt-4o", "anthropic/claude-x"):
        fake_litellm.calls.clear()
        spec = bench.parse_spec(f"litellm:{model}", concurrency=4, max_retries=2)
        evaluation = bench.evaluate_pair(bench.build_lm(spec, None), spec, "muce_aut_16", 1, {"max_gen_toks": 8},
                                         manager)
        calls = fake_litellm.calls[1:]  # the stand-in fails its first call, which is retried
        assert len(calls) == 16 and all("typical_p" not in c for c in calls)
        top_k = sorted(c.get("top_k") for c in calls if "top_k" in c)
        assert top_k == ([] if model.startswith("openai") else [50] * 4)
        meta = json.loads(bench.write_pair(tmp_path / model.split("/")[0], spec, "muce_aut_16", evaluation,
                                           {"max_gen_toks": 8}).read_text())["crpo_bench"]
        records = meta["dropped_settings"]["muce_aut_16"]
        assert [r["neutral"] for r in records] == ([True, True, False, True] if model.startswith("openai") else
                                                   [True] * 4)


def test_template_and_protocol_arguments_are_checked_before_any_work(tmp_path, capsys):
    from crpo_bench.cli import main

    out = tmp_path / "out"
    base = ["run", "--model", "gpt=openai:gpt-4o@http://127.0.0.1:9/v1", "--tasks", "muce_aut", "--out", str(out)]
    for extra, message in ((["--template", "gpt=fancy"], "MuCE template 'fancy': choose one of"),
                           (["--template", "other=scr"], "no model named 'other' in this run"),
                           (["--protocol", "paper", "--template", "scr"], "--protocol paper gives each model"),
                           (["--protocol", "paper", "--metadata", '{"template": "scr"}'], "--metadata's template"),
                           (["--metadata", '{"protocol": "paper"}'], "protocol is set by --protocol NAME")):
        assert main([*base, *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra
    assert not out.exists()
