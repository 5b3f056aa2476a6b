"""`talr-theory bounds`: check the paper's claims on one tier (stage) and print the verdicts.

--tier exact      closed-form token models: exact ΔL(P1), tilt bounds, envelope, λ_max scaling
--tier synthetic  a tiny transformer pretrained on a known Markov source (exact ΔL(P1))
--tier llm        a real pretrained causal LM (default: the embedded SmolLM2-135M-Instruct)
and every other stage of ``reproduce`` (``talr_theory.tiers.STAGES``).

Each tier is ``talr_theory.tiers.<tier>.run``. The JSON has a top-level ``verdicts`` list: one record
per claim and protocol (claim, tier, protocol — ``paper`` or ``stricter`` —, quantity, estimate, ci_lo,
ci_hi, paper_value, alternative_value, verdict, n_units, n_seeds), labelled by the rule in
``talr_theory.verdicts`` with the values of the claim registry (``talr_theory.claims``), plus the tier's
``info`` (setup, fitted constants) and its resolved ``config``. ``--out DIR`` keeps the tidy tables and
makes the run resumable.
"""

from __future__ import annotations

import dataclasses

from talr_theory.commands._common import add_json_flag, human_stream, write_json
from talr_theory.tiers import STAGES


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bounds", help="check Theorems 3.1/3.2 on a tier and print verdicts",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--tier", choices=STAGES, default="exact", help="which tier to run (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="small scale (seconds to a minute; intervals are wide)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--model", default=None, help="model spec for --tier llm (default: the tier's, smollm2-135m)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="save the tidy tables (Parquet) and result.json to DIR; also the crash-safe "
                        "per-unit results folder, so a killed run resumes")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from talr_theory import tiers
    from talr_theory.verdicts import fmt_value, format_ci

    mod = tiers.module(args.tier)
    cfg = mod.Config.quick(seed=args.seed) if args.quick else mod.Config(seed=args.seed)
    if args.model:
        if not any(f.name == "model" for f in dataclasses.fields(cfg)):
            raise ValueError(f"--model does not apply to --tier {args.tier}: that stage has no model "
                             "(it applies to stages that load one, e.g. --tier llm)")
        cfg = dataclasses.replace(cfg, model=args.model)
    result = mod.run(cfg, args.out, progress=not args.no_progress)
    if args.out:
        result.save(args.out)
    stream = human_stream(args.json)
    print(f"talr-theory bounds — {args.tier} tier ({'quick' if args.quick else 'default'} scale)", file=stream)
    if result.info.get("summary"):
        print(f"  {result.info['summary']}", file=stream)
    for v in result.verdicts:
        if v.verdict == "code-check":
            print(f"  [code-check] {v.claim}: {v.quantity} = {fmt_value(v.estimate)}", file=stream)
        else:
            print(f"  {v.verdict:>13}  {v.claim} ({v.protocol}): {v.quantity} = "
                  f"{format_ci(v.estimate, v.ci_lo, v.ci_hi)} (paper {fmt_value(v.paper_value)}, "
                  f"alternative {fmt_value(v.alternative_value)})", file=stream)
    payload = result.to_json()
    # The tier's scalar facts also appear at the top level (e.g. ``accuracy`` of the llm tier).
    write_json({**payload["info"], **payload}, args.json)
    return 0
