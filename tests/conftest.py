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


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per core, at most 4 (each worker holds its own torch; the tests are tiny)."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    # The session's quick run is computed once, by whichever xdist worker first needs it (a file lock in
    # ``quick_run``); the others read it. So that nobody waits on it: the tests that read it, except the
    # notebooks, form one group (--dist loadgroup: one worker) scheduled first, and the notebook tests, which
    # take longest to read it, are scheduled last.
    def reads_run(item):
        return "quick_run" in getattr(item, "fixturenames", ())

    def notebook(item):
        return item.nodeid.startswith("tests/test_notebooks.py")

    for item in items:
        if reads_run(item) and not notebook(item):
            item.add_marker(pytest.mark.xdist_group("quick_run"))
    items.sort(key=lambda item: 0 if reads_run(item) and not notebook(item) else 2 if notebook(item) else 1)
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
    from filelock import FileLock

    from talr_theory.cli import main

    kept = os.environ.get("TALR_TEST_RUN_DIR")
    # Under xdist every worker has its own base temp folder inside the session's: the run goes in the
    # session's, so all workers share one (the file lock makes the others wait while one computes it).
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = Path(kept) if kept else shared / "reproduce-quick"
    with FileLock(str(shared / "reproduce-quick.lock")):
        done = shared / "reproduce-quick.done"
        if kept or not done.exists():
            assert main([*QUICK_RUN_ARGS, "--out", str(out)]) == 0
            done.touch()
    return out


@pytest.fixture
def quick_run_copy(quick_run, tmp_path) -> Path:
    """A private copy of the session's quick run, for tests that rerun stages in it."""
    return Path(shutil.copytree(quick_run, tmp_path / "quick"))
