"""`talr-theory sweep` (placeholder: being built; see the open issues)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("sweep", help="(not built yet)")
    parser.set_defaults(func=run)


def run(args) -> int:
    raise NotImplementedError("talr-theory sweep is not built yet")
