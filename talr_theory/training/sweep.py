"""Resumable sweeps over methods × learning rates × seeds, one results row per checkpoint.

``run_sweep(config)`` loads the model and the data once, measures the base model once (the baseline
of every Δ), then trains each (method, lr, seed) from a fresh copy of the base model with
``training.core.train``. Each checkpoint row — keyed by (method, lr, seed, step, wise_alpha) — is
appended atomically with the resolved config through ``talr_theory.results.ResultsTable``.

Resuming: a run whose rows are all present (or that has a recorded failure row) is skipped; a run
that was interrupted is retrained from its seed (training is deterministic on a given machine) and
only the missing rows are written, so a sweep killed at any moment and rerun with the same command
ends with exactly one row per key. Runs whose loss becomes NaN/inf stop and leave one failure row.

Sharding: ``shard="K/N"`` runs only the K-th of N disjoint round-robin slices of the grid, so N
processes (one per GPU, a SLURM array) can write into one ``out``; rows are per-key files, so they
neither collide nor duplicate. Shards leave consolidation to ``merge_sweep`` (``--merge``), which also
reports runs that are still incomplete. ``lm_eval_tasks`` adds lm-eval-harness scores to every
checkpoint row (``training.lmeval``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from talr_theory.configs import AT_LEAST_ONE, COUNT, POSITIVE, to_dict
from talr_theory.training.config import METHODS, TrainConfig, checkpoint_steps

KEY_FIELDS = ("method", "lr", "seed", "step", "wise_alpha")


@dataclass
class SweepConfig:
    """What to sweep over and how to measure; the per-run training options live in ``train``."""

    model: str = field(default="smollm2-135m", metadata={"help": "model spec (smollm2-135m, stories260k, "
                                                                   "tiny-random, a path or a hub id)"})
    data: str = field(default="medcalc-synth", metadata={"help": "SFT data spec (medcalc-synth[:N], "
                                                                 "medcalc-bench, a .csv or .jsonl)"})
    format: str = field(default="cot", metadata={"help": "response format for medical data",
                                                  "choices": ("cot", "label")})
    template: str = field(default="none", metadata={"help": "prompt template", "choices": ("none", "chat")})
    methods: tuple[str, ...] = field(default=("sft", "talr"), metadata={"help": "methods: " + ",".join(METHODS)})
    lrs: tuple[float, ...] = field(default=(1e-5, 1e-4), metadata={"check": POSITIVE, "help": "learning rates"})
    seeds: tuple[int, ...] = field(default=(0,), metadata={"help": "seeds"})
    n_train: int = field(default=64, metadata={"check": COUNT, "help": "training examples (0: all of the train split)"})
    n_eval: int = field(default=32, metadata={"check": COUNT, "help": "held-out domain examples (0: all of the eval split)"})
    max_length: int = field(default=512, metadata={"check": COUNT, "help": "truncate encoded examples to this many tokens "
                                                           "(0: no limit; truncations are reported)"})
    general_text: str = field(default="auto", metadata={"help": "general text for ΔL(P1): auto, wikitext, "
                                                                "tinyshakespeare, fallback, a path, or none"})
    general_blocks: int = field(default=16, metadata={"check": AT_LEAST_ONE, "help": "general-text blocks"})
    block_len: int = field(default=128, metadata={"check": AT_LEAST_ONE, "help": "tokens per general-text block"})
    n_samples: int = field(default=16, metadata={"check": COUNT, "help": "base-model samples for KL(q0||qθ) (0: off)"})
    sample_len: int = field(default=64, metadata={"check": AT_LEAST_ONE, "help": "max new tokens per base-model sample"})
    n_accuracy: int = field(default=0, metadata={"check": COUNT, "help": "held-out examples scored by greedy decoding "
                                                         "(0: off; needs checkable answers)"})
    max_new_tokens: int = field(default=96, metadata={"check": AT_LEAST_ONE, "help": "generation budget for accuracy"})
    train_probe: int = field(default=16, metadata={"check": COUNT, "help": "training examples re-scored at checkpoints "
                                                           "(frac p>0.2 on training data)"})
    eval_batch_size: int = field(default=8, metadata={"check": AT_LEAST_ONE, "help": "batch size of evaluation passes"})
    frac_by_base: bool = field(default=False, metadata={
        "help": "also split frac p>0.2 by base difficulty (tokens that started hard vs easy); costs one more "
                "token scan of the held-out and probe examples per checkpoint"})
    save_checkpoints: bool = field(default=False, metadata={
        "help": "save each run's final model (merged for LoRA) to OUT/checkpoints/METHOD_lrLR_seedSEED, "
                "loadable as a model spec; one full copy per run (~4 bytes/parameter in fp32)"})
    out: str = field(default="runs/sweep", metadata={"help": "output folder (rows, results.parquet/csv)"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ...", "default_text": "cuda when present"})
    dtype: str | None = field(default=None, metadata={"help": "float32, bfloat16",
                                                      "default_text": "bfloat16 on CUDA, float32 on CPU"})
    lm_eval_tasks: str = field(default="", metadata={"help": "lm-eval-harness tasks scored on the in-memory "
                                                             "model at every checkpoint, e.g. mmlu,gsm8k,ifeval "
                                                             "(needs the lmeval extra; empty: off)"})
    lm_eval_include: str = field(default="", metadata={"help": "folder of extra lm-eval task YAMLs"})
    lm_eval_limit: int = field(default=0, metadata={"help": "examples per lm-eval task (0: all)"})
    lm_eval_fewshot: int = field(default=-1, metadata={"help": "lm-eval few-shot examples (-1: the task's own number)"})
    shard: str = field(default="", metadata={"help": "K/N: run only the K-th (0-based) of N disjoint slices of "
                                                     "the methods × lrs × seeds grid; N processes (one per "
                                                     "GPU, or a SLURM array) share one --out, then --merge"})
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> SweepConfig:
        def bad(name, value, expected):
            from talr_theory.configs import human_value

            raise ValueError(f"--{name.replace('_', '-')} {human_value(value)}: expected {expected}")

        if not self.methods:
            bad("methods", self.methods, "at least one method")
        for m in self.methods:
            if m not in METHODS:
                bad("methods", m, f"methods among {', '.join(METHODS)}")
        if not self.lrs:
            bad("lrs", self.lrs, "at least one learning rate")
        if not self.seeds:
            bad("seeds", self.seeds, "at least one seed")
        for name in ("n_train", "n_eval", "max_length", "n_samples", "n_accuracy", "train_probe"):
            if getattr(self, name) < 0:
                bad(name, getattr(self, name), "an integer >= 0")
        for name in ("general_blocks", "block_len", "sample_len", "eval_batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                bad(name, getattr(self, name), "an integer >= 1")
        if self.dtype not in (None, "auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16"):
            bad("dtype", self.dtype, "float32, bfloat16, float16 or auto")
        parse_shard(self.shard)
        if self.lm_eval_limit < 0 or self.lm_eval_fewshot < -1:
            bad("lm_eval_limit/lm_eval_fewshot", (self.lm_eval_limit, self.lm_eval_fewshot), ">= 0 and >= -1")
        if self.lm_eval_include and not Path(self.lm_eval_include).is_dir():
            bad("lm_eval_include", self.lm_eval_include, "an existing folder of lm-eval task YAMLs")
        # Every run's training config must be valid before any work starts.
        for run in self.runs():
            run.validate()
        return self

    def runs(self) -> list[TrainConfig]:
        return [dataclasses.replace(self.train, method=m, lr=float(lr), seed=int(s))
                for m in self.methods for lr in self.lrs for s in self.seeds]


def expected_keys(run: TrainConfig) -> list[dict]:
    alphas = run.wise_alphas if run.method == "wise-ft" else (1.0,)
    return [{"method": run.method, "lr": float(run.lr), "seed": int(run.seed), "step": int(s),
             "wise_alpha": float(a)} for s in checkpoint_steps(run.steps, run.eval_every) for a in alphas]


def checkpoint_dir(out: str | Path, run: TrainConfig) -> Path:
    """Where ``--save-checkpoints`` puts a run's final model (a Hugging Face folder)."""
    return Path(out) / "checkpoints" / f"{run.method}_lr{run.lr:g}_seed{run.seed}"


def save_checkpoint(model, tokenizer, folder: Path) -> Path:
    """Save ``model`` (LoRA adapters merged into the weights) and ``tokenizer`` to ``folder``, written
    to a temporary folder first so an interrupted save never leaves a half-written checkpoint."""
    import shutil

    if hasattr(model, "merge_and_unload"):  # a peft model: the run's model is discarded afterwards
        model = model.merge_and_unload()
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def load_config_file(path: str) -> dict:
    """Flat JSON or TOML mapping of SweepConfig/TrainConfig field names to values."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"sweep config file not found: {p}")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError as err:  # Python 3.10
            raise ValueError(f"{p}: reading TOML needs Python >= 3.11 (tomllib); use JSON") from err
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{p}: invalid TOML: {err}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{p}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a mapping of option names to values, got {type(data).__name__}")
    return data


def build_config(values: dict, source: str = "config") -> SweepConfig:
    """A SweepConfig from a flat mapping (sweep and training fields mixed); unknown keys are errors."""
    sweep_fields = {f.name: f for f in dataclasses.fields(SweepConfig) if f.name != "train"}
    train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    sweep_kwargs, train_kwargs = {}, {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name in ("method", "lr", "seed"):
            raise ValueError(f"{source}: {key!r} is set per run; use {name}s (a list) instead")
        if name in sweep_fields:
            if name in ("methods", "lrs", "seeds") and isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if name in ("methods", "lrs", "seeds"):
                cast = {"methods": str, "lrs": float, "seeds": int}[name]
                try:
                    value = tuple(cast(v) for v in value)
                except (TypeError, ValueError):
                    raise ValueError(f"{source}: {key}={value!r} is not a list of {cast.__name__}") from None
            sweep_kwargs[name] = value
        elif name in train_fields:
            if name == "wise_alphas" and not isinstance(value, (list, tuple)):
                value = (value,)
            if name == "wise_alphas":
                value = tuple(float(v) for v in value)
            if name == "tau":
                value = str(value)
            train_kwargs[name] = value
        else:
            raise ValueError(f"{source}: unknown option {key!r}; expected one of "
                             f"{', '.join(sorted(set(sweep_fields) | set(train_fields) - {'method', 'lr', 'seed'}))}")
    return SweepConfig(**sweep_kwargs, train=TrainConfig(**train_kwargs))


def _run_config_dict(config: SweepConfig, run: TrainConfig) -> dict:
    d = to_dict(config)
    d["train"] = to_dict(run)
    return d


# What never changes a sweep's rows: where they go, which process/device computes them, extra copies.
NOT_FINGERPRINTED = ("out", "shard", "device", "save_checkpoints")
# What ``--overwrite`` discards.
SWEEP_RESULTS = ("rows", "results.parquet", "results.csv", "figures", "checkpoints")


def experiment_config(config: SweepConfig) -> dict:
    """The part of the resolved config that determines the rows (the folder's fingerprint)."""
    d = {k: v for k, v in to_dict(config).items() if k not in NOT_FINGERPRINTED}
    d["train"] = {k: v for k, v in d["train"].items() if k not in ("method", "lr", "seed")}
    return d


def run_sweep(config: SweepConfig, progress: bool = True, log=None, overwrite: bool = False,
              command: str = "") -> dict:
    """Run (or resume) the sweep; return a summary dict (the ``--json`` payload). Messages go to ``log`` (stderr).

    The folder ``config.out`` holds one experiment: a rerun with another config raises
    ``outputs.OutputConflict`` naming the differing fields before anything is written (``overwrite``
    discards the old results instead), and a second process on the same folder is refused.
    """
    from talr_theory.outputs import claim_folder

    config.validate()
    with claim_folder(config.out, "sweep", experiment_config(config), writer=shard_writer(config.shard),
                      overwrite=overwrite, results=SWEEP_RESULTS, command=command,
                      recovered=lambda: legacy_experiment(config.out)):
        return _run_sweep(config, progress, log if log is not None else sys.stderr)


def legacy_experiment(out: str) -> dict | None:
    """The experiment record of a folder written before records existed, from one row's ``config_json``."""
    rows = sorted((Path(out) / "rows").glob("*.parquet")) if (Path(out) / "rows").is_dir() else []
    if not rows:
        return None
    import pandas as pd

    try:
        stored = json.loads(pd.read_parquet(rows[0], columns=["config_json"])["config_json"].iloc[0])
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        train = TrainConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in stored.pop("train").items()
                               if k in known})
        fields = {f.name for f in dataclasses.fields(SweepConfig)} - {"train"}
        sweep = SweepConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in stored.items() if k in fields},
                            train=train)
    except (KeyError, TypeError, ValueError, OSError):
        return None  # unreadable: the folder is adopted as it is (nothing better is known)
    return experiment_config(sweep)


def _run_sweep(config: SweepConfig, progress: bool, log) -> dict:
    import torch
    from tqdm.auto import tqdm

    from talr_theory.data.encode import encode_examples
    from talr_theory.data.general import load_general_text
    from talr_theory.data.sft import load_sft
    from talr_theory.models import load_model, pad_token_id
    from talr_theory.results import ResultsTable
    from talr_theory.training.core import train
    from talr_theory.training.evaluation import CheckpointEvaluator
    from talr_theory.training.samples import sample_from_model

    runs = shard_runs(config.runs(), config.shard)
    table = ResultsTable(config.out, KEY_FIELDS, writer=shard_writer(config.shard))
    existing = table.load()
    failed_runs = set()
    if len(existing) and "status" in existing.columns:
        for _, r in existing[existing["status"] == "failed"].iterrows():
            failed_runs.add((r["method"], float(r["lr"]), int(r["seed"])))
    todo = [r for r in runs if (r.method, r.lr, r.seed) not in failed_runs
            and (not all(table.has(k) for k in expected_keys(r))
                 or (config.save_checkpoints and not checkpoint_dir(config.out, r).is_dir()))]
    summary = {"out": str(Path(config.out).resolve()), "n_runs": len(runs), "n_skipped": len(runs) - len(todo)}
    print(f"sweep: {len(runs)} runs, {len(runs) - len(todo)} already complete, {len(todo)} to do -> {config.out}",
          file=log)

    if todo:
        loaded = load_model(config.model, device=config.device, dtype=config.dtype)
        tok, pad = loaded.tokenizer, pad_token_id(loaded.tokenizer)
        limit = lambda n: n if n > 0 else None  # noqa: E731
        train_sft = load_sft(config.data, format=config.format, split="train", limit=limit(config.n_train))
        eval_sft = load_sft(config.data, format=config.format, split="eval", limit=limit(config.n_eval))
        max_len = config.max_length or None
        enc_train = encode_examples(train_sft, tok, template=config.template, max_length=max_len)
        enc_eval = encode_examples(eval_sft, tok, template=config.template, max_length=max_len)
        for name, enc in (("train", enc_train), ("eval", enc_eval)):
            if enc.n_truncated:
                print(f"sweep: {enc.n_truncated} {name} examples truncated to {max_len} tokens"
                      f"{f', {len(enc.dropped_ids)} dropped (no response left)' if enc.dropped_ids else ''}",
                      file=log)
        if not enc_train.examples or not enc_eval.examples:
            raise ValueError(f"data {config.data!r}: {len(train_sft)} train / {len(eval_sft)} eval examples loaded, "
                             f"{len(enc_train.examples)} / {len(enc_eval.examples)} left after encoding; both "
                             f"splits need at least one (use more data or a larger --max-length)")
        general = None
        if config.general_text != "none":
            general = load_general_text(tok, config.general_text, config.general_blocks, config.block_len)
            print(f"sweep: general text = {general.source}, {len(general.examples)} blocks", file=log)
        samples = None
        if config.n_samples > 0:
            samples = sample_from_model(loaded.model, tok, config.n_samples, config.sample_len, seed=0,
                                        batch_size=config.eval_batch_size, pad_id=pad)
        accuracy_items = []
        if config.n_accuracy > 0:
            for ex, enc in zip(eval_sft, enc_eval.examples):
                if len(accuracy_items) == config.n_accuracy:
                    break
                if "lower" in ex.meta and enc.example_id == ex.example_id:
                    prompt_ids = [t for t, lab in zip(enc.input_ids, enc.labels) if lab == -100]
                    accuracy_items.append((prompt_ids, ex.meta))
            if not accuracy_items:
                print("sweep: no held-out example has a checkable answer; accuracy is off", file=log)
        evaluator = CheckpointEvaluator(
            enc_eval.examples, general.examples if general else None, samples,
            enc_train.examples[: config.train_probe] if config.train_probe else None, accuracy_items, tok,
            pad_id=pad, batch_size=config.eval_batch_size, bf16_autocast=config.train.bf16_autocast,
            max_new_tokens=config.max_new_tokens, split_by_base=config.frac_by_base)
        evaluator = with_benchmarks(evaluator, config, tok, log)
        print("sweep: measuring the base model", file=log)
        baseline = evaluator.set_baseline(loaded.model)
        summary["baseline"] = baseline
        flow_cache: dict = {}
        runs_bar = tqdm(todo, desc="sweep runs", total=len(todo), unit="run", disable=not progress)
        for run in runs_bar:
            cfg_dict = _run_config_dict(config, run)

            def on_checkpoint(row, _model, cfg_dict=cfg_dict):
                key = table.key_of(row)
                key = {**key, "lr": float(key["lr"]), "wise_alpha": float(key["wise_alpha"])}
                if not table.has(key):
                    record = dict(row, lr=float(row["lr"]), model=config.model, data=config.data,
                                  format=config.format, n_train=len(enc_train.examples),
                                  n_eval=len(enc_eval.examples))
                    table.append(record, cfg_dict)

            if run.method == "flow" and run.flow_tau not in flow_cache:
                from talr_theory.training.core import flow_weights_for

                flow_cache[run.flow_tau] = flow_weights_for(loaded.model, enc_train.examples, pad,
                                                            config.eval_batch_size, run.flow_tau or None)
            model = copy.deepcopy(loaded.model)
            torch.manual_seed(run.seed)
            result = train(model, enc_train.examples, run, evaluator=announced(evaluator, runs_bar, run),
                           on_checkpoint=on_checkpoint,
                           pad_id=pad, flow_weights=flow_cache.get(run.flow_tau) if run.method == "flow" else None,
                           progress=progress, progress_desc=f"{run.method} lr={run.lr:g} seed={run.seed}")
            if result.status != "ok":
                print(f"sweep: {run.method} lr={run.lr:g} seed={run.seed} FAILED: {result.failure}", file=log)
            elif config.save_checkpoints:
                saved = save_checkpoint(result.model, tok, checkpoint_dir(config.out, run))
                print(f"sweep: final model saved to {saved}", file=log)
            del model, result

    if config.shard:
        # Another shard may still be writing: the consolidated files are left to --merge (or a plain rerun).
        frame = table.load()
        if len(frame):
            mine = {(r.method, float(r.lr), int(r.seed)) for r in runs}
            frame = frame[[(m, float(lr), int(sd)) in mine
                           for m, lr, sd in zip(frame["method"], frame["lr"], frame["seed"])]]
        summary["shard"] = config.shard
    else:
        frame = table.consolidate()
    summary.update(final_summary(frame))
    return summary


def announced(evaluator, bar, run: TrainConfig):
    """``evaluator`` that says on ``bar`` what it is doing: an evaluation can take longer than many steps,
    and a bar that stands still without saying why reads as a hang."""
    label = f"{run.method} lr={run.lr:g} seed={run.seed}"

    def evaluate(model, step):
        bar.set_postfix_str(f"evaluating {label} at step {step}/{run.steps}", refresh=True)
        try:
            return evaluator(model, step)
        finally:
            bar.set_postfix_str(f"training {label}", refresh=True)

    return evaluate


def with_benchmarks(evaluator, config: SweepConfig, tokenizer, log):
    """The checkpoint evaluator, plus lm-eval benchmark scores when ``config.lm_eval_tasks`` is set."""
    if not config.lm_eval_tasks:
        return evaluator
    from talr_theory.training.lmeval import BenchmarkEvaluator, BenchmarkScorer

    scorer = BenchmarkScorer(config.lm_eval_tasks, tokenizer, include_path=config.lm_eval_include or None,
                             limit=config.lm_eval_limit or None, batch_size=config.eval_batch_size,
                             num_fewshot=None if config.lm_eval_fewshot < 0 else config.lm_eval_fewshot)
    print(f"sweep: lm-eval tasks {', '.join(scorer.tasks)} at every checkpoint", file=log)
    return BenchmarkEvaluator(evaluator, scorer)


def parse_shard(text: str) -> tuple[int, int] | None:
    """``"K/N"`` -> (K, N) with 0 <= K < N; ``""`` -> None (the whole grid)."""
    if not text:
        return None
    try:
        k, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard {text}: expected K/N with integers, e.g. 0/4") from None
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"--shard {text}: expected K/N with N >= 1 and 0 <= K < N")
    return k, n


def shard_runs(runs: list[TrainConfig], shard: str) -> list[TrainConfig]:
    """The K-th of N disjoint slices of ``runs``, dealt round-robin so each shard gets a mix of methods/LRs.

    Every process of a sharded sweep builds the same grid, so the N slices are disjoint and cover it.
    """
    parsed = parse_shard(shard)
    if parsed is None:
        return runs
    k, n = parsed
    return runs[k::n]


def shard_writer(shard: str) -> str:
    """The name a process writes its temporary row files under (cleanup after a kill touches only its own)."""
    parsed = parse_shard(shard)
    return "main" if parsed is None else f"shard-{parsed[0]}-of-{parsed[1]}"


def merge_sweep(out: str, log=None) -> dict:
    """Consolidate the rows that every shard wrote into ``out`` (results.parquet/csv); report incomplete runs.

    Completeness is judged per (method, lr, seed) from the resolved config stored in its own rows, so it
    needs no grid flags: a run is incomplete when it has neither all its checkpoint rows nor a failure row.
    """
    from talr_theory.results import ResultsTable

    log = log if log is not None else sys.stderr
    rows_dir = Path(out) / "rows"
    if not rows_dir.is_dir():
        raise FileNotFoundError(f"--merge: {rows_dir} does not exist (no sweep has written to --out {out})")
    from talr_theory.outputs import acquire_lock, release_lock

    lock = acquire_lock(Path(out), "merge", "talr-theory sweep --merge")  # refused while an unsharded sweep writes
    try:
        frame = ResultsTable(out, KEY_FIELDS, writer="merge").consolidate()
    finally:
        release_lock(lock)
    incomplete = []
    if len(frame):
        for (method, lr, seed), group in frame.groupby(["method", "lr", "seed"], sort=True):
            if "status" in group.columns and (group["status"] == "failed").any():
                continue
            stored = json.loads(group["config_json"].iloc[0])["train"]
            known = {f.name for f in dataclasses.fields(TrainConfig)}
            run = TrainConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in stored.items() if k in known})
            have = {(int(r.step), float(r.wise_alpha)) for r in group.itertuples()}
            missing = [k for k in expected_keys(run) if (k["step"], k["wise_alpha"]) not in have]
            if missing:
                incomplete.append({"method": method, "lr": float(lr), "seed": int(seed), "n_missing": len(missing)})
    n_runs = int(frame[["method", "lr", "seed"]].drop_duplicates().shape[0]) if len(frame) else 0
    print(f"sweep --merge: {len(frame)} rows from {n_runs} runs in {out}"
          + (f"; {len(incomplete)} run(s) incomplete (rerun their shard)" if incomplete else ""), file=log)
    summary = {"out": str(Path(out).resolve()), "n_runs": n_runs, "incomplete": incomplete}
    summary.update(final_summary(frame))
    return summary


def final_summary(frame) -> dict:
    """Per (method, lr): the last checkpoint's Δ*, ΔL(P1) (text and KL) averaged over seeds."""
    if frame is None or not len(frame):
        return {"n_rows": 0, "final": []}
    cols = [c for c in ("delta_star", "delta_star_per_token", "delta_L_text", "kl_base", "kl_base_se",
                        "accuracy", "frac_p_gt_0.2", "mean_weight", "bench_mean", "bench_drop")
            if c in frame.columns]
    ok = frame[frame["status"] == "ok"] if "status" in frame.columns else frame
    rows = []
    if len(ok):
        last = ok.loc[ok.groupby(["method", "lr", "seed", "wise_alpha"])["step"].idxmax()]
        agg = last.groupby(["method", "lr", "wise_alpha"])[cols].mean().reset_index()
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                for r in agg.to_dict(orient="records")]
    n_failed = int((frame["status"] == "failed").sum()) if "status" in frame.columns else 0
    return {"n_rows": int(len(frame)), "n_failed_rows": n_failed, "final": rows}
