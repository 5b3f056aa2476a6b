"""MedCalc-Bench v1.0 (CSV, 14 columns; see ../shared/data/README.md) as SFT examples.

Prompt: the patient note and the question (plus a one-line answer-format instruction).
CoT response: the ``Ground Truth Explanation`` followed by ``Answer: <Ground Truth Answer>``.
Label response: ``Answer: <Ground Truth Answer>`` only.

Answers are scored against ``Lower Limit``/``Upper Limit``. 60 of the 1,047 test rows are not
numbers: 40 dates (M/D/Y; estimated due date / conception) and 20 gestational ages written as
``('4 weeks', '3 days')``. Those rows get ``answer_type`` "date" or "weeks_days" and are scored
by ``answers.is_correct`` accordingly; nothing is dropped. Order: a seeded round-robin over
calculators, so the first k examples span min(k, 55) calculators.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from talr_theory.data.records import (
    MEDCALC_BENCH_CSV,
    MEDCALC_COLUMNS,
    SFTExample,
    _read_csv_rows,
    medcalc_prompt,
    medcalc_response,
)
from talr_theory.paths import shared_file

_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")
_DATE = re.compile(r"^\s*\d{1,2}/\d{1,2}/\d{4}\s*$")
_WEEKS_DAYS = re.compile(r"^\s*\(\s*'\d+ weeks?',\s*'\d+ days?'\s*\)\s*$")


def _answer_fields(path: Path, line: int, row: dict) -> dict:
    ans, lo, hi = row["Ground Truth Answer"], row["Lower Limit"], row["Upper Limit"]
    if all(_NUMBER.match(x) for x in (ans, lo, hi)):
        return {"answer": float(ans), "lower": float(lo), "upper": float(hi), "answer_type": "number",
                "answer_text": ans.strip()}
    if _DATE.match(ans):
        return {"answer": ans.strip(), "lower": lo.strip(), "upper": hi.strip(), "answer_type": "date",
                "answer_text": ans.strip()}
    if _WEEKS_DAYS.match(ans):
        # ('4 weeks', '3 days') -> "4 weeks, 3 days" as the response text
        text = ", ".join(re.findall(r"'([^']*)'", ans))
        return {"answer": ans.strip(), "lower": lo.strip(), "upper": hi.strip(), "answer_type": "weeks_days",
                "answer_text": text}
    raise ValueError(f"{path}: line {line}: field 'Ground Truth Answer' = {ans!r} is neither a number, "
                     f"an M/D/Y date nor a ('N weeks', 'N days') tuple")


def load_medcalc_bench(path: str | Path | None = None, format: str = "cot", seed: int = 0) -> list[SFTExample]:
    """All rows of the MedCalc-Bench CSV (default: the shared test split) as SFT examples."""
    if path is None:
        path = shared_file(MEDCALC_BENCH_CSV)
        if path is None:
            raise FileNotFoundError(f"'medcalc-bench' needs ../shared/{MEDCALC_BENCH_CSV}, which is absent here; "
                                    f"pass the CSV path instead or use 'medcalc-synth'")
    path = Path(path)
    header, rows = _read_csv_rows(path)
    missing = [c for c in MEDCALC_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path}: line 1: not a MedCalc-Bench CSV, missing columns {missing}")
    examples = []
    for line, row in rows:
        where = f"line {line}"
        for col in ("Patient Note", "Question", "Ground Truth Answer", "Calculator Name"):
            if not (row[col] or "").strip():
                raise ValueError(f"{path}: {where}: field '{col}' is empty")
        if format == "cot" and not (row["Ground Truth Explanation"] or "").strip():
            raise ValueError(f"{path}: {where}: field 'Ground Truth Explanation' is empty (needed for CoT)")
        ans = _answer_fields(path, line, row)
        row_id = row.get("Row Number") or str(line)
        meta = {**ans, "calculator": row["Calculator Name"], "calculator_id": row.get("Calculator ID"),
                "note_id": row.get("Note ID"), "note": row["Patient Note"], "row": row_id, "line": line,
                "source": str(path), "format": format}
        examples.append(SFTExample(
            example_id=f"medcalc-bench:{row_id}",
            prompt=medcalc_prompt(row["Patient Note"], row["Question"], format),
            response=medcalc_response(row["Ground Truth Explanation"], ans["answer_text"], format),
            meta=meta,
        ))
    return _round_robin(examples, seed)


def _round_robin(examples: list[SFTExample], seed: int) -> list[SFTExample]:
    """Seeded shuffle within each calculator, then interleave calculators (sorted by name)."""
    rng = np.random.default_rng(seed)
    by_calc: dict[str, list[SFTExample]] = defaultdict(list)
    for ex in examples:
        by_calc[ex.meta["calculator"]].append(ex)
    queues = []
    for name in sorted(by_calc):
        items = by_calc[name]
        queues.append([items[i] for i in rng.permutation(len(items))])
    out = []
    depth = max(len(q) for q in queues) if queues else 0
    for k in range(depth):
        out.extend(q[k] for q in queues if k < len(q))
    return out
