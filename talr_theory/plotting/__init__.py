"""Figures. Every module returns matplotlib figures; :func:`save_figure` is the one way they are written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def save_figure(fig, name: str, folder: str | Path | None = None, dpi: int = 130, show: bool = False) -> Path:
    """Write ``fig`` as ``<folder>/<name>.png`` (default folder: ``paths.figures_dir()``) and close it.

    With ``show`` the figure is first displayed (inline in a notebook), since closing it would
    otherwise keep it from the cell's output.
    """
    import matplotlib.pyplot as plt

    from talr_theory.paths import figures_dir

    root = Path(folder) if folder is not None else figures_dir()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    if show:
        from IPython.display import display

        display(fig)
    plt.close(fig)
    return path


def saver(prefix: str = "", folder: str | Path | None = None, show: bool = False,
          only: str | None = None) -> Callable[..., Path | None]:
    """A ``save(fig, name)`` for a stage's ``figures(result, save)``: names get ``prefix``; see :func:`save_figure`.

    With ``only``, a figure whose name does not contain it is closed unsaved (a notebook showing a few).
    """

    def save(fig, name: str) -> Path | None:
        if only is not None and only not in name:
            import matplotlib.pyplot as plt

            plt.close(fig)
            return None
        return save_figure(fig, prefix + name, folder, show=show)

    return save
