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
makes the run resumable; DIR holds one experiment (its ``experiment.json`` records --tier, --quick,
--seed and --model), so a rerun with other options stops naming them instead of mixing results.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from talr_theory.commands._common import add_json_flag, human_stream, write_json
from talr_theory.configs import COUNT, option_type
from talr_theory.tiers import STAGES

# What decides the results in --out (the progress display and the JSON target do not).
FINGERPRINTED = ("tier", "quick", "seed", "model")
PROTOCOL_WORDS = {"paper": "paper's protocol", "stricter": "stricter reading"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bounds", help="check Theorems 3.1/3.2 on a tier and print verdicts",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--tier", choices=STAGES, default="exact", help="which tier to run (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="small scale (seconds to a minute; intervals are wide)")
    parser.add_argument("--seed", type=option_type(int, COUNT), default=0, help="random seed; >= 0 (default: 0)")
    parser.add_argument("--model", default=None,
                        help="model spec for the stages that load one, e.g. --tier llm (default: the stage's own, "
                        "smollm2-135m)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="save the tidy tables (Parquet) and result.json to DIR; also the crash-safe "
                        "per-unit results folder, so a killed run resumes (default: none, nothing is saved)")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard what --out holds when it was computed with another --tier/--quick/--seed/"
                        "--model (without it such a folder is refused)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def yardstick(verdict) -> str:
    """The paper's value and the alternative in words: 'the paper: in [0, 1]; alternative: 1'."""
    from talr_theory.verdicts import fmt_value

    paper = verdict.paper_value
    said = f"in {fmt_value(paper)}" if isinstance(paper, (list, tuple)) else fmt_value(paper)
    alt = verdict.alternative_value
    return f"the paper: {said}; " + ("no alternative value" if alt is None else f"alternative: {fmt_value(alt)}")


def verdict_line(verdict) -> str:
    """One verdict as a person reads it (no Python reprs)."""
    from talr_theory.verdicts import fmt_value

    if verdict.verdict == "code-check":
        return f"  [code-check] {verdict.claim}: {verdict.quantity} = {fmt_value(verdict.estimate)}"
    protocol = PROTOCOL_WORDS.get(verdict.protocol, verdict.protocol)
    return (f"  {verdict.verdict:>13}  {verdict.claim} ({protocol}): {verdict.quantity} = "
            f"{verdict.interval_text()} ({yardstick(verdict)})")


def _stage_config(args):
    from talr_theory import tiers

    mod = tiers.module(args.tier)
    cfg = mod.Config.quick(seed=args.seed) if args.quick else mod.Config(seed=args.seed)
    if args.model:
        if not any(f.name == "model" for f in dataclasses.fields(cfg)):
            raise ValueError(f"--model does not apply to --tier {args.tier}: that stage has no model "
                             "(it applies to stages that load one, e.g. --tier llm)")
        cfg = dataclasses.replace(cfg, model=args.model)
    return mod, cfg


def _results_in(out: str) -> tuple[str, ...]:
    """What --overwrite discards in a bounds folder: the per-unit results, result.json and the tables."""
    return ("results", "result.json", *(p.name for p in Path(out).glob("*.parquet")))


def run(args) -> int:
    import contextlib

    from talr_theory.outputs import claim_folder

    mod, cfg = _stage_config(args)
    record = {k: getattr(args, k) for k in FINGERPRINTED}
    claim = (claim_folder(args.out, "bounds", record, overwrite=args.overwrite, results=_results_in(args.out))
             if args.out else contextlib.nullcontext())
    with claim:  # locked and checked before the stage runs, so a conflict costs no work
        result = mod.run(cfg, args.out, progress=not args.no_progress)
        if args.out:
            result.save(args.out)
    stream = human_stream(args.json)
    print(f"talr-theory bounds — {args.tier} tier ({'quick' if args.quick else 'default'} scale)", file=stream)
    if result.info.get("summary"):
        print(f"  {result.info['summary']}", file=stream)
    for v in result.verdicts:
        print(verdict_line(v), file=stream)
    payload = result.to_json()
    # The tier's scalar facts also appear at the top level (e.g. ``accuracy`` of the llm tier).
    write_json({**payload["info"], **payload}, args.json)
    return 0
