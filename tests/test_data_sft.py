"""SFT loaders: JSONL/CSV with clear errors, MedCalc-Bench schema, medcalc-synth, the split."""

from __future__ import annotations

import csv
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talr_theory.data.answers import is_correct
from talr_theory.data.medcalc_synth import CALCULATORS, generate_cases
from talr_theory.data.sft import assign_split, load_sft
from talr_theory.paths import shared_file


def _write_jsonl(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_jsonl_loads_with_field_mapping(tmp_path):
    f = _write_jsonl(tmp_path / "d.jsonl", [json.dumps({"q": "2+2?", "a": "4", "id": "x1", "extra": 7}), "",
                                            json.dumps({"q": "3+3?", "a": "6"})])
    ex = load_sft(f, prompt_field="q", response_field="a")
    assert [e.example_id for e in ex] == ["x1", "d:3"]
    assert (ex[0].prompt, ex[0].response, ex[0].meta["extra"]) == ("2+2?", "4", 7)
    assert ex[1].meta["line"] == 3


@pytest.mark.parametrize("bad_line, message", [
    ("{not json", r"line 2: invalid JSON"),
    ('["a", "b"]', r"line 2: expected a JSON object"),
    ('{"prompt": "hi"}', r"line 2: missing field 'response'"),
    ('{"prompt": "hi", "response": "   "}', r"line 2: field 'response' is empty"),
    ('{"prompt": "hi", "response": 5}', r"line 2: field 'response' must be a string"),
])
def test_malformed_jsonl_names_file_and_line(tmp_path, bad_line, message):
    f = _write_jsonl(tmp_path / "bad.jsonl", [json.dumps({"prompt": "ok", "response": "fine"}), bad_line])
    with pytest.raises(ValueError, match=message) as err:
        load_sft(f)
    assert "bad.jsonl" in str(err.value)


def test_generic_csv_and_its_errors(tmp_path):
    good = tmp_path / "g.csv"
    good.write_text('question,answer\n"multi\nline prompt",yes\nsecond,no\n', encoding="utf-8")
    ex = load_sft(str(good), prompt_field="question", response_field="answer")
    assert [e.prompt for e in ex] == ["multi\nline prompt", "second"]
    assert ex[1].meta["line"] == 4  # the first row spans lines 2-3
    with pytest.raises(ValueError, match=r"line 1: missing column 'prompt'"):
        load_sft(str(good))
    ragged = tmp_path / "r.csv"
    ragged.write_text("prompt,response\na,b\nc,d,e\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"r.csv: line 3: 3 fields, header has 2"):
        load_sft(str(ragged))
    empty = tmp_path / "e.csv"
    empty.write_text("prompt,response\na,b\nc,\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"e.csv: line 3: field 'response' is empty"):
        load_sft(str(empty))


def _medcalc_rows():
    base = {"Row Number": "1", "Calculator ID": "1", "Category": "lab", "Output Type": "decimal", "Note ID": "1",
            "Note Type": "Template", "Relevant Entities": "{}", "Question": "What is X?"}
    return [
        {**base, "Calculator Name": "Calc A", "Patient Note": "note one", "Ground Truth Answer": "10.5",
         "Lower Limit": "10", "Upper Limit": "11", "Ground Truth Explanation": "Step. So X is 10.5."},
        {**base, "Row Number": "2", "Calculator Name": "Due Date", "Patient Note": "note two",
         "Ground Truth Answer": "09/23/2014", "Lower Limit": "09/23/2014", "Upper Limit": "09/23/2014",
         "Ground Truth Explanation": "Add 40 weeks."},
        {**base, "Row Number": "3", "Calculator Name": "Gestational Age", "Patient Note": "note three",
         "Ground Truth Answer": "('4 weeks', '3 days')", "Lower Limit": "('4 weeks', '3 days')",
         "Upper Limit": "('4 weeks', '3 days')", "Ground Truth Explanation": "31 days apart."},
    ]


def _write_medcalc(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(path)


def test_medcalc_schema_is_detected_formats_and_answer_types(tmp_path):
    f = _write_medcalc(tmp_path / "mc.csv", _medcalc_rows())
    cot = {e.example_id: e for e in load_sft(f, format="cot")}
    label = {e.example_id: e for e in load_sft(f, format="label")}
    a = cot["medcalc-bench:1"]
    assert a.response == "Step. So X is 10.5.\nAnswer: 10.5"
    assert label["medcalc-bench:1"].response == "Answer: 10.5"
    assert "note one" in a.prompt and "What is X?" in a.prompt
    assert (a.meta["lower"], a.meta["upper"], a.meta["calculator"]) == (10.0, 11.0, "Calc A")
    assert cot["medcalc-bench:2"].meta["answer_type"] == "date"
    assert label["medcalc-bench:3"].response == "Answer: 4 weeks, 3 days"
    for e in list(cot.values()) + list(label.values()):
        assert is_correct(e.response, e.meta), e.example_id


def test_medcalc_bad_answer_names_line(tmp_path):
    rows = _medcalc_rows()
    rows[1]["Ground Truth Answer"] = "about ten"
    f = _write_medcalc(tmp_path / "mc.csv", rows)
    with pytest.raises(ValueError, match=r"mc.csv: line 3: field 'Ground Truth Answer'"):
        load_sft(f)


def test_medcalc_synth_is_deterministic_correct_and_varied():
    a = load_sft("medcalc-synth:60", seed=3)
    b = load_sft("medcalc-synth:60", seed=3)
    c = load_sft("medcalc-synth:60", seed=4)
    assert [(e.prompt, e.response) for e in a] == [(e.prompt, e.response) for e in b]
    assert [e.prompt for e in a] != [e.prompt for e in c]
    assert len(CALCULATORS) >= 10 and len({e.meta["calculator"] for e in a}) == len(CALCULATORS)
    for e in a:
        assert is_correct(e.response, e.meta), (e.example_id, e.response)
        assert float(e.response.rsplit("\nAnswer: ", 1)[1]) == pytest.approx(e.meta["answer"])
    notes = " ".join(e.prompt for e in load_sft("medcalc-synth:260"))
    for unit in ("lb", "kg", " in", "cm", "mg/dL", "mmol/L", "µmol/L", "g/L"):
        assert unit in notes, unit
    labels = load_sft("medcalc-synth:13", format="label")
    assert all(e.response.startswith("Answer: ") and "\n" not in e.response for e in labels)


def test_synth_cases_are_prefix_stable():
    # case i does not depend on how many cases are generated
    assert [c.note for c in generate_cases(5, seed=1)] == [c.note for c in generate_cases(30, seed=1)[:5]]


def test_synth_answers_match_independent_formulas():
    cases = {c.calculator: c for c in generate_cases(len(CALCULATORS), seed=11)}
    # MAP from the "sys/dia mmHg" text in the note, computed here independently
    import re

    note = cases["Mean Arterial Pressure (MAP)"].note
    sbp, dbp = map(int, re.search(r"(\d+)/(\d+) mmHg", note).groups())
    assert cases["Mean Arterial Pressure (MAP)"].answer == pytest.approx((sbp + 2 * dbp) / 3, abs=1e-3)
    note = cases["Anion Gap"].note
    na, cl, hco3 = (int(re.search(rf"{k} (\d+)", note).group(1)) for k in ("sodium", "chloride", "bicarbonate"))
    assert cases["Anion Gap"].answer == na - cl - hco3


def test_split_groups_by_note_and_is_deterministic():
    train = load_sft("medcalc-synth:130", split="train")
    evals = load_sft("medcalc-synth:130", split="eval")
    assert len(train) + len(evals) == 130
    assert not {e.meta["note"] for e in train} & {e.meta["note"] for e in evals}
    assert [e.example_id for e in evals] == [e.example_id for e in load_sft("medcalc-synth:130", split="eval")]
    with pytest.raises(ValueError, match="unknown split"):
        load_sft("medcalc-synth:13", split="test")
    # one example per calculator: the quota still adds up to round(0.2 × 13) = 3 eval examples
    assert len(load_sft("medcalc-synth:13", split="eval")) == 3
    with pytest.raises(ValueError, match="'eval' split of 2 examples is empty"):
        load_sft("medcalc-synth:2", split="eval")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 3)), min_size=1, max_size=80), st.integers(0, 5))
def test_split_never_separates_a_group(items, seed):
    groups = [f"g{g}" for g, _ in items]
    strata = [f"s{s}" for _, s in items]
    sides = assign_split(groups, strata, eval_fraction=0.25, seed=seed)
    seen = {}
    for g, side in zip(groups, sides):
        assert seen.setdefault(g, side) == side
    # without shared groups: round(0.25 N) eval items in total, floor or ceil of 0.25 n per stratum
    uniq = [f"u{i}" for i in range(len(items))]
    sides = assign_split(uniq, strata, eval_fraction=0.25, seed=seed)
    assert sides.count("eval") == round(0.25 * len(items))
    for s in set(strata):
        idx = [i for i, x in enumerate(strata) if x == s]
        n_eval = sum(sides[i] == "eval" for i in idx)
        assert math.floor(0.25 * len(idx)) <= n_eval <= math.ceil(0.25 * len(idx))


@pytest.mark.shared
def test_medcalc_bench_real_csv():
    if shared_file("data/medcalc-bench/test_data.csv") is None:
        pytest.skip("MedCalc-Bench CSV absent")
    ex = load_sft("medcalc-bench")
    assert len(ex) == 1047  # every row, none dropped
    kinds = [e.meta["answer_type"] for e in ex]
    assert kinds.count("date") == 40 and kinds.count("weeks_days") == 20
    assert all(is_correct(e.response, e.meta) for e in ex)
    assert len({e.meta["calculator"] for e in ex[:55]}) == 55  # round-robin order
    train, evals = load_sft("medcalc-bench", split="train"), load_sft("medcalc-bench", split="eval")
    assert len(train) + len(evals) == 1047
    assert not {e.meta["note"] for e in train} & {e.meta["note"] for e in evals}
    calcs = {e.meta["calculator"] for e in evals}
    assert len(calcs) >= 50  # stratified: nearly every calculator is represented in eval


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_non_utf8_file_names_file_and_line(tmp_path, suffix):
    from talr_theory.data.sft import load_sft

    path = tmp_path / f"latin1{suffix}"
    if suffix == ".jsonl":
        body = '{"prompt": "a", "response": "b"}\n{"prompt": "caf\xe9", "response": "b"}\n'
    else:
        body = "prompt,response\na,b\ncaf\xe9,b\n"
    path.write_bytes(body.encode("latin-1"))
    line = 2 if suffix == ".jsonl" else 3
    with pytest.raises(ValueError, match=rf"latin1{suffix}: line {line}: not valid UTF-8 \(byte 0xe9 at column"):
        load_sft(str(path))


def test_non_utf8_general_text_names_file_and_line(tmp_path):
    from talr_theory.data.general import _read_source

    path = tmp_path / "text.txt"
    path.write_bytes(b"fine line\nbad \xff byte\n")
    with pytest.raises(ValueError, match=r"text.txt: line 2: not valid UTF-8 \(byte 0xff at column 5"):
        _read_source(str(path))
