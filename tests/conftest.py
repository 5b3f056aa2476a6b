"""Shared pytest setup: one stored quick run for the session, offline hub, and skipping tests that need ../shared."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from talr_theory.paths import shared_dir

# Tests never reach the Hugging Face hub: fail fast instead of hanging on a missing network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every model the default suite runs is tiny: one torch thread is faster, and far faster when other
# processes share the cores (a tiny-random forward and backward took 8x longer on two threads than on one
# on a loaded 2-core machine). Set before torch is imported, so subprocesses (notebook kernels, CLI runs)
# inherit it too.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


def pytest_configure(config):
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    if shared_dir() is not None:
        return
    skip = pytest.mark.skip(reason="needs the ../shared data folder, absent here")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread (and the CPU may be shared with other processes)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# The run-wide options of the session's stored quick run: a random-weight tiny model for every stage that
# takes a model, so no stage needs the embedded SmolLM2 wheel.
QUICK_RUN_ARGS = ("reproduce", "--quick", "--no-progress", "--model", "tiny-random")


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory) -> Path:
    """One ``talr-theory reproduce --quick`` for the whole session, shared by every test that reads stages.

    Readers must not write into it (``load_or_run`` with a matching fingerprint only reads); a test that
    reruns or changes stages works on :func:`quick_run_copy`. ``$TALR_TEST_RUN_DIR`` keeps the run in a
    folder across sessions (stages whose fingerprint matches are resumed): for working on the notebooks
    or the report, never for a measurement of the suite, since a stage stored by older code is reused.
    """
    from talr_theory.cli import main

    kept = os.environ.get("TALR_TEST_RUN_DIR")
    out = Path(kept) if kept else tmp_path_factory.mktemp("reproduce") / "quick"
    assert main([*QUICK_RUN_ARGS, "--out", str(out)]) == 0
    return out


@pytest.fixture
def quick_run_copy(quick_run, tmp_path) -> Path:
    """A private copy of the session's quick run, for tests that rerun stages in it."""
    return Path(shutil.copytree(quick_run, tmp_path / "quick"))
