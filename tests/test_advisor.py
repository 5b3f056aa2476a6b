"""Advisor guarantees: never outside the measured pilot range, extra pilots, cannot-certify, CLI input checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from talr_theory.lab.advisor import advise_with_pilots


def _runner(curve, calls):
    """A pilot runner whose ΔL at gain 1 is curve(lr) (Δ* rises 0.25 per step to 2)."""
    def run(lr):
        calls.append(lr)
        t = np.arange(9)
        ds = 0.25 * t
        return pd.DataFrame({"step": t, "delta_star": ds, "delta_L": ds * curve(lr)})
    return run


def test_fit_above_the_pilots_runs_higher_pilots_and_stays_inside():
    curve = lambda lr: lr**2 * (1 + 10 * lr)  # noqa: E731  not a pure power law: the fit is off
    eps = curve(0.3)  # true safe LR 0.3: far above the pilots 0.01..0.04
    calls: list[float] = []
    adv = advise_with_pilots(_runner(curve, calls), (0.01, 0.02, 0.04), eps, gain=1.0, factor=3.0, max_extra=3)
    extra = adv["extra_pilot_lrs"]
    assert calls[:3] == [0.01, 0.02, 0.04] and calls[3:] == extra and len(extra) >= 1
    jumps = np.array(extra) / np.array([0.04, *extra[:-1]])
    assert np.all((jumps >= 3 - 1e-9) & (jumps <= 10 + 1e-9))  # beyond the range by x3..x10 each time
    assert adv["status"] == "ok"
    lo, hi = adv["bracket"]
    assert lo in calls and hi in calls and curve(lo) <= eps < curve(hi)
    assert lo <= adv["recommended_lr"] <= min(hi, 0.3)  # inside the measured range, conservative (convex)


def test_no_extra_pilots_means_cannot_certify_not_extrapolation():
    calls: list[float] = []
    adv = advise_with_pilots(_runner(lambda lr: lr**2, calls), (0.01, 0.02, 0.04), 0.2**2, gain=1.0, max_extra=0)
    assert adv["status"] == "cannot-certify" and adv["recommended_lr"] is None
    assert adv["fit_lr"] == pytest.approx(0.2, rel=1e-6)  # the fit knew; the advisor still would not certify it
    assert "above the largest pilot" in adv["reason"] and calls == [0.01, 0.02, 0.04]


def test_all_pilots_above_epsilon_is_cannot_certify():
    calls: list[float] = []
    adv = advise_with_pilots(_runner(lambda lr: 1.0 + lr, calls), (0.01, 0.02, 0.04), 0.5, gain=1.0, max_extra=2)
    assert adv["status"] == "cannot-certify" and adv["recommended_lr"] is None
    assert adv["extra_pilot_lrs"] == pytest.approx([0.001, 0.0001])  # the fit is flat: the largest jump, x10
    assert "below the smallest pilot" in adv["reason"] and "after 2 extra pilot(s)" in adv["reason"]


def test_recommendation_never_exceeds_the_true_safe_lr_on_convex_curves():
    rng = np.random.default_rng(0)
    for _ in range(50):
        c, p = rng.uniform(0.5, 5.0), rng.uniform(1.0, 3.0)
        eps = c * rng.uniform(0.005, 0.05) ** p
        adv = advise_with_pilots(_runner(lambda lr, c=c, p=p: c * lr**p, []), (0.005, 0.015, 0.045), eps,
                                 gain=1.0, max_extra=3)
        true = (eps / c) ** (1 / p)
        if adv["status"] == "ok":
            lo, hi = adv["bracket"]
            assert lo <= adv["recommended_lr"] <= hi
            assert adv["recommended_lr"] <= true * (1 + 1e-9)


def test_cli_rejects_nonpositive_epsilon(capsys):
    from talr_theory.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["advise", "--model", "tiny-random", "--epsilon", "-1"])
    assert exc.value.code == 2
    assert "epsilon must be > 0" in capsys.readouterr().err


def test_cli_names_dropped_examples_and_the_flag(capsys):
    from talr_theory.cli import main

    rc = main(["advise", "--model", "tiny-random", "--data", "medcalc-synth:20", "--epsilon", "0.05",
               "--max-length", "40", "--n-train", "4", "--n-eval", "2"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "4 of 4 train examples were dropped" in err and "--max-length 40" in err
    assert "rerun with --max-length" in err


def test_summary_counts_only_certified_cases():
    from talr_theory.tiers.advisor import summarize

    cases = pd.DataFrame({"status": ["ok", "ok", "ok", "cannot-certify"], "within_epsilon": [True, False, True, None],
                          "inside_pilot_range": [True, True, True, None],
                          "ratio_to_true": [0.8, 1.1, np.nan, np.nan]})
    s = summarize(cases)
    assert (s["n_cases"], s["n_certified"], s["n_cannot_certify"]) == (4, 3, 1)
    assert s["frac_within_epsilon"] == pytest.approx(2 / 3)
    assert s["median_ratio_to_true_safe_lr"] == pytest.approx(0.95) and s["n_ratio_measured"] == 2


@pytest.mark.slow
def test_validate_quick_meets_the_guarantee(capsys, tmp_path):
    """`advise --validate --quick`: ≥ 20 cases, ≥ 10 certified, ≥ 90% of certified within ε (~35 s)."""
    import json

    from talr_theory.cli import main

    assert main(["advise", "--validate", "--quick", "--out", str(tmp_path), "--json", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_cases"] >= 20 and out["n_certified"] >= 10
    assert out["frac_within_epsilon"] >= 0.9
    assert out["n_outside_pilot_range"] == 0
