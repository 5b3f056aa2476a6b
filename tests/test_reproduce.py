"""`talr-theory reproduce --quick` end to end: every stage's figures, a report built from verdicts, resume.

The run itself is the session's one stored quick run (``quick_run`` in conftest.py); the resume test
works on a copy of it.
"""

from __future__ import annotations

import json

import pytest

from talr_theory import tiers
from talr_theory.cli import main
from tests.conftest import QUICK_RUN_ARGS
from tests.helpers import assert_png_drawn


def test_every_stage_ran_and_drew_its_figures(quick_run):
    summary = json.loads((quick_run / "summary.json").read_text())
    assert set(summary["stages"]) == set(tiers.STAGES)
    failed = [f for f in summary["figures"] if f.startswith("(")]
    assert not failed, failed
    pngs = {p.stem for p in (quick_run / "figures").glob("*.png")}
    for prefix in ("exact_", "synthetic_", "talr_map", "advisor", "tokens_", "llm_"):
        assert any(p.startswith(prefix) for p in pngs), (prefix, sorted(pngs))
        assert_png_drawn(quick_run / "figures" / f"{min(p for p in pngs if p.startswith(prefix))}.png")


def test_report_states_every_verdict_and_marks_the_quick_run_as_a_pipeline_check(quick_run):
    summary = json.loads((quick_run / "summary.json").read_text())
    report = (quick_run / "report.md").read_text()
    verdicts = summary["verdicts"]
    assert verdicts
    for v in verdicts:
        assert v["protocol"] in ("paper", "stricter")
        assert v["claim"] in report, v["claim"]
    assert report.split("\n## ", 2)[1].startswith("Claims")  # the claims table comes first
    assert "Totals: agrees 0, disagrees 0, uninformative 0." in report  # quick: nothing counted as evidence
    assert "expected to read" not in report


def test_rerun_resumes_every_stage_and_a_new_seed_recomputes(quick_run_copy, capsys):
    before = json.loads((quick_run_copy / "summary.json").read_text())["verdicts"]
    assert main([*QUICK_RUN_ARGS, "--out", str(quick_run_copy), "--json", "-"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert set(again["resumed_stages"]) == set(tiers.STAGES)
    assert again["verdicts"] == before
    # Another seed into the same --out is another experiment: refused before any work, naming the option.
    assert main(["reproduce", "--quick", "--out", str(quick_run_copy), "--no-progress", "--stages", "tokens",
                 "--seed", "1", "--model", "tiny-random"]) == 2
    assert "--seed 0 in the folder, 1 now" in capsys.readouterr().err
    # A folder without the record (written by an older version): the stage fingerprint still guards reuse.
    (quick_run_copy / "experiment.json").unlink()
    # Another seed changes a stage's fingerprint: it is recomputed, never reused (tokens: the quickest stage;
    # the fingerprint and the store are the same code for every stage, tests/test_stage_protocol.py walks them).
    with pytest.warns(UserWarning, match="another config"):
        assert main(["reproduce", "--quick", "--out", str(quick_run_copy), "--no-progress", "--stages", "tokens",
                     "--seed", "1", "--model", "tiny-random"]) == 0
    summary = json.loads((quick_run_copy / "summary.json").read_text())
    assert summary["resumed_stages"] == [] and summary["discarded_stages"] == ["tokens"]
