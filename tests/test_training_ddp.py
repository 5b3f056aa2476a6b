"""Two-process DDP (gloo, CPU) through ``training.core.train`` matches one process on the same global batch."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp

CASES = [  # (method, tau, per-process batch_size, grad_accum)
    ("sft", "median", 2, 1),
    ("sft", "median", 1, 2),
    ("talr", "0.7", 2, 1),
]


def _setup():
    from test_training_core import random_examples, tiny_model

    return tiny_model, random_examples


def _config(method, tau, batch_size, grad_accum):
    from talr_theory.training.core import TrainConfig

    return TrainConfig(method=method, tau=tau, lr=0.5, optimizer="sgd", steps=2, batch_size=batch_size,
                       grad_accum=grad_accum, seed=3)


def _worker(rank: int, world: int, init_file: str, out_dir: str):
    import torch.distributed as dist

    from talr_theory.training.core import train

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        tiny_model, random_examples = _setup()
        for k, (method, tau, bs, ga) in enumerate(CASES):
            res = train(tiny_model(), random_examples(), _config(method, tau, bs, ga), progress=False)
            if rank == 0:
                flat = torch.cat([p.detach().reshape(-1) for p in res.model.parameters()])
                torch.save(flat, os.path.join(out_dir, f"case{k}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_matches_single_process(tmp_path):
    from talr_theory.training.core import train

    tiny_model, random_examples = _setup()
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for k, (method, tau, bs, ga) in enumerate(CASES):
        # single process, same global batch: batch_size × grad_accum × 2 examples per step
        single = train(tiny_model(), random_examples(), _config(method, tau, bs * 2, ga), progress=False)
        flat_single = torch.cat([p.detach().reshape(-1) for p in single.model.parameters()])
        flat_ddp = torch.load(tmp_path / f"case{k}.pt")
        moved = (flat_single - torch.cat([p.detach().reshape(-1) for p in tiny_model().parameters()])).abs().max()
        assert moved > 1e-4
        assert torch.allclose(flat_ddp, flat_single, rtol=1e-5, atol=1e-6), (method, tau, bs, ga)


@pytest.fixture(autouse=True)
def _tests_on_path(monkeypatch):
    # spawned children import this module and test_training_core by name
    here = os.path.dirname(__file__)
    monkeypatch.setenv("PYTHONPATH", here + os.pathsep + os.environ.get("PYTHONPATH", ""))
