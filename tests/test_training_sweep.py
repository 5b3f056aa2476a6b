"""Sweeps: SIGKILL midway then rerun gives exactly one row per key; config files; early validation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from talr_theory.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny models: one thread is fastest and does not oversubscribe a shared CPU.
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


pytestmark = pytest.mark.usefixtures("one_thread")


def _write_jsonl(path, n=16):
    words = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "theta"]
    with open(path, "w") as fh:
        for i in range(n):
            prompt = f"Q{i}: say {words[i % 8]} {words[(i * 3) % 8]}."
            fh.write(json.dumps({"prompt": prompt, "response": f" {words[(i * 5) % 8]} {i % 7}"}) + "\n")


def _sweep_args(data, out, steps=20, eval_every=2):
    return ["sweep", "--model", "tiny-random", "--data", str(data), "--methods", "sft,talr",
            "--lrs", "1e-3,1e-2", "--seeds", "0", "--steps", str(steps), "--eval-every", str(eval_every),
            "--batch-size", "2", "--n-train", "8", "--n-eval", "4", "--general-text", "fallback",
            "--general-blocks", "2", "--block-len", "32", "--n-samples", "4", "--sample-len", "8",
            "--train-probe", "2", "--out", str(out), "--no-progress", "--no-figures"]


def test_sweep_killed_midway_resumes_with_one_row_per_key(tmp_path):
    data, out = tmp_path / "toy.jsonl", tmp_path / "sweep"
    _write_jsonl(data)
    args = _sweep_args(data, out)
    expected = 2 * 2 * 11  # methods × lrs × checkpoints (0, 2, ..., 20)
    cmd = [sys.executable, "-m", "talr_theory.cli", *args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rows_dir = out / "rows"
    deadline = time.time() + 120
    n_at_kill = 0
    try:
        while time.time() < deadline and proc.poll() is None:
            n_at_kill = len(list(rows_dir.glob("*.parquet"))) if rows_dir.exists() else 0
            if n_at_kill >= 15:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    partial = len(list(rows_dir.glob("*.parquet")))
    assert 15 <= partial < expected  # killed midway (inside the second run), not after the end
    # rerun the same command: it resumes and completes
    rerun = subprocess.run(cmd + ["--json", str(tmp_path / "summary.json")], cwd=REPO, env=ENV, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    table = pd.read_parquet(out / "results.parquet")
    keys = table[["method", "lr", "seed", "step", "wise_alpha"]]
    assert len(table) == expected and not keys.duplicated().any()
    assert set(table["step"]) == set(range(0, 21, 2))
    assert (table["status"] == "ok").all() and table["delta_star"].notna().all()
    assert "config_json" in table.columns and json.loads(table["config_json"][0])["train"]["steps"] == 20
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_rows"] == expected and len(summary["final"]) == 4
    # a third run has nothing left to do and changes nothing
    again = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert "4 already complete, 0 to do" in again.stderr + again.stdout
    assert len(pd.read_parquet(out / "results.parquet")) == expected


@pytest.mark.parametrize("flag,value,match", [
    ("--methods", "sft,bogus", "methods"), ("--tau", "0", "tau"), ("--tau", "-0.5", "tau"),
    ("--w-min", "1.5", "--w-min"), ("--lrs", "1e-4,0", "--lrs"), ("--lrs", "-1e-5", "--lrs"),
])
def test_invalid_sweep_config_fails_before_any_work(tmp_path, capsys, flag, value, match):
    out = tmp_path / "never"
    try:
        rc = main(["sweep", "--model", "does-not-exist", "--out", str(out), f"{flag}={value}"])
    except SystemExit as exc:  # refused by the parser itself
        rc = exc.code
    assert rc == 2
    assert match in capsys.readouterr().err
    assert not out.exists()  # nothing was created: validation came first


def test_config_file_and_flag_override(tmp_path):
    import argparse

    from talr_theory.commands import sweep as sweep_cmd

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    sweep_cmd.register(sub)
    cfg = tmp_path / "sweep.json"
    cfg.write_text(json.dumps({"methods": ["sft", "talr", "wise-ft"], "lrs": [1e-5, 2e-5], "steps": 7,
                               "tau": 0.5, "wise_alphas": [0.25, 0.75], "model": "stories260k"}))
    args = parser.parse_args(["sweep", "--config", str(cfg), "--steps", "9", "--w-min", "0.05"])
    config = sweep_cmd.resolve_config(args)
    assert config.methods == ("sft", "talr", "wise-ft") and config.lrs == (1e-5, 2e-5)
    assert config.train.steps == 9 and config.train.w_min == 0.05 and config.train.tau == "0.5"
    assert config.model == "stories260k" and config.train.wise_alphas == (0.25, 0.75)
    assert len(config.runs()) == 6
    toml = tmp_path / "sweep.toml"
    toml.write_text('methods = ["dft"]\nlrs = [0.001]\nsteps = 3\n')
    config = sweep_cmd.resolve_config(parser.parse_args(["sweep", "--config", str(toml)]))
    assert config.methods == ("dft",) and config.train.steps == 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"methods": ["sft"], "learning_rate": 1e-4}))
    with pytest.raises(ValueError, match="unknown option 'learning_rate'"):
        sweep_cmd.resolve_config(parser.parse_args(["sweep", "--config", str(bad)]))
    broken = tmp_path / "broken.json"
    broken.write_text('{"methods": ["sft"],\n "lrs": [1e-4,]}')
    with pytest.raises(ValueError, match="line 2"):
        sweep_cmd.resolve_config(parser.parse_args(["sweep", "--config", str(broken)]))


def test_nan_run_leaves_one_failure_row(tmp_path):
    """A diverging run (absurd LR) is stopped and recorded; the other runs complete normally."""
    from talr_theory.training.config import TrainConfig
    from talr_theory.training.sweep import SweepConfig, run_sweep

    data = tmp_path / "toy.jsonl"
    _write_jsonl(data)
    config = SweepConfig(model="tiny-random", data=str(data), methods=("sft",), lrs=(1e-3, 1e30), seeds=(0,),
                         n_train=8, n_eval=4, general_text="fallback", general_blocks=2, block_len=32,
                         n_samples=0, train_probe=0, out=str(tmp_path / "out"),
                         train=TrainConfig(steps=8, eval_every=2, batch_size=2, optimizer="sgd"))
    summary = run_sweep(config, progress=False)
    table = pd.read_parquet(tmp_path / "out" / "results.parquet")
    bad = table[table["lr"] == 1e30]
    assert (bad["status"] == "failed").sum() == 1 and "non-finite" in bad["failure"].iloc[-1]
    assert bad["step"].max() < 8 or (bad["status"] == "failed").any()
    good = table[table["lr"] == 1e-3]
    assert len(good) == 5 and (good["status"] == "ok").all()
    assert summary["n_failed_rows"] == 1
    # rerunning does not retry the failed run or duplicate anything
    run_sweep(config, progress=False)
    assert len(pd.read_parquet(tmp_path / "out" / "results.parquet")) == len(table)


def test_shards_are_disjoint_and_cover_the_grid():
    from talr_theory.training.sweep import SweepConfig, parse_shard, shard_runs

    config = SweepConfig(methods=("sft", "talr", "dft"), lrs=(1e-4, 1e-3), seeds=(0, 1))
    runs = config.runs()
    keys = lambda rs: [(r.method, r.lr, r.seed) for r in rs]  # noqa: E731
    for n in (1, 2, 3, 5, 12, 13):
        slices = [keys(shard_runs(runs, f"{k}/{n}")) for k in range(n)]
        flat = [key for part in slices for key in part]
        assert sorted(flat) == sorted(keys(runs)) and len(set(flat)) == len(flat)
    assert shard_runs(runs, "") == runs
    for bad in ("2/2", "-1/2", "1", "a/b", "0/0", "1/2/3"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


@pytest.mark.slow  # three CLI processes (~30 s on 2 cores)
def test_two_concurrent_shards_one_killed_then_merged(tmp_path, capsys):
    """Two shard processes share one --out; shard 1 is SIGKILLed mid-run and rerun; --merge gives every row once."""
    from talr_theory.results import _key_id
    from talr_theory.training.config import checkpoint_steps
    from talr_theory.training.sweep import SweepConfig, shard_runs

    data, out = tmp_path / "toy.jsonl", tmp_path / "sweep"
    _write_jsonl(data)
    args = ["sweep", "--model", "tiny-random", "--data", str(data), "--methods", "sft,talr,dft",
            "--lrs", "1e-4,1e-3", "--seeds", "0", "--steps", "12", "--eval-every", "2", "--batch-size", "2",
            "--n-train", "8", "--n-eval", "4", "--general-text", "fallback", "--general-blocks", "2",
            "--block-len", "32", "--n-samples", "0", "--train-probe", "0", "--out", str(out), "--no-progress"]
    cmd = lambda k: [sys.executable, "-m", "talr_theory.cli", *args, "--shard", f"{k}/2"]  # noqa: E731
    steps = checkpoint_steps(12, 2)
    runs1 = shard_runs(SweepConfig(methods=("sft", "talr", "dft"), lrs=(1e-4, 1e-3)).runs(), "1/2")
    files1 = [out / "rows" / f"{_key_id({'method': r.method, 'lr': r.lr, 'seed': 0, 'step': s, 'wise_alpha': 1.0})}.parquet"
              for r in runs1 for s in steps]
    procs = [subprocess.Popen(cmd(k), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for k in (0, 1)]
    n_at_kill = 0
    try:
        deadline = time.time() + 180
        while time.time() < deadline and procs[1].poll() is None:
            n_at_kill = sum(f.exists() for f in files1)
            if n_at_kill >= len(steps) + 2:  # inside shard 1's second run
                os.kill(procs[1].pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        procs[0].wait(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    assert procs[1].returncode == -signal.SIGKILL, procs[1].stderr.read().decode()[-2000:]
    assert procs[0].returncode == 0, procs[0].stderr.read().decode()[-2000:]
    assert len(steps) + 2 <= sum(f.exists() for f in files1) < len(files1)
    # a shard never writes the consolidated files (the other shard may still be writing)
    assert not (out / "results.parquet").exists()
    # merging now reports shard 1's unfinished runs
    capsys.readouterr()
    assert main(["sweep", "--out", str(out), "--merge", "--no-figures", "--json", "-"]) == 0
    partial = capsys.readouterr().out
    incomplete = json.loads(partial)["incomplete"]
    assert incomplete and all((r["method"], r["lr"]) in {(x.method, x.lr) for x in runs1} for r in incomplete)
    # rerun the killed shard: it resumes, skipping its completed run(s)
    rerun = subprocess.run(cmd(1), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "3 runs, 1 already complete, 2 to do" in rerun.stdout + rerun.stderr
    assert main(["sweep", "--out", str(out), "--merge", "--json", "-"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["incomplete"] == [] and summary["n_runs"] == 6
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 6 * len(steps)
    assert not table[["method", "lr", "seed", "step"]].duplicated().any()
    assert table.groupby(["method", "lr"]).size().eq(len(steps)).all()
    assert (out / "figures" / "sweep_tradeoff.png").exists()
    assert not list((out / "rows").glob("*.tmp"))


def _small_sweep(data, out, steps):
    return ["sweep", "--model", "tiny-random", "--data", str(data), "--methods", "sft", "--lrs", "1e-3", "--seeds", "0",
            "--steps", str(steps), "--eval-every", "2", "--batch-size", "2", "--n-train", "8", "--n-eval", "4",
            "--general-text", "fallback", "--general-blocks", "2", "--block-len", "32", "--n-samples", "0",
            "--train-probe", "0", "--out", str(out), "--no-progress", "--no-figures"]


def test_rerun_with_other_steps_is_refused_and_leaves_the_folder_unchanged(tmp_path, capsys):
    data, out = tmp_path / "toy.jsonl", tmp_path / "D"
    _write_jsonl(data)
    assert main(_small_sweep(data, out, steps=4)) == 0
    before = (out / "results.parquet").read_bytes(), sorted(p.name for p in (out / "rows").iterdir())
    capsys.readouterr()
    assert main(_small_sweep(data, out, steps=2)) == 2
    err = capsys.readouterr().err
    assert "--steps 4 in the folder, 2 now" in err and "Traceback" not in err
    assert ((out / "results.parquet").read_bytes(), sorted(p.name for p in (out / "rows").iterdir())) == before
    # a folder written before folders carried a record: the rows' own stored config stands in for it
    (out / "experiment.json").unlink()
    assert main(_small_sweep(data, out, steps=2)) == 2
    assert "--steps 4 in the folder, 2 now" in capsys.readouterr().err
    # the same command resumes (nothing to do), and --overwrite starts the other experiment afresh
    assert main(_small_sweep(data, out, steps=4)) == 0
    assert "1 already complete, 0 to do" in capsys.readouterr().out
    assert main(_small_sweep(data, out, steps=2) + ["--overwrite"]) == 0
    assert sorted(pd.read_parquet(out / "results.parquet")["step"]) == [0, 2]


@pytest.mark.slow  # two CLI processes (~20 s on a shared 2-core machine)
def test_two_identical_sweeps_on_one_out_one_is_refused_at_once(tmp_path):
    data, out = tmp_path / "toy.jsonl", tmp_path / "D"
    _write_jsonl(data)
    cmd = [sys.executable, "-m", "talr_theory.cli", *_small_sweep(data, out, steps=20)]
    t0 = time.time()
    procs = [subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    ended = {}
    while len(ended) < 2 and time.time() - t0 < 300:
        for i, p in enumerate(procs):
            if i not in ended and p.poll() is not None:
                ended[i] = time.time() - t0
        time.sleep(0.05)
    results = [(p.returncode, p.stderr.read()) for p in procs]
    refused = [i for i, (rc, _) in enumerate(results) if rc == 2]
    assert len(refused) == 1 and sorted(rc for rc, _ in results) == [0, 2], results
    rc, err = results[refused[0]]
    assert "lock" in err and "pid " in err and "Traceback" not in err
    assert ended[refused[0]] < 5.0 + 5.0  # process start-up included; the refusal itself precedes any import of torch
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 11 and not table[list(("method", "lr", "seed", "step"))].duplicated().any()


@pytest.mark.slow  # a CLI process interrupted, then rerun (~20 s on a shared 2-core machine)
def test_ctrl_c_exits_130_with_the_resume_command_and_the_rerun_completes(tmp_path):
    data, out = tmp_path / "toy.jsonl", tmp_path / "D"
    _write_jsonl(data)
    args = _sweep_args(data, out)
    cmd = [sys.executable, "-m", "talr_theory.cli", *args]
    # a shell's background job ignores SIGINT; a terminal's Ctrl-C does not: restore the default disposition
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    rows_dir, deadline = out / "rows", time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if rows_dir.exists() and len(list(rows_dir.glob("*.parquet"))) >= 15:
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.02)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted" in last and "saved in" in last and f"--out {out}" in last
    assert not list(out.glob(".lock.*"))  # the lock was released on the way out
    rerun = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 2 * 2 * 11 and not table[["method", "lr", "seed", "step", "wise_alpha"]].duplicated().any()
