"""The exact tier as a stage: contract, claims from the registry, numbers recomputed by hand, determinism, resume."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from talr_theory.tiers import exact
from talr_theory.tiers.protocol import TierResult

# Smaller than quick (the default test run stays fast); the slow test below runs Config.quick itself.
TINY = dataclasses.replace(exact.Config.quick(), n_identity=40, n_single_step=60, n_lambda_instances=3,
                           s_values=(1, 4), eps_values=(1e-5, 1e-3), n_traj_instances=3,
                           traj_lams=(4.0, 16.0, 64.0), traj_target_gain=0.3,
                           traj_grid=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3), compare_lams=(64.0,),
                           n_compare_instances=3, n_boot=100)


def _numbers(result: TierResult) -> list[tuple]:
    return [(v.claim, v.estimate, v.ci_lo, v.ci_hi, v.verdict) for v in result.verdicts]


def _same(a: list[tuple], b: list[tuple]) -> bool:
    def eq(x, y):
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            return True
        return x == y
    return len(a) == len(b) and all(eq(x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


@pytest.fixture(scope="module")
def tiny_result():
    return exact.run(TINY, None, progress=False)


def check_contract(result: TierResult, name: str) -> None:
    """The stage's shape: every claim record is a registered claim under a protocol, or a code-check."""
    from talr_theory.claims import CLAIMS, base_id

    assert result.tier == name
    assert result.frames and all(len(f) for f in result.frames.values()), \
        [k for k, f in result.frames.items() if not len(f)]
    for v in result.verdicts:
        assert v.tier == name
        if v.verdict == "code-check":
            assert v.paper_value is None and math.isnan(v.ci_lo)
        else:
            assert base_id(v.claim) in CLAIMS and v.protocol in ("paper", "stricter") and v.n_units is not None, v
    assert isinstance(result.info["summary"], str) and result.info["summary"]
    for heading, frame in result.info.get("report_tables", {}).items():
        assert frame in result.frames, heading


def test_contract_and_claims(tiny_result):
    check_contract(tiny_result, "exact")
    got = {(v.claim, v.protocol) for v in tiny_result.verdicts}
    for p1 in ("P1=exact", "P1=mis-modeled"):
        assert {(f"thm3.1_smaller_steps[{p1}]", "paper"), (f"thm3.1_smaller_steps[{p1}]", "stricter"),
                (f"talr_vs_sft[{p1}]", "paper"), (f"talr_vs_sft[{p1}]", "stricter")} <= got
        for method in ("SFT", "TALR"):
            assert (f"thm3.2_direction[{method}, {p1}]", "paper") in got
            assert (f"thm3.2_eps_exponent[{method}, {p1}]", "paper") in got
    # three instances: nothing can be decided
    assert all(v.verdict in ("uninformative", "code-check") for v in tiny_result.verdicts)
    # identities and bounds are code-checks, never evidence; with a correct implementation they are exact
    checks = {v.claim: v for v in tiny_result.verdicts if v.verdict == "code-check"}
    assert set(checks) == {"tilt_identity", "tilt_bounds", "tabular_no_leak"}
    assert checks["tilt_identity"].estimate < 1e-10
    assert checks["tilt_bounds"].estimate == 0
    assert checks["tabular_no_leak"].estimate == 0


def test_direction_is_the_ratio_of_lambda_max_at_the_extreme_s(tiny_result):
    """Recompute thm3.2_direction[SFT, P1=exact] from the λ_max rows: geometric mean of λ(s=1)/λ(s=4)."""
    lam = tiny_result.frames["lambda_max"]
    sub = lam[(lam["geometry"] == "default") & (lam["p1"] == "exact") & (lam["method"] == "sft")]
    wide = sub.pivot_table(index=["instance", "epsilon"], columns="s", values="lambda_max")
    expected = float(np.exp(np.mean(np.log(wide[1] / wide[4]))))
    v = next(v for v in tiny_result.verdicts if v.claim == "thm3.2_direction[SFT, P1=exact]")
    assert v.estimate == pytest.approx(expected, rel=1e-12)


def test_exponents_regress_on_nominal_s(tiny_result):
    """Every method's s exponent is a fit on the nominal s (TALR's effective s is not a design variable)."""
    from talr_theory.theory.lambda_max import fit_lambda_max_scaling

    lam = tiny_result.frames["lambda_max"]
    talr = lam[(lam["geometry"] == "default") & (lam["p1"] == "exact") & (lam["method"] == "talr")]
    on_nominal = fit_lambda_max_scaling(talr, n_boot=TINY.n_boot, seed=TINY.seed, s_column="s")
    v = next(v for v in tiny_result.verdicts if v.claim == "thm3.2_s_exponent[TALR, P1=exact]")
    assert v.estimate == pytest.approx(on_nominal["s_exponent"])
    assert set(tiny_result.frames["lambda_max_fits"]["s column"]) == {"s"}


def test_fixed_gain_slope_matches_a_direct_fit(tiny_result):
    """Recompute one instance's slope at one gain from the raw trajectories by hand."""
    traj = tiny_result.frames["trajectories"]
    slopes = tiny_result.frames["fixed_gain_slopes"]
    row = slopes[slopes["p1"] == "exact"].iloc[0]
    sub = traj[(traj["instance"] == row["instance"]) & (traj["p1"] == "exact") & (traj["method"] == "sft")]
    xs, ys = [], []
    for lam_, g in sub.groupby("lam"):
        g = g[g["step"] >= 1].sort_values("step")
        ds, dl = g["delta_star"].to_numpy(), g["delta_L"].to_numpy()
        i = int(np.flatnonzero((ds[:-1] <= row["delta_star"]) & (ds[1:] >= row["delta_star"]))[0])
        f = (row["delta_star"] - ds[i]) / (ds[i + 1] - ds[i])
        xs.append(np.log(lam_))
        ys.append(np.log(dl[i] + f * (dl[i + 1] - dl[i])))
    assert row["slope"] == pytest.approx(np.polyfit(xs, ys, 1)[0], rel=1e-9)


def test_same_steps_reads_both_methods_at_sfts_step_count(tiny_result):
    comp = tiny_result.frames["compare_trajectories"]
    row = tiny_result.frames["methods_same_steps"].iloc[0]
    talr = comp[(comp["instance"] == row["instance"]) & (comp["lam"] == row["lam"]) & (comp["p1"] == row["p1"])
                & (comp["method"] == "talr") & (comp["step"] == row["steps"])]
    sft = comp[(comp["instance"] == row["instance"]) & (comp["lam"] == row["lam"]) & (comp["p1"] == row["p1"])
               & (comp["method"] == "sft")]
    assert row["steps"] == sft["step"].max()
    assert row["delta_L_method"] == pytest.approx(float(talr["delta_L"].iloc[0]))


def test_same_seed_same_numbers_and_resume(tmp_path, tiny_result):
    again = exact.run(TINY, tmp_path, progress=False)
    assert _same(_numbers(again), _numbers(tiny_result))
    resumed = exact.run(TINY, tmp_path, progress=False)  # every unit read back from the results tables
    assert _same(_numbers(resumed), _numbers(tiny_result))


def test_figures_draw_from_frames(tiny_result):
    import matplotlib

    matplotlib.use("Agg")
    names = []
    exact.figures(tiny_result, lambda fig, name: names.append((name, len(fig.axes))))
    assert [n for n, _ in names] == ["exact_theorem_3_1_envelope", "exact_lambda_max_vs_eps",
                                     "exact_methods_at_equal_gain", "exact_single_step_gaps"]
    assert all(k > 0 for _, k in names)


def test_saved_result_round_trips(tmp_path, tiny_result):
    tiny_result.save(tmp_path / "stage")
    back = TierResult.load(tmp_path / "stage")
    assert _same(_numbers(back), _numbers(tiny_result))
    pd.testing.assert_frame_equal(back.frames["fixed_gain_slopes"], tiny_result.frames["fixed_gain_slopes"],
                                  check_dtype=False)


@pytest.mark.slow
def test_quick_scale_is_deterministic():
    a = exact.run(exact.Config.quick(), None, progress=False)
    b = exact.run(exact.Config.quick(), None, progress=False)
    check_contract(a, "exact")
    assert _same(_numbers(a), _numbers(b))
