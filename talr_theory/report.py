"""The report of ``talr-theory reproduce``, rendered from ``TierResult``s alone.

The report opens with the claims table: one row per claim (registry id × qualifier × stage), the
paper's statement in a few words, the verdict at the paper's protocol and at our stricter reading side
by side, and the paper's own number where it gives one (``talr_theory.claims``). Comparisons the paper
does not make (``source="toolkit"``) have a table of their own. Per-stage detail follows.

Every sentence that compares a measurement with the paper comes from a Verdict (``talr_theory.verdicts``),
and every interval is printed by the one formatter there. A tier contributes:

- its verdicts (code-checks are listed apart and never counted as evidence);
- ``info["summary"]``: one plain sentence of what the tier measured (setup, scale, units), built from
  its config;
- ``info["proxy"]``: for a real model, what was trained (e.g. "last 4 blocks trained");
- ``info["report_tables"]``: ``{title: frame_name}`` of frames to print as tables;
- ``info["notes"]``: plain facts that do not compare with the paper.

A stage run at quick scale, or on a pipeline-check model (``tiny-random``), checks the pipeline: its
verdicts are marked † and never counted in the totals.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from talr_theory.claims import CLAIMS, METHOD_NAMES, PAPER_AVERAGES, base_id, qualifier
from talr_theory.tiers.protocol import TierResult
from talr_theory.verdicts import LABELS, PROTOCOLS, Verdict, counts, fmt_num, fmt_value

PIPELINE_MODELS = ("tiny-random",)
MODEL_NAMES = {"smollm2-135m": "SmolLM2-135M-Instruct", "stories260k": "stories260K (tiny pretrained Llama)",
               "tiny-random": "tiny-random (random weights, pipeline check)"}
PIPELINE_MARK = "†"
CLAIM_COLUMNS = ["claim", "stage", "the paper says", "paper's protocol", "stricter reading", "paper's number"]


def model_name(spec) -> str:
    """A model spec in words: the model's name, or the file name of a path."""
    if spec is None or spec == "":
        return "none"
    text = str(spec)
    low = text.lower()
    if low.startswith("tiny-random"):
        return MODEL_NAMES["tiny-random"]
    return MODEL_NAMES.get(low, text.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1])


def is_pipeline_check(result: TierResult, quick: bool = False) -> bool:
    """A stage whose verdicts check the pipeline, not the paper: quick scale or a pipeline-check model."""
    model = str(result.config.get("model") or "").lower()
    return bool(quick or result.info.get("pipeline_check")
                or any(model.startswith(m) for m in PIPELINE_MODELS))


def proxy_note(result: TierResult) -> str:
    """What a real-model stage trained, from its info (or its config's ``n_blocks``)."""
    if result.info.get("proxy"):
        return str(result.info["proxy"])
    n = result.config.get("n_blocks")
    if not (result.config.get("model") and isinstance(n, int)):
        return ""
    return "last block trained" if n == 1 else f"last {n} blocks trained"


def stage_label(result: TierResult) -> str:
    """The stage's name, with its model and proxy where it has them: ``llm: SmolLM2-135M-Instruct, last 4 …``."""
    parts = [model_name(result.config["model"])] if result.config.get("model") else []
    if proxy_note(result):
        parts.append(proxy_note(result))
    return f"{result.tier}: {', '.join(parts)}" if parts else result.tier


def fmt_cell(v) -> str:
    """A table value for people: no Python reprs (ranges [a, b], none, yes/no, short floats)."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "" if math.isnan(v) else format(v, ".4g")
    if isinstance(v, (list, tuple)):
        if len(v) == 2 and all(isinstance(x, (int, float)) or x is None for x in v):
            return fmt_value(tuple(v))
        return ", ".join(fmt_cell(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k} {fmt_cell(x)}" for k, x in v.items())
    if isinstance(v, np.ndarray):
        return fmt_cell(v.tolist())
    if isinstance(v, str) and v[:1] in "[{" and v[-1:] in "]}":
        try:  # a list or dict stored as JSON text (object columns of a saved stage)
            return fmt_cell(json.loads(v))
        except ValueError:
            return v
    return str(v)


def md_table(frame: pd.DataFrame) -> str:
    """A GitHub-markdown table with every value formatted by :func:`fmt_cell`."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(fmt_cell(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def verdict_cell(v: Verdict, pipeline: bool) -> str:
    """``**label** estimate [lo, hi]``, marked † when the stage is a pipeline check."""
    text = f"**{v.verdict}** {v.interval_text()}"
    if v.estimate_outside_ci:
        text += " (estimate outside its CI)"
    return f"{text} {PIPELINE_MARK}" if pipeline else text


def verdict_table(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """One line per verdict (for a grid stage's own section)."""
    rows = [{"tier": v.tier, "claim": v.claim, "protocol": v.protocol, "quantity": v.quantity,
             "estimate [95% CI]": v.interval_text(),
             "paper": fmt_value(v.paper_value), "alternative": fmt_value(v.alternative_value),
             "verdict": f"**{v.verdict}**" + (" (estimate outside its CI)" if v.estimate_outside_ci else "")}
            for v in verdicts if v.verdict != "code-check"]
    return pd.DataFrame(rows, columns=["tier", "claim", "protocol", "quantity", "estimate [95% CI]", "paper",
                                       "alternative", "verdict"])


def _is_grid(r: TierResult) -> bool:
    """A stage with one claim per grid cell (its module sets ``GRID = True``, e.g. the TALR map): listed in its
    own section as a table, and carried in the claims table as one line of label counts."""
    from talr_theory import tiers

    return r.tier in tiers.STAGES and bool(getattr(tiers.module(r.tier), "GRID", False))


def _claim_order(cid: str) -> tuple[int, str]:
    ids = list(CLAIMS)
    return (ids.index(cid), "") if cid in ids else (len(ids), cid)


def claims_tables(results: Sequence[TierResult], pipeline: Sequence[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the paper's claims, the toolkit's comparisons): one row per claim id × qualifier × stage.

    The verdicts at the paper's protocol and at the stricter reading sit side by side ("—" where a
    protocol has none); grid stages and code-checks are left out. ``pipeline`` names the stages whose
    verdicts are pipeline checks (marked †).
    """
    cells: dict[tuple[str, str, str], dict] = {}
    for r in results:
        if _is_grid(r):
            continue
        for v in r.verdicts:
            if v.verdict == "code-check":
                continue
            cid = base_id(v.claim)
            row = cells.setdefault((cid, qualifier(v.claim), r.tier), {"stage": stage_label(r)})
            cell = verdict_cell(v, r.tier in pipeline)
            row[v.protocol] = f"{row[v.protocol]}; {cell}" if v.protocol in row else cell
    paper_rows, toolkit_rows = [], []
    for (cid, qual, _), row in sorted(cells.items(), key=lambda kv: (_claim_order(kv[0][0]), kv[0][1], kv[0][2])):
        c = CLAIMS.get(cid)
        line = {"claim": f"{cid}[{qual}]" if qual else cid, "stage": row["stage"],
                "the paper says": c.short if c else "not in the claim registry",
                "paper's protocol": row.get("paper", "—"), "stricter reading": row.get("stricter", "—"),
                "paper's number": (c.paper_number_text() if c else "") or "—"}
        (toolkit_rows if c is not None and c.source == "toolkit" else paper_rows).append(line)
    return pd.DataFrame(paper_rows, columns=CLAIM_COLUMNS), pd.DataFrame(toolkit_rows, columns=CLAIM_COLUMNS)


def _totals(verdicts: Sequence[Verdict]) -> str:
    def line(vs):
        c = counts(vs)
        return ", ".join(f"{k} {c[k]}" for k in LABELS if k != "code-check")

    per = "; ".join(f"{'paper' if p == 'paper' else 'stricter'} {line([v for v in verdicts if v.protocol == p])}"
                    for p in PROTOCOLS)
    return f"Totals: {line(verdicts)}. By protocol: {per}."


def _claims_section(results: Sequence[TierResult], pipeline: Sequence[str]) -> list[str]:
    evidence = [v for r in results if not _is_grid(r) and r.tier not in pipeline
                for v in r.verdicts if v.verdict != "code-check"]
    n_pipeline = sum(v.verdict != "code-check" for r in results if r.tier in pipeline for v in r.verdicts)
    paper, toolkit = claims_tables(results, pipeline)
    L = ["## Claims", "",
         "One row per claim of the paper and place it was measured: the paper's statement in a few words, the "
         "verdict on the paper's own yardstick (its protocol, threshold and comparison) and, beside it, the "
         "verdict on our stricter reading, each as **label** estimate [95% interval], and the paper's own number "
         "where it gives one. The label comes from one rule (docs/theory.md §4): **agrees** — the interval lies "
         "inside the paper's range, or contains its value and excludes the alternative; **disagrees** — it "
         "excludes the paper's value or range; **uninformative** — neither, no interval, or fewer than 10 "
         "independent units behind it (then the estimate is shown and its interval withheld: [—]).", "",
         _totals(evidence)]
    if n_pipeline:
        L.append(f"{n_pipeline} verdicts from pipeline checks (quick scale or a random-weight model, marked "
                 f"{PIPELINE_MARK}) are shown but not counted: they test that the code runs, not the paper.")
    L.append("")
    if len(paper):
        L += [md_table(paper), ""]
    if len(toolkit):
        L += ["**Comparisons the paper does not make** (not claims of the paper; asked on its protocol):", "",
              md_table(toolkit), ""]
    for r in results:
        if _is_grid(r):
            g = counts([v for v in r.verdicts if v.verdict != "code-check"])
            L.append(f"Stage `{r.tier}` has one claim per grid cell (not in the totals above): "
                     + ", ".join(f"{k} {g[k]}" for k in LABELS if k != "code-check") + "; see its section.")
    return L + [""]


def verdict_line(v: Verdict, pipeline: bool = False) -> str:
    """The report's line for one verdict of a stage section (protocol, sentence, † for a pipeline check)."""
    return (f"- ({'paper' if v.protocol == 'paper' else 'stricter'}) {v.sentence()}"
            + (f" {PIPELINE_MARK}" if pipeline else ""))


def _stage_section(r: TierResult, pipeline: bool) -> list[str]:
    L = [f"## Stage `{r.tier}`", ""]
    facts = [f"Model: {model_name(r.config['model'])}" if r.config.get("model") else "",
             proxy_note(r), "pipeline check: its verdicts are not evidence" if pipeline else ""]
    if any(facts):
        L += ["; ".join(f for f in facts if f) + ".", ""]
    if r.info.get("summary"):
        L += [str(r.info["summary"]), ""]
    if _is_grid(r):
        L += [md_table(verdict_table(r.verdicts)), ""]
    else:
        said = [verdict_line(v, pipeline) for v in r.verdicts if v.verdict != "code-check"]
        L += said + ([""] if said else [])
    notes = [f"- {n}" for n in r.info.get("notes", [])]
    L += notes + ([""] if notes else [])
    for heading, name in (r.info.get("report_tables") or {}).items():
        frame = r.frames.get(name)
        if frame is not None and len(frame):
            L += [f"**{heading}**", "", md_table(frame), ""]
    return L


def paper_reference_table() -> pd.DataFrame:
    """The paper's Tables 1–2 (averages) as quoted in the registry, for the reference section."""
    rows = [{"method": METHOD_NAMES[m], "learning rate": f"{lr:.0e}".replace("e-0", "e-"),
             "domain accuracy": d, "general score": g} for (m, lr), (d, g) in PAPER_AVERAGES.items()]
    return pd.DataFrame(rows)


def render(results: Sequence[TierResult], title: str, preamble: Sequence[str] = (),
           figures: Sequence[str] = (), pipeline: Sequence[str] | None = None) -> str:
    """The whole report: the claims table first, then per-stage detail, code-checks and figures.

    ``pipeline``: names of stages whose verdicts are pipeline checks; by default, those run on a
    pipeline-check model (:func:`is_pipeline_check`).
    """
    pipeline = [r.tier for r in results if is_pipeline_check(r)] if pipeline is None else list(pipeline)
    L = [f"# {title}", "", *preamble, ""]
    L += _claims_section(results, pipeline)
    for r in results:
        L += _stage_section(r, r.tier in pipeline)
    checks = [v for r in results for v in r.verdicts if v.verdict == "code-check"]
    if checks:
        L += ["## Code checks (not evidence)", "",
              "Identities and bounds that hold for any model: they test this toolkit's implementation, "
              "not the paper's theorems, and are never counted above.", ""]
        L += [f"- [{v.tier}] {v.claim}: {v.quantity} = {fmt_num(v.estimate)}. {v.note}".rstrip() for v in checks]
        L.append("")
    L += ["## Reference: the paper's Tables 1–2", "",
          "MedCalc accuracy / general score averaged over Qwen2.5-3B, Qwen3-4B and Gemma3-4B, quoted from the "
          "paper — different models, metrics and scale; not comparable in units with anything measured above.", "",
          md_table(paper_reference_table()), ""]
    if figures:
        L += ["## Figures", ""] + [f"- `{f}`" for f in figures] + [""]
    return "\n".join(L)
