"""Implicit reward margins: how far a trained policy prefers a pair's chosen answer over its
rejected one, relative to the reference model (DPO's reward, Rafailov et al., 2023):

    margin(pair) = beta * [(log pi(c) - log ref(c)) - (log pi(r) - log ref(r))]

where log pi(y) sums the log-probabilities of the answer's tokens after the prompt, both
laid out with the tokenizer's chat template as the trainers lay them out.
"""

from __future__ import annotations

import numpy as np


def chat_token_ids(tokenizer, prompt: list[dict], answer: str) -> tuple[list[int], int]:
    """Token ids of prompt + answer in the chat template, and where the answer starts."""
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": answer}], tokenize=False)
    if not full_text.startswith(prompt_text):
        raise ValueError("the chat template does not extend the prompt with the answer; cannot locate the answer tokens")
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    return prompt_ids + answer_ids, len(prompt_ids)


def answer_logps(model, tokenizer, prompts: list[list[dict]], answers: list[str], batch_size: int = 16) -> np.ndarray:
    """Sum over each answer's tokens of log p(token | everything before it)."""
    import torch

    encoded = [chat_token_ids(tokenizer, p, a) for p, a in zip(prompts, answers)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = np.zeros(len(encoded))
    model.eval()
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start : start + batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (seq, _) in enumerate(batch):  # right padding: positions stay those of the unpadded text
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        # token t is predicted by position t - 1
        token_logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        for row, (seq, answer_start) in enumerate(batch):
            out[start + row] = float(token_logps[row, answer_start - 1 : len(seq) - 1].sum())
    return out


def implicit_margins(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float) -> np.ndarray:
    """beta * [(pi(c) - ref(c)) - (pi(r) - ref(r))] from summed log-probabilities."""
    return beta * ((np.asarray(policy_chosen) - np.asarray(ref_chosen))
                   - (np.asarray(policy_rejected) - np.asarray(ref_rejected)))
