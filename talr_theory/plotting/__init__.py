"""Figures. Every module returns matplotlib figures; :func:`save_figure` is the one way they are written."""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, name: str, folder: str | Path | None = None, dpi: int = 130) -> Path:
    """Write ``fig`` as ``<folder>/<name>.png`` (default folder: ``paths.figures_dir()``) and close it."""
    import matplotlib.pyplot as plt

    from talr_theory.paths import figures_dir

    root = Path(folder) if folder is not None else figures_dir()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
