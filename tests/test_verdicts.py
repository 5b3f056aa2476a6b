"""The verdict rule on constructed cases, and the record's round trip through JSON."""

from __future__ import annotations

import json
import math

import pytest

from talr_theory.verdicts import Verdict, code_check, format_ci, judge, verdict

NAN = float("nan")


@pytest.mark.parametrize("lo, hi, paper, alt, expected", [
    # point claims (ε exponent: paper 1, alternative 0.5)
    (0.9, 1.1, 1.0, 0.5, "agrees"),            # contains paper, excludes alternative
    (0.45, 0.55, 1.0, 0.5, "disagrees"),       # excludes paper (contains the alternative)
    (1.2, 1.4, 1.0, 0.5, "disagrees"),         # excludes both: still disagrees with the paper
    (0.4, 1.1, 1.0, 0.5, "uninformative"),     # contains both
    (1.0, 1.0, 1.0, 0.5, "agrees"),            # inclusive ends
    (0.5, 1.0, 1.0, 0.5, "uninformative"),     # both on the edges
    (NAN, 1.1, 1.0, 0.5, "uninformative"),     # missing interval
    (None, None, 1.0, 0.5, "uninformative"),
    (0.9, 1.1, 1.0, None, "uninformative"),    # no alternative: nothing was ruled out
    (-0.6, -0.4, -0.5, 0.0, "agrees"),         # s exponent
    (-0.3, 0.1, -0.5, 0.0, "disagrees"),
    (-0.8, 0.2, -0.5, 0.0, "uninformative"),
    # range claims (fixed-gain slope in [0, 1]; ratios below one)
    (0.2, 0.9, (0.0, 1.0), None, "agrees"),
    (0.0, 1.0, (0.0, 1.0), None, "agrees"),
    (0.5, 1.5, (0.0, 1.0), None, "uninformative"),
    (1.2, 1.6, (0.0, 1.0), None, "disagrees"),
    (-0.5, -0.1, (0.0, 1.0), None, "disagrees"),
    (NAN, NAN, (0.0, 1.0), None, "uninformative"),
    # a range claim with an alternative on its edge (ratio below one, alternative 1)
    (0.5, 0.9, (0.0, 1.0), 1.0, "agrees"),
    (0.5, 1.0, (0.0, 1.0), 1.0, "uninformative"),
    (1.1, 1.3, (0.0, 1.0), 1.0, "disagrees"),
    (1.2, 3.0, (1.0, float("inf")), 1.0, "agrees"),
    (1.0, 3.0, (1.0, float("inf")), 1.0, "uninformative"),
])
def test_rule(lo, hi, paper, alt, expected):
    assert judge(lo, hi, paper, alt) == expected


def test_bad_values_are_rejected():
    with pytest.raises(ValueError, match="a <= b"):
        judge(0.1, 0.2, (1.0, 0.0))
    with pytest.raises(ValueError, match="paper_value"):
        judge(0.1, 0.2, None)
    with pytest.raises(ValueError, match="verdict must be"):
        Verdict("c", "t", "q", 1.0, 0.0, 2.0, 1.0, 0.5, "consistent")


def test_record_survives_json_with_its_protocol_and_units():
    v = verdict("thm3.2_eps_exponent", "exact", "a", 0.52, (0.47, 0.58), 1.0, 0.5, protocol="stricter",
                n_units=12, n_seeds=6)
    assert v.verdict == "disagrees"
    d = json.loads(json.dumps(v.to_dict()))
    assert set(d) >= {"claim", "tier", "protocol", "quantity", "estimate", "ci_lo", "ci_hi", "paper_value",
                      "alternative_value", "verdict", "n_units", "n_seeds"}
    assert (d["protocol"], d["n_units"], d["n_seeds"]) == ("stricter", 12, 6)
    assert Verdict.from_dict(d) == v
    r = verdict("thm3.1_fixed_gain_slope", "synthetic", "slope", 1.56, (1.3, 1.8), (0.0, 1.0))
    assert r.verdict == "disagrees" and r.to_dict()["paper_value"] == [0.0, 1.0]


def test_missing_interval_serializes_as_null_and_reads_uninformative():
    v = verdict("thm3.2_s_exponent", "llm", "b", -0.3, None, -0.5, 0.0)
    d = v.to_dict()
    assert d["ci_lo"] is None and d["verdict"] == "uninformative"
    assert format_ci(v.estimate, v.ci_lo, v.ci_hi) == "-0.3 [—]"


def test_estimate_outside_its_interval_is_flagged_in_the_sentence():
    v = verdict("thm3.2_eps_exponent", "exact", "a", 0.95, (0.97, 1.2), 1.0, 0.5)
    assert v.estimate_outside_ci and v.to_dict()["estimate_outside_ci"]
    assert "outside its own percentile interval" in v.sentence()
    assert not verdict("x", "t", "q", 1.0, (0.9, 1.1), 1.0, 0.5).estimate_outside_ci


def test_ten_units_are_the_threshold():
    nine = verdict("c", "t", "q", 0.5, (0.4, 0.6), (0.0, 1.0), n_units=9)
    ten = verdict("c", "t", "q", 0.5, (0.4, 0.6), (0.0, 1.0), n_units=10)
    assert (nine.verdict, ten.verdict) == ("uninformative", "agrees")
    assert "interval withheld: 9 units < 10" in nine.note.lower()
    assert judge(0.4, 0.6, (0.0, 1.0), n_units=9) == "uninformative"
    assert verdict("c", "t", "q", 0.5, (0.4, 0.6), (0.0, 1.0), protocol="stricter").protocol == "stricter"
    with pytest.raises(ValueError, match="protocol"):
        verdict("c", "t", "q", 0.5, (0.4, 0.6), (0.0, 1.0), protocol="ours")


def test_five_training_seeds_are_the_threshold():
    four = verdict("c", "t", "q", 0.5, (0.4, 0.6), (0.0, 1.0), n_units=96, n_seeds=4)
    five = verdict("c", "t", "q", 0.5, (0.4, 0.6), (0.0, 1.0), n_units=96, n_seeds=5)
    assert (four.verdict, five.verdict) == ("uninformative", "agrees")
    assert "Only 4 training seeds" in four.note and "seeds" not in five.note
    assert judge(0.4, 0.6, (0.0, 1.0), n_units=96, n_seeds=4) == "uninformative"
    assert Verdict.from_dict(four.to_dict()) == four


def test_code_check_is_never_evidence():
    c = code_check("tilt_bounds", "exact", "violations", 0)
    assert c.verdict == "code-check" and math.isnan(c.ci_lo) and c.paper_value is None
    assert "code-check" in c.sentence()


def test_open_range_claim_round_trips_through_json():
    import json
    import math

    from talr_theory.configs import json_safe
    from talr_theory.verdicts import Verdict, fmt_value, verdict

    v = verdict("diff", "t", "q", 0.003, (0.001, 0.004), (-math.inf, 0.0))
    assert v.verdict == "disagrees" and fmt_value(v.paper_value) == "[−∞, 0]"
    back = Verdict.from_dict(json.loads(json.dumps(json_safe(v.to_dict()))))
    assert back.paper_value == (-math.inf, 0.0) and back.verdict == "disagrees"
    assert verdict("diff", "t", "q", -0.003, (-0.004, -0.001), back.paper_value).verdict == "agrees"


def _units_frame(n: int, seed: int = 0):
    """n units whose per-unit ratio is 0.5 ± 0.05: a mean ratio whose answer (below one) is known."""
    import numpy as np

    return 0.5 + 0.05 * np.random.default_rng(seed).standard_normal(n)


def test_fewer_than_ten_units_keep_the_estimate_but_withhold_the_interval():
    from talr_theory.claims import claim_verdict
    from talr_theory.stats import bootstrap_ci

    units = _units_frame(4)
    lo, hi = bootstrap_ci(units, seed=0)
    assert 0.3 < lo <= hi < 0.7  # the bootstrap gives an interval inside (0, 1) ...
    v = claim_verdict("talr_vs_sft", "paper", "t", float(units.mean()), (lo, hi), n_units=len(units))
    # ... but over 4 units it cannot cover: the record keeps the estimate and withholds the interval
    assert v.estimate == pytest.approx(units.mean())
    assert math.isnan(v.ci_lo) and math.isnan(v.ci_hi) and v.interval_withheld
    assert v.verdict == "uninformative" and "interval withheld: 4 units < 10" in v.note.lower()
    d = json.loads(json.dumps(v.to_dict()))
    assert d["ci_lo"] is None and d["ci_hi"] is None and d["interval_withheld"] is True
    assert d["estimate"] == pytest.approx(units.mean())
    back = Verdict.from_dict(d)
    assert math.isnan(back.ci_lo) and back.verdict == "uninformative" and back.interval_withheld
    assert v.interval_text() == f"{units.mean():.3g} [—] (interval withheld: 4 units < 10)"
    assert "[—]" in v.sentence() and "interval withheld: 4 units < 10" in v.sentence().lower()


def test_ten_units_keep_their_interval():
    from talr_theory.claims import claim_verdict
    from talr_theory.stats import bootstrap_ci

    units = _units_frame(10)
    lo, hi = bootstrap_ci(units, seed=0)
    v = claim_verdict("talr_vs_sft", "paper", "t", float(units.mean()), (lo, hi), n_units=len(units))
    assert (v.ci_lo, v.ci_hi) == (lo, hi) and not v.interval_withheld
    assert v.verdict == "agrees" and "withheld" not in v.note  # inside (0, 1), excludes 1
    assert v.to_dict()["interval_withheld"] is False and "withheld" not in v.interval_text()
    # a record without a unit count (nothing said about its units) keeps its interval too
    assert not verdict("c", "t", "q", 0.5, (0.4, 0.6), (0.0, 1.0)).interval_withheld
    # code-checks have no interval to withhold
    assert not code_check("c", "t", "q", 0.0).interval_withheld
