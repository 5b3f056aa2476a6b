"""`talr-theory advise`: the largest learning rate expected to keep ΔL(P1) ≤ ε at a requested domain gain.

The advice flags are the fields of ``advisor.config.AdviseConfig`` (help and checks come from there);
``--validate``, ``--on``, ``--quick`` and ``--out`` select the advisor's validation instead.
"""

from __future__ import annotations

from talr_theory.advisor.config import AdviseConfig
from talr_theory.commands._common import add_json_flag, human_stream, write_json
from talr_theory.configs import add_dataclass_args, dataclass_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "advise", help="recommend a safe learning rate from a short pilot (Theorems 3.1/3.2)",
        description="Estimate s (hard tokens per example), run short pilots at a few LRs, read ΔL(P1) at the "
                    "requested domain gain and recommend the largest LR certified to keep ΔL(P1) ≤ ε: the chord "
                    "between the pilot LRs that bracket ε, never outside the measured range. ΔL(P1) = "
                    "KL(base || tuned) on base-model samples, nats per sample.")
    add_dataclass_args(p, AdviseConfig)
    p.add_argument("--validate", action="store_true",
                   help="instead of advising, validate the advisor on held-out runs and print a JSON summary: "
                        "n_cases, n_certified, frac_within_epsilon, median ratio to the true largest safe LR (default: off)")
    p.add_argument("--on", default="synthetic", choices=("synthetic", "llm"),
                   help="with --validate: the synthetic lab (exact ΔL(P1)), or the real-model tier's held-out SFT "
                        "runs (ΔL(P1) = exact KL to the base model; SmolLM2-135M unless --model, a few minutes) "
                        "(default: synthetic)")
    p.add_argument("--quick", action="store_true",
                   help="with --validate: the smaller case grid (synthetic: 20 cases; llm: tiny-random, a pipeline "
                        "check) (default: off)")
    p.add_argument("--out", default=None,
                   help="with --validate: folder where every run is stored, so a killed validation resumes when "
                        "rerun with the same --out; the folder holds one validation (its experiment.json records "
                        "--on, --quick, --seed and, with --on llm, --model) (default: runs/advise-validate-ON, "
                        "with -quick for --quick)")
    p.add_argument("--overwrite", action="store_true",
                   help="with --validate: discard what --out holds when it was computed with other options "
                        "(without it such a folder is refused)")
    add_json_flag(p)
    p.set_defaults(func=run)


def _validate_out(args) -> str:
    return args.out or f"runs/advise-validate-{args.on}" + ("-quick" if args.quick else "")


def _validate_llm(args, cfg: AdviseConfig) -> tuple[dict, list[str], float]:
    import time

    from talr_theory.tiers import llm  # the real-model tier's advisor path: llm.Config, llm.run_advisor

    tier_cfg = llm.Config.quick(seed=cfg.seed) if args.quick else llm.Config(seed=cfg.seed)
    if cfg.model is not None:
        tier_cfg.model = cfg.model
    t0 = time.perf_counter()
    result = llm.run_advisor(tier_cfg, out=_validate_out(args), progress=not args.json)
    extra = {"on": "llm", "model": tier_cfg.model, "data": tier_cfg.data, "timings": result.info["timings"],
             "cases": result.frames["advisor_cases"].to_dict("records")}
    return {**result.info["advisor_validation"], **extra}, result.info["notes"], time.perf_counter() - t0


def experiment_config(args, cfg: AdviseConfig) -> dict:
    """What decides a validation's results: the record of its --out folder (flag names as keys)."""
    record = {"on": args.on, "quick": bool(args.quick), "seed": cfg.seed}
    if args.on == "llm":  # the synthetic lab has no model
        record["model"] = cfg.model
    return record


def _validate_synthetic(args, cfg: AdviseConfig) -> tuple[dict, list[str], float]:
    from talr_theory.tiers import advisor as stage

    stage_cfg = stage.Config.quick(seed=cfg.seed) if args.quick else stage.Config(seed=cfg.seed)
    result = stage.run(stage_cfg, out=_validate_out(args), progress=not args.json)
    summary = {**result.info["validation"], "on": "synthetic"}
    return summary, result.info["notes"], result.info["elapsed_s"]


def _validate(args, cfg: AdviseConfig) -> int:
    from talr_theory.outputs import claim_folder

    # locked and checked before any case runs, so a conflict costs no work
    with claim_folder(_validate_out(args), "advise", experiment_config(args, cfg), overwrite=args.overwrite,
                      results=("results",)):
        validate = _validate_llm if args.on == "llm" else _validate_synthetic
        summary, notes, elapsed = validate(args, cfg)
    summary = {**summary, "scale": "quick" if args.quick else "default", "elapsed_s": elapsed,
               "out": _validate_out(args), "notes": notes}
    out = human_stream(args.json)
    for line in notes:
        print(line, file=out)
    write_json(summary, args.json or "-")  # --validate always prints its JSON summary
    return 0


def run(args) -> int:
    import sys

    cfg = dataclass_from_args(AdviseConfig, args)
    if not args.validate:
        given = [flag for flag, on in (("--out", args.out), ("--overwrite", args.overwrite), ("--quick", args.quick))
                 if on]
        if given:
            raise ValueError(f"{', '.join(given)} apply only with --validate (advice itself stores nothing)")
    if args.validate:
        return _validate(args, cfg)
    if cfg.epsilon is None:
        print("talr-theory advise: error: --epsilon is required (a tolerance > 0 on ΔL(P1), nats per sample)",
              file=sys.stderr)
        return 2
    from talr_theory.advisor.model import advise_model

    advice = advise_model(cfg, progress=True)  # bars go to stderr, never into the JSON
    out = human_stream(args.json)
    lr = advice["recommended_lr"]
    if lr is None:
        print(f"advice ({advice['status']}): no learning rate certified for ΔL(P1) ≤ {cfg.epsilon:g} at domain "
              f"gain {advice['gain']:.3g} nats/example: {advice['reason']}", file=out)
    else:
        print(f"advice ({advice['status']}): learning rate {lr:.3g} for ΔL(P1) ≤ {cfg.epsilon:g} "
              f"at domain gain {advice['gain']:.3g} nats/example (inside the measured pilot range)", file=out)
    print(f"  {advice['explanation']}", file=out)
    if advice.get("theorem_3_2_note"):
        print(f"  {advice['theorem_3_2_note']}", file=out)
    write_json(advice, args.json)
    return 0
