"""Where the scoring models run and in what type (issue 27.4): an explicit device/dtype option,
recorded in the card and the embedding cache key; and the evaluated model stepping aside (off
its GPU) before the scoring models load."""

from __future__ import annotations

import pytest
import torch

from crpo_bench import models
from crpo_bench.run import runner as bench
from crpo_bench.scoring import card
from crpo_bench.cli import main
from crpo_bench.lmeval import generator
from crpo_bench.scoring import Scorer, ScoringConfig

from muce_fixtures import raw_rows, write_jsonl


def test_a_dtype_or_device_that_does_not_exist_is_refused_before_any_model_loads(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"dtype 'int8': choose one of \('auto', 'float32', 'bfloat16', 'float16'\)"):
        ScoringConfig(dtype="int8")
    rows = write_jsonl(tmp_path / "in.jsonl", [{"response": "a doorstop for a heavy door"}])
    assert main(["score", str(rows), "-o", str(tmp_path / "out.jsonl"), "--metrics", "dsi", "--device", "gpu0",
                 "--quiet"]) == 2
    assert "device 'gpu0' is not a torch device" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_auto_is_float32_on_the_cpu_and_the_checkpoints_type_on_a_gpu():
    assert models.dtype_label("auto", "cpu") == "float32"
    assert models.dtype_label("auto", "cuda") == "checkpoint"
    assert models.dtype_label("bfloat16", "cpu") == "bfloat16"
    assert models._from_pretrained_dtype("checkpoint") == "auto"  # transformers reads config.dtype
    assert models._from_pretrained_dtype("bfloat16") is torch.bfloat16


def test_bf16_scoring_models_load_in_bf16_and_their_card_and_cache_key_say_so(tmp_path, tiny_lm_folder,
                                                                               tiny_reward_folder):
    answers, prompts = ["a doorstop for a heavy door", "grind it into red pigment"], ["Uses for a brick?"] * 2
    typed = ScoringConfig(lm=str(tiny_lm_folder), reward_model=str(tiny_reward_folder), dtype="bfloat16",
                          cache_path=tmp_path / "cache.sqlite")
    plain = ScoringConfig(lm=str(tiny_lm_folder), reward_model=str(tiny_reward_folder),
                          cache_path=tmp_path / "cache.sqlite")
    lm, _ = models.load_causal_lm(str(tiny_lm_folder), dtype="bfloat16")
    reward, _ = models.load_reward_model(str(tiny_reward_folder), dtype="bfloat16")
    assert {p.dtype for p in lm.parameters()} == {p.dtype for p in reward.parameters()} == {torch.bfloat16}

    low = Scorer(typed).score(answers, prompts=prompts, metrics=["surprise", "quality", "diversity"]).rows
    full = Scorer(plain).score(answers, prompts=prompts, metrics=["surprise", "quality", "diversity"]).rows
    for field in ("surprise", "quality", "diversity"):
        # bf16 keeps ~3 significant digits: close to float32, and not the same numbers
        assert [r[field] for r in low] == pytest.approx([r[field] for r in full], rel=0.05, abs=0.05), field
    assert [r["surprise"] for r in low] != [r["surprise"] for r in full]

    # one cache file, two keys: bf16 vectors never stand in for float32 ones
    assert Scorer(typed).embedder.key == Scorer(plain).embedder.key + "@bfloat16"
    assert card.metric_card(typed)["dtype"] == "bfloat16" and card.metric_card(plain)["dtype"] == "float32"
    assert card.differences(card.metric_card(typed), card.metric_card(plain)) == ["dtype"]
    # a card written before the field existed was made in float32
    older = {k: v for k, v in card.metric_card(plain).items() if k != "dtype"}
    assert card.differences(older, card.metric_card(plain)) == []
    assert card.differences(older, card.metric_card(typed)) == ["dtype"]


class _Recorder(torch.nn.Module):
    """A generator's module that says where it was asked to go."""

    def __init__(self, events):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(2))
        self.events = events

    def to(self, *args, **kwargs):
        self.events.append(("generator to", str(args[0] if args else kwargs.get("device"))))
        return super().to(*args, **kwargs)


class _Model:
    def __init__(self, events):
        self._model = _Recorder(events)


def test_the_generator_steps_aside_once_and_comes_back_for_the_next_evaluation(monkeypatch):
    monkeypatch.setattr(generator, "_frees_memory", lambda device: True)  # the CPU stands in for a GPU
    events = []
    lm = _Model(events)
    generator.hold(lm)
    generator.step_aside()
    generator.step_aside()  # every aggregation calls it: one move
    assert events == [("generator to", "cpu")]
    generator.hold(lm)  # crpo-bench run's next task of the same model
    assert events == [("generator to", "cpu"), ("generator to", "cpu")]  # back to where it was (the "GPU")
    generator.hold(None)

    monkeypatch.setattr(generator, "_frees_memory", lambda device: device.type != "cpu")
    on_cpu = _Model(events := [])
    generator.hold(on_cpu)
    generator.step_aside()
    assert events == []  # on the CPU, moving frees nothing
    generator.hold(None)


def test_in_lm_eval_the_generator_steps_aside_after_generating_and_before_any_scorer_loads(
        monkeypatch, tmp_path, tiny_lm_folder):
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from crpo_bench.scoring import scorer as scoring

    from crpo_bench.lmeval import report

    report._scorer.cache_clear()  # a scorer made by an earlier test has its models already
    events = []
    monkeypatch.setattr(generator, "_frees_memory", lambda device: True)
    real_step_aside, real_generate = generator.step_aside, HFLM.generate_until
    monkeypatch.setattr(generator, "step_aside", lambda: (events.append("step aside"), real_step_aside()))
    monkeypatch.setattr(HFLM, "generate_until", lambda self, *a, **k: (events.append("generate"),
                                                                       real_generate(self, *a, **k))[1])
    for name in ("_load_embedder", "_load_causal_lm"):
        real = getattr(scoring, name)
        monkeypatch.setattr(scoring, name, lambda *a, _real=real, _name=name, **k: (events.append(_name),
                                                                                   _real(*a, **k))[1])

    data = write_jsonl(tmp_path / "muce_raw.jsonl", raw_rows())
    manager = bench.task_manager({"muce_data": str(data), "lm": str(tiny_lm_folder)})
    lm = HFLM(pretrained=str(tiny_lm_folder), device="cpu")
    moves = []
    real_to = lm._model.to
    monkeypatch.setattr(lm._model, "to", lambda *a, **k: (moves.append(str(a[0])), events.append("generator to"),
                                                          real_to(*a, **k))[2])
    for task in ("muce_aut", "muce_poems"):  # as crpo-bench run: one task at a time, one model
        evaluation = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=manager, limit=1,
                                             gen_kwargs="max_gen_toks=8")
        assert evaluation["results"][task]["surprise,samples"] == evaluation["results"][task]["surprise,samples"]
    first = events.index("generator to")
    assert events[:first] == ["generate", "step aside"]  # generated, then moved aside ...
    assert "_load_embedder" in events[first:] and "_load_causal_lm" in events[first:]  # ... then scorers load
    second = events.index("generate", first)
    assert events[second - 1] == "generator to" and moves == ["cpu", "cpu", "cpu"]  # back before generating
    generator.hold(None)
