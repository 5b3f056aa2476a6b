"""Figures. Every module returns matplotlib figures; :func:`save_figure` is the one way they are written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def save_figure(fig, name: str, folder: str | Path | None = None, dpi: int = 130, show: bool = False) -> Path:
    """Write ``fig`` as ``<folder>/<name>.png`` (default folder: ``paths.figures_dir()``) and close it.

    With ``show`` the written PNG is displayed (inline in a notebook): the file just drawn, not the
    figure drawn a second time, and the figure is closed so that the cell does not show it again.
    """
    import matplotlib.pyplot as plt

    from talr_theory.paths import figures_dir

    root = Path(folder) if folder is not None else figures_dir()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    if show:
        from IPython.display import Image, display

        display(Image(filename=str(path)))
    return path


def bootstrap_band(n_boot: int = 1000, level: float = 95.0, seed: int = 0) -> Callable:
    """seaborn's default error band, for ``errorbar=``: the percentile interval of ``n_boot`` bootstrap means.

    The same interval as seaborn's ``errorbar=("ci", level)`` with ``n_boot`` resamples, drawn in one
    vectorised step per point instead of seaborn's Python loop over the resamples (2 s for a figure of
    74 points), and seeded, so a figure is the same each time it is drawn.
    """
    import numpy as np

    edge = (100.0 - level) / 2.0

    def interval(values) -> tuple[float, float]:
        x = np.asarray(values, dtype=np.float64)
        means = np.nanmean(x[np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))], axis=1)
        lo, hi = np.nanpercentile(means, [edge, 100.0 - edge])
        return float(lo), float(hi)

    return interval


def add_caption(fig, text: str, width_chars: int | None = None) -> None:
    """Write ``text`` under the figure (model, data, protocol, what marks mean), wrapped to its width.

    A figure is often read without the README: the caption says what was measured on what, and how.
    ``bbox_inches="tight"`` in ``save_figure`` keeps the text inside the saved image.
    """
    import textwrap

    # below everything already drawn (tick labels can hang under the figure's own bottom edge)
    box = fig.get_tightbbox(fig.canvas.get_renderer())
    width_in, height_in = fig.get_size_inches()
    width = width_chars or max(60, int(box.width * 15))
    wrapped = "\n".join(textwrap.fill(par, width) for par in text.split("\n"))
    fig.text(box.x0 / width_in, box.y0 / height_in - 0.1 / height_in, wrapped, ha="left", va="top", fontsize=8,
             color="0.25", transform=fig.transFigure)


def figure_text(fig) -> dict[str, list[str]]:
    """The words a reader sees on ``fig``: axis labels, legend titles and entries, titles, captions.

    Used by tests to check that no raw column name leaks into a figure.
    """
    out: dict[str, list[str]] = {"axis": [], "legend_title": [], "legend": [], "title": [], "text": []}
    legends = list(fig.legends)
    for ax in fig.axes:
        out["axis"] += [t for t in (ax.get_xlabel(), ax.get_ylabel()) if t]
        out["title"] += [t for t in (ax.get_title(),) if t]
        if ax.get_legend() is not None:
            legends.append(ax.get_legend())
        out["text"] += [t.get_text() for t in ax.texts]
    for legend in legends:
        title = legend.get_title().get_text()
        if title:
            out["legend_title"].append(title)
        out["legend"] += [t.get_text() for t in legend.get_texts()]
    out["title"] += [t for t in (fig.get_suptitle(),) if t]
    out["text"] += [t.get_text() for t in fig.texts]
    return out


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
