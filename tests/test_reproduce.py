"""`talr-theory reproduce --quick` end to end: every stage's figures, a report built from verdicts, resume."""

from __future__ import annotations

import json

import pytest

from talr_theory import tiers
from talr_theory.cli import main


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "rq"
    assert main(["reproduce", "--quick", "--out", str(out), "--no-progress", "--model", "tiny-random"]) == 0
    return out


def test_every_stage_ran_and_drew_its_figures(reproduced):
    summary = json.loads((reproduced / "summary.json").read_text())
    assert set(summary["stages"]) == set(tiers.STAGES)
    failed = [f for f in summary["figures"] if f.startswith("(")]
    assert not failed, failed
    pngs = {p.stem for p in (reproduced / "figures").glob("*.png")}
    for prefix in ("exact_", "synthetic_", "talr_map", "advisor", "tokens_", "llm_"):
        assert any(p.startswith(prefix) for p in pngs), (prefix, sorted(pngs))


def test_report_states_every_verdict_and_marks_the_quick_run_as_a_pipeline_check(reproduced):
    summary = json.loads((reproduced / "summary.json").read_text())
    report = (reproduced / "report.md").read_text()
    verdicts = summary["verdicts"]
    assert verdicts
    for v in verdicts:
        assert v["protocol"] in ("paper", "stricter")
        assert v["claim"] in report, v["claim"]
    assert report.split("\n## ", 2)[1].startswith("Claims")  # the claims table comes first
    assert "Totals: agrees 0, disagrees 0, uninformative 0." in report  # quick: nothing counted as evidence
    assert "expected to read" not in report


def test_rerun_resumes_every_stage_and_a_new_seed_recomputes(reproduced, capsys):
    before = json.loads((reproduced / "summary.json").read_text())["verdicts"]
    assert main(["reproduce", "--quick", "--out", str(reproduced), "--no-progress", "--model", "tiny-random",
                 "--json", "-"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert set(again["resumed_stages"]) == set(tiers.STAGES)
    assert again["verdicts"] == before
    # Another seed changes the exact stage's fingerprint: it is recomputed, never reused.
    with pytest.warns(UserWarning, match="another config"):
        assert main(["reproduce", "--quick", "--out", str(reproduced), "--no-progress", "--stages", "exact",
                     "--seed", "1"]) == 0
    summary = json.loads((reproduced / "summary.json").read_text())
    assert summary["resumed_stages"] == [] and summary["discarded_stages"] == ["exact"]
