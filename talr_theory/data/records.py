"""The MedCalc record format shared by the SFT loaders (``sft``, ``medcalc_bench``): the example type,
the MedCalc-Bench columns, prompt/response builders and the strict CSV reader.

It sits below both loaders so that neither imports the other at module level.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = ("cot", "label")
MEDCALC_BENCH_CSV = "data/medcalc-bench/test_data.csv"
MEDCALC_COLUMNS = ("Calculator Name", "Patient Note", "Question", "Ground Truth Answer",
                   "Lower Limit", "Upper Limit", "Ground Truth Explanation")


@dataclass
class SFTExample:
    """One supervised example: the model sees ``prompt`` and is trained/scored on ``response``."""

    example_id: str
    prompt: str
    response: str
    meta: dict = field(default_factory=dict)


def medcalc_prompt(note: str, question: str, format: str) -> str:
    if format == "cot":
        instruction = "Think step by step, then give the final answer on its own line as 'Answer: <value>'."
    elif format == "label":
        instruction = "Give only the final answer, as 'Answer: <value>'."
    else:
        raise ValueError(f"unknown format {format!r}; expected one of {FORMATS}")
    return f"Patient note:\n{note.strip()}\n\nQuestion: {question.strip()}\n{instruction}\n"


def medcalc_response(explanation: str, answer_text: str, format: str) -> str:
    if format == "cot":
        return f"{explanation.strip()}\nAnswer: {answer_text}"
    if format == "label":
        return f"Answer: {answer_text}"
    raise ValueError(f"unknown format {format!r}; expected one of {FORMATS}")


def check_utf8(path: str | Path) -> None:
    """Raise ValueError naming the file, line and column of the first byte that is not UTF-8."""
    path = Path(path)
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ValueError(f"{path}: line {line}: not valid UTF-8 (byte 0x{data[err.start]:02x} at column {column}: "
                         f"{err.reason}); save the file as UTF-8") from None


def _read_csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header, [(first physical line of the row, row dict)]); ragged rows are errors."""
    if not path.is_file():
        raise FileNotFoundError(f"SFT data file not found: {path}")
    check_utf8(path)
    rows = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        if not header:
            raise ValueError(f"{path}: line 1: missing CSV header")
        start = reader.line_num + 1
        for row in reader:
            if None in row:
                raise ValueError(f"{path}: line {start}: {len(header) + len(row[None])} fields, header has {len(header)}")
            missing = [k for k, v in row.items() if v is None]
            if missing:
                raise ValueError(f"{path}: line {start}: too few fields, missing {missing}")
            rows.append((start, row))
            start = reader.line_num + 1
    return header, rows
