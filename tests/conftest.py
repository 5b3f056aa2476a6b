"""Shared pytest setup: quick mode for notebooks, a private cache, and skipping tests that need ../shared."""

from __future__ import annotations

import os

import pytest

from talr_theory.paths import shared_dir

# Tests never reach the Hugging Face hub: fail fast instead of hanging on a missing network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
