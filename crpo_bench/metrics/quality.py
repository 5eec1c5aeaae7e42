"""Quality: the raw logit of a one-output reward model on [user prompt, assistant response].

The chat is rendered by the reward model's template and tokenized as it stands (the template's
text already carries BOS). `paper_input` reproduces the CrPO paper's code instead: the rendered
text tokenized with special tokens, so a template that starts with BOS gets a second one.
"""

from __future__ import annotations

import numpy as np


def reward_inputs(tokenizer, prompt: str | None, response: str, paper_input: bool = False) -> list[int]:
    """Token ids of the chat the reward model judges."""
    if getattr(tokenizer, "chat_template", None):
        chat = [{"role": "assistant", "content": response}]
        if prompt is not None:
            chat.insert(0, {"role": "user", "content": prompt})
        text = tokenizer.apply_chat_template(chat, tokenize=False)
        return tokenizer(text, add_special_tokens=paper_input)["input_ids"]
    text = response if prompt is None else f"{prompt}\n\n{response}"
    return tokenizer(text, add_special_tokens=True)["input_ids"]


def reward_scores(model, tokenizer, prompts: list[str | None], responses: list[str],
                  batch_size: int = 8, progress: bool = False, paper_input: bool = False) -> np.ndarray:
    import torch
    from tqdm.auto import tqdm

    max_len = getattr(tokenizer, "model_max_length", None) or 10**9
    sequences = [reward_inputs(tokenizer, p, r, paper_input)[:max_len] for p, r in zip(prompts, responses)]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else model.config.pad_token_id
    # A sequence classifier reads the score at the last non-pad token. A text that itself
    # contains the pad id (pad == eos is common) would be misread inside a padded batch,
    # so it is scored alone, unpadded.
    alone = [i for i, s in enumerate(sequences) if pad_id is None or pad_id in s]
    padded = sorted(set(range(len(sequences))) - set(alone), key=lambda i: len(sequences[i]))
    batches = [[i] for i in alone] + [padded[k : k + batch_size] for k in range(0, len(padded), batch_size)]

    scores = np.zeros(len(sequences))
    dev = next(model.parameters()).device
    if model.config.pad_token_id is None and pad_id is not None:
        model.config.pad_token_id = pad_id
    with torch.no_grad(), tqdm(total=len(sequences), desc="quality", unit="text", disable=not progress) as bar:
        for batch in batches:
            width = max(len(sequences[i]) for i in batch)
            ids = torch.full((len(batch), width), pad_id if pad_id is not None else 0, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(batch):
                ids[row, : len(sequences[i])] = torch.tensor(sequences[i])
                mask[row, : len(sequences[i])] = 1
            logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits
            scores[batch] = logits[:, 0].float().cpu().numpy()
            bar.update(len(batch))
    return scores
