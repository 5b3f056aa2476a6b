"""`talr-theory reproduce --quick` end to end: exit 0, figures, a report whose numbers come from the run,
resume after a rerun, and `bounds --tier synthetic` reading the same crash-safe results folder."""

from __future__ import annotations

import json
import time

import pytest

from talr_theory.cli import main


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "rq"
    t0 = time.perf_counter()
    assert main(["reproduce", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out, time.perf_counter() - t0


def test_reproduce_quick_writes_figures_and_report_from_this_run(reproduced):
    out, _ = reproduced
    report = (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())

    pngs = sorted((out / "figures").glob("*.png"))
    assert len(pngs) >= 10, [p.name for p in pngs]
    assert all(p.stat().st_size > 5000 for p in pngs)
    assert not [f for f in summary["figures"] if f.startswith("(")], summary["figures"]

    # the report's numbers are this run's numbers (formatted from summary.json, not typed in)
    syn = summary["synthetic"]
    assert f"{syn['theorem_3_2']['eps_exponent']:.3f}" in report
    assert f"{syn['theorem_3_2_talr']['eps_exponent']:.3f}" in report
    env = syn["theorem_3_1"]["by_method_and_s"]["sft_s2"]
    assert f"{env['k1']:.3g}" in report and f"{env['k2']:.3g}" in report
    assert f"{summary['exact']['theorem_3_2']['eps_exponent']:.3f}" in report
    observed = [r["observed_delta_L"] for r in summary["advisor_validation"] if r["observed_delta_L"] is not None]
    assert observed and all(format(v, ".4g") in report for v in observed)
    # the paper's table is there, labelled as the paper's
    assert "Paper's numbers" in report and "0.534" in report
    # the one-step tilt bounds held on every real transformer step of the synthetic lab
    assert syn["single_step"]["n_instances"] > 0
    assert syn["single_step"]["lower_bound_violations"] == 0
    assert syn["single_step"]["upper_bound_violations"] == 0
    # the LLM tier fitted both methods' trajectories
    assert set(summary["llm"]["theorem_3_1"]["by_method"]) == {"sft", "talr"}


def test_rerun_resumes_every_stage(reproduced):
    out, first = reproduced
    before = json.loads((out / "summary.json").read_text())
    t0 = time.perf_counter()
    assert main(["reproduce", "--quick", "--out", str(out), "--no-progress"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert set(again["resumed_stages"]) >= {"exact_tier", "synthetic_tier", "advisor_validation",
                                            "token_difficulty", "llm_tier"}
    assert time.perf_counter() - t0 < first
    assert again["synthetic"]["theorem_3_2"] == before["synthetic"]["theorem_3_2"]


def test_bounds_synthetic_tier_json(reproduced, capsys):
    """`bounds --tier synthetic --quick --json -`: exponents with CIs and a held-out validity rate.

    ``--out`` points at the reproduce run's results folder, so the per-unit rows are read back
    (the crash-safe resume path) and only the fits run again.
    """
    out, _ = reproduced
    assert main(["bounds", "--tier", "synthetic", "--quick", "--no-progress", "--out", str(out / "results"),
                 "--json", "-"]) == 0
    payload = json.loads(capsys.readouterr().out)
    for block in ("single_step", "theorem_3_1", "theorem_3_2", "theorem_3_2_talr", "notes"):
        assert block in payload
    t32 = payload["theorem_3_2"]
    assert t32["eps_exponent_ci"][0] <= t32["eps_exponent"] <= t32["eps_exponent_ci"][1]
    assert t32["s_exponent_ci"][0] <= t32["s_exponent"] <= t32["s_exponent_ci"][1]
    assert 0.0 <= payload["theorem_3_1"]["holdout_violation_rate"] <= 1.0
    assert payload["theorem_3_2_talr"]["effective_s"]
    summary = json.loads((out / "summary.json").read_text())
    assert payload["theorem_3_2"]["eps_exponent"] == pytest.approx(summary["synthetic"]["theorem_3_2"]["eps_exponent"])
