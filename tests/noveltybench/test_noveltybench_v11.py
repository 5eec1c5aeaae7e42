"""NoveltyBench v1.1 in `crpo-bench noveltybench` (issue 24, item 4): versioned folders
(v1.1: `distinct` = classes, classes numbered in order of first appearance), an older
crpo-bench's flat files still read as v1.0, and the `llm` judge against a local HTTP stub."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler

import pytest
from http_stubs import reply_json, send_reply, serve
from test_noveltybench import GENS, read_lines, write_generations

from crpo_bench import noveltybench as nb
from crpo_bench.cli import main

KEY = "sk-test-0123456789-do-not-write-me"


def nb_run(run, *extra):
    return main(["noveltybench", "--eval-dir", str(run), *extra])


# --- layout ---------------------------------------------------------------------------------


def test_version_1_1_is_the_default_and_writes_its_own_folder(tmp_path, capsys):
    run = tmp_path / "run"
    write_generations(run, GENS)
    assert nb_run(run, "--equivalence", "unigram") == 0
    assert sorted(p.name for p in run.iterdir()) == ["generations.jsonl", "v1.1"]  # nothing flat
    v11 = run / "v1.1"
    assert {"partitions.jsonl", "scores.jsonl", "summary.json", "noveltybench_settings.json"} <= {
        p.name for p in v11.iterdir()}
    partitions = read_lines(v11 / "partitions.jsonl")
    assert partitions[0]["partition"] == [0, 0, 1, 2, 0, 1, 3, 0, 4, 2]
    for row in partitions + read_lines(v11 / "scores.jsonl"):
        assert row["distinct"] == row["num_classes"] == len(set(row["partition"]))  # v1.1: classes
        assert row["partition"] == nb.canonical(row["partition"])
    assert [r["distinct"] for r in partitions] == [5, 3]
    summary = json.loads((v11 / "summary.json").read_text())
    assert summary["version"] == "1.1" and summary["mean_distinct"] == pytest.approx(4.0)
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["version"] == "1.1"

    # v1.0 beside it, in the same eval dir: classes - 1, and v1.1's files untouched
    before = {p.name: p.read_bytes() for p in v11.iterdir()}
    assert nb_run(run, "--version", "1.0", "--equivalence", "unigram") == 0
    assert {p.name: p.read_bytes() for p in v11.iterdir()} == before
    old = read_lines(run / "v1.0" / "partitions.jsonl")
    assert [r["partition"] for r in old] == [r["partition"] for r in partitions]
    assert [r["distinct"] for r in old] == [4, 2] and [r["num_classes"] for r in old] == [5, 3]
    summary = json.loads((run / "v1.0" / "summary.json").read_text())
    assert summary["version"] == "1.0" and summary["mean_distinct"] == pytest.approx(4.0)


def test_v11_relabels_classes_in_order_of_first_appearance(tmp_path, monkeypatch):
    run = tmp_path / "run"
    write_generations(run, GENS[:1])
    monkeypatch.setattr(nb, "partition", lambda gens, eq: [3, 3, 7, 0, 3, 7, 1, 3, 2, 0])
    assert nb_run(run, "--equivalence", "unigram") == 0
    (row,) = read_lines(run / "v1.1" / "partitions.jsonl")
    assert row["partition"] == [0, 0, 1, 2, 0, 1, 3, 0, 4, 2] and row["distinct"] == 5
    assert nb.canonical([2, 2, 0, 5]) == [0, 0, 1, 2]


def make_flat(run, *extra):
    """The flat files an older crpo-bench wrote: v1.0's files, moved up out of v1.0/."""
    assert nb_run(run, "--version", "1.0", *extra) == 0
    for path in (run / "v1.0").iterdir():
        path.rename(run / path.name)
    (run / "v1.0").rmdir()
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def test_flat_files_of_an_older_version_are_read_as_v1_0_and_left_alone(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    write_generations(run, GENS)
    flat = make_flat(run, "--equivalence", "unigram")
    assert {"partitions.jsonl", "scores.jsonl", "summary.json", "noveltybench_settings.json"} <= set(flat)
    seen = []
    real = nb.partition
    monkeypatch.setattr(nb, "partition", lambda gens, eq: seen.append(gens[0]) or real(gens, eq))

    # --version 1.0 resumes from them: nothing to partition again, the same records under v1.0/
    assert nb_run(run, "--version", "1.0", "--equivalence", "unigram") == 0
    assert seen == []
    assert (run / "v1.0" / "partitions.jsonl").read_bytes() == flat["partitions.jsonl"]
    assert (run / "v1.0" / "scores.jsonl").read_bytes() == flat["scores.jsonl"]
    assert "starts from the flat partitions.jsonl, scores.jsonl" in capsys.readouterr().err
    assert json.loads((run / "v1.0" / "summary.json").read_text())["version"] == "1.0"

    # --version 1.1 leaves them aside and partitions again
    assert nb_run(run, "--equivalence", "unigram") == 0
    assert len(seen) == 2
    assert "left as they are; --version 1.0 resumes from them" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == flat  # never changed


def test_flat_files_bind_their_settings_as_the_flat_folder_did(tmp_path, capsys):
    """Resuming the flat files with other settings is refused, as it was in the flat layout;
    v1.1 is another folder, free."""
    run = tmp_path / "run"
    write_generations(run, GENS[:1])
    make_flat(run, "--equivalence", "unigram")
    assert nb_run(run, "--version", "1.0", "--equivalence", "embedding") == 2
    assert "holds results made with other settings (equivalence)" in capsys.readouterr().err
    assert nb_run(run, "--equivalence", "embedding") == 0


def test_flat_partitions_of_the_reference_seed_v1_0_up_to_a_torn_line(tmp_path, monkeypatch):
    run = tmp_path / "run"
    write_generations(run, GENS)
    kept = {"id": "p-1", "prompt": GENS[0]["prompt"], "generations": GENS[0]["generations"],
            "partition": [0] * 10, "distinct": 0}
    torn = json.dumps({"id": "p-2", "prompt": GENS[1]["prompt"], "generations": GENS[1]["generations"],
                       "partition": [0] * 10, "distinct": 0})
    (run / "partitions.jsonl").write_text(json.dumps(kept) + "\n" + torn[:40])
    seen = []
    real = nb.partition
    monkeypatch.setattr(nb, "partition", lambda gens, eq: seen.append(gens[0]) or real(gens, eq))
    assert nb_run(run, "--version", "1.0", "--equivalence", "unigram") == 0
    assert seen == [GENS[1]["generations"][0]]  # only the torn prompt
    rows = read_lines(run / "v1.0" / "partitions.jsonl")
    assert rows[0] == kept  # the reference's record, used as it is
    assert rows[1]["id"] == "p-2" and rows[1]["partition"] == [0, 0, 1, 2, 2, 2, 2, 2, 2, 2] and rows[1]["distinct"] == 2
    assert (run / "partitions.jsonl").read_text().endswith(torn[:40])  # the flat file as it was


# --- the llm judge against a stub -------------------------------------------------------------


ANSWER = re.compile(r"=== Answer (\d+) ===\n(.*?)(?=\n\n=== Answer \d+ ===\n|\Z)", re.S)


def shown_answers(body: dict) -> list[str]:
    """The answers a request shows, in the order shown (chat or Messages format)."""
    user = body["messages"][-1]["content"]
    found = ANSWER.findall(user)
    assert [int(k) for k, _ in found] == list(range(1, len(found) + 1))
    return [text for _, text in found]


def content_groups(shown: list[str]) -> dict:
    """What a sensible judge answers: answers with the same first three words (lowercased,
    punctuation dropped) in one group, numbered as shown."""
    groups: dict[tuple, list[int]] = {}
    for k, text in enumerate(shown, 1):
        groups.setdefault(tuple(re.findall(r"[a-z0-9]+", text.lower())[:3]), []).append(k)
    return {"groups": list(groups.values())}


class StubJudge:
    """A chat endpoint on 127.0.0.1. `answer(n, body, headers)` gives the n-th request's
    reply: a str (the judge's text), (status, payload bytes) or (status, payload, headers).
    Requests are recorded."""

    def __init__(self, answer):
        self.answer, self.requests, self.lock = answer, [], threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    n = len(stub.requests)
                reply = stub.answer(n, body, dict(self.headers))
                if isinstance(reply, tuple) and len(reply) == 3:
                    return send_reply(self, *reply)
                if isinstance(reply, tuple):
                    return reply_json(self, *reply)
                if self.path.endswith("/messages"):
                    payload = {"type": "message", "content": [{"type": "text", "text": reply}]}
                else:
                    payload = {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]}
                reply_json(self, 200, json.dumps(payload).encode())

        self.server, self.port = serve(Handler)

    def url(self, prefix="api", model="judge-m"):
        return f"{prefix}:{model}@http://127.0.0.1:{self.port}/v1"

    def shown(self):
        return [shown_answers(r["body"]) for r in self.requests]


@pytest.fixture
def stub():
    servers = []

    def start(answer):
        servers.append(StubJudge(answer))
        return servers[-1]

    yield start
    for s in servers:
        s.server.shutdown()
        s.server.server_close()


def sensible(n, body, headers):
    return json.dumps(content_groups(shown_answers(body)))


def test_llm_judge_groups_are_used_in_one_request_per_prompt(tmp_path, stub, capsys):
    judge = stub(sensible)
    run = tmp_path / "run"
    write_generations(run, GENS)
    assert nb_run(run, "--equivalence", "llm", "--judge-model", judge.url()) == 0
    assert len(judge.requests) == 2  # one per prompt
    request = judge.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["body"]["model"] == "judge-m"
    assert request["body"]["messages"][0] == {"role": "system", "content": nb.LLM_JUDGE_SYSTEM}
    assert GENS[0]["prompt"] in request["body"]["messages"][1]["content"]
    assert judge.shown() == [g["generations"] for g in GENS]  # all answers, in their own order
    assert "Authorization" not in request["headers"]  # no key for a custom endpoint unless asked
    assert "no API key sent to" in capsys.readouterr().err

    partitions = read_lines(run / "v1.1" / "partitions.jsonl")
    assert partitions[0]["partition"] == [0, 0, 1, 2, 0, 1, 3, 0, 4, 2]
    assert partitions[1]["partition"] == [0, 0, 1, 2, 2, 2, 2, 2, 2, 2]
    assert [r["distinct"] for r in partitions] == [5, 3]
    assert all(r["judge_lenient"] is False and r["judge_attempts"] == 1 for r in partitions)
    summary = json.loads((run / "v1.1" / "summary.json").read_text())
    assert summary["equivalence"] == "llm" and summary["judge_model"] == "api:judge-m"
    assert summary["judge_spec"] == judge.url() and summary["judge_endpoint"].endswith("/v1/chat/completions")
    assert summary["judge_lenient"] == 0 and summary["seed"] is None and summary["mean_distinct"] == 4.0

    # resume: nothing asked again
    assert nb_run(run, "--equivalence", "llm", "--judge-model", judge.url()) == 0
    assert len(judge.requests) == 2


def test_a_bad_answer_is_asked_again(tmp_path, stub):
    judge = stub(lambda n, body, headers: "Sure! The answers fall into five groups." if n == 1
                 else sensible(n, body, headers))
    run = tmp_path / "run"
    write_generations(run, GENS[:1])
    assert nb_run(run, "--equivalence", "llm", "--judge-model", judge.url()) == 0
    assert len(judge.requests) == 2
    assert judge.requests[0]["body"] == judge.requests[1]["body"]  # the same question again
    (row,) = read_lines(run / "v1.1" / "partitions.jsonl")
    assert row["partition"] == [0, 0, 1, 2, 0, 1, 3, 0, 4, 2]
    assert row["judge_attempts"] == 2 and row["judge_lenient"] is False and "judge_problem" not in row


def test_answers_that_stay_bad_are_read_leniently_and_counted(tmp_path, stub):
    def always_bad(n, body, headers):
        if body["messages"][1]["content"].startswith("Prompt:\nName a color."):
            # answer 2 twice, 99 and "x" no answer, 4-10 in no group
            return '{"groups": [[1, 2, 2], [2, 3], [99, "x"], []]}'
        return "I cannot group these."

    judge = stub(always_bad)
    run = tmp_path / "run"
    write_generations(run, GENS)
    assert nb_run(run, "--equivalence", "llm", "--judge-model", judge.url()) == 0
    assert len(judge.requests) == 2 * nb.JUDGE_ATTEMPTS  # asked 3 times per prompt, then read leniently
    colors, jokes = read_lines(run / "v1.1" / "partitions.jsonl")
    # 2 keeps its first group; 3 joins the second; the rest stand alone
    assert colors["partition"] == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8] and colors["distinct"] == 9
    assert jokes["partition"] == list(range(10))  # nothing readable: every answer its own class
    for row in (colors, jokes):
        assert row["judge_lenient"] is True and row["judge_attempts"] == nb.JUDGE_ATTEMPTS and row["judge_problem"]
    assert "more than one group" in colors["judge_problem"] and "not JSON" in jokes["judge_problem"]
    summary = json.loads((run / "v1.1" / "summary.json").read_text())
    assert summary["judge_lenient"] == 2 and summary["judge_lenient_ids"] == ["p-1", "p-2"]


def test_grouping_parsers():
    assert nb.strict_groups('{"groups": [[2, 1], [3]]}', 3) == [[2, 1], [3]]
    assert nb.strict_groups('```json\n{"groups": [[1, 2, 3]]}\n```', 3) == [[1, 2, 3]]
    for bad, says in [("[[1, 2, 3]]", "groups"), ('{"groups": [[1, 2]]}', "[3] in no group"),
                      ('{"groups": [[1, 2], [2, 3]]}', "more than one group"), ('{"groups": [[1, 2, 3], []]}', "non-empty"),
                      ('{"groups": [[1, 2, 4]]}', "not an answer number"), ('{"groups": [[1, true, 3]]}', "not an answer"),
                      ("groups: 1 2 3", "not JSON")]:
        with pytest.raises(nb.BadGrouping, match=re.escape(says)):
            nb.strict_groups(bad, 3)
    assert nb.lenient_groups('The groups are [[1, "3"], [2.0, 3, 7]].', 4) == [[1, 3], [2], [4]]
    assert nb.lenient_groups('Here:\n```json\n{"groups": [[2, 1, 1], [9]]}\n```\nDone.', 3) == [[2, 1], [3]]
    assert nb.lenient_groups("no idea", 2) == [[1], [2]]


def test_the_key_goes_in_the_header_and_nowhere_else(tmp_path, stub, monkeypatch, capsys):
    # a judge that echoes the header it got: the key reaches the logged problem text, redacted there
    judge = stub(lambda n, body, headers: f"not now, {headers.get('Authorization')}" if n == 1
                 else sensible(n, body, headers))
    monkeypatch.setenv("NB_JUDGE_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-must-not-go-to-a-stub")
    run = tmp_path / "run"
    write_generations(run, GENS)
    assert nb_run(run, "--equivalence", "llm", "--judge-model", judge.url(), "--api-key-env", "NB_JUDGE_KEY") == 0
    assert [r["headers"].get("Authorization") for r in judge.requests] == [f"Bearer {KEY}"] * 3
    out = capsys.readouterr()
    assert "not a valid grouping" in out.err  # the echo was logged ...
    for text in (out.out, out.err, *(p.read_text() for p in tmp_path.rglob("*") if p.is_file())):
        assert KEY not in text and "sk-openai" not in text  # ... without the key
    settings = json.loads((run / "v1.1" / "noveltybench_settings.json").read_text())
    assert settings["judge_model"] == "api:judge-m" and "NB_JUDGE_KEY" not in json.dumps(settings)

    # a refused request (401) ends the run in one line, without the key; the prompts done are kept
    # and a rerun asks only for the rest
    refusing = stub(lambda n, body, headers: (401, json.dumps({"error": f"bad key {KEY}"}).encode()))
    run2 = tmp_path / "run2"
    write_generations(run2, GENS)
    assert nb_run(run2, "--equivalence", "llm", "--judge-model", refusing.url(), "--api-key-env",
                  "NB_JUDGE_KEY") == 2
    err = capsys.readouterr().err
    assert "HTTP 401" in err and KEY not in err and "Traceback" not in err
    assert len(refusing.requests) == 1


def test_a_failed_run_resumes_with_the_prompts_it_finished(tmp_path, stub, capsys):
    judge = stub(lambda n, body, headers: (403, b'{"error": "quota"}') if n == 2 else sensible(n, body, headers))
    run = tmp_path / "run"
    write_generations(run, GENS)
    assert nb_run(run, "--equivalence", "llm", "--judge-model", judge.url()) == 2
    assert "HTTP 403" in capsys.readouterr().err
    assert [r["id"] for r in read_lines(run / "v1.1" / "partitions.jsonl")] == ["p-1"]
    assert nb_run(run, "--equivalence", "llm", "--judge-model", judge.url()) == 0
    assert len(judge.requests) == 3 and judge.shown()[2] == GENS[1]["generations"]  # only p-2 again
    assert [r["id"] for r in read_lines(run / "v1.1" / "scores.jsonl")] == ["p-1", "p-2"]


def test_http_failures_are_retried_apart_from_bad_answers(tmp_path, stub):
    """A 503 (Retry-After: 0) and a reply without choices are the endpoint's failures, retried
    by --max-retries; they do not count as the judge's answers."""
    replies = {1: (503, b"busy", {"Retry-After": "0"}), 2: (200, b'{"choices": []}', {"Retry-After": "0"})}
    judge = stub(lambda n, body, headers: replies.get(n) or sensible(n, body, headers))
    run = tmp_path / "run"
    write_generations(run, GENS[:1])
    assert nb_run(run, "--equivalence", "llm", "--judge-model", judge.url()) == 0
    assert len(judge.requests) == 3
    (row,) = read_lines(run / "v1.1" / "partitions.jsonl")
    assert row["judge_attempts"] == 1 and row["judge_lenient"] is False


def test_seed_shuffles_the_shown_order_and_the_partition_maps_back(tmp_path, stub):
    judge = stub(sensible)
    plain, seeded, again = tmp_path / "plain", tmp_path / "seeded", tmp_path / "again"
    for run in (plain, seeded, again):
        write_generations(run, GENS)
    assert nb_run(plain, "--equivalence", "llm", "--judge-model", judge.url()) == 0
    assert nb_run(seeded, "--equivalence", "llm", "--judge-model", judge.url(), "--seed", "7") == 0
    assert nb_run(again, "--equivalence", "llm", "--judge-model", judge.url(), "--seed", "7") == 0
    shown = judge.shown()
    assert shown[:2] == [g["generations"] for g in GENS]
    for k, gens in enumerate(GENS):
        assert shown[2 + k] != gens["generations"] and sorted(shown[2 + k]) == sorted(gens["generations"])
        assert shown[2 + k] == [gens["generations"][i] for i in nb.shown_order(7, gens["id"], 10)]
    assert shown[4:] == shown[2:4]  # the same seed, the same order
    assert nb.shown_order(7, "p-1", 10) != nb.shown_order(8, "p-1", 10)
    plain_rows, seeded_rows = read_lines(plain / "v1.1" / "partitions.jsonl"), read_lines(seeded / "v1.1" / "partitions.jsonl")
    assert [r["partition"] for r in seeded_rows] == [r["partition"] for r in plain_rows]  # back in the original order
    assert json.loads((seeded / "v1.1" / "summary.json").read_text())["seed"] == 7


def test_anthropic_judge_speaks_the_messages_api(tmp_path, stub, monkeypatch):
    judge = stub(sensible)
    monkeypatch.setenv("NB_JUDGE_KEY", KEY)
    run = tmp_path / "run"
    write_generations(run, GENS[:1])
    assert nb_run(run, "--equivalence", "llm", "--judge-model", judge.url("anthropic", "claude-x"),
                  "--api-key-env", "NB_JUDGE_KEY") == 0
    (request,) = judge.requests
    assert request["path"] == "/v1/messages" and request["headers"]["x-api-key"] == KEY
    assert request["headers"]["anthropic-version"] and "Authorization" not in request["headers"]
    assert request["body"]["system"] == nb.LLM_JUDGE_SYSTEM and request["body"]["max_tokens"] > 0
    assert read_lines(run / "v1.1" / "partitions.jsonl")[0]["partition"] == [0, 0, 1, 2, 0, 1, 3, 0, 4, 2]


@pytest.mark.parametrize("flags, message", [
    (["--equivalence", "llm"], "--equivalence llm needs --judge-model"),
    (["--equivalence", "unigram", "--seed", "3"], "--seed: only with --equivalence llm"),
    (["--equivalence", "unigram", "--judge-model", "api:m@http://127.0.0.1:9"], "--judge-model: only with"),
    (["--equivalence", "llm", "--judge-model", "smollm2"], "the judge is asked over HTTP"),
    (["--equivalence", "llm", "--judge-model", "api:m"], "needs an endpoint"),
    (["--equivalence", "llm", "--judge-model", "api:m@http://127.0.0.1:9", "--api-key-env", "NB_UNSET_KEY_VAR"],
     "--api-key-env NB_UNSET_KEY_VAR: that environment variable is not set"),
    (["--equivalence", "llm", "--judge-model", "openai:gpt-4o-mini"], "needs an API key: set OPENAI_API_KEY"),
])
def test_judge_flags_are_checked_before_any_work(tmp_path, capsys, monkeypatch, flags, message):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("NB_UNSET_KEY_VAR", raising=False)
    run = tmp_path / "run"
    write_generations(run, GENS[:1])
    assert nb_run(run, *flags) == 2
    assert message in capsys.readouterr().err
    assert not (run / "v1.1" / "partitions.jsonl").exists()
