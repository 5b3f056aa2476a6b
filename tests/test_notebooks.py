"""Every notebook executes end to end in quick mode and draws its figures; .ipynb and .py stay paired."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import assert_png_drawn

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def _code_cells(nb) -> list[str]:
    return [c.source.strip() for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_pair_in_sync(path):
    script = path.with_suffix(".py")
    assert script.exists(), f"{path.name} has no paired py:percent script {script.name}"
    assert _code_cells(jupytext.read(script)) == _code_cells(nbformat.read(path, as_version=4)), (
        f"{path.name} and {script.name} differ: run `jupytext --sync {script}`"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_quick(path, tmp_path, monkeypatch):
    figures = tmp_path / "figures"
    monkeypatch.setenv("TALR_QUICK", "1")
    monkeypatch.setenv("TALR_FIGURES", str(figures))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    drawn = [p for p in figures.glob("*") if p.suffix in {".png", ".svg", ".pdf"}]
    assert drawn, f"{path.name} wrote no figure to TALR_FIGURES"
    for p in drawn:
        if p.suffix == ".png":
            assert_png_drawn(p)


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1
    # every jupytext source has its .ipynb twin (the pair test above covers the other direction)
    scripts = {p.stem for p in NOTEBOOKS[0].parent.glob("*.py")}
    assert scripts == {p.stem for p in NOTEBOOKS}, scripts ^ {p.stem for p in NOTEBOOKS}
