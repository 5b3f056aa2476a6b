"""Helpers shared by the subcommands: JSON output to a path or stdout.

Validation helpers for options live in ``talr_theory.configs`` (``Range``, ``option_type``,
``PROBABILITY``, ``POSITIVE``, ``COUNT``, ``AT_LEAST_ONE``, ``N_BOOT``, ``check_fields``) and output
paths in ``talr_theory.outputs`` (``check_folder_target``, ``check_file_target``, ``claim_folder``).
"""

from __future__ import annotations

import json
import sys
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
        from talr_theory.outputs import atomic_write_text

        atomic_write_text(target, text + "\n")  # a kill mid-write leaves the previous file intact


def add_json_flag(parser) -> None:
    parser.add_argument("--json", metavar="PATH|-", default=None,
                        help="write the summary as one JSON object to PATH, or to stdout with '-' "
                        "(the human-readable summary then goes to stderr)")


def human_stream(json_target: str | None):
    """Where the readable summary goes: stderr when JSON goes to stdout, else stdout."""
    return sys.stderr if json_target == "-" else sys.stdout
