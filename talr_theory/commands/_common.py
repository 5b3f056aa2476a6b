"""Helpers shared by the subcommands: JSON output to a path or stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from talr_theory.configs import json_safe


def write_json(payload: dict[str, Any], target: str | None) -> None:
    """Write ``payload`` to ``target`` ('-' is stdout, None does nothing)."""
    if target is None:
        return
    text = json.dumps(json_safe(payload), indent=2, sort_keys=False)
    if target == "-":
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    else:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


def add_json_flag(parser) -> None:
    parser.add_argument("--json", metavar="PATH|-", default=None,
                        help="write the summary as one JSON object to PATH, or to stdout with '-' "
                        "(the human-readable summary then goes to stderr)")


def human_stream(json_target: str | None):
    """Where the readable summary goes: stderr when JSON goes to stdout, else stdout."""
    return sys.stderr if json_target == "-" else sys.stdout
