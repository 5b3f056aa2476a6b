"""Synthetic domains with a controlled number s of low-probability target tokens per example.

An example is ``BOS, prompt (prompt_len tokens sampled from the general source), response``. The
response follows the source's most likely successor at every position (so, for a model that has
learned the source, those targets are easy: p ≈ 0.85-0.97) except at exactly ``s`` positions
chosen at random, where it emits the domain's "concept" token ``rule[prev]``: a fixed random map
whose value is never a successor of ``prev`` under the source. Those targets have P1-probability
zero, so the pretrained model gives them a small probability: they are the hard tokens. Because
the source is first order, the token after a concept token is again the major successor of a
normal state, i.e. easy again — the measured s equals the intended s (checked by
:func:`measured_s`).

The domain is learnable (the rule is consistent), but where the concept tokens appear is random,
so the best a model can do is to put some mass on ``rule[prev]`` everywhere; that is the conflict
with P1 which fine-tuning must trade against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from talr_theory.data.encode import EncodedExample
from talr_theory.lab.synthetic import BOS, MarkovSource, sequence_token_logq
from talr_theory.tokens.stats import per_example_counts


@dataclass(frozen=True)
class DomainConfig:
    s: int = 2
    prompt_len: int = 2
    response_len: int = 6
    rule_seed: int = 1

    def __post_init__(self):
        if not 0 <= self.s <= self.response_len:
            raise ValueError(f"DomainConfig.s must be in [0, response_len={self.response_len}], got {self.s}")
        if self.prompt_len < 1:
            raise ValueError("DomainConfig.prompt_len must be at least 1")


def domain_rule(source: MarkovSource, seed: int) -> np.ndarray:
    """rule[t] = a token that is never a successor of t under the source (index 0 unused).

    Only *reachable* tokens (those that occur in some P1 sequence) are used: the model has never seen
    what follows an unreachable token, so the target after it would be hard too and s would drift.
    """
    rng = np.random.default_rng(seed)
    seqs, _ = source.support()
    reachable = np.zeros(source.n_tokens, dtype=bool)
    reachable[np.unique(seqs[:, 1:])] = True
    rule = np.zeros(source.n_tokens, dtype=np.int64)
    for t in range(1, source.n_tokens):
        allowed = np.flatnonzero((source.trans[t] == 0) & reachable)
        allowed = allowed[allowed != BOS]
        rule[t] = rng.choice(allowed)
    return rule


def make_domain_examples(source: MarkovSource, config: DomainConfig, n: int, seed: int,
                         prefix: str = "dom") -> list[EncodedExample]:
    """``n`` domain examples with exactly ``config.s`` concept (hard) targets each; labels -100 on BOS+prompt."""
    rng = np.random.default_rng(seed)
    rule = domain_rule(source, config.rule_seed)
    total = 1 + config.prompt_len + config.response_len
    if total > source.config.seq_len + 1 + 8:
        raise ValueError("domain examples much longer than the pretraining sequences: positions would be untrained")
    out = []
    for k in range(n):
        # prompt: the first prompt_len tokens of a general-source sample
        prompt = source.sample(1, rng)[0, : 1 + config.prompt_len].tolist()
        hard = set(rng.choice(config.response_len, size=config.s, replace=False).tolist())
        seq = list(prompt)
        for j in range(config.response_len):
            prev = seq[-1]
            seq.append(int(rule[prev]) if j in hard else int(source.major[prev]))
        labels = [-100] * len(prompt) + seq[len(prompt):]
        out.append(EncodedExample(example_id=f"{prefix}-s{config.s}-{seed}-{k}", input_ids=seq, labels=labels))
    return out


def target_logprobs(model, examples: list[EncodedExample]) -> list[np.ndarray]:
    """Per example, the model's log-probability of each supervised target token (teacher forcing).

    The synthetic examples have equal lengths, so one batched pass of ``sequence_token_logq`` (which
    scores every next token) suffices; supervised targets are the positions whose label is set.
    """
    ids = torch.tensor([e.input_ids for e in examples])
    labels = torch.tensor([e.labels for e in examples])
    lp = sequence_token_logq(model, ids)
    mask = labels[:, 1:] != -100
    return [lp[i][mask[i]].numpy() for i in range(len(examples))]


def measured_s(model, examples: list[EncodedExample], threshold: float = 0.2) -> float:
    """s(θ): mean number of supervised targets with model probability below ``threshold`` per example
    (counted by ``tokens.stats.per_example_counts``, the same count as for real data)."""
    lps = target_logprobs(model, examples)
    table = pd.DataFrame({"example_id": np.repeat(np.arange(len(lps)), [len(lp) for lp in lps]),
                          "p": np.exp(np.concatenate(lps))})
    return float(per_example_counts(table, (threshold,))[f"n_p_lt_{threshold:g}"].mean())


@torch.no_grad()
def domain_nll(model, examples: list[EncodedExample]) -> float:
    """Mean code length of the responses (nats per example, summed over response tokens)."""
    return float(-np.mean([lp.sum() for lp in target_logprobs(model, examples)]))
