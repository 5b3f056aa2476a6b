"""The ``talr-theory`` command line: one subcommand per job, each defined in ``talr_theory.commands``.

Every command module exposes ``register(subparsers)`` which adds its parser and sets
``func=run(args) -> int``. Command modules import heavy libraries (torch, transformers) inside
``run`` so that ``talr-theory --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module under talr_theory.commands
COMMANDS = ("bounds", "tokens", "sweep", "advise", "reproduce")


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        # User-facing input errors: one clear line, no traceback, non-zero exit.
        print(f"talr-theory {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
