"""Controlled-s probes for real models, and the KL(q0 || qθ) general evaluator of the LLM tier.

Probe construction (theory.md C6): let the model write text itself (a sampled prompt, then its own
greedy continuation, so every response token is easy for it), then replace exactly s positions of each response by
uniformly random vocabulary tokens. Those are the hard targets. The TOKENS scanner then measures
how many targets per example really have p < 0.2; a random token can also make the token after it
harder, so the measured s is reported next to the intended s (never assumed equal).

General degradation for the real-LLM tier: P1 = the base model q0 itself (theory.md C5 ii). For
samples z ~ q0 we sum, over every position of every sample, the full-vocabulary
KL(q0(·|z_<t) || qθ(·|z_<t)); averaged over samples this is an unbiased estimate of the sequence
KL(q0 || qθ) with far less variance than the log-ratio log q0(z) - log qθ(z), and it is never negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from talr_theory.data.encode import IGNORE, EncodedExample, collate


@dataclass
class ProbeSet:
    examples: dict[int, list[EncodedExample]]   # intended s -> probes
    check: pd.DataFrame                          # one row per s: intended vs measured


@torch.no_grad()
def generate_easy_text(loaded, n: int, length: int, prompt_len: int = 8, seed: int = 0) -> list[list[int]]:
    """``n`` texts of BOS + ``length`` tokens: a prompt sampled at temperature 1 (so texts differ), then a
    greedy continuation (each response token is the model's own most likely token, i.e. easy)."""
    tok = loaded.tokenizer
    bos = getattr(tok, "bos_token_id", None)
    if not isinstance(bos, int):
        bos = getattr(tok, "eos_token_id", None) or 0
    device = loaded.device
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        torch.manual_seed(seed)
        start = torch.full((n, 1), bos, dtype=torch.long, device=device)
        prompt = loaded.model.generate(input_ids=start, attention_mask=torch.ones_like(start), do_sample=True,
                                       temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=prompt_len,
                                       min_new_tokens=prompt_len, pad_token_id=bos)
        out = loaded.model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                    max_new_tokens=length - prompt_len, min_new_tokens=length - prompt_len,
                                    pad_token_id=bos)
    return out.tolist()


def make_probes(loaded, s_values, n_per_s: int = 8, length: int = 32, prompt_len: int = 8,
                seed: int = 0, threshold: float = 0.2, progress: bool = False) -> ProbeSet:
    """Probes with exactly s random-token targets each, and the measured s (scanner, p < threshold).

    The check table also gives ``excess_s`` = measured s minus the measured s of the unmodified texts
    (s = 0 row): greedy text is easy but not always p > 0.2 (flat next-token distributions exist).
    """
    from talr_theory.tokens.scanner import scan_tokens

    if max(s_values) > length - prompt_len:
        raise ValueError(f"s up to {max(s_values)} needs at least that many response tokens "
                         f"(length {length} - prompt_len {prompt_len})")
    texts = generate_easy_text(loaded, n_per_s, length, prompt_len, seed)
    special = set(getattr(loaded.tokenizer, "all_special_ids", []) or [])
    vocab = [i for i in range(loaded.model.get_output_embeddings().weight.shape[0]) if i not in special]
    rng = np.random.default_rng(seed)
    sets, rows = {}, []
    for s in sorted(set([0, *s_values])):
        probes = []
        for k, ids in enumerate(texts):
            ids = list(ids)
            resp = np.arange(1 + prompt_len, len(ids))
            for pos in rng.choice(resp, size=s, replace=False):
                ids[pos] = int(vocab[rng.integers(len(vocab))])
            labels = [IGNORE] * (1 + prompt_len) + ids[1 + prompt_len:]
            probes.append(EncodedExample(f"probe-s{s}-{k}", ids, labels))
        table = scan_tokens(loaded, probes, batch_size=16, progress=progress)
        per_ex = table.assign(hard=table["logp"] < np.log(threshold)).groupby("example_id")["hard"].sum()
        rows.append({"intended_s": s, "measured_s": float(per_ex.mean()),
                     "measured_s_min": int(per_ex.min()), "measured_s_max": int(per_ex.max()),
                     "n_examples": len(probes), "threshold": threshold})
        sets[s] = probes
    check = pd.DataFrame(rows)
    check["excess_s"] = check["measured_s"] - float(check.loc[check["intended_s"] == 0, "measured_s"].iloc[0])
    return ProbeSet(sets, check)


class SampleKL:
    """ΔL(P1) = KL(q0 || qθ) per sample on fixed samples from q0 (full-vocabulary KL at every position)."""

    def __init__(self, loaded, n_samples: int = 8, length: int = 32, seed: int = 1, batch_size: int = 8):
        from talr_theory.models import pad_token_id
        from talr_theory.training.samples import sample_from_model

        self.pad = pad_token_id(loaded.tokenizer)
        self.samples = sample_from_model(loaded.model, loaded.tokenizer, n_samples, length, seed=seed,
                                         batch_size=batch_size, pad_id=self.pad).examples
        self.batch_size = batch_size
        self.base = self._logq(loaded.model)

    @torch.no_grad()
    def _logq(self, model) -> list[torch.Tensor]:
        """log q(·|context) at every supervised position, per batch, float32 [positions, V]."""
        out = []
        device = next(model.parameters()).device
        for i in range(0, len(self.samples), self.batch_size):
            batch = collate(self.samples[i:i + self.batch_size], self.pad)
            logits = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device)).logits[:, :-1]
            mask = batch["labels"][:, 1:].ne(IGNORE).to(device)
            out.append(torch.log_softmax(logits[mask].float(), dim=-1))
        return out

    def __call__(self, model) -> float:
        total = 0.0
        for base, cur in zip(self.base, self._logq(model)):
            total += float((base.exp() * (base - cur)).sum(dtype=torch.float64))
        return total / len(self.samples)
