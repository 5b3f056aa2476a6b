"""The synthetic tier as a stage: contract, verdicts derived by the rule, random components, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
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
    got = {(v.claim, v.protocol) for v in result.verdicts}
    assert {("thm3.2_direction[SFT, SGD]", "paper"), ("thm3.2_eps_exponent[SFT, SGD]", "paper"),
            ("thm3.2_s_exponent[SFT, SGD]", "paper"), ("thm3.2_direction[TALR, SGD]", "paper"),
            ("thm3.1_smaller_steps[SFT]", "paper"), ("thm3.1_smaller_steps[SFT]", "stricter"),
            ("talr_vs_sft[best LR per method]", "stricter")} <= got
    checks = {v.claim: v for v in result.verdicts if v.verdict == "code-check"}
    assert checks["tilt_bounds_transformer"].estimate == 0
    assert checks["tilt_identity_transformer"].estimate < 1e-9


def test_verdicts_are_conditional_on_the_one_pretrained_draw(tiny_result):
    """No interval resamples the pretrained model: every claim record says so and is not counted."""
    for v in tiny_result[0].verdicts:
        if v.verdict != "code-check":
            assert "Conditional on one draw of the pretrained model" in v.note, v.claim
            assert v.n_units <= synthetic.PRETRAINED_DRAWS == 1 and v.verdict == "uninformative", v.claim


def test_direction_pairs_batch_g_of_the_extreme_s(tiny_result):
    lam = tiny_result[0].frames["lambda_max"]
    sub = lam[lam["method"].eq("sft") & lam["optimizer"].eq("sgd")]
    wide = sub.pivot_table(index=["group", "epsilon"], columns="s", values="lambda_max")
    expected = float(np.exp(np.mean(np.log(wide[min(TINY.s_values)] / wide[max(TINY.s_values)]))))
    v = next(v for v in tiny_result[0].verdicts if v.claim == "thm3.2_direction[SFT, SGD]")
    assert v.estimate == pytest.approx(expected, rel=1e-12)


def test_domain_rule_is_redrawn_per_group(tiny_result):
    lam = tiny_result[0].frames["lambda_max"]
    per_group = lam.groupby(["s", "group"])["rule_seed"].nunique()
    assert (per_group == 1).all()
    assert lam["rule_seed"].nunique() == len(per_group)  # one rule per (s, group), all different


def test_same_seed_same_numbers_resumed_or_fresh(tiny_result):
    first, resumed, fresh = tiny_result
    assert _same(_numbers(resumed), _numbers(first))
    assert _same(_numbers(fresh), _numbers(first))


def test_exponents_regress_on_nominal_s(tiny_result):
    fits = tiny_result[0].frames["lambda_max_fits"]
    assert set(fits["s column"]) == {"s"}
    for v in tiny_result[0].verdicts:
        if v.claim.startswith("thm3.2_s_exponent[TALR"):
            assert "regressor nominal s" in v.note


def test_a_sign_step_s_exponent_is_not_a_verdict():
    """AdamW's first step has the same size whatever s: its s exponent is a code-check with the reason."""
    fit = {"eps_exponent": 0.5, "eps_exponent_ci": [0.4, 0.6], "s_exponent": 0.0, "s_exponent_ci": [-0.1, 0.1],
           "s_column": "s", "n_groups": 12, "n_points": 60, "n_dropped": 0}
    from talr_theory.tiers.protocol import exponent_verdicts

    out = exponent_verdicts(fit, "synthetic", "SFT, AdamW", s_verdict=False, s_reason=synthetic._SIGN_STEP)
    assert [v.verdict for v in out][1] == "code-check" and "sign" in out[1].note


def test_figures_draw_from_frames(tiny_result):
    import matplotlib

    matplotlib.use("Agg")
    names = []
    synthetic.figures(tiny_result[0], lambda fig, name: names.append(name))
    assert names == ["synthetic_theorem_3_1_curves", "synthetic_dl_vs_lr_fixed_gain", "synthetic_lambda_max_vs_eps",
                     "synthetic_lambda_max_vs_s"]
