"""Surprise: mean negative log-likelihood (nats per token) under a causal LM.

Two scopes, one batching loop (`mean_token_nll`):

- `response` (our definition, the default): the response is conditioned on the
  chat-formatted prompt (the user turn plus the assistant header, exactly what the
  model sees before it starts answering) and only the response's own tokens are
  scored: template and prompt tokens are context, never counted, and no second BOS is
  added (the template's text already carries one where the model wants it).
- `whole_chat` (the CrPO paper's code): the whole chat [user prompt, assistant
  response] rendered by the chat template (no generation prompt), BOS prepended even
  where the template already starts with one, and every predicted token counted:
  template markers, prompt and response. Without a chat template the text is
  "{prompt}\\n{response}".

perplexity = exp(surprise) in both.
"""

from __future__ import annotations

import math

import numpy as np

SCOPES = ("response", "whole_chat")


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


def whole_chat_ids(tokenizer, prompt: str | None, response: str) -> list[int]:
    """Token ids of the chat as the paper scores it: its text tokenized without special
    tokens, then BOS prepended (the paper's add_start_token), so templates that begin
    with BOS get two, as they do there."""
    if prompt is None:
        # The paper always has a prompt; an assistant turn alone is refused by templates
        # that insist on user first (Gemma's), so the response is scored as plain text.
        text = response
    elif getattr(tokenizer, "chat_template", None):
        chat = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        text = tokenizer.apply_chat_template(chat, tokenize=False)
    else:
        text = f"{prompt}\n{response}"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    # A tokenizer without BOS (the paper's code would stop here): the first token is context.
    return ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + list(ids)


def response_nll(model, tokenizer, prompts: list[str | None], responses: list[str],
                 max_tokens_per_batch: int = 2048, progress: bool = False) -> np.ndarray:
    """Mean NLL per response token (nats); NaN for a response with no scored token."""
    encoded = [context_and_response_ids(tokenizer, p, r) for p, r in zip(prompts, responses)]
    max_len = _max_length(model)
    sequences, first_scored = [], []
    for context, response in encoded:
        ids = (context + response)[-max_len:]  # keep the response; drop old context
        sequences.append(ids)
        first_scored.append(max(len(ids) - len(response), 1))
    return mean_token_nll(model, tokenizer, sequences, first_scored, max_tokens_per_batch, progress, groups=prompts)


def whole_chat_nll(model, tokenizer, prompts: list[str | None], responses: list[str],
                   max_tokens_per_batch: int = 2048, progress: bool = False) -> np.ndarray:
    """Mean NLL per predicted token of the whole chat (nats): the paper's surprise, whose
    exp is the paper's perplexity. NaN when the chat has fewer than two tokens."""
    max_len = _max_length(model)
    # Keep the start (BOS, template, prompt): the paper scores the chat from its beginning.
    sequences = [whole_chat_ids(tokenizer, p, r)[:max_len] for p, r in zip(prompts, responses)]
    return mean_token_nll(model, tokenizer, sequences, [1] * len(sequences), max_tokens_per_batch, progress,
                          groups=prompts)


NLL_FUNCTIONS = {"response": response_nll, "whole_chat": whole_chat_nll}


MIN_SHARED_PREFIX = 8  # tokens: below this, one pass over whole sequences costs about as much


def mean_token_nll(model, tokenizer, sequences: list[list[int]], first_scored: list[int],
                   max_tokens_per_batch: int = 2048, progress: bool = False, groups=None) -> np.ndarray:
    """Per sequence, the mean NLL of its tokens from index first_scored[i] on (each
    predicted from all tokens before it); NaN where no token is scored.

    Sequences of one group (the same prompt: its template and prompt tokens come first in
    each) share their longest common token prefix: it runs through the model once and its
    key-value cache serves every sequence's rest (shared_prefix_nll). The others are batched
    by length under a token budget (a longer sequence runs alone), and next_token_nll makes
    the logits in chunks, so memory stays bounded.
    """
    from tqdm.auto import tqdm

    nll = np.full(len(sequences), np.nan)
    members: dict = {}
    for i, g in enumerate(groups if groups is not None else [None] * len(sequences)):
        if g is not None:
            members.setdefault(g, []).append(i)
    alone = set(range(len(sequences)))
    with tqdm(total=len(sequences), desc="surprise", unit="text", disable=not progress) as bar:
        for idx in members.values():
            if len(idx) < 2:
                continue
            token_nll = shared_prefix_nll(model, [sequences[i] for i in idx], max_tokens_per_batch)
            if token_nll is None:
                continue
            for i, values in zip(idx, token_nll):
                scored = values[first_scored[i] - 1 : len(sequences[i]) - 1]
                nll[i] = float(scored.mean()) if len(scored) else np.nan
                alone.discard(i)
            bar.update(len(idx))
        _batched_nll(model, tokenizer, sequences, first_scored, sorted(alone), max_tokens_per_batch, nll, bar)
    return nll


def common_prefix(sequences: list[list[int]]) -> int:
    """Length of the longest token prefix all sequences share, leaving each at least one token."""
    n = min(len(s) for s in sequences) - 1
    first = sequences[0]
    for k in range(max(n, 0)):
        if any(s[k] != first[k] for s in sequences[1:]):
            return k
    return max(n, 0)


def shared_prefix_nll(model, sequences: list[list[int]], max_tokens_per_batch: int = 2048) -> list | None:
    """Each sequence's next-token NLLs (tokens 1..T-1, as next_token_nll gives them), with
    the shared prefix run once: its cache is copied for each batch of the sequences' rests.
    None where the prefix is too short to pay, or the model's cache cannot be shared that way."""
    import copy
    import inspect

    import torch

    shared = common_prefix(sequences)
    if shared < MIN_SHARED_PREFIX:
        return None
    dev = next(model.parameters()).device
    prefix = torch.tensor([sequences[0][:shared]], dtype=torch.long, device=dev)
    try:
        with torch.no_grad():
            out = model(input_ids=prefix, use_cache=True, output_hidden_states=True, logits_to_keep=1)
            # transformers 5.2x names the cache `cache`; older versions `past_key_values`
            cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
            cache, hidden = out.get("cache", out.get("past_key_values")), out.hidden_states[-1]
            if not hasattr(cache, "batch_repeat_interleave"):
                return None
            prefix_nll = _chunked_nll(model, hidden[:, :-1], prefix[:, 1:])[0]  # tokens 1..shared-1
            last = hidden[:, -1:]  # predicts each sequence's first token after the prefix
            rests = [s[shared:] for s in sequences]
            out_rows = [None] * len(sequences)
            for batch in length_batches({i: shared + len(r) for i, r in enumerate(rests)}, max_tokens_per_batch):
                width = max(len(rests[i]) for i in batch)
                ids = torch.zeros((len(batch), width), dtype=torch.long)
                mask = torch.zeros((len(batch), shared + width), dtype=torch.long)
                mask[:, :shared] = 1
                for row, i in enumerate(batch):
                    ids[row, : len(rests[i])] = torch.tensor(rests[i], dtype=torch.long)
                    mask[row, shared : shared + len(rests[i])] = 1
                ids, mask = ids.to(dev), mask.to(dev)
                past = copy.deepcopy(cache)
                past.batch_repeat_interleave(len(batch))
                positions = torch.arange(shared, shared + width, device=dev).expand(len(batch), -1)
                rest = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                             output_hidden_states=True, logits_to_keep=1, **{cache_arg: past}).hidden_states[-1]
                first = _chunked_nll(model, last.expand(len(batch), -1, -1), ids[:, :1])
                after = _chunked_nll(model, rest[:, :-1], ids[:, 1:])
                for row, i in enumerate(batch):
                    n = len(rests[i])
                    out_rows[i] = torch.cat([prefix_nll, first[row], after[row, : n - 1]]).cpu().numpy()
            return out_rows
    except (TypeError, ValueError, AttributeError, NotImplementedError):
        return None  # a model or cache without these options: every sequence runs whole


def _batched_nll(model, tokenizer, sequences, first_scored, which: list[int], max_tokens_per_batch: int,
                 nll: np.ndarray, bar) -> None:
    """mean NLLs of the sequences `which`, whole, batched by length under a token budget."""
    import torch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    dev = next(model.parameters()).device
    with torch.no_grad():
        for batch in length_batches({i: len(sequences[i]) for i in which}, max_tokens_per_batch):
            width = max(len(sequences[i]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, : len(sequences[i])] = torch.tensor(sequences[i], dtype=torch.long)
                mask[row, : len(sequences[i])] = 1
            token_nll = next_token_nll(model, ids.to(dev), mask.to(dev))
            for row, i in enumerate(batch):
                scored = token_nll[row, first_scored[i] - 1 : len(sequences[i]) - 1]
                if scored.numel():
                    nll[i] = scored.mean().item()
            bar.update(len(batch))


def length_batches(lengths: dict[int, int], max_tokens_per_batch: int):
    """Indices in batches, shortest first: a batch grows while its count times its longest
    length fits the token budget (a longer sequence runs alone)."""
    order = sorted(lengths, key=lambda i: lengths[i])
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and lengths[order[end]] * (end - start + 1) <= max_tokens_per_batch:
            end += 1
        yield order[start:end]
        start = end


LOGIT_CHUNK = 256  # positions whose logits exist at once: 256 x 49152 x 4 bytes = 50 MB for SmolLM2


def next_token_nll(model, ids, mask):
    """NLL of tokens 1..T-1 of each row, each predicted from the tokens before it, shape [B, T-1].

    The logits of a long sequence are the memory hog (8,192 positions x SmolLM2's 49,152
    words x 4 bytes = 1.6 GB, twice over for the float copy), so they are made LOGIT_CHUNK
    positions at a time from the final hidden states: memory stays bounded whatever the
    length. Models whose forward does not take `logits_to_keep` get the plain full pass.
    """
    import torch

    try:
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, logits_to_keep=1)
    except TypeError:
        logits = model(input_ids=ids, attention_mask=mask).logits  # position t predicts token t+1
        return torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2).float(), ids[:, 1:], reduction="none")
    return _chunked_nll(model, out.hidden_states[-1][:, :-1], ids[:, 1:])


def _chunked_nll(model, hidden, targets):
    """NLL of `targets` [B, T] from the final hidden states that predict them [B, T, H], the
    logits made LOGIT_CHUNK positions at a time."""
    import torch

    head = model.get_output_embeddings()
    softcap = getattr(model.config, "final_logit_softcapping", None)  # Gemma-2 caps its logits
    nll = torch.empty(targets.shape[0], targets.shape[1], device=targets.device)
    for start in range(0, targets.shape[1], LOGIT_CHUNK):
        end = min(start + LOGIT_CHUNK, targets.shape[1])
        logits = head(hidden[:, start:end]).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        nll[:, start:end] = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets[:, start:end],
                                                              reduction="none")
    return nll


def _max_length(model) -> int:
    return getattr(model.config, "max_position_embeddings", None) or 10**9


def perplexity(surprise: float) -> float:
    return math.exp(surprise) if not math.isnan(surprise) else math.nan
