"""`talr-theory bounds`: check the paper's bounds (Theorems 3.1/3.2) on one tier.

--tier exact      exact ΔL identities, single-step tilt bounds, envelope and λ_max scaling on
                  tabular / kernel-softmax models (``talr_theory.theory.exact_tier``);
--tier synthetic  the synthetic-lab transformer (``talr_theory.lab.tiers.run_synthetic_tier``);
--tier llm        a real causal LM (``talr_theory.lab.tiers.run_llm_tier``).

Every tier prints a readable summary and, with ``--json``, one JSON object with the blocks
identity_max_abs_error (exact only), single_step, theorem_3_1, theorem_3_2, theorem_3_2_talr, notes.
``--out DIR`` also saves the tidy tables behind the numbers (CSV + Parquet) and the summary JSON.
"""

from __future__ import annotations

from talr_theory.commands._common import add_json_flag, human_stream, write_json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bounds", help="check Theorems 3.1/3.2 and the single-step tilt bounds on a tier",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--tier", choices=("exact", "synthetic", "llm"), default="exact",
                        help="which tier of checks to run (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="small parameters (seconds, for tests and a first look)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--model", default=None,
                        help="model spec for --tier llm (default: the embedded smollm2-135m)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="also save the tidy tables (CSV and Parquet) and summary.json to DIR; for the "
                        "synthetic and llm tiers DIR is also their crash-safe results folder")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def _save_tables(frames: dict, summary: dict, out_dir: str) -> None:
    from pathlib import Path

    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_csv(root / f"{name}.csv", index=False)
        frame.to_parquet(root / f"{name}.parquet", index=False)
    write_json(summary, str(root / "summary.json"))


def run(args) -> int:
    stream = human_stream(args.json)
    if args.tier == "exact":
        from talr_theory.theory.exact_tier import compute_exact_tier, format_summary

        summary, frames = compute_exact_tier(quick=args.quick, seed=args.seed, progress=not args.no_progress)
        if args.out:
            _save_tables(frames, summary, args.out)
        print(format_summary(summary), file=stream)
    else:
        try:
            from talr_theory.lab import tiers
        except ImportError as err:
            raise ValueError(f"--tier {args.tier} needs talr_theory.lab.tiers, which is not available yet "
                             f"({err}); use --tier exact") from err
        name = "run_synthetic_tier" if args.tier == "synthetic" else "run_llm_tier"
        fn = getattr(tiers, name, None)
        if fn is None:
            raise ValueError(f"--tier {args.tier}: talr_theory.lab.tiers has no {name}() yet; use --tier exact")
        import inspect

        kwargs = {"quick": args.quick, "seed": args.seed, "progress": not args.no_progress}
        if args.tier == "llm" and args.model:
            kwargs["model"] = args.model
        if args.out:
            kwargs["results_dir"] = args.out
        accepted = inspect.signature(fn).parameters
        for key in ("progress", "results_dir"):
            if key not in accepted:
                kwargs.pop(key, None)
        summary = fn(**kwargs)
        text = summary.get("summary_text") if isinstance(summary, dict) else None
        print(text or _generic_summary(summary), file=stream)
        if args.out:
            from pathlib import Path

            write_json(summary, str(Path(args.out) / "summary.json"))
    write_json(summary, args.json)
    return 0


def _generic_summary(summary: dict) -> str:
    """Readable fallback for tiers that do not provide their own summary text."""
    lines = [f"talr-theory bounds — {summary.get('tier', '?')} tier"]
    for key in ("single_step", "theorem_3_1", "theorem_3_2", "theorem_3_2_talr"):
        if key in summary:
            block = summary[key]
            shown = {k: v for k, v in block.items() if not isinstance(v, (dict, list)) or k.endswith("_ci")}
            lines.append(f"  {key}: {shown}")
    for note in summary.get("notes", []):
        lines.append(f"   - {note}")
    return "\n".join(lines)
