"""Every notebook reads the session's stored quick run, prints the report's numbers and draws; pairs stay in sync.

The notebooks run against ``quick_run`` (conftest.py) through ``$TALR_RESULTS``, the way the README
says, so they compute nothing the run already stored, and their kernels (processes of their own) never
import torch, transformers or sympy: a probe cell run last lists what was imported. Each stays short: at
most ``MAX_CODE_LINES`` lines of code (comments and blank lines aside).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import assert_png_drawn

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
MAX_CODE_LINES = 40


def _code_cells(nb) -> list[str]:
    return [c.source.strip() for c in nb.cells if c.cell_type == "code"]


def code_lines(nb) -> int:
    """Lines of code in the notebook's code cells, comments and blank lines aside."""
    return sum(1 for cell in _code_cells(nb) for line in cell.splitlines()
               if line.strip() and not line.lstrip().startswith("#"))


def report_lines(text: str) -> list[str]:
    """The lines of printed text that quote the report: its bullet sentences and table rows."""
    return [line.rstrip() for line in text.splitlines() if line.startswith(("- ", "| "))]


def test_code_line_count_and_report_lines_parse():
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os\n\n# why\nx = 1  # set\n"),
                                         nbformat.v4.new_markdown_cell("# a\nb")])
    assert code_lines(nb) == 2
    assert report_lines("## Stage `x`\n\ntext\n- [x] claim: 1\n| a | b |\n  - not") == ["- [x] claim: 1", "| a | b |"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_pair_in_sync_and_short(path):
    import jupytext
    import nbformat

    script = path.with_suffix(".py")
    assert script.exists(), f"{path.name} has no paired py:percent script {script.name}"
    nb = nbformat.read(path, as_version=4)
    assert _code_cells(jupytext.read(script)) == _code_cells(nb), (
        f"{path.name} and {script.name} differ: run `jupytext --sync {script}`"
    )
    assert code_lines(nb) <= MAX_CODE_LINES, f"{path.name}: {code_lines(nb)} code lines > {MAX_CODE_LINES}"


# Imported only by the functions that train or compute (torch and transformers 4–6 s under load, sympy 1 s):
# a notebook that reads a stored run and draws it must never pay for them.
HEAVY = ("torch", "transformers", "sympy")
PROBE = f"import sys\nprint('heavy modules imported:', sorted(m for m in {HEAVY!r} if m in sys.modules))"


def execute(path: Path, figures: Path, monkeypatch, probe: bool = False, **env: str) -> list[dict]:
    """Run the notebook with figures going to ``figures``; its outputs, after checking none is an error.

    With ``probe``, a last cell prints which of ``HEAVY`` the notebook's kernel (its own process) imported.
    """
    # Imported here, not at the top: nbformat's import costs ~6 s (jsonschema's format checkers), which
    # every xdist worker would pay at collection.
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("TALR_FIGURES", str(figures))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(path, as_version=4)
    if probe:
        nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    NotebookClient(nb, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    drawn = [p for p in figures.glob("*") if p.suffix in {".png", ".svg", ".pdf"}]
    assert drawn, f"{path.name} wrote no figure to TALR_FIGURES"
    assert_png_drawn(min(p for p in drawn if p.suffix == ".png"))
    return outputs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_reads_the_stored_run(path, quick_run, tmp_path, monkeypatch):
    before = sorted(p.relative_to(quick_run) for p in (quick_run / "stages").rglob("*"))
    outputs = execute(path, tmp_path / "figures", monkeypatch, probe=True, TALR_RESULTS=str(quick_run))
    # Nothing recomputed: the stored stages are exactly as the run left them.
    assert sorted(p.relative_to(quick_run) for p in (quick_run / "stages").rglob("*")) == before
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    # Reading the stored stages and drawing their figures imported none of torch, transformers, sympy.
    assert "heavy modules imported: []" in text.splitlines(), [ln for ln in text.splitlines() if "heavy" in ln]
    printed = report_lines(text)
    report = set((quick_run / "report.md").read_text().splitlines())
    assert printed, f"{path.name} printed no line of the report"
    missing = [line for line in printed if line not in report]
    assert not missing, f"{path.name} printed numbers the report does not have: {missing[:3]}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_without_a_stored_run(path, tmp_path, monkeypatch):
    """No ``$TALR_RESULTS``: each stage runs at the quick scale in memory (minutes each on 2 cores)."""
    monkeypatch.delenv("TALR_RESULTS", raising=False)
    execute(path, tmp_path / "figures", monkeypatch, TALR_DEEP="1")


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1
    # every jupytext source has its .ipynb twin (the pair test above covers the other direction)
    scripts = {p.stem for p in NOTEBOOKS[0].parent.glob("*.py")}
    assert scripts == {p.stem for p in NOTEBOOKS}, scripts ^ {p.stem for p in NOTEBOOKS}
