"""``talr_theory.explore``: the notebooks' readers, on constructed results whose answers are known."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from talr_theory import explore, report
from talr_theory.tiers.protocol import TierResult
from talr_theory.verdicts import code_check, verdict


def _result() -> TierResult:
    verdicts = [verdict("thm3.2_eps_exponent[a]", "toy", "a", 0.5, (0.45, 0.55), 1.0, 0.5),
                verdict("thm3.1_fixed_gain_slope[a]", "toy", "slope", 0.3, (0.2, 0.4), (0.0, 1.0)),
                code_check("tilt_identity", "toy", "max error", 0.0)]
    return TierResult("toy", {"seed": 0}, {}, verdicts, {"summary": "A toy stage.", "notes": ["one note"]})


def test_stage_report_is_the_stage_section_of_the_report():
    r = _result()
    text = explore.stage_report(r)
    full = report.render([r], "title")
    assert text.startswith("## Stage `toy`") and text in full
    assert "A toy stage." in text and "- one note" in text
    assert "tilt_identity" not in text  # code-checks live in their own section
    assert "## Code checks" not in text


def test_claim_lines_are_the_reports_sentences_for_a_prefix():
    r = _result()
    lines = explore.claim_lines(r, "thm3.2_").splitlines()
    assert lines == [f"- (paper) {r.verdicts[0].sentence()}"]
    assert set(lines) <= set(report.render([r], "t").splitlines())
    assert len(explore.claim_lines(r).splitlines()) == 2
    assert list(explore.claims(r, "thm3.1_")["claim"]) == ["thm3.1_fixed_gain_slope[a]"]


def _tokens_result() -> TierResult:
    # scan a: example 0 has p = 0.1, 0.3; example 1 has p = 0.9, 0.05, 0.6 -> median 0.3, 3 of 5 above 0.2
    rows = [("a", "e0", 0.1), ("a", "e0", 0.3), ("a", "e1", 0.9), ("a", "e1", 0.05), ("a", "e1", 0.6),
            ("b", "f0", 0.5), ("b", "f0", 0.01)]
    tokens = pd.DataFrame([{"name": n, "example_id": e, "position": i, "token_id": i, "token_text": f"t{i}",
                            "p": p, "logp": math.log(p)}
                           for i, (n, e, p) in enumerate(rows)])
    return TierResult("tokens", {"seed": 0}, {"tokens": tokens}, [], {})


def test_token_summaries_per_scan():
    table = explore.token_summaries(_tokens_result(), n_boot=50).set_index("scan")
    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "examples"] == 2 and table.loc["a", "tokens_per_example"] == pytest.approx(2.5)
    assert table.loc["a", "median_p"] == pytest.approx(0.3)
    assert table.loc["a", "frac_p_gt_0.2"] == pytest.approx(0.6)
    assert table.loc["b", "frac_p_gt_0.2"] == pytest.approx(0.5)


def test_hardest_takes_the_lowest_p_of_one_scan():
    hard = explore.hardest(_tokens_result(), scan="a", k=2)
    assert list(hard["p"]) == [0.05, 0.1]


def test_results_dir_names_a_missing_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(explore.RESULTS_ENV, raising=False)
    assert explore.results_dir() is None
    monkeypatch.setenv(explore.RESULTS_ENV, str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="nope"):
        explore.results_dir()
    monkeypatch.setenv(explore.RESULTS_ENV, str(tmp_path))
    assert explore.results_dir() == tmp_path
