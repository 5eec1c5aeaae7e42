"""CrPOTrainer against TRL's DPOTrainer on the same batch: equal gradients with unit
weights, and with weights the gradient of mean(w * per-pair loss), where the per-pair
losses come from vanilla DPOTrainer run on one pair at a time."""

from __future__ import annotations

import json
import os

import datasets
import pytest
import torch
from trl import DPOConfig, DPOTrainer

from crpo_bench.training import CrPOConfig, CrPOTrainer, crpo_weight

PAIRS = [
    ("Come up with a creative use for a brick.", "a doorstop for a tiny planter", "a brick"),
    ("Come up with a creative use for a bottle.", "a lantern full of fireflies", "hold water in it"),
    ("Write a poem about the sea.", "rain on the window, the gutters hum a hymn", "the sea is big"),
    ("Write a poem about memory.", "a borrowed hymn of rain on the street", "I remember it"),
]
NOVELTY = [(0.9, 0.1), (0.4, 0.6), (1.0, 0.0), (0.7, 0.2)]  # (chosen, rejected): pair 2 earns no gain
DIVERSITY = [(0.5, 0.0), (0.8, 0.3), (0.2, 0.0), (0.3, 0.3)]


def dataset(rejected_scores: bool = True) -> datasets.Dataset:
    rows = []
    for (prompt, chosen, rejected), nov, div in zip(PAIRS, NOVELTY, DIVERSITY):
        row = {"prompt": [{"role": "user", "content": prompt}],
               "chosen": [{"role": "assistant", "content": chosen}],
               "rejected": [{"role": "assistant", "content": rejected}],
               "novelty_chosen": nov[0], "diversity_chosen": div[0]}
        if rejected_scores:
            row.update(novelty_rejected=nov[1], diversity_rejected=div[1])
        rows.append(row)
    return datasets.Dataset.from_list(rows)


def settings(tmp_path, loss_type="sigmoid") -> dict:
    return dict(output_dir=str(tmp_path), per_device_train_batch_size=len(PAIRS), max_length=64, use_cpu=True,
                bf16=False, gradient_checkpointing=False, report_to="none", loss_type=[loss_type], beta=0.1)


def make(trainer_class, config, folder, tokenizer, peft: bool = False):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float64)
    peft_config = None
    if peft:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                                 task_type="CAUSAL_LM", init_lora_weights=False)
        torch.manual_seed(3)  # LoRA's random init, identical in every trainer
    return trainer_class(model, args=config, train_dataset=dataset(), processing_class=tokenizer,
                         peft_config=peft_config)


def loss_and_grads(trainer, rows: list[int]):
    trainer.model.train()
    trainer.model.zero_grad(set_to_none=True)
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in rows]))
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return loss.detach(), grads


def max_relative_error(got: dict, want: dict) -> float:
    num = max((got[n] - want[n]).abs().max().item() for n in want)
    den = max(want[n].abs().max().item() for n in want)
    return num / den


def test_all_lambdas_zero_is_plain_dpo(tmp_path, tiny_lm_folder, tiny_tokenizer):
    vanilla = make(DPOTrainer, DPOConfig(**settings(tmp_path)), tiny_lm_folder, tiny_tokenizer)
    crpo = make(CrPOTrainer, CrPOConfig(**settings(tmp_path)), tiny_lm_folder, tiny_tokenizer)
    rows = list(range(len(PAIRS)))
    loss_v, grads_v = loss_and_grads(vanilla, rows)
    loss_c, grads_c = loss_and_grads(crpo, rows)
    assert abs(loss_v.item() - loss_c.item()) <= 1e-6
    assert max(((grads_v[n] - grads_c[n]).abs().max().item() for n in grads_v)) <= 1e-6


def test_unit_weights_through_the_hook_change_nothing(tmp_path, tiny_lm_folder, tiny_tokenizer):
    """Weights active but all 1 (chosen 1, rejected 0): the gradient hook runs and must be exact."""
    data = dataset().map(lambda r: {"novelty_chosen": 1.0, "novelty_rejected": 0.0})
    vanilla = make(DPOTrainer, DPOConfig(**settings(tmp_path)), tiny_lm_folder, tiny_tokenizer)
    config = CrPOConfig(**settings(tmp_path), lambda_novelty=1.0)
    from transformers import LlamaForCausalLM

    crpo = CrPOTrainer(LlamaForCausalLM.from_pretrained(tiny_lm_folder, dtype=torch.float64), args=config,
                       train_dataset=data, processing_class=tiny_tokenizer)
    rows = list(range(len(PAIRS)))
    loss_v, grads_v = loss_and_grads(vanilla, rows)
    loss_c, grads_c = loss_and_grads(crpo, rows)
    assert loss_v.item() == pytest.approx(loss_c.item(), abs=1e-12)
    assert max_relative_error(grads_c, grads_v) <= 1e-6


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
@pytest.mark.parametrize("strategy", ["add", "mult"])
def test_weighted_gradient_is_gradient_of_weighted_mean(tmp_path, tiny_lm_folder, tiny_tokenizer, loss_type,
                                                        strategy):
    lambdas = {"novelty": 1.0, "diversity": 0.5}
    weights = [crpo_weight({"novelty": n[0], "diversity": d[0]}, {"novelty": n[1], "diversity": d[1]},
                           lambdas, strategy) for n, d in zip(NOVELTY, DIVERSITY)]
    assert weights[1] == 0.0 or strategy == "add"  # pair 1 has no novelty gain
    vanilla = make(DPOTrainer, DPOConfig(**settings(tmp_path, loss_type)), tiny_lm_folder, tiny_tokenizer)
    per_pair = [loss_and_grads(vanilla, [i]) for i in range(len(PAIRS))]
    want = {n: sum(w * g[n] for w, (_, g) in zip(weights, per_pair)) / len(PAIRS) for n in per_pair[0][1]}

    config = CrPOConfig(**settings(tmp_path, loss_type), lambda_novelty=1.0, lambda_diversity=0.5,
                        crpo_strategy=strategy)
    crpo = make(CrPOTrainer, config, tiny_lm_folder, tiny_tokenizer)
    loss, grads = loss_and_grads(crpo, list(range(len(PAIRS))))
    assert max_relative_error(grads, want) <= 1e-5
    # TRL's logged loss stays the unweighted mean of the per-pair losses
    assert loss.item() == pytest.approx(sum(l.item() for l, _ in per_pair) / len(PAIRS), rel=1e-9)
    logged = crpo._metrics["train"]
    assert logged["crpo/weight_mean"][-1] == pytest.approx(sum(weights) / len(weights), rel=1e-9)
    if loss_type == "sigmoid":  # the paper's loss: the weighted objective itself is logged
        objective = sum(w * l.item() for w, (l, _) in zip(weights, per_pair)) / len(PAIRS)
        assert logged["crpo/objective"][-1] == pytest.approx(objective, rel=1e-9)


def test_lora_weighted_gradient(tmp_path, tiny_lm_folder, tiny_tokenizer):
    lambdas = {"novelty": 1.0}
    weights = [crpo_weight({"novelty": n[0]}, {"novelty": n[1]}, lambdas) for n in NOVELTY]
    vanilla = make(DPOTrainer, DPOConfig(**settings(tmp_path)), tiny_lm_folder, tiny_tokenizer, peft=True)
    per_pair = [loss_and_grads(vanilla, [i]) for i in range(len(PAIRS))]
    assert per_pair[0][1] and all("lora" in n for n in per_pair[0][1])  # only the adapter trains
    want = {n: sum(w * g[n] for w, (_, g) in zip(weights, per_pair)) / len(PAIRS) for n in per_pair[0][1]}
    crpo = make(CrPOTrainer, CrPOConfig(**settings(tmp_path), lambda_novelty=1.0), tiny_lm_folder,
                tiny_tokenizer, peft=True)
    _, grads = loss_and_grads(crpo, list(range(len(PAIRS))))
    assert max_relative_error(grads, want) <= 1e-5
    # the reference is the base model (adapter off): the objective is logged from it
    objective = sum(w * l.item() for w, (l, _) in zip(weights, per_pair)) / len(PAIRS)
    assert crpo._metrics["train"]["crpo/objective"][-1] == pytest.approx(objective, rel=1e-6)


def test_missing_rejected_scores_count_as_zero():
    assert crpo_weight({"novelty": 0.7}, {}, {"novelty": 2.0}) == pytest.approx(1.4)
    assert crpo_weight({"novelty": 0.2, "quality": 0.9}, {"novelty": 0.5}, {"novelty": 1.0, "quality": 1.0},
                       "mult") == 0.0
    assert crpo_weight({"novelty": 0.2}, {"novelty": 0.9}, {"novelty": 0.0}) == 1.0


def test_refusals(tmp_path, tiny_lm_folder, tiny_tokenizer):
    with pytest.raises(ValueError, match="sorts log-ratios across the batch"):
        CrPOConfig(**settings(tmp_path, "aot"), lambda_novelty=1.0)
    CrPOConfig(**settings(tmp_path, "aot"))  # plain DPO may use aot
    with pytest.raises(ValueError, match="crpo_strategy 'max'"):
        CrPOConfig(**settings(tmp_path), crpo_strategy="max")
    with pytest.raises(ValueError, match="lambda_quality must be at least 0"):
        CrPOConfig(**settings(tmp_path), lambda_quality=-1.0)
    config = CrPOConfig(**settings(tmp_path), lambda_quality=1.0)
    with pytest.raises(ValueError, match=r"lambda_quality > 0 needs column\(s\) \['quality_chosen'\]"):
        make(CrPOTrainer, config, tiny_lm_folder, tiny_tokenizer)


def test_changed_trl_layout_fails_loudly(tmp_path, tiny_lm_folder, tiny_tokenizer, monkeypatch):
    """If TRL stopped laying the batch out as [chosen; rejected] rows, training must stop."""
    crpo = make(CrPOTrainer, CrPOConfig(**settings(tmp_path), lambda_novelty=1.0), tiny_lm_folder, tiny_tokenizer)
    forward = crpo.model.forward

    def packed_forward(*args, **kwargs):  # what packing would do: one row for the whole batch
        out = forward(*args, **kwargs)
        out.log_probs = out.log_probs.reshape(1, -1)
        return out

    monkeypatch.setattr(crpo.model, "forward", packed_forward)
    with pytest.raises(RuntimeError, match=r"expected log_probs of shape \[2B, T\] = \[8, T\]"):
        loss_and_grads(crpo, list(range(len(PAIRS))))


def test_precomputed_reference_log_probs(tmp_path, tiny_lm_folder, tiny_tokenizer):
    """With the reference log-probs precomputed into the dataset, the weighted gradient and
    the logged objective are unchanged."""
    lambdas = {"novelty": 1.0}
    weights = [crpo_weight({"novelty": n[0]}, {"novelty": n[1]}, lambdas) for n in NOVELTY]
    vanilla = make(DPOTrainer, DPOConfig(**settings(tmp_path)), tiny_lm_folder, tiny_tokenizer)
    per_pair = [loss_and_grads(vanilla, [i]) for i in range(len(PAIRS))]
    want = {n: sum(w * g[n] for w, (_, g) in zip(weights, per_pair)) / len(PAIRS) for n in per_pair[0][1]}
    config = CrPOConfig(**settings(tmp_path / "pre"), lambda_novelty=1.0, precompute_ref_log_probs=True)
    crpo = make(CrPOTrainer, config, tiny_lm_folder, tiny_tokenizer)
    assert "ref_chosen_logps" in crpo.train_dataset.column_names
    _, grads = loss_and_grads(crpo, list(range(len(PAIRS))))
    assert max_relative_error(grads, want) <= 1e-5
    objective = sum(w * l.item() for w, (l, _) in zip(weights, per_pair)) / len(PAIRS)
    assert crpo._metrics["train"]["crpo/objective"][-1] == pytest.approx(objective, rel=1e-6)


def test_gradient_accumulation_gives_the_same_update(tmp_path, tiny_lm_folder, tiny_tokenizer):
    """One optimizer step over 4 pairs: 2 micro-batches of 2 with accumulation = 1 batch of 4.
    Plain SGD, no clipping: the update is -lr * gradient of mean(w * loss) over the 4 pairs."""

    def one_step(batch: int, accumulation: int, folder):
        config = CrPOConfig(**{**settings(folder), "per_device_train_batch_size": batch},
                            gradient_accumulation_steps=accumulation, lambda_novelty=1.0, lambda_diversity=0.5,
                            max_steps=1, optim="sgd", learning_rate=1.0, max_grad_norm=0.0, save_strategy="no",
                            lr_scheduler_type="constant", logging_steps=1)
        trainer = make(CrPOTrainer, config, tiny_lm_folder, tiny_tokenizer)
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        trainer.train()
        return {n: p.detach() - before[n] for n, p in trainer.model.named_parameters()}

    whole, accumulated = one_step(4, 1, tmp_path / "a"), one_step(2, 2, tmp_path / "b")
    assert max(v.abs().max().item() for v in whole.values()) > 0
    assert max_relative_error(accumulated, whole) <= 1e-6


DDP_SCRIPT = '''
import json, sys, torch, datasets
from transformers import AutoTokenizer, LlamaForCausalLM
from crpo_bench.training import CrPOConfig, CrPOTrainer

folder, data, out, work = sys.argv[1:5]
rows = [json.loads(line) for line in open(data)]
config = CrPOConfig(**json.loads(sys.argv[5]))
model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float64)
trainer = CrPOTrainer(model, args=config, train_dataset=datasets.Dataset.from_list(rows),
                      processing_class=AutoTokenizer.from_pretrained(folder))
before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
print(trainer.accelerator.distributed_type, flush=True)
trainer.train()
if trainer.accelerator.is_main_process:
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    torch.save({n: p.detach() - before[n] for n, p in unwrapped.named_parameters()}, out)
# leave the process group before exit: gloo's threads torn down by interpreter exit can abort
# a process ("terminate called without an active exception") after the work is done
trainer.accelerator.wait_for_everyone()
torch.distributed.destroy_process_group()
'''


def test_two_process_ddp_gives_the_single_process_update(tmp_path, tiny_lm_folder, tiny_tokenizer):
    """`accelerate launch` with 2 CPU processes x 2 pairs = one process x 4 pairs (each process
    scales the gradient rows of its own pairs; DDP averages)."""
    import subprocess
    import sys
    from pathlib import Path

    step = dict(use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none", max_length=64,
                beta=0.1, lambda_novelty=1.0, lambda_diversity=0.5, max_steps=1, optim="sgd", learning_rate=1.0,
                max_grad_norm=0.0, save_strategy="no", lr_scheduler_type="constant")
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in dataset()))
    (tmp_path / "ddp.py").write_text(DDP_SCRIPT)
    config = dict(step, output_dir=str(tmp_path / "ddp"), per_device_train_batch_size=2)
    accelerate = Path(sys.executable).parent / "accelerate"
    # --multi_gpu on a machine without GPUs launches multi-CPU DDP (gloo); --cpu would not distribute
    proc = subprocess.run([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", str(tmp_path / "ddp.py"),
                           str(tiny_lm_folder), str(data), str(tmp_path / "delta.pt"), str(tmp_path),
                           json.dumps(config)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "MULTI_CPU" in proc.stdout + proc.stderr  # really two processes
    ddp = torch.load(tmp_path / "delta.pt")

    single = CrPOConfig(**dict(step, output_dir=str(tmp_path / "one"), per_device_train_batch_size=4))
    trainer = make(CrPOTrainer, single, tiny_lm_folder, tiny_tokenizer)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    whole = {n: p.detach() - before[n] for n, p in trainer.model.named_parameters()}
    assert max(v.abs().max().item() for v in whole.values()) > 0
    assert max_relative_error(ddp, whole) <= 1e-6


def test_the_papers_published_pair_format_trains_unchanged(tmp_path, tiny_lm_folder, tiny_tokenizer):
    """The paper's scored pair datasets: no prompt column (the user turn sits inside chosen and
    rejected), `<dim>_chosen` columns only (a missing rejected score counts as 0), and the
    mult configs' key spelled `cpo_strategy`. The gradient is that of the weighted mean."""
    from transformers import LlamaForCausalLM

    rows = [{"chosen": [{"role": "user", "content": p}, {"role": "assistant", "content": c}],
             "rejected": [{"role": "user", "content": p}, {"role": "assistant", "content": r}],
             "score_chosen": 40.0, "score_rejected": 25.0, "task": "Poems",
             "novelty_chosen": n[0], "diversity_chosen": d[0]}
            for (p, c, r), n, d in zip(PAIRS, NOVELTY, DIVERSITY)]
    paper = datasets.Dataset.from_list(rows)
    weights = [1.0 * n[0] * 0.5 * d[0] for n, d in zip(NOVELTY, DIVERSITY)]  # mult, rejected = 0
    vanilla = make(DPOTrainer, DPOConfig(**settings(tmp_path)), tiny_lm_folder, tiny_tokenizer)
    per_pair = [loss_and_grads(vanilla, [i]) for i in range(len(PAIRS))]
    want = {n: sum(w * g[n] for w, (_, g) in zip(weights, per_pair)) / len(PAIRS) for n in per_pair[0][1]}

    config = CrPOConfig(**settings(tmp_path), lambda_novelty=1.0, lambda_diversity=0.5, cpo_strategy="mult")
    assert config.crpo_strategy == "mult"
    crpo = CrPOTrainer(LlamaForCausalLM.from_pretrained(tiny_lm_folder, dtype=torch.float64), args=config,
                       train_dataset=paper, processing_class=tiny_tokenizer)
    _, grads = loss_and_grads(crpo, list(range(len(PAIRS))))
    assert max_relative_error(grads, want) <= 1e-5
