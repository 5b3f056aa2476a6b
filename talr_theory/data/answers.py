"""Reading the final answer out of a model's text and scoring it against a tolerance range.

Responses in this toolkit end with a line ``Answer: X`` (both CoT and label-only formats). We take
the value after the *last* ``Answer:``; failing that, the last number in the text. Three answer
types occur in MedCalc-Bench and are scored differently (``meta["answer_type"]``):

- ``number`` (default): correct when ``lower <= x <= upper``.
- ``date`` (40 MedCalc-Bench rows, e.g. estimated due date): the M/D/Y date must equal the answer
  (separators ``/`` or ``-`` and missing leading zeros are accepted).
- ``weeks_days`` (20 rows, gestational age ``('4 weeks', '3 days')``): weeks and days must match.
"""

from __future__ import annotations

import re

_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+"
_ANSWER_TAG = re.compile(r"\banswer\b\s*(?:is\s*)?[:=]?", re.IGNORECASE)
_DATE = re.compile(r"(\d{1,2})\s*[/-]\s*(\d{1,2})\s*[/-]\s*(\d{4})")
_WEEKS = re.compile(r"(\d+)\s*weeks?", re.IGNORECASE)
_DAYS = re.compile(r"(\d+)\s*days?", re.IGNORECASE)


def _answer_region(text: str) -> str:
    """Text after the last 'Answer:' tag, or the whole text when there is none."""
    matches = list(_ANSWER_TAG.finditer(text))
    return text[matches[-1].end():] if matches else text


def extract_answer(text: str) -> float | None:
    """The numeric answer of ``text``: first number after the last 'Answer:', else the last number."""
    if not text:
        return None
    region = _answer_region(text)
    found = re.findall(_NUM, region)
    if region is not text and found:
        return float(found[0].replace(",", ""))
    found = re.findall(_NUM, text)
    return float(found[-1].replace(",", "")) if found else None


def extract_date(text: str) -> tuple[int, int, int] | None:
    """(month, day, year) of the first M/D/Y date after the last 'Answer:' (else anywhere)."""
    for region in (_answer_region(text), text):
        m = _DATE.search(region)
        if m:
            return int(m.group(1)), int(m.group(2)), int(m.group(3))
    return None


def extract_weeks_days(text: str) -> tuple[int, int] | None:
    region = _answer_region(text)
    w, d = _WEEKS.search(region), _DAYS.search(region)
    if w is None and d is None:
        return None
    return (int(w.group(1)) if w else 0, int(d.group(1)) if d else 0)


def is_correct(text: str, meta: dict) -> bool:
    """Whether ``text`` answers correctly given ``meta`` (answer, lower, upper, answer_type)."""
    kind = meta.get("answer_type", "number")
    if kind == "date":
        return extract_date(text) == extract_date(str(meta["answer"]))
    if kind == "weeks_days":
        return extract_weeks_days(text) == extract_weeks_days(str(meta["answer"]))
    if kind != "number":
        raise ValueError(f"unknown answer_type {kind!r}; expected number, date or weeks_days")
    value = extract_answer(text)
    if value is None:
        return False
    lower, upper = float(meta["lower"]), float(meta["upper"])
    return lower <= value <= upper
