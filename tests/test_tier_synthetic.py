"""The synthetic tier as a stage: contract, verdicts derived by the rule, random components, determinism."""

from __future__ import annotations

import dataclasses
import math

import pytest

from talr_theory.lab.synthetic import SourceConfig, TinyModelConfig
from talr_theory.tiers import synthetic
from tests.test_tier_exact import _numbers, _same, check_contract

# A smaller source and model than the default lab (pretrained in a private cache within the test).
TINY = dataclasses.replace(
    synthetic.Config.quick(), s_values=(1, 2), epsilons=(1e-2, 1e-1), n_groups=2, n_train=8, n_eval=8,
    traj_s_values=(1, 2, 3), traj_lrs=(0.05, 0.1, 0.2), traj_steps_at_max_lr=8, traj_evals=8, n_boot=100,
    source=SourceConfig(vocab=10, n_starts=3, branching=2, seq_len=6, seed=3),
    tiny_model=TinyModelConfig(hidden_size=32, intermediate_size=64, pretrain_steps=150, pretrain_batch=64))


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TALR_CACHE", str(tmp_path_factory.mktemp("cache")))
    out = tmp_path_factory.mktemp("out")
    first = synthetic.run(TINY, out, progress=False)
    resumed = synthetic.run(TINY, out, progress=False)  # every unit read back from the results tables
    fresh = synthetic.run(TINY, None, progress=False)   # same seed, recomputed from scratch
    mp.undo()
    return first, resumed, fresh


def test_contract_and_claims(tiny_result):
    result = tiny_result[0]
    check_contract(result, "synthetic")
    claims = {v.claim for v in result.verdicts}
    assert {"thm3.2_eps_exponent[SFT, SGD]", "thm3.2_s_exponent[SFT, SGD]",
            "thm3.2_eps_exponent[TALR effective s, SGD]", "thm3.2_s_exponent[TALR effective s, SGD]",
            "thm3.1_fixed_gain_slope[SFT]", "thm3.1_lr_at_equal_gain[SFT]",
            "talr_vs_sft_at_equal_gain[best LR per method]"} <= claims
    checks = {v.claim: v for v in result.verdicts if v.verdict == "code-check"}
    assert checks["tilt_bounds_transformer"].estimate == 0
    assert checks["tilt_identity_transformer"].estimate < 1e-9


def test_intervals_state_what_they_are_conditional_on(tiny_result):
    """The pretrained model is one draw: every evidence verdict must say its interval is conditional on it."""
    for v in tiny_result[0].verdicts:
        if v.verdict != "code-check":
            assert "Conditional on one draw of the pretrained model" in v.note, v.claim


def test_domain_rule_is_redrawn_per_group(tiny_result):
    lam = tiny_result[0].frames["lambda_max"]
    per_group = lam.groupby(["s", "group"])["rule_seed"].nunique()
    assert (per_group == 1).all()
    assert lam["rule_seed"].nunique() == len(per_group)  # one rule per (s, group), all different


def test_same_seed_same_numbers_resumed_or_fresh(tiny_result):
    first, resumed, fresh = tiny_result
    assert _same(_numbers(resumed), _numbers(first))
    assert _same(_numbers(fresh), _numbers(first))


def test_talr_exponent_regresses_on_effective_s(tiny_result):
    for v in tiny_result[0].verdicts:
        if v.claim.startswith("thm3.2_s_exponent[TALR"):
            assert "regressor effective_s" in v.note
    lam = tiny_result[0].frames["lambda_max"]
    talr = lam[lam["method"] == "talr"]
    assert not math.isclose(talr["effective_s"].mean(), talr["measured_s"].mean())


def test_figures_draw_from_frames(tiny_result):
    import matplotlib

    matplotlib.use("Agg")
    names = []
    synthetic.figures(tiny_result[0], lambda fig, name: names.append(name))
    assert names == ["synthetic_theorem_3_1_curves", "synthetic_dl_vs_lr_fixed_gain", "synthetic_lambda_max_vs_eps",
                     "synthetic_lambda_max_vs_s"]
