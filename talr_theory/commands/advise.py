"""`talr-theory advise`: the largest learning rate expected to keep ΔL(P1) ≤ ε at a requested domain gain."""

from __future__ import annotations

from talr_theory.commands._common import add_json_flag, human_stream, write_json


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "advise", help="recommend a safe learning rate from a short pilot (Theorems 3.1/3.2)",
        description="Estimate s (hard tokens per example), run short pilots at a few LRs, fit ΔL(P1) vs LR "
                    "at the requested domain gain and recommend the largest LR with ΔL(P1) ≤ ε, with a "
                    "bootstrap band. ΔL(P1) = KL(base || tuned) on base-model samples, nats per sample.")
    p.add_argument("--model", default="smollm2-135m", help="model spec (default: %(default)s)")
    p.add_argument("--data", default="medcalc-synth", help="SFT data spec (default: %(default)s)")
    p.add_argument("--epsilon", type=float, required=True, help="tolerance on ΔL(P1), nats per sample")
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
    p.add_argument("--seed", type=int, default=0)
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from talr_theory.lab.advisor import advise_model

    advice = advise_model(args.model, args.data, args.epsilon, args.gain, format=args.format, method=args.method,
                          pilot_lrs=args.pilot_lrs, pilot_steps=args.pilot_steps, batch_size=args.batch_size,
                          n_train=args.n_train, n_eval=args.n_eval, n_samples=args.n_samples,
                          sample_len=args.sample_len, seed=args.seed)
    out = human_stream(args.json)
    lr = advice["recommended_lr"]
    print(f"advice ({advice['status']}): learning rate {lr:.3g} "
          f"(band {advice['band'][0]:.3g} .. {advice['band'][1]:.3g}) for ΔL(P1) ≤ {args.epsilon:g} "
          f"at domain gain {advice['gain']:.3g} nats/example", file=out)
    print(f"  {advice['explanation']}", file=out)
    if advice.get("theorem_3_2_note"):
        print(f"  {advice['theorem_3_2_note']}", file=out)
    write_json(advice, args.json)
    return 0
