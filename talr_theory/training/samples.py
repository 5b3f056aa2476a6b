"""Exact draws from a base model q0 with their base log-probabilities (the P1 = q0 general data of KL(q0 || qθ)).

It lives with the training-side evaluation because the base log-probabilities are recomputed by the
same teacher-forced pass used at checkpoints (``training.evaluation.per_example_nll``), so the KL
at step 0 is exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ModelSamples:
    """Exact draws from the base model q0 with their base log-probabilities (for KL(q0 || qθ))."""

    examples: list
    base_sum_logprob: np.ndarray  # per sample, float64, over the supervised (generated) tokens
    n_tokens: np.ndarray


def _cache_argument(model) -> str:
    """The name of the KV-cache argument (and output field) of ``model.forward``.

    transformers 5.x (checked at 5.24) renamed ``past_key_values`` to ``cache`` and warns on the old
    name (a FutureWarning on every sampling call); older versions only know ``past_key_values``.
    """
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def sample_from_model(model, tokenizer, n_samples: int = 32, max_new_tokens: int = 64, seed: int = 0,
                      batch_size: int = 16, pad_id: int | None = None) -> ModelSamples:
    """Draw ``n_samples`` continuations of BOS from ``model`` at temperature 1 without truncation.

    A plain ancestral-sampling loop with the KV cache (``torch.multinomial`` on the full softmax), so
    no generation-config default (top-k, top-p, repetition penalty, ...) can bias the draws away from
    q0. A sample ends at EOS (kept as its last supervised token) or after ``max_new_tokens``. The base
    log-probabilities are not taken from the sampler but recomputed by the same teacher-forced pass
    used at checkpoints, so KL at step 0 is exactly zero.
    """
    from talr_theory.data.encode import EncodedExample
    from talr_theory.models import pad_token_id

    device = next(model.parameters()).device
    bos = getattr(tokenizer, "bos_token_id", None)
    eos = getattr(tokenizer, "eos_token_id", None)
    if not isinstance(bos, int):
        bos = eos if isinstance(eos, int) else 0  # start from EOS as a document boundary, else id 0
    pad = pad_token_id(tokenizer) if pad_id is None else pad_id
    cache_arg = _cache_argument(model)
    examples = []
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        torch.manual_seed(seed)
        while len(examples) < n_samples:
            b = min(batch_size, n_samples - len(examples))
            step_ids = torch.full((b, 1), bos, dtype=torch.long, device=device)
            past, drawn = None, []
            finished = torch.zeros(b, dtype=torch.bool, device=device)
            for _ in range(max_new_tokens):
                out = model(input_ids=step_ids, use_cache=True, **({cache_arg: past} if past is not None else {}))
                past = out.get(cache_arg)
                probs = torch.softmax(out.logits[:, -1, :].float(), dim=-1)
                step_ids = torch.multinomial(probs, 1)
                drawn.append(step_ids)
                if isinstance(eos, int):
                    finished |= step_ids.squeeze(1) == eos
                    if bool(finished.all()):
                        break
            for row in torch.cat(drawn, dim=1).tolist():
                body = row[: row.index(eos) + 1] if isinstance(eos, int) and eos in row else row
                examples.append(EncodedExample(example_id=f"sample-{len(examples)}", input_ids=[bos] + body,
                                               labels=[-100] + body))
    model.train(was_training)
    from talr_theory.training.evaluation import per_example_nll  # noqa: I001  (lazy: evaluation imports torch models)

    table = per_example_nll(model, examples, pad_id=pad, batch_size=batch_size)
    return ModelSamples(examples=examples, base_sum_logprob=-table["sum_nll"].to_numpy(np.float64),
                        n_tokens=table["n_tokens"].to_numpy())
