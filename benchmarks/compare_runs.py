"""Do two ``talr-theory reproduce`` runs agree within their intervals, and are their tables identical?

    python benchmarks/compare_runs.py A B            # e.g. --quick at seed 0 (A) and at seed 1 (B)
    python benchmarks/compare_runs.py A B --tables   # also compare every stored table (same seed twice)

Measured (quick): seed 0 vs seed 1, 51 verdicts with an interval in both, all 51 overlap with the
expanded percentile intervals (``stats.expanded_alpha``); with the plain percentile intervals of the
previous round 50 did (the exception, exact eaft_vs_sft[P1=exact], now [0.0224, 0.0272] vs
[0.0271, 0.0316]: two draws of 10 instances ~2.3 standard errors apart, which a 95% interval may
still separate about once in 200 claims). Seed 0 twice: 38 stage tables and every verdict identical
(only the wall-clock column ``seconds`` of llm/format_lines differs).

Lists every verdict (tier, protocol, claim) that has a finite interval in both runs' ``summary.json``
and whether the two intervals overlap (inclusive ends). With ``--tables`` it also compares each
stage's Parquet tables (``stages/<tier>/*.parquet``) as DataFrames and the verdict records.
Exit status 1 when an interval pair does not overlap or (with ``--tables``) a table differs.
This checks the pipeline's reproducibility, not any finding.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def verdicts(run: Path) -> dict[tuple[str, str, str], dict]:
    data = json.loads((run / "summary.json").read_text())
    out: dict[tuple[str, str, str], dict] = {}
    for v in data["verdicts"]:
        key = (v["tier"], v.get("protocol") or "paper", v["claim"])
        if key in out:
            raise SystemExit(f"{run}: two verdicts share {key}")
        out[key] = v
    return out


def overlap_rows(a: Path, b: Path) -> tuple[list[dict], dict]:
    va, vb = verdicts(a), verdicts(b)
    rows = []
    for key in sorted(set(va) & set(vb)):
        x, y = va[key], vb[key]
        if not all(_finite(v) for v in (x["ci_lo"], x["ci_hi"], y["ci_lo"], y["ci_hi"])):
            continue
        rows.append({"tier": key[0], "protocol": key[1], "claim": key[2],
                     "a": f"[{x['ci_lo']:.4g}, {x['ci_hi']:.4g}]", "b": f"[{y['ci_lo']:.4g}, {y['ci_hi']:.4g}]",
                     "n_units": f"{x.get('n_units')}/{y.get('n_units')}",
                     "overlap": x["ci_lo"] <= y["ci_hi"] and y["ci_lo"] <= x["ci_hi"]})
    withheld = sum(1 for k in set(va) & set(vb)
                   if va[k]["verdict"] != "code-check"
                   and not all(_finite(v) for v in (va[k]["ci_lo"], va[k]["ci_hi"], vb[k]["ci_lo"], vb[k]["ci_hi"])))
    return rows, {"common": len(set(va) & set(vb)), "only_a": len(set(va) - set(vb)),
                  "only_b": len(set(vb) - set(va)), "without_interval": withheld}


def table_differences(a: Path, b: Path, ignore: tuple[str, ...] = ()) -> tuple[list[str], int]:
    """Stage tables that differ (exact comparison), leaving out the columns named in ``ignore``
    (wall-clock times, which no seed fixes), and verdict records that differ."""
    diffs = []
    names = sorted({p.relative_to(a) for p in (a / "stages").glob("*/*.parquet")}
                   | {p.relative_to(b) for p in (b / "stages").glob("*/*.parquet")})
    for rel in names:
        if not (a / rel).exists() or not (b / rel).exists():
            diffs.append(f"{rel}: in one run only")
            continue
        try:
            fa, fb = (pd.read_parquet(x / rel) for x in (a, b))
            drop = [c for c in ignore if c in fa.columns or c in fb.columns]
            pd.testing.assert_frame_equal(fa.drop(columns=drop, errors="ignore"), fb.drop(columns=drop, errors="ignore"),
                                          check_exact=True)
        except AssertionError as err:
            diffs.append(f"{rel}: {str(err).splitlines()[0]}")
    keep = ("claim", "tier", "protocol", "estimate", "ci_lo", "ci_hi", "verdict", "note", "n_units", "n_seeds")
    va = {k: {f: v.get(f) for f in keep} for k, v in verdicts(a).items()}
    vb = {k: {f: v.get(f) for f in keep} for k, v in verdicts(b).items()}
    diffs += [f"verdict {k}: differs" for k in sorted(set(va) | set(vb)) if va.get(k) != vb.get(k)]
    return diffs, len(names)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--tables", action="store_true", help="also require identical tables and verdict records")
    p.add_argument("--ignore-columns", default="seconds",
                   help="comma-separated table columns left out of --tables (default: seconds, a wall-clock time)")
    args = p.parse_args(argv)
    rows, counts = overlap_rows(args.a, args.b)
    bad = [r for r in rows if not r["overlap"]]
    if rows:
        print(pd.DataFrame(rows).to_string(index=False))
    print(f"\n{len(rows)} verdicts with an interval in both runs; {len(rows) - len(bad)} overlap, {len(bad)} do not. "
          f"({counts['common']} verdicts in both runs, {counts['without_interval']} non-code-check ones without an "
          f"interval in one or both; {counts['only_a']} only in A, {counts['only_b']} only in B.)")
    status = 1 if bad else 0
    if args.tables:
        ignore = tuple(c.strip() for c in args.ignore_columns.split(",") if c.strip())
        diffs, n = table_differences(args.a, args.b, ignore)
        print(f"{n} stage tables compared (columns left out: {', '.join(ignore) or 'none'}) and the verdict records; "
              f"{len(diffs)} differences.")
        for d in diffs:
            print(f"  {d}")
        status |= 1 if diffs else 0
    return status


if __name__ == "__main__":
    sys.exit(main())
