"""Teacher-forced probability of every supervised token: p(x_t | prompt, x_<t).

How it stays fast and small:

- Examples are sorted by length and batched (at most ``batch_size`` examples and
  ``max_batch_tokens`` padded tokens per batch), so padding is small (the fraction is reported)
  and long documents do not blow up attention memory.
- ``torch.inference_mode()`` (``no_grad`` under bf16 autocast, whose weight-cast cache needs it);
  optional bf16 autocast on CPU or GPU for the transformer body and head. Statistics default to fp32 (see ``benchmarks/bench_scanner.py`` for the bf16 accuracy cost).
- The output head is applied only at positions whose next token is supervised (prompt positions
  need no logits), in chunks of positions, and the log-softmax is taken in fp32 chunk by chunk:
  log p = logit[target] - logsumexp(logits). A [batch, length, vocab] fp32 tensor never exists.
  This needs the usual causal-LM layout ``logits = lm_head(decoder(x).last_hidden_state)``
  (Llama, Qwen, Mistral, SmolLM, GPT-2, ... — Gemma-style final soft-capping is applied too).
  Models without ``get_decoder``/``get_output_embeddings`` fall back to a full forward whose
  logits (in the model's dtype) are then reduced chunk by chunk in fp32.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import pandas as pd
import torch
from tqdm.auto import tqdm

from talr_theory.data.encode import IGNORE, EncodedExample, collate
from talr_theory.models import LoadedModel, pad_token_id

CHUNK_ELEMENTS = 1 << 22  # fp32 logits per chunk: 4M floats = 16 MiB


def _head_and_decoder(model):
    """(decoder, head, softcap) for the fast path, or None when the model does not expose them."""
    try:
        decoder = model.get_decoder()
        head = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if decoder is None or not isinstance(head, torch.nn.Linear):
        return None
    softcap = getattr(model.config, "final_logit_softcapping", None)
    return decoder, head, softcap


def _chunked_logprobs(hidden_or_logits: torch.Tensor, targets: torch.Tensor, head, softcap,
                      with_entropy: bool, with_argmax: bool = False):
    """log p(target) (and entropy, and whether the target is the argmax) for N rows, in chunks;
    ``head`` None means the input are logits."""
    n = hidden_or_logits.shape[0]
    vocab = head.out_features if head is not None else hidden_or_logits.shape[-1]
    step = max(1, CHUNK_ELEMENTS // vocab)
    logps, ents, tops = [], [], []
    for start in range(0, n, step):
        rows = hidden_or_logits[start:start + step]
        if head is not None:
            rows = head(rows)  # in bf16 when the caller's autocast is on
        logits = rows.float()
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        lse = torch.logsumexp(logits, dim=-1)
        tgt = targets[start:start + step]
        logps.append(logits.gather(1, tgt[:, None]).squeeze(1) - lse)
        if with_entropy:
            logq = logits - lse[:, None]
            ents.append(-(logq.exp() * logq).sum(-1))
        if with_argmax:
            tops.append(logits.argmax(dim=-1) == tgt)
    if with_argmax:
        return torch.cat(logps), (torch.cat(ents) if with_entropy else None), torch.cat(tops)
    return torch.cat(logps), (torch.cat(ents) if with_entropy else None)


def _token_texts(tokenizer, ids) -> dict[int, str]:
    return {int(i): tokenizer.decode([int(i)]) for i in set(int(x) for x in ids)}


def length_batches(lengths: list[int], batch_size: int, max_batch_tokens: int | None) -> list[list[int]]:
    """Indices grouped longest-first into batches of at most ``batch_size`` examples and at most
    ``max_batch_tokens`` padded tokens (a single longer example still forms its own batch)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    for i in order:
        if batches:
            cur = batches[-1]
            width = lengths[cur[0]]  # the first member is the longest
            if len(cur) < batch_size and (max_batch_tokens is None or width * (len(cur) + 1) <= max_batch_tokens):
                cur.append(i)
                continue
        batches.append([i])
    return batches


def scan_tokens(loaded: LoadedModel, encoded: list[EncodedExample], batch_size: int = 8,
                bf16_autocast: bool = False, with_entropy: bool = False, progress: bool = True,
                max_batch_tokens: int | None = 8192, with_argmax: bool = False) -> pd.DataFrame:
    """One row per supervised token: example_id, position, response_index, token_id, token_text, p, logp
    (+ entropy in nats; + ``is_argmax``, whether the token is the model's most likely one, for
    teacher-forced exact-match accuracy). ``position`` indexes the token in ``input_ids``; ``response_index`` counts
    supervised tokens within the example. ``df.attrs["scan"]`` records padding and token counts."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    model = loaded.model
    device = loaded.device
    pad = pad_token_id(loaded.tokenizer)
    fast = _head_and_decoder(model)
    if bf16_autocast:
        def autocast():
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    else:
        autocast = nullcontext

    batches = length_batches([len(e.input_ids) for e in encoded], batch_size, max_batch_tokens)
    order = [i for b in batches for i in b]
    results: dict[int, tuple] = {}
    n_real = n_padded = 0
    bar = tqdm(total=sum(len(encoded[i].input_ids) for i in order), desc="scan tokens", unit="tok",
               disable=not progress, leave=False)
    was_training = model.training
    model.eval()
    # One autocast context for the whole scan: autocast caches the bf16 copies of the weights for
    # the life of the context, so they are cast once rather than once per batch and chunk. That
    # cache is not used under inference_mode (measured: every weight was re-cast on every forward),
    # so the bf16 path runs under no_grad, which equally records no graph.
    grad_off = torch.no_grad if bf16_autocast else torch.inference_mode
    with grad_off(), autocast():
        for idx in batches:
            batch = collate([encoded[i] for i in idx], pad)
            ids = batch["input_ids"].to(device)
            mask = batch["attention_mask"].to(device)
            labels = batch["labels"].to(device)
            n_real += int(mask.sum())
            n_padded += mask.numel()
            # position t predicts token t+1: select (row, t) whose next label is supervised
            nxt = labels[:, 1:]
            rows, cols = torch.nonzero(nxt != IGNORE, as_tuple=True)
            targets = nxt[rows, cols]
            if fast is not None:
                decoder, head, softcap = fast
                hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
                res = _chunked_logprobs(hidden[rows, cols], targets, head, softcap, with_entropy, True)
            else:
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
                res = _chunked_logprobs(logits[rows, cols], targets, None, None, with_entropy, True)
            logp, ent, top = res
            logp, rows_c, cols_c, tg, top = logp.cpu(), rows.cpu(), cols.cpu(), targets.cpu(), top.cpu()
            ent = ent.cpu() if ent is not None else None
            for b, ex_i in enumerate(idx):
                sel = rows_c == b
                results[ex_i] = (cols_c[sel] + 1, tg[sel], logp[sel], ent[sel] if ent is not None else None,
                                 top[sel])
            bar.update(int(mask.sum()))
    bar.close()
    if was_training:
        model.train()

    frames = []
    for ex_i, ex in enumerate(encoded):
        pos, tg, lp, en, top = results[ex_i]
        data = {"example_id": ex.example_id, "position": pos.numpy(), "response_index": range(len(pos)),
                "token_id": tg.numpy(), "logp": lp.double().numpy()}
        if en is not None:
            data["entropy"] = en.double().numpy()
        if with_argmax:
            data["is_argmax"] = top.numpy()
        frames.append(pd.DataFrame(data))
    columns = (["example_id", "position", "response_index", "token_id", "logp"] + (["entropy"] if with_entropy else [])
               + (["is_argmax"] if with_argmax else []))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    texts = _token_texts(loaded.tokenizer, table["token_id"].tolist())
    table["token_text"] = table["token_id"].map(lambda i: texts[int(i)])
    table["p"] = table["logp"].map(math.exp)
    keep = ["example_id", "position", "response_index", "token_id", "token_text", "p", "logp"]
    table = table[keep + (["entropy"] if with_entropy else []) + (["is_argmax"] if with_argmax else [])]
    table.attrs["scan"] = {"n_examples": len(encoded), "n_real_tokens": n_real, "n_padded_tokens": n_padded,
                           "padding_fraction": 1.0 - n_real / n_padded if n_padded else 0.0,
                           "bf16_autocast": bf16_autocast, "fast_head": fast is not None,
                           "batch_size": batch_size, "max_batch_tokens": max_batch_tokens,
                           "n_batches": len(batches)}
    return table
