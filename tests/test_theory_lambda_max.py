"""λ_max scaling (Theorem 3.2): regression, controlled-s experiment."""

import numpy as np
import pandas as pd
import pytest

from talr_theory.theory.lambda_max import fit_lambda_max_scaling, lambda_max_experiment
from talr_theory.theory.scenario import ScenarioConfig, make_scenario


def _synthetic(eps_exp, s_exp, n_groups=12, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        c = rng.uniform(0.5, 2.0)
        for s in (1, 2, 4, 8):
            for eps in (1e-5, 1e-4, 1e-3):
                lam = c * eps**eps_exp * s**s_exp * np.exp(rng.normal(0, noise))
                rows.append({"group": g, "s": s, "epsilon": eps, "lambda_max": lam})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("eps_exp,s_exp", [(1.0, -0.5), (0.5, -1.0)])
def test_fit_recovers_exponents_with_covering_intervals(eps_exp, s_exp):
    out = fit_lambda_max_scaling(_synthetic(eps_exp, s_exp), n_boot=200)
    assert out["eps_exponent"] == pytest.approx(eps_exp, abs=0.03)
    assert out["s_exponent"] == pytest.approx(s_exp, abs=0.05)
    # The interval must cover the true exponent of the generating law (not merely its own estimate)
    # and be narrow at this noise level.
    for key, true in (("eps", eps_exp), ("s", s_exp)):
        lo, hi = out[f"{key}_exponent_ci"]
        assert lo - 0.02 <= true <= hi + 0.02 and hi - lo < 0.2
    assert "regime" not in out  # comparisons with the paper come only from verdicts


def test_groups_are_the_bootstrap_unit():
    """A per-group random prefactor must widen the interval: resampling rows instead of groups would not."""
    noisy = fit_lambda_max_scaling(_synthetic(1.0, -0.5, n_groups=6, noise=0.3), n_boot=300)
    quiet = fit_lambda_max_scaling(_synthetic(1.0, -0.5, n_groups=6, noise=0.01), n_boot=300)
    width = lambda o: o["eps_exponent_ci"][1] - o["eps_exponent_ci"][0]  # noqa: E731
    assert width(noisy) > 5 * width(quiet)


def test_fit_without_s_variation_and_dropped_rows():
    df = _synthetic(1.0, -0.5)
    df = df[df.s == 4].copy()
    df.loc[df.index[0], "lambda_max"] = np.inf
    out = fit_lambda_max_scaling(df, n_boot=100)
    assert out["s_exponent"] is None and out["s_exponent_ci"] is None
    assert out["n_dropped"] == 1
    with pytest.raises(KeyError, match="group"):
        fit_lambda_max_scaling(df.drop(columns="group"))


def test_controlled_s_scenario_has_exactly_s_hard_tokens():
    sc = make_scenario(5)
    for s in (0, 1, 3, 8):
        hard = sc.hard_mask(s, threshold=0.05)
        counts = np.bincount(sc.example_of, weights=hard)
        assert np.all(counts == s)


def test_leak_free_model_has_no_safe_step_limit():
    cfg = ScenarioConfig(leak=0.0, common=0.0)
    df = lambda_max_experiment([0], s_values=(2,), eps_values=(1e-4,), methods=("sft",), config=cfg)
    assert np.isinf(df["lambda_max"]).all()


def test_experiment_regimes_follow_p1():
    common = dict(s_values=(1, 4), eps_values=(1e-6, 1e-5, 1e-4), methods=("sft",))
    exact = lambda_max_experiment([0, 1, 2], p1="exact", **common)
    mis = lambda_max_experiment([0, 1, 2], p1="mismodeled", **common)
    assert np.all(exact["lambda_pred"] <= exact["lambda_max"] * (1 + 1e-9))
    assert np.all(mis["lambda_pred"] <= mis["lambda_max"] * (1 + 1e-9))
    assert fit_lambda_max_scaling(exact, n_boot=100)["eps_exponent"] == pytest.approx(0.5, abs=0.05)
    assert fit_lambda_max_scaling(mis, n_boot=100)["eps_exponent"] == pytest.approx(1.0, abs=0.1)
    # More hard tokens → smaller safe step for SFT.
    med = exact.groupby("s")["lambda_max"].median()
    assert med[4] < med[1]
