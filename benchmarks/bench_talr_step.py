"""TALR vs plain CE: time and peak memory of one training step on the same model and batch.

    python benchmarks/bench_talr_step.py --model stories260k --batch-size 8 --seq-len 256
    python benchmarks/bench_talr_step.py --model smollm2-135m --batch-size 4 --seq-len 256 --reps 5

A step is forward + loss + backward + SGD update. Timing: the losses are interleaved (CE, TALR,
CE, TALR, ...) after warm-up so load drift on a shared machine hits them alike; we report the median
per loss and the ratio to CE. Memory: on CUDA the peak allocated bytes of a step
(``torch.cuda.max_memory_allocated``); on CPU every loss runs in a fresh subprocess and we report
the growth of the process's peak RSS during the steps (coarse: allocator caching included).
Target: TALR within 5% of CE in both. Nothing here asserts: it prints numbers side by side.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

LOSSES = {
    "ce": ("ce", {}),
    "talr-median": ("talr", {"tau": "median", "w_min": 0.01}),
    "talr-median-seq": ("talr", {"tau": "median-seq", "w_min": 0.01}),
    "talr-fixed": ("talr", {"tau": 1.0, "w_min": 0.01}),
    "dft": ("dft", {}),
}


def setup(args):
    import torch

    from talr_theory.models import load_model

    torch.manual_seed(0)
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    model = loaded.model
    model.train()
    vocab = model.get_output_embeddings().weight.shape[0]
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, vocab, (args.batch_size, args.seq_len), generator=g)
    labels = ids.clone()
    labels[:, : args.seq_len // 2] = -100  # a prompt half, as in SFT
    batch = {"input_ids": ids.to(loaded.device), "labels": labels.to(loaded.device)}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    return model, batch, opt, loaded.device


def make_step(model, batch, opt, name, bf16):
    import contextlib

    import torch

    from talr_theory.training.objectives import OBJECTIVES, count_supervised

    fn_name, opts = LOSSES[name]
    fn = OBJECTIVES[fn_name]
    n = count_supervised(batch["labels"])
    device_type = batch["input_ids"].device.type
    ctx = (lambda: torch.autocast(device_type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def step():
        opt.zero_grad(set_to_none=True)
        with ctx():
            logits = model(input_ids=batch["input_ids"]).logits
        loss, _ = fn(logits, batch["labels"], n, **opts)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def time_losses(args, names):
    model, batch, opt, device = setup(args)
    steps = {name: make_step(model, batch, opt, name, args.bf16) for name in names}
    for _ in range(args.warmup):
        for name in names:
            steps[name]()
    sync(device)
    times = {name: [] for name in names}
    for _ in range(args.reps):
        for name in names:
            t0 = time.perf_counter()
            steps[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    memory = {}
    if device.type == "cuda":
        import torch

        for name in names:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            steps[name]()
            sync(device)
            memory[name] = torch.cuda.max_memory_allocated()
    return {name: statistics.median(v) for name, v in times.items()}, memory


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def single_memory(args, name):
    """CPU: peak-RSS growth of a fresh process during a few steps of one loss (run in a subprocess).

    Loading the model has its own (larger) memory peak, so the high-water mark is reset first by
    writing 5 to /proc/self/clear_refs (Linux >= 4.0); the growth is VmHWM after the steps minus
    VmRSS before them. On systems without it we fall back to getrusage (then load peaks can hide it).
    """
    import gc

    model, batch, opt, device = setup(args)
    step = make_step(model, batch, opt, name, args.bf16)
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        before = _status_kib("VmRSS")
        for _ in range(3):
            step()
        return (_status_kib("VmHWM") - before) * 1024
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(3):
            step()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the forward pass")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--losses", default="ce,talr-median,talr-median-seq,talr-fixed,dft")
    parser.add_argument("--single-memory", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.single_memory:
        print(json.dumps({"peak_rss_growth": single_memory(args, args.single_memory)}))
        return 0
    names = [n.strip() for n in args.losses.split(",")]
    if "ce" not in names:
        names.insert(0, "ce")
    times, memory = time_losses(args, names)
    if not memory:  # CPU: one fresh subprocess per loss
        for name in names:
            cmd = [sys.executable, __file__, "--single-memory", name, "--model", args.model,
                   "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len)]
            cmd += (["--device", args.device] if args.device else []) + (["--bf16"] if args.bf16 else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            memory[name] = json.loads(out)["peak_rss_growth"]
        mem_label = "peak RSS growth (CPU, coarse)"
    else:
        mem_label = "peak CUDA allocated"
    print(f"model={args.model} batch={args.batch_size}x{args.seq_len} reps={args.reps} bf16={args.bf16}")
    print(f"{'loss':<18}{'step [ms]':>11}{'time/CE':>9}   {mem_label + ' [MiB]':>36}{'mem/CE':>8}")
    for name in names:
        t, m = times[name], memory[name]
        print(f"{name:<18}{t * 1e3:>11.2f}{t / times['ce']:>9.3f}   {m / 2**20:>36.1f}"
              f"{m / memory['ce'] if memory['ce'] else float('nan'):>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
