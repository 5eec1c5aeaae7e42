"""Surprise: mean negative log-likelihood of the response tokens under a causal LM.

The response is conditioned on the chat-formatted prompt (the user turn plus the
assistant header, exactly what the model sees before it starts answering) and only
the response's own tokens are scored: template and prompt tokens are context, never
counted, and no second BOS is added (the template's text already carries one where
the model wants it). perplexity = exp(surprise).
"""

from __future__ import annotations

import math

import numpy as np


def context_and_response_ids(tokenizer, prompt: str | None, response: str) -> tuple[list[int], list[int]]:
    """Token ids of the conditioning context and of the response."""
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if prompt is not None and getattr(tokenizer, "chat_template", None):
        context_text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        context_ids = tokenizer(context_text, add_special_tokens=False)["input_ids"]
    elif prompt is not None:
        context_ids = tokenizer(prompt + "\n", add_special_tokens=True)["input_ids"]
    else:
        # No prompt: the response alone, after BOS where the model has one. Without
        # BOS the first response token has no context and is not scored.
        context_ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return list(context_ids), list(response_ids)


def response_nll(model, tokenizer, prompts: list[str | None], responses: list[str],
                 max_tokens_per_batch: int = 2048, progress: bool = False) -> np.ndarray:
    """Mean NLL per response token (nats); NaN for a response with no scored token.

    The token budget bounds memory: the logits alone are budget x vocabulary floats
    (2048 x 49152 x 4 bytes = 400 MB for SmolLM2).
    """
    import torch
    from tqdm.auto import tqdm

    encoded = [context_and_response_ids(tokenizer, p, r) for p, r in zip(prompts, responses)]
    max_len = getattr(model.config, "max_position_embeddings", None) or 10**9
    sequences, first_scored = [], []
    for context, response in encoded:
        ids = (context + response)[-max_len:]  # keep the response; drop old context
        sequences.append(ids)
        first_scored.append(max(len(ids) - len(response), 1))

    nll = np.full(len(sequences), np.nan)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    dev = next(model.parameters()).device
    with torch.no_grad(), tqdm(total=len(order), desc="surprise", unit="text", disable=not progress) as bar:
        start = 0
        while start < len(order):
            end = start + 1  # sorted by length: grow the batch while it fits the budget
            while end < len(order) and len(sequences[order[end]]) * (end - start + 1) <= max_tokens_per_batch:
                end += 1
            batch = order[start:end]
            width = max(len(sequences[i]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, : len(sequences[i])] = torch.tensor(sequences[i])
                mask[row, : len(sequences[i])] = 1
            logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits
            # position t predicts token t+1
            token_nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].transpose(1, 2).float(), ids[:, 1:].to(dev), reduction="none")
            for row, i in enumerate(batch):
                scored = token_nll[row, first_scored[i] - 1 : len(sequences[i]) - 1]  # the response tokens
                if scored.numel():
                    nll[i] = scored.mean().item()
            bar.update(len(batch))
            start = end
    return nll


def perplexity(surprise: float) -> float:
    return math.exp(surprise) if not math.isnan(surprise) else math.nan
