"""The claim registry: quotes are verbatim, verdicts take their values from it, the 10-unit rule."""

from __future__ import annotations

import math
import re

import pytest

from talr_theory import claims
from talr_theory.claims import CLAIMS, PaperDifference, base_id, claim_verdict, qualifier
from talr_theory.paths import shared_file
from talr_theory.verdicts import MIN_UNITS


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_every_paper_statement_is_quoted_verbatim_from_the_poster():
    poster = shared_file("docs/paper-poster.txt")
    if poster is None:
        pytest.skip("the paper's poster text (../shared/docs/paper-poster.txt) is absent here")
    text = _squash(poster.read_text(encoding="utf-8"))
    for c in CLAIMS.values():
        if c.source == "paper":
            assert _squash(c.where) in text, c.id
            if c.statement:  # a section with a heading and no text has no quote; its context says so
                assert _squash(c.statement) in text, c.id
            else:
                assert c.context, c.id


def test_toolkit_claims_are_marked_and_quote_nothing():
    for cid in ("eaft_vs_sft", "asft_vs_sft"):
        c = CLAIMS[cid]
        assert c.source == "toolkit" and c.statement == ""
        assert "not a claim of the paper" in c.context.lower()
    assert sum(c.source == "toolkit" for c in CLAIMS.values()) >= 2
    with pytest.raises(ValueError, match="source"):
        claims.Claim("x", "x", "", "", CLAIMS["talr_vs_sft"].paper, source="ours")


def test_claim_verdict_takes_values_and_wording_from_the_registry():
    reading = CLAIMS["thm3.2_s_exponent"].paper
    v = claim_verdict("thm3.2_s_exponent", "paper", "exact", -0.52, (-0.6, -0.45), n_units=12, qualifier="SFT")
    assert v.claim == "thm3.2_s_exponent[SFT]" and v.protocol == "paper"
    assert v.quantity == reading.quantity
    assert v.paper_value == reading.paper_value and v.alternative_value == reading.alternative_value
    assert v.verdict == "agrees"  # contains −½, excludes the alternative 0
    s = claim_verdict("thm3.2_s_exponent", "stricter", "exact", -0.52, (-0.6, -0.45), n_units=12)
    assert s.protocol == "stricter" and s.quantity == CLAIMS["thm3.2_s_exponent"].stricter.quantity


def test_nine_units_are_uninformative_and_ten_are_not():
    args = ("thm3.2_direction", "paper", "exact", 3.0, (2.0, 4.0))
    nine = claim_verdict(*args, n_units=MIN_UNITS - 1)
    ten = claim_verdict(*args, n_units=MIN_UNITS)
    assert MIN_UNITS == 10
    assert nine.verdict == "uninformative" and "9 independent units" in nine.note
    assert ten.verdict == "agrees" and "independent units" not in ten.note


def test_a_verdict_flips_when_the_data_flip():
    agree = claim_verdict("thm3.2_direction", "paper", "exact", 3.0, (2.0, 4.0), n_units=20)
    flip = claim_verdict("thm3.2_direction", "paper", "exact", 0.5, (0.25, 0.75), n_units=20)
    assert (agree.verdict, flip.verdict) == ("agrees", "disagrees")


def test_unknown_claim_and_missing_reading_are_named():
    with pytest.raises(KeyError, match="unknown claim 'nope'"):
        claim_verdict("nope", "paper", "exact", 1.0, (0.0, 2.0), n_units=10)
    with pytest.raises(KeyError, match="no 'stricter' reading"):
        claim_verdict("thm3.2_direction", "stricter", "exact", 1.0, (0.0, 2.0), n_units=10)


def test_paper_numbers_are_differences_of_the_quoted_table():
    d = PaperDifference("talr", 5e-6, "sft", 5e-6)
    dom, gen = d.values()
    # Table 2 averages: TALR 0.5417 / 0.5018, Standard 0.5583 / 0.3805
    assert math.isclose(dom, 0.5417 - 0.5583) and math.isclose(gen, 0.5018 - 0.3805)
    assert d.text() == "Table 2, TALR − SFT at LR 5e-6: domain −0.017, general +0.121"
    lr = PaperDifference("sft", 1e-6, "sft", 5e-6).text()
    assert lr == "Tables 1–2, SFT at LR 1e-6 − at LR 5e-6: domain −0.024, general +0.312"


def test_claim_names_split_into_id_and_qualifier():
    assert base_id("talr_vs_sft[P1=text]") == "talr_vs_sft" and qualifier("talr_vs_sft[P1=text]") == "P1=text"
    assert base_id("thm3.2_direction") == "thm3.2_direction" and qualifier("thm3.2_direction") == ""
