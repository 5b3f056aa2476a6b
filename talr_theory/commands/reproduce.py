"""`talr-theory reproduce`: run every tier on the embedded default and write all figures plus report.md."""

from __future__ import annotations

import argparse

from talr_theory.commands._common import add_json_flag, human_stream, write_json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reproduce", help="run all tiers, draw every figure and write report.md (the main job)",
        description="Exact tier, synthetic lab, advisor validation, token difficulty, real-LLM tier and the "
                    "trade-off table on the embedded default model (SmolLM2-135M-Instruct + medcalc-synth). "
                    "Results are kept under --out so a killed run resumes when rerun with the same --out.")
    p.add_argument("--quick", action="store_true", help="small scale (about 3 minutes on 2 CPU cores)")
    p.add_argument("--out", default=None,
                   help="output folder (default: runs/reproduce[-quick]); figures go to OUT/figures")
    p.add_argument("--medcalc-csv", default=None, help="MedCalc-Bench CSV: adds its token-difficulty scan")
    p.add_argument("--model", default="smollm2-135m", help="model spec for the real-LLM tier (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--update-figures", action=argparse.BooleanOptionalAction, default=None,
                   help="also copy the figures into the repository's figures/ folder (default: only when "
                        "--out is not given)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from talr_theory.lab.reproduce import ReproduceConfig, reproduce

    if args.medcalc_csv and not Path(args.medcalc_csv).is_file():
        raise FileNotFoundError(f"--medcalc-csv {args.medcalc_csv}: file not found")
    out = args.out or ("runs/reproduce-quick" if args.quick else "runs/reproduce")
    update = args.update_figures if args.update_figures is not None else args.out is None
    cfg = ReproduceConfig(quick=args.quick, out=out, medcalc_csv=args.medcalc_csv, model=args.model, seed=args.seed,
                          update_figures=update, progress=not args.no_progress)
    summary = reproduce(cfg)
    stream = human_stream(args.json)
    print(f"reproduce: done in {summary['total_s']:.0f} s -> {Path(out) / 'report.md'} "
          f"({len([f for f in summary['figures'] if not f.startswith('(')])} figures in {Path(out) / 'figures'})",
          file=stream)
    for tier in ("synthetic", "llm"):
        for note in summary[tier].get("notes", [])[:4]:
            print(f"  {note}", file=stream)
    write_json({k: summary[k] for k in ("config", "timings_s", "total_s", "figures")}
               | {t: {b: summary[t].get(b) for b in ("theorem_3_1", "theorem_3_2", "theorem_3_2_talr", "single_step")}
                  for t in ("exact", "synthetic", "llm")}, args.json)
    return 0
