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
from talr_theory.theory.reweighting import EAFT_TOP_K
from talr_theory.tokens.entropy import normalized_topk_entropy

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
                      with_entropy: bool, top_k: int = 0, entropy_k: int = EAFT_TOP_K):
    """log p(target) (and entropy) for N rows, in chunks; ``head`` None means the input are logits.
    The entropy is a pair (full-vocabulary entropy in nats, EAFT's top-``entropy_k`` entropy / ln K).
    With ``top_k`` > 0 also the target's rank in the vocabulary (1 = most probable; ties counted in
    the target's favour) and the ``top_k`` most probable ids with their log-probabilities."""
    n = hidden_or_logits.shape[0]
    vocab = head.out_features if head is not None else hidden_or_logits.shape[-1]
    step = max(1, CHUNK_ELEMENTS // vocab)
    logps, ents, ranks, top_ids, top_logps = [], [], [], [], []
    for start in range(0, n, step):
        rows = hidden_or_logits[start:start + step]
        if head is not None:
            rows = head(rows)  # in bf16 when the caller's autocast is on
        logits = rows.float()
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        lse = torch.logsumexp(logits, dim=-1)
        tgt = targets[start:start + step]
        tgt_logit = logits.gather(1, tgt[:, None])
        logps.append(tgt_logit.squeeze(1) - lse)
        if with_entropy:
            logq = logits - lse[:, None]
            ents.append(torch.stack([-(logq.exp() * logq).sum(-1), normalized_topk_entropy(logits, entropy_k)], -1))
        if top_k:
            ranks.append((logits > tgt_logit).sum(-1) + 1)
            val, idx = logits.topk(min(top_k, vocab), dim=-1)
            top_ids.append(idx)
            top_logps.append(val - lse[:, None])
    ent = torch.cat(ents) if with_entropy else None
    if not top_k:
        return torch.cat(logps), ent
    return torch.cat(logps), ent, (torch.cat(ranks), torch.cat(top_ids), torch.cat(top_logps))


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
                max_batch_tokens: int | None = 8192, top_k: int = 0, with_argmax: bool = False,
                entropy_k: int = EAFT_TOP_K) -> pd.DataFrame:
    """One row per supervised token: example_id, position, response_index, token_id, token_text, p, logp
    (+ with_entropy: ``entropy``, the full-vocabulary predictive entropy in nats, and ``entropy_topk``,
    EAFT's top-``entropy_k`` entropy divided by ln K, in [0, 1]). ``position`` indexes the token in ``input_ids``; ``response_index`` counts
    supervised tokens within the example. ``df.attrs["scan"]`` records padding and token counts.

    ``top_k`` > 0 (off by default; it costs a top-k over the vocabulary per token) adds ``rank``
    (1 = the model's most probable token), ``top_ids`` and ``top_p`` (lists of the ``top_k`` most
    probable next tokens and their probabilities) for the token views. ``with_argmax`` adds ``is_argmax``
    (rank 1: the target is the model's most probable token, ties in its favour), the teacher-forced
    exact-match unit of accuracy."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if top_k < 0:
        raise ValueError(f"top_k must be ≥ 0, got {top_k}")
    if with_entropy and entropy_k < 2:
        raise ValueError(f"entropy_k must be ≥ 2 (the entropy of one logit is 0), got {entropy_k}")
    # The argmax test is the rank computation with a top-1: one mechanism for both options.
    k = max(top_k, 1) if with_argmax else top_k
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
                out = _chunked_logprobs(hidden[rows, cols], targets, head, softcap, with_entropy, k, entropy_k)
            else:
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
                out = _chunked_logprobs(logits[rows, cols], targets, None, None, with_entropy, k, entropy_k)
            logp, ent = out[0], out[1]
            top = tuple(t.cpu() for t in out[2]) if k else None
            logp, rows_c, cols_c, tg = logp.cpu(), rows.cpu(), cols.cpu(), targets.cpu()
            ent = ent.cpu() if ent is not None else None
            for b, ex_i in enumerate(idx):
                sel = rows_c == b
                results[ex_i] = (cols_c[sel] + 1, tg[sel], logp[sel], ent[sel] if ent is not None else None,
                                 tuple(t[sel] for t in top) if top is not None else None)
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
            data["entropy"] = en[:, 0].double().numpy()
            data["entropy_topk"] = en[:, 1].double().numpy()
        if with_argmax:
            data["is_argmax"] = top[0].numpy() == 1
        if top_k:
            data["rank"] = top[0].numpy()
            data["top_ids"] = list(top[1].numpy())
            data["top_p"] = list(top[2].double().exp().numpy())
        frames.append(pd.DataFrame(data))
    extra = ((["entropy", "entropy_topk"] if with_entropy else []) + (["rank", "top_ids", "top_p"] if top_k else [])
             + (["is_argmax"] if with_argmax else []))
    columns = ["example_id", "position", "response_index", "token_id", "logp"] + extra
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    texts = _token_texts(loaded.tokenizer, table["token_id"].tolist())
    table["token_text"] = table["token_id"].map(lambda i: texts[int(i)])
    table["p"] = table["logp"].map(math.exp)
    keep = ["example_id", "position", "response_index", "token_id", "token_text", "p", "logp"]
    table = table[keep + extra]
    table.attrs["scan"] = {"n_examples": len(encoded), "n_real_tokens": n_real, "n_padded_tokens": n_padded,
                           "padding_fraction": 1.0 - n_real / n_padded if n_padded else 0.0,
                           "bf16_autocast": bf16_autocast, "fast_head": fast is not None,
                           "batch_size": batch_size, "max_batch_tokens": max_batch_tokens,
                           "n_batches": len(batches), "top_k": top_k,
                           "entropy_k": int(entropy_k) if with_entropy else None}
    return table
