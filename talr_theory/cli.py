"""The ``talr-theory`` command line: one subcommand per job, each defined in ``talr_theory.commands``.

Every command module exposes ``register(subparsers)`` which adds its parser and sets
``func=run(args) -> int``; it may also define ``interrupted(args) -> str`` saying what an
interrupted run has kept. Command modules import heavy libraries (torch, transformers) inside
``run`` so that ``talr-theory --help`` stays instant and bad options fail before any model loads.

Exit status: 0 done, 2 bad input (one line naming the file or flag, no traceback), 130 interrupted
(Ctrl-C: one line saying what was saved and the command that resumes).
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys

# name -> module under talr_theory.commands
COMMANDS = ("bounds", "tokens", "sweep", "advise", "reproduce")
# output flags checked for every command before any work: flag -> (attribute, kind)
OUTPUT_FLAGS = (("--out", "out", "folder"), ("--html", "html", "file"), ("--json", "json", "file"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="talr-theory",
        description="Check Theorems 3.1/3.2 of 'SFT Doesn't Always Hurt General Capabilities', "
        "measure token difficulty, and train with TALR and its baselines.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"talr_theory.commands.{name}")
        module.register(sub)
    return parser


# model flags checked for every command before any work (a folder without config.json, a missing file)
MODEL_FLAGS = (("--model", "model"), ("--compare-model", "compare_model"))


def check_common_flags(args: argparse.Namespace) -> None:
    """Every --out / --html / --json PATH the command has must be a usable folder or file, every model
    flag a possible model; raise ValueError naming the flag otherwise (before any work)."""
    from talr_theory.configs import check_model_spec
    from talr_theory.outputs import check_file_target, check_folder_target

    for flag, attr in MODEL_FLAGS:
        check_model_spec(getattr(args, attr, None), flag)

    for flag, attr, kind in OUTPUT_FLAGS:
        value = getattr(args, attr, None)
        if not isinstance(value, str):
            continue
        if kind == "folder":
            check_folder_target(value, flag)
        else:
            check_file_target(value, flag, allow_stdout=(attr == "json"))


def interrupted_line(args: argparse.Namespace, argv: list[str]) -> str:
    """One line: what the interrupted command kept, and the command that resumes it."""
    module = importlib.import_module(f"talr_theory.commands.{args.command}")
    note = getattr(module, "interrupted", None)
    try:
        saved = note(args) if note else None
    except Exception:  # the note must never replace the interruption message by a traceback
        saved = None
    if saved is None:
        out = getattr(args, "out", None)
        saved = f"what was finished is in {out}" if out else "nothing was saved"
    return (f"talr-theory {args.command}: interrupted; {saved}; rerun to resume: "
            f"talr-theory {shlex.join(argv)}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_common_flags(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(interrupted_line(args, argv), file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, KeyError) as err:
        # User-facing input errors: one clear line, no traceback, non-zero exit.
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"talr-theory {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
