"""SFT examples (prompt → response) from one spec string, with a deterministic train/eval split.

Specs understood by :func:`load_sft`:

- ``"medcalc-synth"`` or ``"medcalc-synth:N"``: N (default 520) generated medical-calculation
  examples (see ``medcalc_synth.py``), deterministic by ``seed``; the offline default domain.
- ``"facts"`` or ``"facts:N"``: N fictitious facts with checkable answers, split by held-out
  paraphrased prompt template (see ``facts.py``); ``format`` does not apply.
- ``"medcalc-bench"``: the MedCalc-Bench v1.0 test CSV from ``../shared`` (error when absent).
- a ``.csv`` path: the MedCalc-Bench schema is detected from the header; otherwise a generic table
  whose prompt and response columns are ``prompt``/``response`` or named by the field arguments.
- a ``.jsonl`` path: one JSON object per line with the prompt and response fields.

Formats for the medical datasets: ``"cot"`` — the response is the step-by-step explanation
followed by a final line ``Answer: X``; ``"label"`` — the response is only ``Answer: X``. Both
share the same prompt apart from its last instruction line, so the CoT/label contrast is exactly
"with or without the reasoning". Generic files carry their own responses; ``format`` is ignored.

Malformed input raises ``ValueError`` naming the file, the line (or CSV row) and the field;
nothing is skipped silently (blank lines in JSONL are not records and are ignored).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from pathlib import Path

from talr_theory.data.records import (  # noqa: F401  (re-exported: the public names of this module)
    FORMATS,
    MEDCALC_BENCH_CSV,
    MEDCALC_COLUMNS,
    SFTExample,
    _read_csv_rows,
    check_utf8,
    medcalc_prompt,
    medcalc_response,
)

SPLITS = ("train", "eval")
EVAL_FRACTION = 0.2
DEFAULT_SYNTH_SIZE = 520  # 40 per calculator




# ------------------------------------------------------------------------------------------
# shared prompt/response layout for the medical-calculation datasets






# ------------------------------------------------------------------------------------------
# deterministic grouped, stratified split


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()


def assign_split(groups: list[str], strata: list[str] | None = None, eval_fraction: float = EVAL_FRACTION,
                 seed: int = 0) -> list[str]:
    """'train'/'eval' per item; items sharing a group (e.g. the same note text) land on the same side.

    Each stratum (e.g. calculator) gets an eval quota of floor(eval_fraction × size), and the
    remaining round(eval_fraction × total) - Σ floors items go to the strata with the largest
    remainders (ties in seeded hash order), so tiny strata still add up to the right total. Within
    each stratum (visited in sorted order) whole groups move, in a seeded hash order, to 'eval'
    until the quota is reached. A group spanning several strata is placed once, by the first
    stratum that reaches it.
    """
    if not 0.0 <= eval_fraction <= 1.0:
        raise ValueError(f"eval_fraction must lie in [0, 1], got {eval_fraction}")
    strata = strata if strata is not None else [""] * len(groups)
    side: dict[str, str] = {}
    by_stratum: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(strata):
        by_stratum[s].append(i)
    exact = {s: eval_fraction * len(items) for s, items in by_stratum.items()}
    quota = {s: int(x) for s, x in exact.items()}
    extra = round(eval_fraction * len(groups)) - sum(quota.values())
    for s in sorted(by_stratum, key=lambda s: (-(exact[s] - quota[s]), _rank(seed, s)))[:max(extra, 0)]:
        quota[s] += 1
    for s in sorted(by_stratum):
        items = by_stratum[s]
        target = quota[s]
        n_eval = sum(1 for i in items if side.get(groups[i]) == "eval")
        open_groups = sorted({groups[i] for i in items if groups[i] not in side}, key=lambda g: _rank(seed, g))
        size = defaultdict(int)
        for i in items:
            size[groups[i]] += 1
        for g in open_groups:
            if n_eval < target:
                side[g] = "eval"
                n_eval += size[g]
            else:
                side[g] = "train"
    return [side[g] for g in groups]


def _apply_split(examples: list[SFTExample], groups: list[str], strata: list[str] | None,
                 split: str | None, seed: int) -> list[SFTExample]:
    if split is None:
        return examples
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS} or None")
    sides = assign_split(groups, strata, seed=seed)
    chosen = [ex for ex, side in zip(examples, sides) if side == split]
    if not chosen:
        raise ValueError(f"the '{split}' split of {len(examples)} examples is empty (eval fraction "
                         f"{EVAL_FRACTION}); use more examples or no split")
    return chosen


# ------------------------------------------------------------------------------------------
# medcalc-synth


def load_medcalc_synth(n: int = DEFAULT_SYNTH_SIZE, format: str = "cot", seed: int = 0) -> list[SFTExample]:
    from talr_theory.data.medcalc_synth import generate_cases

    examples = []
    for i, case in enumerate(generate_cases(n, seed)):
        lower, upper = case.bounds
        examples.append(SFTExample(
            example_id=f"medcalc-synth:{seed}:{i}",
            prompt=medcalc_prompt(case.note, case.question, format),
            response=medcalc_response(" ".join(case.steps), case.answer_text, format),
            meta={"answer": case.answer, "lower": lower, "upper": upper, "calculator": case.calculator,
                  "answer_type": "number", "note": case.note, "format": format},
        ))
    return examples


# ------------------------------------------------------------------------------------------
# generic files


def _need_text(value, path: Path, where: str, name: str, allow_empty: bool = False) -> str:
    if value is None:
        raise ValueError(f"{path}: {where}: missing field '{name}'")
    if not isinstance(value, str):
        raise ValueError(f"{path}: {where}: field '{name}' must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ValueError(f"{path}: {where}: field '{name}' is empty")
    return value


def load_jsonl(path: str | Path, prompt_field: str | None = None, response_field: str | None = None) -> list[SFTExample]:
    """One example per non-blank line; ``id`` is used as example id when present."""
    path = Path(path)
    pf, rf = prompt_field or "prompt", response_field or "response"
    if not path.is_file():
        raise FileNotFoundError(f"SFT data file not found: {path}")
    check_utf8(path)
    examples = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"line {lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: {where}: invalid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}: {where}: expected a JSON object, got {type(record).__name__}")
            for name in (pf, rf):
                if name not in record:
                    raise ValueError(f"{path}: {where}: missing field '{name}' (fields present: {sorted(record)})")
            prompt = _need_text(record[pf], path, where, pf)
            response = _need_text(record[rf], path, where, rf)
            ex_id = str(record["id"]) if "id" in record else f"{path.stem}:{lineno}"
            meta = {k: v for k, v in record.items() if k not in (pf, rf)}
            meta.update(source=str(path), line=lineno)
            examples.append(SFTExample(ex_id, prompt, response, meta))
    if not examples:
        raise ValueError(f"{path}: no examples (the file is empty)")
    return examples




def _is_medcalc_header(header: list[str]) -> bool:
    return all(c in header for c in MEDCALC_COLUMNS)


def load_generic_csv(path: str | Path, prompt_field: str | None = None,
                     response_field: str | None = None) -> list[SFTExample]:
    path = Path(path)
    header, rows = _read_csv_rows(path)
    pf, rf = prompt_field or "prompt", response_field or "response"
    for name in (pf, rf):
        if name not in header:
            raise ValueError(f"{path}: line 1: missing column '{name}' (columns: {header}); "
                             f"name the columns with --prompt-field/--response-field")
    examples = []
    for line, row in rows:
        where = f"line {line}"
        prompt = _need_text(row[pf], path, where, pf)
        response = _need_text(row[rf], path, where, rf)
        ex_id = row["id"] if row.get("id") else f"{path.stem}:{line}"
        meta = {k: v for k, v in row.items() if k not in (pf, rf)}
        meta.update(source=str(path), line=line)
        examples.append(SFTExample(ex_id, prompt, response, meta))
    if not examples:
        raise ValueError(f"{path}: no data rows")
    return examples


# ------------------------------------------------------------------------------------------
# the one entry point


def load_sft(spec: str, format: str = "cot", prompt_field: str | None = None, response_field: str | None = None,
             limit: int | None = None, seed: int = 0, split: str | None = None) -> list[SFTExample]:
    """Load ``spec`` (see module docstring), optionally one side of the split, at most ``limit`` examples.

    ``limit`` keeps the first examples in the loader's order: file order for generic files, the
    generation order (cycling through calculators) for medcalc-synth, and a seeded round-robin over
    calculators for MedCalc-Bench, so a small limit still covers many calculators.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {FORMATS}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit}")
    low = spec.lower()
    if low == "facts" or low.startswith("facts:"):
        # The split is by prompt template (held-out paraphrases), not by a hash of the example.
        from talr_theory.data.facts import DEFAULT_N_FACTS, load_facts

        try:
            n = int(spec.split(":", 1)[1]) if ":" in spec else DEFAULT_N_FACTS
        except ValueError:
            raise ValueError(f"data spec {spec!r}: expected 'facts:N' with an integer N") from None
        examples = load_facts(n, seed, split)
        return examples[:limit] if limit is not None else examples
    if low == "medcalc-synth" or low.startswith("medcalc-synth:"):
        n = DEFAULT_SYNTH_SIZE
        if ":" in spec:
            try:
                n = int(spec.split(":", 1)[1])
            except ValueError:
                raise ValueError(f"data spec {spec!r}: expected 'medcalc-synth:N' with an integer N") from None
            if n < 1:
                raise ValueError(f"data spec {spec!r}: N must be at least 1")
        examples = load_medcalc_synth(n, format, seed)
        groups = [ex.meta["note"] for ex in examples]
        strata = [ex.meta["calculator"] for ex in examples]
    elif low == "medcalc-bench" or (spec.endswith(".csv") and _is_medcalc_header(_peek_header(spec))):
        from talr_theory.data.medcalc_bench import load_medcalc_bench

        path = Path(spec) if spec.endswith(".csv") else None
        examples = load_medcalc_bench(path, format=format, seed=seed)
        groups = [ex.meta["note"] for ex in examples]
        strata = [ex.meta["calculator"] for ex in examples]
    elif spec.endswith(".csv"):
        examples = load_generic_csv(spec, prompt_field, response_field)
        groups, strata = [ex.prompt for ex in examples], None
    elif spec.endswith(".jsonl"):
        examples = load_jsonl(spec, prompt_field, response_field)
        groups, strata = [ex.prompt for ex in examples], None
    else:
        raise FileNotFoundError(f"data spec {spec!r} is neither 'medcalc-synth[:N]', 'medcalc-bench', "
                                f"nor a .csv/.jsonl file")
    examples = _apply_split(examples, groups, strata, split, seed)
    return examples[:limit] if limit is not None else examples


def _peek_header(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"SFT data file not found: {p}")
    check_utf8(p)
    with open(p, encoding="utf-8", newline="") as fh:
        return next(csv.reader(fh), [])
