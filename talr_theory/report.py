"""The report of ``talr-theory reproduce``, rendered from ``TierResult``s alone.

Every sentence that compares a measurement with the paper comes from a Verdict (``talr_theory.verdicts``),
and every interval is printed by the one formatter there. A tier contributes:

- its verdicts (the claims table; code-checks are listed apart and never counted as evidence);
- ``info["summary"]``: one plain sentence of what the tier measured (setup, scale, units);
- ``info["report_tables"]``: ``{title: frame_name}`` of frames to print as tables;
- ``info["notes"]``: plain facts that do not compare with the paper (e.g. how many grid points were
  dropped for lack of a measured bracket).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from talr_theory.tiers.protocol import TierResult
from talr_theory.verdicts import LABELS, Verdict, counts, fmt_num, fmt_value, format_ci

# The paper's Tables 1-2 (MedCalc; domain / general; mean over Qwen2.5-3B, Qwen3-4B, Gemma3-4B), quoted
# from docs/theory.md §1 as reference only — different models, data scale and metrics than ours.
PAPER_TABLE = [
    ("sft", 1e-6, 0.534, 0.692), ("l2", 1e-6, 0.506, 0.697), ("lora", 1e-6, 0.181, 0.490),
    ("wise-ft", 1e-6, 0.198, 0.727), ("flow", 1e-6, 0.469, 0.692), ("talr", 1e-6, 0.501, 0.717),
    ("sft", 5e-6, 0.558, 0.381), ("l2", 5e-6, 0.555, 0.395), ("lora", 5e-6, 0.266, 0.483),
    ("wise-ft", 5e-6, 0.401, 0.644), ("flow", 5e-6, 0.553, 0.450), ("talr", 5e-6, 0.542, 0.502),
]


def md_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-markdown table."""
    def fmt(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, f".{digits}g")
        return str(v)

    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def verdict_table(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    rows = [{"tier": v.tier, "claim": v.claim, "quantity": v.quantity,
             "estimate [95% CI]": format_ci(v.estimate, v.ci_lo, v.ci_hi),
             "paper": fmt_value(v.paper_value), "alternative": fmt_value(v.alternative_value),
             "verdict": f"**{v.verdict}**" + (" (estimate outside its CI)" if v.estimate_outside_ci else "")}
            for v in verdicts if v.verdict != "code-check"]
    return pd.DataFrame(rows, columns=["tier", "claim", "quantity", "estimate [95% CI]", "paper", "alternative",
                                       "verdict"])


# A stage with more claims than this (e.g. the TALR-vs-SFT map, one claim per cell) lists them in its own
# section; the claims table then carries one line per label count for it, so the table stays readable.
MAX_INLINE_CLAIMS = 24


def _is_grid(r: TierResult) -> bool:
    return sum(v.verdict != "code-check" for v in r.verdicts) > MAX_INLINE_CLAIMS


def render(results: Sequence[TierResult], title: str, preamble: Sequence[str] = (),
           figures: Sequence[str] = ()) -> str:
    """The whole report: claims first (one row each), then per-tier detail, code-checks and figures."""
    allv = [v for r in results for v in r.verdicts]
    evidence = [v for r in results if not _is_grid(r) for v in r.verdicts if v.verdict != "code-check"]
    c = counts(evidence)
    L = [f"# {title}", "", *preamble, ""]
    L += ["## Claims", "",
          "Each row is one claim of the paper, measured here, with a 95% interval and one of four words, "
          "derived by one rule (docs/theory.md §4): **agrees** — the interval contains the paper's value and "
          "excludes the alternative; **disagrees** — it excludes the paper's value; **uninformative** — it "
          "contains both, or there is no interval. For a range claim [a, b]: agrees when the interval lies "
          "inside, disagrees when it misses the range entirely.", "",
          "Totals: " + ", ".join(f"{k} {c[k]}" for k in LABELS if k != "code-check") + ".", ""]
    if evidence:
        L += [md_table(verdict_table(evidence)), ""]
    for r in results:
        if _is_grid(r):
            g = counts([v for v in r.verdicts if v.verdict != "code-check"])
            L.append(f"Stage `{r.tier}` has one claim per grid cell (not in the totals above): "
                     + ", ".join(f"{k} {g[k]}" for k in LABELS if k != "code-check") + "; see its section.")
    L.append("")
    for r in results:
        L += [f"## Stage `{r.tier}`", ""]
        if r.info.get("summary"):
            L += [r.info["summary"], ""]
        if _is_grid(r):
            L += [md_table(verdict_table(r.verdicts)), ""]
        else:
            for v in r.verdicts:
                if v.verdict != "code-check":
                    L.append(f"- {v.sentence()}")
            if any(v.verdict != "code-check" for v in r.verdicts):
                L.append("")
        for note in r.info.get("notes", []):
            L.append(f"- {note}")
        if r.info.get("notes"):
            L.append("")
        for heading, name in (r.info.get("report_tables") or {}).items():
            frame = r.frames.get(name)
            if frame is not None and len(frame):
                L += [f"**{heading}**", "", md_table(frame), ""]
    checks = [v for v in allv if v.verdict == "code-check"]
    if checks:
        L += ["## Code checks (not evidence)", "",
              "Identities and bounds that hold for any model: they test this toolkit's implementation, "
              "not the paper's theorems, and are never counted above.", ""]
        L += [f"- [{v.tier}] {v.claim}: {v.quantity} = {fmt_num(v.estimate)}. {v.note}".rstrip() for v in checks]
        L.append("")
    L += ["## Reference: the paper's Tables 1–2", "",
          "MedCalc accuracy / general score averaged over Qwen2.5-3B, Qwen3-4B and Gemma3-4B, quoted from the "
          "paper — different models, metrics and scale; not comparable in units with anything measured above.", "",
          md_table(pd.DataFrame(PAPER_TABLE, columns=["method", "lr", "paper_domain", "paper_general"])), ""]
    if figures:
        L += ["## Figures", ""] + [f"- `{f}`" for f in figures] + [""]
    return "\n".join(L)
