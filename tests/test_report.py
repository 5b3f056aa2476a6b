"""The report's claims table from constructed verdicts: known rows, both protocols side by side, marks."""

from __future__ import annotations

import pandas as pd

from talr_theory import report
from talr_theory.claims import CLAIMS, claim_verdict
from talr_theory.tiers.protocol import TierResult
from talr_theory.verdicts import code_check, verdict


def _exact() -> TierResult:
    return TierResult("exact", {"seed": 0}, {}, [
        claim_verdict("thm3.2_direction", "paper", "exact", 3.0, (2.0, 4.0), n_units=12),
        claim_verdict("thm3.2_s_exponent", "paper", "exact", -0.9, (-1.1, -0.7), n_units=12, qualifier="SFT"),
        claim_verdict("thm3.2_s_exponent", "stricter", "exact", -0.5, (-0.6, -0.4), n_units=12, qualifier="SFT"),
        code_check("tilt_bounds", "exact", "violations", 0),
    ])


def _llm(model: str = "smollm2-135m") -> TierResult:
    return TierResult("llm", {"model": model, "n_blocks": 4}, {}, [
        claim_verdict("talr_vs_sft", "paper", "llm", 0.8, (0.7, 0.9), n_units=16, n_seeds=5, qualifier="P1=text"),
        claim_verdict("eaft_vs_sft", "paper", "llm", 1.2, (0.9, 1.5), n_units=16, n_seeds=5, qualifier="P1=text"),
    ])


def test_claims_table_rows_are_known_in_advance():
    paper, toolkit = report.claims_tables([_exact(), _llm()])
    expected = pd.DataFrame([
        {"claim": "thm3.2_direction", "stage": "exact", "the paper says": CLAIMS["thm3.2_direction"].short,
         "paper's protocol": "**agrees** 3 [2, 4]", "stricter reading": "—", "paper's number": "—"},
        {"claim": "thm3.2_s_exponent[SFT]", "stage": "exact", "the paper says": CLAIMS["thm3.2_s_exponent"].short,
         "paper's protocol": "**disagrees** -0.9 [-1.1, -0.7]", "stricter reading": "**agrees** -0.5 [-0.6, -0.4]",
         "paper's number": "—"},
        {"claim": "talr_vs_sft[P1=text]", "stage": "llm: SmolLM2-135M-Instruct, last 4 blocks trained",
         "the paper says": CLAIMS["talr_vs_sft"].short, "paper's protocol": "**agrees** 0.8 [0.7, 0.9]",
         "stricter reading": "—",
         "paper's number": "Table 2, TALR − SFT at LR 5e-6: domain −0.017, general +0.121"},
    ], columns=report.CLAIM_COLUMNS)
    pd.testing.assert_frame_equal(paper, expected)
    assert list(toolkit["claim"]) == ["eaft_vs_sft[P1=text]"]
    assert toolkit["paper's protocol"].iloc[0] == "**uninformative** 1.2 [0.9, 1.5]"


def test_the_table_flips_with_the_data():
    flipped = TierResult("exact", {}, {}, [
        claim_verdict("thm3.2_direction", "paper", "exact", 0.5, (0.3, 0.7), n_units=12)])
    paper, _ = report.claims_tables([flipped])
    assert paper["paper's protocol"].iloc[0] == "**disagrees** 0.5 [0.3, 0.7]"


def test_report_opens_with_the_claims_table_and_counts_only_evidence():
    text = report.render([_exact(), _llm("tiny-random")], "title")
    head = text.split("## Stage", 1)[0]
    assert head.index("## Claims") < head.index("| claim | stage | the paper says | paper's protocol |")
    # exact: 2 at the paper's protocol (agrees, disagrees), 1 stricter (agrees); llm is a pipeline check
    assert "Totals: agrees 2, disagrees 1, uninformative 0." in head
    assert "By protocol: paper agrees 1, disagrees 1, uninformative 0; stricter agrees 1" in head
    assert "2 verdicts from pipeline checks" in head
    assert "**agrees** 0.8 [0.7, 0.9] †" in head and "tiny-random (random weights, pipeline check)" in head
    assert "**Comparisons the paper does not make**" in head
    assert "tilt_bounds" not in head and "tilt_bounds" in text.split("## Code checks")[1]


def test_quick_scale_marks_every_stage_as_a_pipeline_check():
    text = report.render([_exact()], "title", pipeline=["exact"])
    assert "Totals: agrees 0, disagrees 0, uninformative 0." in text
    assert "**agrees** 3 [2, 4] †" in text


def test_nine_units_read_uninformative_in_the_table():
    r = TierResult("exact", {}, {}, [claim_verdict("thm3.2_direction", "paper", "exact", 3.0, (2.0, 4.0),
                                                   n_units=9)])
    paper, _ = report.claims_tables([r])
    # the estimate stays; the interval over 9 units is withheld and the cell says why
    assert paper["paper's protocol"].iloc[0] == "**uninformative** 3 [—] (interval withheld: 9 units < 10)"


def test_unregistered_claims_still_appear():
    r = TierResult("exact", {}, {}, [verdict("thm3.1_lr_at_equal_gain[SFT]", "exact", "ratio", 0.5, (0.4, 0.6),
                                             (0.0, 1.0))])
    paper, _ = report.claims_tables([r])
    assert paper["the paper says"].iloc[0] == "not in the claim registry"


def test_values_are_formatted_for_people():
    assert report.fmt_cell((0.0, 1.0)) == "[0, 1]"
    assert report.fmt_cell(None) == "none" and report.fmt_cell(True) == "yes"
    assert report.fmt_cell(float("nan")) == "" and report.fmt_cell(0.123456) == "0.1235"
    assert report.model_name("smollm2-135m") == "SmolLM2-135M-Instruct"
    assert report.model_name("tiny-random:3").startswith("tiny-random")
    assert report.model_name("/home/someone/models/my-model/") == "my-model"
    assert report.fmt_cell("[0.49753122999682803, 0.49858246620830904]") == "[0.498, 0.499]"
    assert report.fmt_cell("[not json]") == "[not json]"
    table = report.md_table(pd.DataFrame({"range": [(0.0, 1.0)], "alt": [None]}))
    assert "(0.0, 1.0)" not in table and "None" not in table and "[0, 1]" in table


def test_paper_reference_table_quotes_the_registry():
    ref = report.paper_reference_table()
    talr = ref[(ref["method"] == "TALR") & (ref["learning rate"] == "5e-6")]
    assert talr["domain accuracy"].iloc[0] == 0.5417 and talr["general score"].iloc[0] == 0.5018
