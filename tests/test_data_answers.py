"""Answer extraction and scoring."""

from __future__ import annotations

import pytest

from talr_theory.data.answers import extract_answer, is_correct


@pytest.mark.parametrize("text, value", [
    ("Steps... 3 × 4 = 12.\nAnswer: 12.5", 12.5),
    ("The answer is -3.25 mmol/L", -3.25),
    ("answer: 1,250 mL", 1250.0),
    ("no tag, last number wins: 7 then 9.5", 9.5),
    ("Answer: .5", 0.5),
    ("nothing numeric here", None),
    ("", None),
])
def test_extract_answer(text, value):
    assert extract_answer(text) == value


def test_is_correct_uses_tolerance_range_and_answer_types():
    meta = {"answer": 25.238, "lower": 23.9761, "upper": 26.4999}
    assert is_correct("so CrCl = 25.1\nAnswer: 24.0", meta)
    assert not is_correct("Answer: 26.6", meta)
    assert not is_correct("I do not know", meta)
    date = {"answer": "09/23/2014", "answer_type": "date"}
    assert is_correct("Answer: 9-23-2014", date)
    assert not is_correct("Answer: 09/24/2014", date)
    ga = {"answer": "('4 weeks', '3 days')", "answer_type": "weeks_days"}
    assert is_correct("Answer: 4 weeks, 3 days", ga)
    assert not is_correct("Answer: 4 weeks, 2 days", ga)
    with pytest.raises(ValueError, match="answer_type"):
        is_correct("1", {"answer_type": "color"})
