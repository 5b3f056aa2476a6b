"""The tier protocol's shared pieces: fingerprinted stages, equal-gain interpolation, paired ratios, the report."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from talr_theory import report
from talr_theory.tiers import measures, protocol
from talr_theory.tiers.measures import cost_at_gain, paired_ratio
from talr_theory.tiers.protocol import StageStore, TierResult, fingerprint
from talr_theory.verdicts import code_check, verdict


@dataclasses.dataclass
class _Cfg:
    lrs: tuple[float, ...] = (0.1, 0.2)
    seed: int = 0


def _result(value: float) -> TierResult:
    return TierResult("toy", {"seed": 0}, {"points": pd.DataFrame({"x": [value, 2.0]})},
                      [verdict("thm3.2_eps_exponent", "toy", "a", value, (value - 0.1, value + 0.1), 1.0, 0.5)],
                      {"summary": "toy"})


def test_stage_is_reused_only_with_the_same_fingerprint(tmp_path):
    calls = []

    def fn(v):
        calls.append(v)
        return _result(v)

    store = StageStore(tmp_path)
    first = store.run("toy", _Cfg(), lambda: fn(1.0))
    again = StageStore(tmp_path).run("toy", _Cfg(), lambda: fn(9.0))
    assert calls == [1.0] and again.verdicts == first.verdicts
    assert again.frames["points"]["x"].tolist() == [1.0, 2.0]
    # Another grid: the stored stage is refused and recomputed, never mixed in.
    other = StageStore(tmp_path)
    with pytest.warns(UserWarning, match="another config"):
        changed = other.run("toy", _Cfg(lrs=(0.1, 0.4)), lambda: fn(0.5))
    assert calls == [1.0, 0.5] and changed.verdicts[0].estimate == 0.5 and other.discarded == ["toy"]


def test_fingerprint_tracks_config_and_version(monkeypatch):
    a = fingerprint(_Cfg())
    assert a == fingerprint(_Cfg()) and a != fingerprint(_Cfg(seed=1))
    monkeypatch.setattr(protocol, "__version__", "9.9.9")
    assert fingerprint(_Cfg()) != a


def test_results_table_folder_carries_the_fingerprint(tmp_path):
    t1 = protocol.results_table(tmp_path, "syn", _Cfg(), ["k"])
    t2 = protocol.results_table(tmp_path, "syn", _Cfg(seed=3), ["k"])
    t1.append({"k": 1, "v": 1.0})
    assert len(t1.load()) == 1 and len(t2.load()) == 0
    assert protocol.results_table(None, "syn", _Cfg(), ["k"]) is None


def test_cost_at_gain_never_uses_the_origin_as_a_bracket():
    # The first step overshoots gain 0.5: with the origin excluded that target is unmeasured (NaN),
    # where a chord from (0, 0) would have invented 0.5 * 0.4 / 1.0 = 0.2.
    traj = pd.DataFrame({"run": "a", "step": [0, 1, 2, 3], "delta_star": [0.0, 1.0, 2.0, 3.0],
                         "delta_L": [0.0, 0.4, 1.0, 2.2]})
    at = cost_at_gain(traj, [0.5, 1.5, 3.0, 4.0], by=["run"])
    assert math.isnan(at["delta_L"].iloc[0]) and not at["measured"].iloc[0]
    assert at["delta_L"].iloc[1] == pytest.approx(0.7)
    assert at["delta_L"].iloc[2] == pytest.approx(2.2)
    assert math.isnan(at["delta_L"].iloc[3])
    empty = cost_at_gain(traj, [], by=["run"])
    assert list(empty.columns) == ["run", "delta_star", "delta_L", "measured"] and len(empty) == 0
    with_origin = cost_at_gain(traj, [0.5], by=["run"], min_step=0)
    assert with_origin["delta_L"].iloc[0] == pytest.approx(0.2)


def test_frontier_takes_the_least_cost_over_learning_rates():
    at = pd.DataFrame({"lr": [1, 2, 1, 2], "gain": [1, 1, 2, 2], "delta_L": [0.3, 0.2, np.nan, 0.9]})
    f = measures.frontier(at, over="lr", by=["gain"])
    assert f.set_index("gain")["delta_L"].to_dict() == {1: 0.2, 2: 0.9}
    assert f.set_index("gain")["lr"].to_dict() == {1: 2, 2: 2}


def test_ratio_verdict_needs_ten_units():
    """An unregistered ratio claim follows the same ≥ 10-unit rule as the registry's."""
    num, den = np.full(20, 0.5), np.ones(20)
    few = protocol.ratio_verdict("x_vs_sft", "toy", "ratio", paired_ratio(num[:6], den[:6], np.arange(6)))
    many = protocol.ratio_verdict("x_vs_sft", "toy", "ratio", paired_ratio(num, den, np.arange(20)))
    assert few.verdict == "uninformative" and many.verdict == "agrees"
    flipped = protocol.ratio_verdict("x_vs_sft", "toy", "ratio", paired_ratio(den, num, np.arange(20)))
    assert flipped.verdict == "disagrees"


def test_collect_packed_keeps_every_row_of_a_unit_across_a_resume(tmp_path):
    calls = []

    def compute(a):
        calls.append(a)
        return [{"i": 0, "v": float("nan")}, {"i": 1, "v": 2.0 * a}]

    units = [{"a": 1}, {"a": 2}]
    first = protocol.collect_packed(tmp_path, "toy", _Cfg(), units, compute)
    again = protocol.collect_packed(tmp_path, "toy", _Cfg(), units, compute)
    assert calls == [1, 2] and len(first) == len(again) == 4
    pd.testing.assert_frame_equal(first, again)
    assert again["v"].tolist()[1::2] == [2.0, 4.0] and again["a"].tolist() == [1, 1, 2, 2]


def test_report_sentences_come_from_verdicts_and_code_checks_are_apart():
    res = _result(0.52)
    res.verdicts.append(code_check("tilt_bounds", "toy", "violations", 0))
    res.info["report_tables"] = {"Points": "points"}
    text = report.render([res], "title")
    claims = text.split("## Stage")[0]
    assert "thm3.2_eps_exponent" in claims and "**disagrees**" in claims
    assert "tilt_bounds" not in claims
    assert "tilt_bounds" in text.split("## Code checks")[1]
    assert "Totals: agrees 0, disagrees 1, uninformative 0." in text


def test_tier_result_round_trip(tmp_path):
    res = _result(1.0)
    res.frames["mixed"] = pd.DataFrame({"a": [{"x": 1}, None]})
    res.save(tmp_path / "r")
    back = TierResult.load(tmp_path / "r")
    assert back.verdicts == res.verdicts and back.tier == "toy"
    assert back.frames["mixed"]["a"].iloc[0] == '{"x": 1}'


def test_report_moves_a_grid_of_claims_into_its_own_section():
    # the TALR map declares itself a grid stage (GRID = True in its module); a toy stage does not
    grid = TierResult("talr_map", {}, {}, [verdict(f"talr_vs_sft_at_equal_gain[cell={i}]", "talr_map", "ratio", 2.0,
                                                   (1.5, 2.5), (0.0, 1.0)) for i in range(25)])
    text = report.render([_result(1.0), grid], "title")
    claims, sections = text.split("## Stage", 1)
    assert "Totals: agrees 1, disagrees 0, uninformative 0." in claims
    assert "Stage `talr_map` has one claim per grid cell" in claims and "disagrees 25" in claims
    assert "cell=0" not in claims and "cell=24" in sections
