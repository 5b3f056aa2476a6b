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

Two variants of the easy part (``DomainConfig.easy``):

- ``"source"`` (the default, *adversarial*): the easy targets are P1's own most likely transitions,
  so sharpening them moves the model directly against P1's other successors.
- ``"domain"`` (the paper's setting: the domain mostly agrees with the model): the easy targets are
  *domain tokens*, ids after the source's vocabulary that P1 never emits, following a domain chain
  the model learned in pretraining (:func:`load_domain_pretrained` pretrains on P1 mixed with
  domain sequences). Sharpening them touches P1 only through what the network shares (leakage).
  The hard targets are domain tokens too: ``rule[prev]``, never a chain successor of ``prev``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from talr_theory.data.encode import EncodedExample
from talr_theory.lab.synthetic import BOS, MarkovSource, pretrain_step, sequence_token_logq
from talr_theory.tokens.stats import per_example_counts

EASY_KINDS = ("source", "domain")


@dataclass(frozen=True)
class DomainConfig:
    s: int = 2
    prompt_len: int = 2
    response_len: int = 6
    rule_seed: int = 1
    easy: str = "source"

    def __post_init__(self):
        if not 0 <= self.s <= self.response_len:
            raise ValueError(f"DomainConfig.s must be in [0, response_len={self.response_len}], got {self.s}")
        if self.prompt_len < 1:
            raise ValueError("DomainConfig.prompt_len must be at least 1")
        if self.easy not in EASY_KINDS:
            raise ValueError(f"DomainConfig.easy must be one of {EASY_KINDS}, got {self.easy!r}")


@dataclass(frozen=True)
class DomainChainConfig:
    """The domain chain of the ``easy="domain"`` variant and the mixture the model is pretrained on."""

    n_domain_tokens: int = 12
    major: float = 0.95          # probability of each domain state's major successor
    # In pretraining a domain step jumps to a uniformly random domain token with this probability, so
    # every transition is seen at every position (a near-deterministic chain would teach the model
    # whole paths, and a token reached after a concept token would be unfamiliar: hard as well).
    jump: float = 0.3
    mix: float = 0.2             # fraction of pretraining sequences that are domain sequences
    seed: int = 5


class DomainChain:
    """A first-order chain over domain tokens, entered through a marker token.

    Ids: ``marker = source.n_tokens`` opens a domain response (it ends the prompt, so the model knows
    a domain continuation follows — without it the first response token would be hard as well),
    then ``marker + 1 ..`` are the domain tokens. P1 never emits any of them.
    """

    def __init__(self, source: MarkovSource, config: DomainChainConfig = DomainChainConfig()):
        if config.n_domain_tokens < 3:
            raise ValueError("DomainChainConfig.n_domain_tokens must be at least 3")
        self.source, self.config = source, config
        rng = np.random.default_rng(config.seed)
        self.marker = source.n_tokens
        self.first = source.n_tokens + 1
        self.n_tokens = self.first + config.n_domain_tokens
        ids = np.arange(self.first, self.n_tokens)
        self.trans = np.zeros((self.n_tokens, self.n_tokens))
        for state in range(1, self.n_tokens):
            succ = rng.choice(ids, size=2, replace=False)
            self.trans[state, succ[0]] = config.major
            self.trans[state, succ[1]] = 1 - config.major
        self.major = self.trans.argmax(axis=1)

    def sample_response(self, prev: int, length: int, rng: np.random.Generator) -> list[int]:
        """A pretraining response: chain steps, each replaced by a random domain token w.p. ``jump``."""
        out = []
        for _ in range(length):
            if rng.random() < self.config.jump:
                nxt = rng.integers(self.first, self.n_tokens)
            else:
                nxt = rng.choice(self.n_tokens, p=self.trans[prev])
            out.append(int(nxt))
            prev = int(nxt)
        return out

    def rule(self, seed: int) -> np.ndarray:
        """rule[t]: a domain token that is never a chain successor of t (the hard concept token)."""
        rng = np.random.default_rng(seed)
        rule = np.zeros(self.n_tokens, dtype=np.int64)
        for t in range(1, self.n_tokens):
            allowed = np.flatnonzero(self.trans[t] == 0)
            rule[t] = rng.choice(allowed[allowed >= self.first])
        return rule


def pretrain_mixture(source: MarkovSource, chain: DomainChain, model_config, response_len: int = 6,
                     prompt_len: int = 2, progress: bool = True):
    """The tiny Llama pretrained on P1 sequences mixed with domain sequences (P1 prompt + chain response)."""
    import torch
    from tqdm.auto import tqdm

    from talr_theory.lab.synthetic import build_tiny_llama

    model = build_tiny_llama(chain.n_tokens, model_config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=model_config.pretrain_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=model_config.pretrain_lr,
                                                total_steps=model_config.pretrain_steps, pct_start=0.1)
    rng = np.random.default_rng(model_config.seed)
    n_dom = int(round(chain.config.mix * model_config.pretrain_batch))
    for _ in tqdm(range(model_config.pretrain_steps), desc="pretrain synthetic LM (P1 + domain)", disable=not progress):
        general = torch.from_numpy(source.sample(model_config.pretrain_batch - n_dom, rng))
        prompts = source.sample(n_dom, rng)[:, :prompt_len]  # BOS + (prompt_len - 1) P1 tokens, then the marker
        dom = [list(p) + [chain.marker] + chain.sample_response(chain.marker, response_len, rng) for p in prompts]
        width = general.shape[1]
        dom = torch.tensor([d[:width] for d in dom]) if dom else None
        if dom is not None and dom.shape[1] < width:  # pad domain sequences with their own last token ids
            raise ValueError("pretrain_mixture: domain sequences must be at least as long as P1 sequences")
        pretrain_step(model, torch.cat([general, dom]) if dom is not None else general, opt, sched)
    model.eval()
    return model


def load_domain_pretrained(chain_config: DomainChainConfig = DomainChainConfig(), progress: bool = True):
    """(source, chain, model) for the ``easy="domain"`` variant; the model is cached like ``load_pretrained``."""
    import dataclasses
    import hashlib
    import json

    import torch

    from talr_theory.lab.synthetic import SourceConfig, TinyModelConfig, build_tiny_llama
    from talr_theory.paths import cache_dir

    source = MarkovSource(SourceConfig())
    chain = DomainChain(source, chain_config)
    mcfg = TinyModelConfig()
    response_len = SourceConfig().seq_len - DomainConfig().prompt_len
    text = json.dumps([dataclasses.asdict(c) for c in (SourceConfig(), mcfg, chain_config)]
                      + [response_len, "marker-jump-v1"], sort_keys=True)
    folder = cache_dir() / "synthetic-domain" / hashlib.sha1(text.encode()).hexdigest()[:12]
    weights = folder / "model.pt"
    if weights.exists():
        model = build_tiny_llama(chain.n_tokens, mcfg)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.eval()
    else:
        model = pretrain_mixture(source, chain, mcfg, response_len=response_len, progress=progress)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "model.pt.tmp"
        torch.save(model.state_dict(), tmp)
        tmp.replace(weights)  # atomic: a killed pretraining never leaves a half-written cache entry
    return source, chain, model


def make_agreeing_examples(chain: DomainChain, config: DomainConfig, n: int, seed: int,
                           prefix: str = "agree") -> list[EncodedExample]:
    """``easy="domain"`` examples: P1 prompt ending in the marker, then the domain chain's major
    successors with s concept tokens (labels -100 on the prompt)."""
    source = chain.source
    rng = np.random.default_rng(seed)
    rule = chain.rule(config.rule_seed)
    out = []
    for k in range(n):
        prompt = source.sample(1, rng)[0, : config.prompt_len].tolist() + [chain.marker]
        hard = set(rng.choice(config.response_len, size=config.s, replace=False).tolist())
        seq = list(prompt)
        for j in range(config.response_len):
            prev = seq[-1]
            seq.append(int(rule[prev]) if j in hard else int(chain.major[prev]))
        labels = [-100] * len(prompt) + seq[len(prompt):]
        out.append(EncodedExample(example_id=f"{prefix}-s{config.s}-{seed}-{k}", input_ids=seq, labels=labels))
    return out


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
    """``n`` domain examples with exactly ``config.s`` concept (hard) targets each; labels -100 on BOS+prompt.

    Only the ``easy="source"`` variant is built here (it needs nothing but the source); the
    ``easy="domain"`` variant needs the chain its model was pretrained on: :func:`make_agreeing_examples`.
    """
    if config.easy != "source":
        raise ValueError("make_domain_examples builds the easy='source' variant; use make_agreeing_examples "
                         "with the DomainChain of load_domain_pretrained for easy='domain'")
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
