"""`talr-theory sweep`: methods × learning rates × seeds, resumable, one row per checkpoint.

Example (fast, real pretrained tiny model from ../shared):

    talr-theory sweep --model stories260k --data medcalc-synth --format label \\
        --methods sft,talr --lrs 1e-3,1e-2 --seeds 0 --steps 40 --eval-every 10 --out runs/s260k --json -

Options come from flags, from ``--config FILE`` (flat JSON or TOML with the same names, e.g.
``{"methods": ["sft", "talr"], "lrs": [1e-5, 1e-4], "steps": 50}``), or both: flags given on the
command line override the file. Rerunning the same command resumes a killed sweep.

Sharded (one process per GPU, or a SLURM array with K = $SLURM_ARRAY_TASK_ID): every process runs the
same command with its own ``--shard K/N`` (and ``--device cuda:K`` on a multi-GPU node) and the same
``--out``; then ``talr-theory sweep --out DIR --merge`` (or the unsharded command) consolidates the rows
and draws the figures. A killed shard is resumed by rerunning its own command.
"""

from __future__ import annotations

import argparse
import dataclasses

from talr_theory.commands._common import add_json_flag, human_stream, write_json


def _track_explicit(parser: argparse.ArgumentParser, names: set[str]) -> None:
    """Make every option in ``names`` record, when given, its dest in ``namespace._explicit``.

    Needed to let command-line flags override ``--config`` values while unset flags do not.
    """
    for action in parser._actions:
        if action.dest not in names:
            continue
        base = type(action)

        class Tracked(base):  # noqa: B903 - a subclass per action type, only to add the bookkeeping
            def __call__(self, parser, namespace, values, option_string=None):
                super().__call__(parser, namespace, values, option_string)
                explicit = set(getattr(namespace, "_explicit", set()))
                explicit.add(self.dest)
                namespace._explicit = explicit

        action.__class__ = Tracked


def register(subparsers) -> None:
    from talr_theory.configs import add_dataclass_args
    from talr_theory.training.config import TrainConfig
    from talr_theory.training.sweep import SweepConfig

    parser = subparsers.add_parser(
        "sweep", help="train methods × learning rates × seeds and record domain gain vs general degradation",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="JSON or TOML file with options (flags given on the command line override it)")
    add_dataclass_args(parser, SweepConfig, skip=("train",))
    add_dataclass_args(parser, TrainConfig, skip=("method", "lr", "seed"))
    parser.add_argument("--merge", action="store_true",
                        help="only consolidate the rows that (sharded) processes wrote into --out and draw "
                             "the figures; trains nothing and needs no other option")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard the results already in --out when they were computed with other options "
                             "(without it such a folder is refused, so two experiments are never mixed)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--figures", action=argparse.BooleanOptionalAction, default=True,
                        help="draw the trade-off and dynamics figures into OUT/figures")
    add_json_flag(parser)
    names = {f.name for f in dataclasses.fields(SweepConfig)} | {f.name for f in dataclasses.fields(TrainConfig)}
    _track_explicit(parser, names)
    parser.set_defaults(func=run)


def resolve_config(args):
    """SweepConfig from --config (if any) overridden by the flags given explicitly."""
    from talr_theory.training.config import TrainConfig
    from talr_theory.training.sweep import SweepConfig, build_config, load_config_file

    sweep_names = [f.name for f in dataclasses.fields(SweepConfig) if f.name != "train"]
    train_names = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("method", "lr", "seed")]
    explicit = getattr(args, "_explicit", set())
    if args.config:
        values = load_config_file(args.config)
        source = args.config
        values.update({n: getattr(args, n) for n in sweep_names + train_names if n in explicit})
    else:
        values = {n: getattr(args, n) for n in sweep_names + train_names}
        source = "command line"
    return build_config(values, source=source)


def interrupted(args) -> str:
    """What a Ctrl-C leaves: the rows written so far (each complete, none duplicated by the rerun)."""
    from pathlib import Path

    out = Path(resolve_config(args).out)
    n = len(list((out / "rows").glob("*.parquet"))) if (out / "rows").is_dir() else 0
    return f"{n} checkpoint row(s) are saved in {out}"


def run(args) -> int:
    import shlex
    import sys

    from talr_theory.configs import check_model_spec
    from talr_theory.outputs import check_folder_target
    from talr_theory.training.sweep import merge_sweep, run_sweep

    config = resolve_config(args).validate()
    check_folder_target(config.out, "--out")  # also when the folder or the model comes from --config
    if not args.merge:
        check_model_spec(config.model)
    out = human_stream(args.json)
    if args.merge:
        summary = merge_sweep(config.out, log=out)
    else:
        summary = run_sweep(config, progress=not args.no_progress, log=out, overwrite=args.overwrite,
                            command="talr-theory " + shlex.join(sys.argv[1:]))
    if summary.get("shard"):
        print(f"sweep: shard {summary['shard']} done; when every shard has finished: "
              f"talr-theory sweep --out {config.out} --merge", file=out)
    elif args.figures and summary.get("n_rows"):
        from pathlib import Path

        import pandas as pd

        from talr_theory.plotting.training import save_sweep_figures

        frame = pd.read_parquet(Path(config.out) / "results.parquet")
        frame.attrs["title"] = f"{config.model} on {config.data}"
        if {"kl_base", "delta_L_text"} & set(frame.columns):
            summary["figures"] = [str(p) for p in save_sweep_figures(frame, Path(config.out) / "figures")]
        else:
            print("sweep: no general data was measured (--general-text none, --n-samples 0): no figures", file=out)
    from talr_theory.plotting.training import format_tradeoff_table

    if summary.get("final"):
        print(format_tradeoff_table(summary["final"]), file=out)
    print(f"sweep: {summary['n_rows']} rows ({summary.get('n_failed_rows', 0)} failure rows) in "
          f"{summary['out']}", file=out)
    write_json(summary, args.json)
    return 0
