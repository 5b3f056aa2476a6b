"""General capability as benchmark scores: lm-eval-harness on the in-memory model at checkpoints.

``BenchmarkScorer(tasks, tokenizer, include_path=..., limit=...)(model)`` wraps the model object the
sweep is training in lm-eval's ``HFLM`` (no save, no reload) and runs ``lm_eval.simple_evaluate`` on
the tasks. It returns flat metrics for the checkpoint row:

- ``bench/<task>/<metric>`` and ``bench/<task>/<metric>_stderr`` for every metric lm-eval reports
  (its ``"acc,none"`` becomes ``acc``; other filters keep their name, ``exact_match,strict-match`` ->
  ``exact_match:strict-match``);
- ``bench_mean``: the mean over tasks of each task's first reported metric (e.g. ``acc``, ``exact_match``).

``BenchmarkEvaluator`` adds these to another checkpoint evaluator's metrics, with ``bench_drop`` =
baseline ``bench_mean`` minus the current one (positive = general capability lost, the sign of ΔL(P1)),
so the trade-off figure can put benchmark score on its general axis. ``tidy_benchmarks(frame)`` turns
the ``bench/`` columns of a sweep table into long rows (one per run, step, task and metric).

Tasks are lm-eval task names (``mmlu,gsm8k,ifeval`` on a GPU) or the names of YAML tasks in
``include_path`` (e.g. a local JSONL via ``dataset_path: json`` and ``dataset_kwargs: {data_files: ...}``).
Needs the ``lmeval`` extra. lm-eval reseeds the global RNGs; the scorer restores them so training
is not perturbed by an evaluation.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch

BENCH_PREFIX = "bench/"


def _metric_name(key: str) -> str:
    metric, _, filt = key.partition(",")
    return metric if filt in ("", "none") else f"{metric}:{filt}"


def flatten_results(results: dict, tasks: list[str]) -> dict:
    """``bench/<task>/<metric>`` (+ ``_stderr``) and ``bench_mean`` from lm-eval's ``results`` mapping."""
    out, primary = {}, []
    for task in tasks:
        if task not in results:
            raise ValueError(f"lm-eval returned no result for task {task!r} (got {sorted(results)})")
        first = None
        for key, value in results[task].items():
            if "," not in key or key.split(",")[0].endswith("_stderr"):
                continue
            name = _metric_name(key)
            stderr = results[task].get(key.replace(",", "_stderr,", 1))
            out[f"{BENCH_PREFIX}{task}/{name}"] = float(value)
            out[f"{BENCH_PREFIX}{task}/{name}_stderr"] = (float(stderr) if isinstance(stderr, (int, float))
                                                         else math.nan)
            if first is None:
                first = float(value)
        if first is None:
            raise ValueError(f"lm-eval task {task!r} reported no metric: {results[task]}")
        primary.append(first)
    out["bench_mean"] = float(np.mean(primary))
    return out


class BenchmarkScorer:
    """Scores a model object on lm-eval tasks; ``__call__(model) -> dict`` (see the module docs)."""

    def __init__(self, tasks: list[str] | str, tokenizer, include_path: str | None = None, limit: int | None = None,
                 batch_size: int = 8, max_length: int | None = None, num_fewshot: int | None = None,
                 bootstrap_iters: int = 1000):
        try:
            from lm_eval.tasks import TaskManager
        except ImportError as err:
            raise ImportError("benchmark scores need lm-eval-harness (optional): "
                              "pip install 'talr-theory[lmeval]'") from err
        self.tasks = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
        self.tasks = [t for t in self.tasks if t]
        if not self.tasks:
            raise ValueError("BenchmarkScorer needs at least one lm-eval task name")
        self.task_manager = None
        if include_path:
            # Indexing lm-eval's hundreds of built-in tasks takes seconds: skip it when the local folder has them all.
            local = TaskManager(include_path=include_path, include_defaults=False)
            if all(t in local.all_tasks for t in self.tasks):
                self.task_manager = local
        if self.task_manager is None:
            self.task_manager = TaskManager(include_path=include_path) if include_path else TaskManager()
        unknown = [t for t in self.tasks if t not in self.task_manager.all_tasks]
        if unknown:
            where = f" or in {include_path}" if include_path else ""
            raise ValueError(f"unknown lm-eval task(s) {unknown}: not among lm-eval's tasks{where}")
        self.tokenizer, self.limit, self.batch_size = tokenizer, limit, batch_size
        self.max_length, self.num_fewshot, self.bootstrap_iters = max_length, num_fewshot, bootstrap_iters
        self.last_output: dict | None = None

    @torch.no_grad()
    def __call__(self, model) -> dict:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM

        device = next(model.parameters()).device
        wrapped = HFLM(pretrained=model, tokenizer=self.tokenizer, batch_size=self.batch_size, device=str(device),
                       max_length=self.max_length)
        py_state, np_state = random.getstate(), np.random.get_state()
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            output = simple_evaluate(model=wrapped, tasks=self.tasks, task_manager=self.task_manager,
                                     limit=self.limit, num_fewshot=self.num_fewshot,
                                     bootstrap_iters=self.bootstrap_iters, log_samples=True, verbosity="ERROR")
        random.setstate(py_state)
        np.random.set_state(np_state)
        self.last_output = output
        return flatten_results(output["results"], self.tasks)


class BenchmarkEvaluator:
    """``evaluator(model, step)`` of another evaluator plus benchmark scores and ``bench_drop``.

    ``set_baseline(model)`` scores the base model (and calls the inner evaluator's ``set_baseline``).
    """

    def __init__(self, inner, scorer: BenchmarkScorer):
        self.inner, self.scorer = inner, scorer
        self.baseline: dict | None = None

    def set_baseline(self, model) -> dict:
        base = dict(self.inner.set_baseline(model)) if hasattr(self.inner, "set_baseline") else {}
        self.baseline = self.scorer(model)
        base.update(self.baseline)
        return base

    def __call__(self, model, step: int) -> dict:
        if self.baseline is None:
            raise RuntimeError("BenchmarkEvaluator.set_baseline(base_model) must run before training")
        metrics = dict(self.inner(model, step)) if self.inner is not None else {}
        scores = self.scorer(model)
        scores["bench_drop"] = self.baseline["bench_mean"] - scores["bench_mean"]
        metrics.update(scores)
        return metrics


def tidy_benchmarks(frame, id_columns=("method", "lr", "seed", "step", "wise_alpha")):
    """Long rows (ids..., task, metric, value, stderr) from the ``bench/<task>/<metric>`` columns of a sweep table."""
    import pandas as pd

    cols = [c for c in frame.columns if c.startswith(BENCH_PREFIX) and not c.endswith("_stderr")]
    rows = []
    for col in cols:
        task, metric = col[len(BENCH_PREFIX):].split("/", 1)
        part = frame[[c for c in id_columns if c in frame.columns]].copy()
        part["task"], part["metric"], part["value"] = task, metric, frame[col]
        err = f"{col}_stderr"
        part["stderr"] = frame[err] if err in frame.columns else math.nan
        rows.append(part)
    columns = [*[c for c in id_columns if c in frame.columns], "task", "metric", "value", "stderr"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)
