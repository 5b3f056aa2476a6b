"""`talr-theory advise` (placeholder: being built; see the open issues)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("advise", help="(not built yet)")
    parser.set_defaults(func=run)


def run(args) -> int:
    raise NotImplementedError("talr-theory advise is not built yet")
