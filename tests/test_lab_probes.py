"""Controlled-s probes and the sample-KL general evaluator on a real (tiny) pretrained model."""

from __future__ import annotations

import copy

import pytest
import torch

from talr_theory.lab.probes import SampleKL, make_probes


@pytest.fixture(scope="module")
def stories():
    from talr_theory.models import load_model

    return load_model("stories260k")


@pytest.mark.shared
def test_probes_measured_s_tracks_intended_s(stories):
    probes = make_probes(stories, (1, 4, 8), n_per_s=6, length=32, prompt_len=8, seed=0)
    check = probes.check.set_index("intended_s")
    for exs in probes.examples.values():
        assert len(exs) == 6
        for ex in exs:
            assert sum(lab != -100 for lab in ex.labels) == 32 - 8
    # each inserted random token adds at least ~one hard target, and more tokens add more
    assert check.loc[1, "excess_s"] >= 0.5
    assert check.loc[1, "measured_s"] < check.loc[4, "measured_s"] < check.loc[8, "measured_s"]
    assert check.loc[8, "excess_s"] >= 0.75 * 8


@pytest.mark.shared
def test_sample_kl_is_zero_at_base_and_positive_after_a_change(stories):
    kl = SampleKL(stories, n_samples=4, length=24, seed=1)
    assert kl(stories.model) == pytest.approx(0.0, abs=1e-6)
    moved = copy.deepcopy(stories.model)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(0.01 * torch.randn_like(p))
    assert kl(moved) > 1e-4
