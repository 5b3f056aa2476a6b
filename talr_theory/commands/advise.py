"""`talr-theory advise`: the largest learning rate expected to keep ΔL(P1) ≤ ε at a requested domain gain."""

from __future__ import annotations

from talr_theory.commands._common import add_json_flag, human_stream, write_json


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _epsilon(text: str) -> float:
    """--epsilon: a finite number > 0 (argparse turns the ValueError into exit status 2)."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"epsilon must be a number > 0 (nats), got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"epsilon must be > 0 (a tolerance on ΔL(P1) in nats), got {text}")
    return value


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "advise", help="recommend a safe learning rate from a short pilot (Theorems 3.1/3.2)",
        description="Estimate s (hard tokens per example), run short pilots at a few LRs, fit ΔL(P1) vs LR "
                    "at the requested domain gain and recommend the largest LR with ΔL(P1) ≤ ε, with a "
                    "bootstrap band. ΔL(P1) = KL(base || tuned) on base-model samples, nats per sample.")
    p.add_argument("--model", default=None,
                   help="model spec (default: smollm2-135m; with --validate --on llm: the llm tier's model, "
                        "tiny-random with --quick)")
    p.add_argument("--data", default="medcalc-synth", help="SFT data spec (default: %(default)s)")
    p.add_argument("--epsilon", type=_epsilon, default=None,
                   help="tolerance on ΔL(P1), nats per sample, > 0 (required unless --validate)")
    p.add_argument("--gain", type=float, default=None,
                   help="requested domain gain Δ* in nats per example (default: half the smallest gain the pilots reach)")
    p.add_argument("--format", default="label", choices=("label", "cot"), help="response format (default: %(default)s)")
    p.add_argument("--method", default="sft", choices=("sft", "talr"), help="training method (default: %(default)s)")
    p.add_argument("--pilot-lrs", type=_floats, default=(1e-5, 3e-5, 1e-4), help="comma-separated pilot LRs")
    p.add_argument("--pilot-steps", type=int, default=4, help="AdamW steps per pilot run (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--n-train", type=int, default=16)
    p.add_argument("--n-eval", type=int, default=8)
    p.add_argument("--n-samples", type=int, default=8, help="base-model samples for the KL")
    p.add_argument("--sample-len", type=int, default=32)
    p.add_argument("--max-length", type=_positive_int, default=None,
                   help="token limit per example (default: the model's context length); an example whose "
                        "prompt fills it is an error, never silently dropped")
    p.add_argument("--max-extra-pilots", type=int, default=3,
                   help="extra pilots beyond the pilot range (x3 to x10, towards the fit) when ε is not bracketed "
                        "(default: %(default)s)")
    p.add_argument("--pilot-seeds", type=_positive_int, default=1,
                   help="replicate runs (seeds seed..seed+N-1) per pilot LR; ε is bracketed by the largest ΔL(P1) "
                        "over them, which covers the run-to-run spread the single-seed pilot misses "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--validate", action="store_true",
                   help="instead of advising, validate the advisor on held-out runs in the synthetic lab "
                        "(exact ΔL(P1)) and print a JSON summary: n_cases, n_certified, frac_within_epsilon, "
                        "median ratio to the true largest safe LR")
    p.add_argument("--on", default="synthetic", choices=("synthetic", "llm"),
                   help="with --validate: the synthetic lab (default), or the real-model tier's held-out SFT runs "
                        "(ΔL(P1) = exact KL to the base model; SmolLM2-135M by default, a few minutes)")
    p.add_argument("--quick", action="store_true",
                   help="with --validate: the smaller case grid (synthetic: 20 cases; llm: tiny-random, a pipeline "
                        "check)")
    p.add_argument("--out", default=None,
                   help="with --validate: folder where every run is stored, so a killed validation resumes when "
                        "rerun with the same --out (default: runs/advise-validate-ON[-quick])")
    add_json_flag(p)
    p.set_defaults(func=run)


def _validate_out(args) -> str:
    return args.out or f"runs/advise-validate-{args.on}" + ("-quick" if args.quick else "")


def _validate_llm(args) -> tuple[dict, list[str], float]:
    import time

    from talr_theory.tiers import llm

    cfg = llm.Config.quick(seed=args.seed) if args.quick else llm.Config(seed=args.seed)
    if args.model is not None:
        cfg.model = args.model
    t0 = time.perf_counter()
    result = llm.run_advisor(cfg, out=_validate_out(args), progress=not args.json)
    extra = {"on": "llm", "model": cfg.model, "data": cfg.data, "timings": result.info["timings"],
             "cases": result.frames["advisor_cases"].to_dict("records")}
    return {**result.info["advisor_validation"], **extra}, result.info["notes"], time.perf_counter() - t0


def _validate(args) -> int:
    if args.on == "llm":
        summary, notes, elapsed = _validate_llm(args)
    else:
        from talr_theory.tiers import advisor as stage

        cfg = stage.Config.quick(seed=args.seed) if args.quick else stage.Config(seed=args.seed)
        result = stage.run(cfg, out=_validate_out(args), progress=not args.json)
        summary = {**result.info["validation"], "on": "synthetic"}
        notes, elapsed = result.info["notes"], result.info["elapsed_s"]
    summary = {**summary, "scale": "quick" if args.quick else "default", "elapsed_s": elapsed,
               "out": _validate_out(args), "notes": notes}
    out = human_stream(args.json)
    for line in notes:
        print(line, file=out)
    write_json(summary, args.json or "-")  # --validate always prints its JSON summary
    return 0


def run(args) -> int:
    import sys

    from talr_theory.lab.advisor import advise_model

    if args.validate:
        return _validate(args)
    if args.epsilon is None:
        print("talr-theory advise: error: --epsilon is required (a tolerance > 0 on ΔL(P1), nats per sample)",
              file=sys.stderr)
        return 2
    advice = advise_model(args.model or "smollm2-135m", args.data, args.epsilon, args.gain, format=args.format,
                          method=args.method, pilot_lrs=args.pilot_lrs, pilot_steps=args.pilot_steps,
                          batch_size=args.batch_size, n_train=args.n_train, n_eval=args.n_eval,
                          n_samples=args.n_samples, sample_len=args.sample_len, max_length=args.max_length,
                          max_extra=args.max_extra_pilots, seed=args.seed, pilot_seeds=args.pilot_seeds)
    out = human_stream(args.json)
    lr = advice["recommended_lr"]
    if lr is None:
        print(f"advice ({advice['status']}): no learning rate certified for ΔL(P1) ≤ {args.epsilon:g} at domain "
              f"gain {advice['gain']:.3g} nats/example: {advice['reason']}", file=out)
    else:
        print(f"advice ({advice['status']}): learning rate {lr:.3g} for ΔL(P1) ≤ {args.epsilon:g} "
              f"at domain gain {advice['gain']:.3g} nats/example (inside the measured pilot range)", file=out)
    print(f"  {advice['explanation']}", file=out)
    if advice.get("theorem_3_2_note"):
        print(f"  {advice['theorem_3_2_note']}", file=out)
    write_json(advice, args.json)
    return 0
