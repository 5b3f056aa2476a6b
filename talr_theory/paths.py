"""Where things live: the optional ``../shared`` data folder, the cache, the figures folder."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent


def shared_dir() -> Path | None:
    """The ``shared`` data folder beside the repository, or ``$TALR_SHARED``; None when absent.

    A fresh clone elsewhere has no such folder: callers skip or fall back to the embedded default.
    """
    env = os.environ.get("TALR_SHARED")
    candidates = [Path(env)] if env else []
    candidates += [REPO_ROOT.parent / "shared", Path.cwd().parent / "shared"]
    for cand in candidates:
        if cand.is_dir():
            return cand.resolve()
    return None


def shared_file(relative: str) -> Path | None:
    """A file under the shared folder (e.g. ``data/medcalc-bench/test_data.csv``), or None if absent."""
    root = shared_dir()
    if root is None:
        return None
    path = root / relative
    return path if path.is_file() else None


def cache_dir() -> Path:
    """Cache for converted models and pretrained synthetic-lab models (``$TALR_CACHE`` overrides)."""
    env = os.environ.get("TALR_CACHE")
    root = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "talr_theory"
    root.mkdir(parents=True, exist_ok=True)
    return root


def figures_dir() -> Path:
    """The repository's ``figures/`` folder (or ``$TALR_FIGURES``) where the main job draws."""
    env = os.environ.get("TALR_FIGURES")
    path = Path(env) if env else REPO_ROOT / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path
