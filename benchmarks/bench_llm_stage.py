"""The real-model tier's cost, part by part, old vs new side by side, and the projected time of a whole stage.

    python benchmarks/bench_llm_stage.py                         # SmolLM2-135M, the default config's sizes
    python benchmarks/bench_llm_stage.py --quick                 # tiny-random, the quick config
    python benchmarks/bench_llm_stage.py --quick --run           # also time the whole quick stage

Parts (each the median of ``--reps`` after one warm-up; the ways are interleaved so load drift on a
shared machine hits them alike):

- ``train step``: one optimizer step on one minibatch of the domain's training examples;
- ``checkpoint``: one evaluation (held-out accuracy and Δ*, KL on base samples, NLL on text blocks);
- ``prefix``: computing the frozen prefix's activations of every input set once (new only).

Ways: ``full`` = the whole model with a frozen prefix, recomputed at every step (no cache);
``cached`` = the prefix cached, the head at every position; ``sparse`` = the prefix cached, the head only
where a loss or a measure reads it, written into a dense [B, T, V] tensor of zeros (the tier before);
``new`` = the same head positions in the compact layout (``training.tail.CompactLogits``: no dense
tensor is built, filled or back-propagated), with bf16 autocast in the training step and PyTorch's math attention kernel as the stage runs them
(``Config.bf16``, ``runs.attention_kernel``; measures stay float32); ``new, fused attn`` = the same with the
default fused (flash) attention kernel.
The projection multiplies the parts by the stage's counts of runs, steps and checkpoints (the run list of
``tiers.llm.runs.units``) and says so; ``--run`` measures the real thing. Nothing here asserts. Report the
load average with the numbers: on a shared CPU every time is inflated.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time


def _bench(fns: dict, reps: int) -> dict[str, float]:
    times = {k: [] for k in fns}
    for fn in fns.values():  # warm-up (also fills the caches)
        fn()
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _models(env, cfg):
    from talr_theory.training.tail import TailLM

    full = copy.deepcopy(env.loaded.model).requires_grad_(False)
    n = len(full.model.layers)
    for layer in list(full.model.layers)[n - cfg.n_blocks:]:
        layer.requires_grad_(True)
    full.model.norm.requires_grad_(True)
    cached = TailLM(env.loaded.model, cfg.n_blocks, cache=env.tail.cache)  # no registered reads: every logit
    sparse = _DenseSparse(env.loaded.model, cfg.n_blocks, cache=env.tail.cache)
    sparse.read_positions([], reads=env.tail.reads)
    new = TailLM(env.loaded.model, cfg.n_blocks, cache=env.tail.cache)
    new.read_positions([], reads=env.tail.reads)
    new.compact_eval = True
    return {"full": full, "cached": cached, "sparse": sparse, "new": new}


def _dense_sparse_class():
    from talr_theory.training.tail import TailLM

    class DenseSparse(TailLM):
        """The head at the read positions, always written into dense zeros (the layout before CompactLogits)."""

        def _sparse_head(self, h, attention_mask, reads):
            was = self.training
            self.training = False
            try:
                return super()._sparse_head(h, attention_mask, reads)
            finally:
                self.training = was
    return DenseSparse


def _DenseSparse(*args, **kwargs):
    return _dense_sparse_class()(*args, **kwargs)


def _step_fn(model, batch, bf16: bool):
    import contextlib

    import torch

    from talr_theory.training.objectives import ce_loss
    from talr_theory.training.tail import compact_labels

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-6)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step():
        model.train()
        with autocast:
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        positions = getattr(out, "positions", None)
        labels = batch["labels"] if positions is None else compact_labels(batch["labels"], positions)
        loss, _ = ce_loss(out.logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.eval()
    return step


def parts(env, cfg, reps: int) -> dict[str, dict[str, float]]:
    import torch

    from talr_theory.data.encode import collate
    from talr_theory.tiers.llm import runs

    dom = env.domains["label"]
    batch = collate(dom.train[:cfg.batch_size], env.pad)
    models = _models(env, cfg)
    def kernel():  # what the stage's runs use (new); "new, fused attn": without it
        return runs.attention_kernel(torch.device("cpu"))

    fns = {k: _step_fn(m, batch, bf16=(k == "new" and cfg.bf16)) for k, m in models.items()}
    fns["new"] = _in(kernel, fns["new"])
    fns["new, fused attn"] = _step_fn(models["new"], batch, bf16=cfg.bf16)
    steps = _bench(fns, reps)

    def checkpoint(model):
        def go():
            with torch.no_grad():
                dom.measure(model, step=1)
        return go

    evals = {k: checkpoint(m) for k, m in models.items()}
    evals["new"], evals["new, fused attn"] = _in(kernel, evals["new"]), checkpoint(models["new"])
    return {"train step": steps, "checkpoint": _bench(evals, reps)}


def _in(context, fn):
    """``fn`` run inside a fresh ``context()`` at every call."""
    def go():
        with context():
            fn()
    return go


def projection(cfg, env, part: dict, prefix_s: float) -> dict[str, float]:
    """Seconds of a whole stage from the parts: runs × (steps × step + checkpoints × checkpoint)."""
    from talr_theory.tiers.llm.runs import units

    keys = units(cfg)
    steps, every = cfg.steps_for(len(env.domains["label"].train))
    n_ckpt = steps // every  # step 0 is the cached base row
    wise = sum(k["run"] == "sft+wise" for k in keys)  # those checkpoints are read twice
    out = {}
    for way in ("full", "cached", "sparse", "new"):
        per_run = steps * part["train step"][way] + n_ckpt * part["checkpoint"][way]
        out[way] = len(keys) * per_run + wise * n_ckpt * part["checkpoint"][way] + (prefix_s if way != "full" else 0)
    out["n_runs"], out["steps_per_run"], out["checkpoints_per_run"] = len(keys), steps, n_ckpt
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny-random and the quick config")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per part (median reported)")
    p.add_argument("--run", action="store_true", help="also run the whole stage and print its own timings")
    args = p.parse_args(argv)

    from talr_theory.tiers import llm
    from talr_theory.tiers.llm import runs

    cfg = llm.Config.quick() if args.quick else llm.Config()
    print(f"load average before: {os.getloadavg()}; model {cfg.model}, data {cfg.data}")
    t0 = time.perf_counter()
    env = runs.setup(cfg)
    setup_s = time.perf_counter() - t0
    print(f"setup (model, data, samples, prefix cache of every input set, base values): {setup_s:.1f} s")
    part = parts(env, cfg, args.reps)
    print(f"{'part':<12}{'full (no cache)':>18}{'cached prefix':>16}{'sparse dense':>14}{'new, fused attn':>17}"
          f"{'new':>10}{'sparse/new':>12}{'fused/new':>11}")
    for name, t in part.items():
        print(f"{name:<12}{t['full']:>17.3f}s{t['cached']:>15.3f}s{t['sparse']:>13.3f}s{t['new, fused attn']:>16.3f}s"
              f"{t['new']:>9.3f}s{t['sparse'] / t['new']:>11.2f}×{t['new, fused attn'] / t['new']:>10.2f}×")
    proj = projection(cfg, env, part, prefix_s=setup_s)
    print(f"projected training + checkpoints of the stage ({proj['n_runs']} runs × {proj['steps_per_run']} steps, "
          f"{proj['checkpoints_per_run']} checkpoints each): full {proj['full']:.0f} s, cached {proj['cached']:.0f} s, "
          f"sparse {proj['sparse']:.0f} s, new {proj['new']:.0f} s (line scans, probes and the advisor's runs not included)")
    if args.run:
        t0 = time.perf_counter()
        res = llm.run(cfg, progress=False)
        print(f"whole stage: {time.perf_counter() - t0:.0f} s; parts: "
              + ", ".join(f"{k} {v:.0f} s" for k, v in res.info["timings"].items()))
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
