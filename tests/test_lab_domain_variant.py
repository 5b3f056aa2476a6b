"""The synthetic lab's agreeing-domain variant: domain tokens P1 never emits, a marker, s concept tokens."""

from __future__ import annotations

import numpy as np
import pytest

from talr_theory.lab.domains import DomainChain, DomainConfig, make_agreeing_examples, make_domain_examples
from talr_theory.lab.synthetic import MarkovSource


def test_chain_examples_use_only_domain_tokens_after_the_marker():
    source = MarkovSource()
    chain = DomainChain(source)
    cfg = DomainConfig(s=2, easy="domain")
    rule = chain.rule(cfg.rule_seed)
    for ex in make_agreeing_examples(chain, cfg, 20, seed=3):
        labels = np.array(ex.labels)
        ids = np.array(ex.input_ids)
        start = int(np.argmax(labels != -100))
        assert ids[start - 1] == chain.marker and np.all(ids[1:start - 1] < source.n_tokens)
        response = ids[start:]
        assert np.all(response >= chain.first)  # P1 never emits these: the easy targets are not P1's transitions
        prev = ids[start - 1:-1]
        hard = response == rule[prev]
        assert hard.sum() == 2
        assert np.all(response[~hard] == chain.major[prev[~hard]])
        assert np.all(chain.trans[prev[hard], response[hard]] == 0)  # concept tokens are never chain successors


def test_variant_is_validated():
    with pytest.raises(ValueError, match="easy must be one of"):
        DomainConfig(easy="other")
    with pytest.raises(ValueError, match="make_agreeing_examples"):
        make_domain_examples(MarkovSource(), DomainConfig(easy="domain"), 2, seed=0)


@pytest.mark.slow
def test_pretrained_model_finds_easy_targets_easy_and_concepts_hard():
    """Pretrains (or loads the cached) mixture model (~90 s the first time): measured s equals s."""
    from talr_theory.lab.domains import load_domain_pretrained, measured_s
    from talr_theory.lab.synthetic import torch_threads

    with torch_threads(1):
        _, chain, model = load_domain_pretrained(progress=False)
        for s in (1, 3):
            ex = make_agreeing_examples(chain, DomainConfig(s=s, easy="domain"), 32, seed=s)
            assert measured_s(model, ex) == pytest.approx(s, abs=0.25)
