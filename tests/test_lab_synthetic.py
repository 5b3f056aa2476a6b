"""The synthetic lab's source, exact evaluator and controlled-s domains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talr_theory.lab.domains import DomainConfig, domain_rule, make_domain_examples, measured_s
from talr_theory.lab.synthetic import (
    BOS,
    ExactGeneralEvaluator,
    MarkovSource,
    SourceConfig,
    TinyModelConfig,
    build_tiny_llama,
    load_pretrained,
    sequence_token_logq,
)

SMALL = SourceConfig(vocab=10, n_starts=3, branching=2, seq_len=5, seed=3)


def test_support_is_complete_and_normalized():
    src = MarkovSource(SMALL)
    seqs, logp = src.support()
    assert seqs.shape == (3 * 2 ** 4, 6)
    assert np.all(seqs[:, 0] == BOS)
    assert len({tuple(s) for s in seqs}) == len(seqs)  # no duplicates
    assert np.isclose(np.exp(logp).sum(), 1.0, atol=1e-12)
    # the enumerated probability is the product of the transitions
    assert np.allclose(logp, src.log_prob_tokens(seqs).sum(axis=1))


def test_sampling_matches_exact_probabilities():
    src = MarkovSource(SMALL)
    seqs, logp = src.support()
    draws = src.sample(20000, np.random.default_rng(0))
    index = {tuple(s): i for i, s in enumerate(seqs)}
    counts = np.bincount([index[tuple(d)] for d in draws], minlength=len(seqs))
    p = np.exp(logp)
    # chi-square-like check: every frequency within 5 standard errors of its probability
    se = np.sqrt(p * (1 - p) / len(draws))
    assert np.all(np.abs(counts / len(draws) - p) <= 5 * se + 1e-4)


def test_exact_kl_and_delta_L_identities():
    torch.manual_seed(0)
    src = MarkovSource(SMALL)
    cfg = TinyModelConfig(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2)
    q1 = build_tiny_llama(src.n_tokens, cfg).double().eval()
    q2 = build_tiny_llama(src.n_tokens, TinyModelConfig(**{**cfg.__dict__, "seed": 1})).double().eval()
    ev = ExactGeneralEvaluator(src, q1)
    assert ev.delta_L(q1) == 0.0
    assert ev.kl(q1) > 0 and ev.kl(q2) > 0
    assert np.isclose(ev.delta_L(q2), ev.kl(q2) - ev.kl(q1), rtol=1e-10, atol=1e-10)
    # the exact KL agrees with a Monte Carlo estimate from source samples
    draws = torch.from_numpy(src.sample(4000, np.random.default_rng(1)))
    logq = sequence_token_logq(q1, draws).sum(1).numpy()
    logp = src.log_prob_tokens(draws.numpy()).sum(1)
    mc = logp - logq
    assert abs(mc.mean() - ev.kl(q1)) < 5 * mc.std() / np.sqrt(len(mc))


def test_domain_rule_targets_are_off_support_and_reachable():
    src = MarkovSource(SourceConfig())
    rule = domain_rule(src, seed=1)
    seqs, _ = src.support()
    reachable = set(np.unique(seqs[:, 1:]).tolist())
    for t in range(1, src.n_tokens):
        assert src.trans[t, rule[t]] == 0
        assert rule[t] in reachable


def test_domain_examples_have_exactly_s_rule_tokens():
    src = MarkovSource(SourceConfig())
    rule = domain_rule(src, seed=1)
    for s in (0, 1, 3, 6):
        for ex in make_domain_examples(src, DomainConfig(s=s), 10, seed=s):
            ids, labels = ex.input_ids, ex.labels
            assert labels[:3] == [-100, -100, -100]
            n_rule = sum(1 for j in range(3, len(ids)) if src.trans[ids[j - 1], ids[j]] == 0)
            assert n_rule == s
            assert all(ids[j] in (rule[ids[j - 1]], src.major[ids[j - 1]]) for j in range(3, len(ids)))
    with pytest.raises(ValueError, match="s must be"):
        DomainConfig(s=9)


def test_pretrained_model_learns_source_and_measured_s_matches(tmp_path, monkeypatch):
    """The cached default lab model: small KL to P1, and measured s ≈ intended s on its domains."""
    src, model, info = load_pretrained(progress=False)
    assert info["kl_p1_nats_per_seq"] < 0.1 * info["entropy_p1_nats_per_seq"]
    for s in (1, 2, 4):
        m = measured_s(model, make_domain_examples(src, DomainConfig(s=s), 32, seed=11 + s))
        assert abs(m - s) <= 0.5, (s, m)  # a concept token sometimes also unsettles its successor
