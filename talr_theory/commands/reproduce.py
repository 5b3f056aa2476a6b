"""`talr-theory reproduce`: run every stage on the embedded default and write all figures plus report.md."""

from __future__ import annotations

import argparse

from talr_theory.commands._common import add_json_flag, human_stream, write_json
from talr_theory.configs import COUNT, option_type


def register(subparsers) -> None:
    from talr_theory.tiers import STAGES

    p = subparsers.add_parser(
        "reproduce", help="run every stage, draw every figure and write report.md (the main job)",
        description="The exact tier, the synthetic lab, the TALR-vs-SFT map, the safe-LR advisor's validation, "
                    "token difficulty and the real-LLM tier on the embedded default model (SmolLM2-135M-Instruct). "
                    "Stages are stored under --out with a fingerprint of their config, so a killed run resumes "
                    "when rerun with the same --out and a stage computed with another config is never reused.")
    p.add_argument("--quick", action="store_true", help="small scale (about 3 minutes on 2 CPU cores)")
    p.add_argument("--out", default=None,
                   help="output folder (default: runs/reproduce[-quick]); figures go to OUT/figures")
    p.add_argument("--medcalc-csv", default=None, metavar="CSV",
                   help="MedCalc-Bench CSV: adds its token-difficulty scan (default: none)")
    p.add_argument("--model", default=None,
                   help="model spec for the real-LLM stages (default: each stage's own: smollm2-135m; with --quick "
                        "the llm stage uses tiny-random, a pipeline check)")
    p.add_argument("--seed", type=option_type(int, COUNT), default=0, help="seed of every stage; >= 0 (default: 0)")
    p.add_argument("--stages", default=",".join(STAGES),
                   help="comma-separated stages to run, in order (default: all, %(default)s)")
    p.add_argument("--update-figures", action=argparse.BooleanOptionalAction, default=None,
                   help="also copy the figures and report into the repository's figures/ folder (default: only "
                        "when --out is not given)")
    p.add_argument("--overwrite", action="store_true",
                   help="discard what --out holds when it was computed with another --quick/--model/--seed/"
                        "--medcalc-csv (without it such a folder is refused)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_json_flag(p)
    p.set_defaults(func=run)


# What decides the stages' results (which stages run, where, with what progress display does not).
FINGERPRINTED = ("quick", "model", "seed", "medcalc_csv")
REPRODUCE_RESULTS = ("stages", "results", "figures", "report.md", "summary.json")


def _out(args) -> str:
    return args.out or ("runs/reproduce-quick" if args.quick else "runs/reproduce")


def interrupted(args) -> str:
    from pathlib import Path

    stages = Path(_out(args)) / "stages"
    done = sorted(p.name for p in stages.iterdir() if (p / "fingerprint.json").is_file()) if stages.is_dir() else []
    return (f"finished stages are kept in {stages} ({', '.join(done) or 'none yet'}), and the finished units of "
            f"the stage that was running")


def run(args) -> int:
    from pathlib import Path

    from talr_theory.outputs import check_folder_target, claim_folder
    from talr_theory.reproduce import ReproduceConfig, reproduce
    from talr_theory.tiers import STAGES

    if args.medcalc_csv and not Path(args.medcalc_csv).is_file():
        raise FileNotFoundError(f"--medcalc-csv {args.medcalc_csv}: file not found")
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"--stages: unknown stage(s) {', '.join(unknown)}; expected some of {', '.join(STAGES)}")
    out = _out(args)
    check_folder_target(out, "--out")
    update = args.update_figures if args.update_figures is not None else args.out is None
    cfg = ReproduceConfig(quick=args.quick, out=out, medcalc_csv=args.medcalc_csv, model=args.model, seed=args.seed,
                          stages=stages, update_figures=update, progress=not args.no_progress)
    record = {k: getattr(cfg, k) for k in FINGERPRINTED}
    with claim_folder(out, "reproduce", record, overwrite=args.overwrite, results=REPRODUCE_RESULTS):
        summary = reproduce(cfg)
    stream = human_stream(args.json)
    figures = [f for f in summary["figures"] if not f.startswith("(")]
    print(f"reproduce: done in {summary['total_s']:.0f} s -> {Path(out) / 'report.md'} "
          f"({len(figures)} figures in {Path(out) / 'figures'})", file=stream)
    for f in summary["figures"]:
        if f.startswith("("):
            print(f"  {f}", file=stream)
    for v in summary["verdicts"]:
        if v["verdict"] != "code-check":
            print(f"  {v['verdict']:>13}  [{v['tier']}] {v['claim']}", file=stream)
    write_json({k: summary[k] for k in ("config", "version", "timings_s", "total_s", "resumed_stages",
                                        "verdicts", "figures")}, args.json)
    return 0
