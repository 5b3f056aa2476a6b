"""The shipped accelerate configs: what accelerate's launcher makes of them, and a real 2-process CPU run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _launch_args(config: str):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(REPO / "examples" / config),
                                               "examples/hf_trainer_talr.py"])
    return _validate_launch_command(args)[0]


def test_cpu2_config_takes_the_multi_process_launcher_on_cpu():
    # `--cpu` would select accelerate's single-process launcher; the config must select torchrun's, on CPU
    args = _launch_args("accelerate_cpu2.yaml")
    assert args.multi_gpu and not args.cpu and args.use_cpu and int(args.num_processes) == 2


def test_fsdp_config_parses_as_fsdp():
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = _launch_args("accelerate_fsdp_3b.yaml")
    assert args.use_fsdp and int(args.num_processes) == 8
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"


@pytest.mark.slow  # two training processes through accelerate launch (~20-40 s on 2 cores)
def test_accelerate_launch_runs_two_cpu_processes(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), MASTER_PORT="29531")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "examples" / "accelerate_cpu2.yaml"), "--main_process_port", "29531",
           str(REPO / "examples" / "hf_trainer_talr.py"), "--model", "tiny-random", "--steps", "2",
           "--out", str(tmp_path / "out"), "--output-dir", str(tmp_path / "trainer")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 2
    assert metrics["final_loss"] > 0 and 0 < metrics["last_micro_batch"]["mean_weight"] < 1
