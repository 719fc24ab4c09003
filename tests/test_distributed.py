"""Scale-out: a real two-process DDP training on CPU (gloo), and its resume in one process.

The two-process runs go through the user's command, `facegen train ... --accelerator cpu --devices 2
--strategy ddp`, whose Fabric launcher starts the second process. FACEGEN_DEBUG_WEIGHT_HASHES=DIR makes
every process append "step hash-of-its-parameters" to DIR/rank<r>.txt after setup and after each step.
Each run costs two Python start-ups (about 5 s of CPU each): about 40 s for the file on an idle 2-core machine
(an estimate; with the shipped models training beside it, it took 8 to 10 minutes).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import TINY, run_cli

# Tiny settings of the recipes that conftest does not cover yet.
SMALL = {"fader": ["--set", "channels=8", "--set", "latent_channels=8", "--set", "d_channels=8"],
         "cvae": ["--set", "z_dim=8", "--set", "channels=16", "--set", "d_channels=16"]} | TINY
MODELS = [m for m in ("cgan", "classifier", "fader", "cvae") if importlib.util.find_spec(f"facegen.training.{m}")]
STEPS = 3
# What an earlier in-process Fabric run may leave in os.environ; inherited, it would make the child think it was
# started by a launcher.
LAUNCHER_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "RANK", "LT_CLI_USED")


def _hashes(folder, rank: int) -> dict[int, str]:
    lines = (folder / f"rank{rank}.txt").read_text().split("\n")
    return {int(step): digest for step, digest in (line.split() for line in lines if line)}


def _train_args(model, cache, out, steps):
    args = ["train", model, "--data", cache, "--out", out, "--steps", steps, "--batch-size", 4, "--log-every", 1,
            "--sample-every", 2, "--checkpoint-every", 2, "--threads", 1, "--no-progress", *SMALL.get(model, [])]
    return [str(a) for a in args + ([] if model == "classifier" else ["--attrs", "young,male"])]


@pytest.mark.parametrize("model", MODELS)
def test_two_processes_hold_the_same_weights_and_the_checkpoint_resumes_in_one(model, tiny_cache, tmp_path,
                                                                                  monkeypatch, capsys):
    run, two, one = tmp_path / "run", tmp_path / "hashes-2", tmp_path / "hashes-1"
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env |= {"FACEGEN_DEBUG_WEIGHT_HASHES": str(two), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "facegen", *_train_args(model, tiny_cache, run, STEPS),
               "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    rank0, rank1 = _hashes(two, 0), _hashes(two, 1)
    assert list(rank0) == list(range(STEPS + 1)), rank0  # after setup, then after every step
    assert rank0 == rank1, "the two processes hold different weights"
    assert len(set(rank0.values())) == STEPS + 1, "the weights did not change"
    # Rank 0 alone writes: one report, one stats row per step, one TensorBoard file.
    assert done.stdout.count("done:") == 1
    assert [json.loads(row)["step"] for row in (run / "stats.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert len(list((run / "tensorboard").glob("events.*"))) == 1
    options = json.loads((run / "training_options.json").read_text())
    assert (options["devices"], options["strategy"]) == (2, "ddp")

    # The checkpoint of the two-process run (step 3) continues in this one process.
    monkeypatch.setenv("FACEGEN_DEBUG_WEIGHT_HASHES", str(one))
    assert run_cli("train", model, "--resume", run, "--steps", STEPS + 2, "--devices", 1, "--no-progress") == 0
    resumed = _hashes(one, 0)
    assert list(resumed) == [STEPS, STEPS + 1, STEPS + 2]
    assert resumed[STEPS] == rank0[STEPS], "the resumed process did not load the weights the two processes held"
    assert len(set(resumed.values())) == 3
    options = json.loads((run / "training_options.json").read_text())
    assert (options["devices"], options["strategy"]) == (1, "auto")
    assert f"done: {run}" in capsys.readouterr().out


def test_the_global_batches_do_not_depend_on_the_number_of_processes():
    from facegen.training.method import Batches

    images = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1).repeat(3, axis=3)  # image i is all i
    labels = np.zeros((20, 1), np.uint8)

    def seen(world: int, step: int) -> list[int]:
        parts = [Batches(images, labels, np.arange(20), batch_size=4, seed=7, rank=r, world_size=world,
                         flip=False)(step) for r in range(world)]
        return sorted(round((x[:, 0, 0, 0].item() + 1) * 127.5) for part, _ in parts for x in part.split(1))

    for step in (0, 3, 9, 12):  # within and across epochs
        assert seen(1, step) == seen(2, step) == seen(4, step)


@pytest.mark.parametrize("flags, message", [
    (["--accelerator", "cpu", "--precision", "16-mixed"], "needs a GPU"),
    (["--strategy", "fsdp"], "--strategy fsdp is not supported"),
    (["--devices", "3"], "does not split evenly over 3 processes"),
    (["--devices", "two"], "--devices must be"),
])
def test_device_settings_a_user_gets_wrong_are_one_line_errors(flags, message, tiny_cache, tmp_path, capsys):
    assert run_cli(*_train_args("cgan", tiny_cache, tmp_path / "run", 2), *flags) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_fp16_on_a_machine_without_gpu_is_refused_before_anything_is_written(tiny_cache, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU, where 16-mixed is allowed")
    assert run_cli(*_train_args("cgan", tiny_cache, tmp_path / "run", 2), "--precision", "16-mixed") == 2
    assert "needs a GPU" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bf16_mixed_on_cpu_trains(tiny_cache, tmp_path):
    run = tmp_path / "run"
    assert run_cli(*_train_args("cgan", tiny_cache, run, 2), "--accelerator", "cpu", "--precision", "bf16-mixed") == 0
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(np.isfinite(row["loss_d"]) for row in rows)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_says_it_is_slow(tiny_cache, tmp_path, monkeypatch, capsys, native):
    from facegen.training import options

    monkeypatch.setattr(options, "native_cpu_bf16", lambda: native)
    assert options.precision_note("32-true", cpu=True) is None
    assert options.precision_note("bf16-mixed", cpu=False) is None
    assert run_cli(*_train_args("cgan", tiny_cache, tmp_path / "run", 1), "--accelerator", "cpu",
                   "--precision", "bf16-mixed") == 0
    said = "no native bfloat16" in capsys.readouterr().err
    assert said == (not native)


def test_fabric_run_flags_fill_what_facegen_was_not_told(monkeypatch):
    from facegen.errors import FacegenError
    from facegen.training.loop import fabric_settings

    defaults = {"accelerator": "auto", "devices": 1, "num_nodes": 1, "strategy": "auto", "precision": "32-true"}
    assert fabric_settings(**defaults) == defaults  # not under `fabric run`
    monkeypatch.setenv("LT_CLI_USED", "1")
    monkeypatch.setenv("LT_DEVICES", "4")
    monkeypatch.setenv("LT_NUM_NODES", "2")
    monkeypatch.setenv("LT_PRECISION", "bf16-mixed")
    assert fabric_settings(**defaults) == defaults | {"devices": 4, "num_nodes": 2, "precision": "bf16-mixed"}
    assert fabric_settings(**defaults | {"devices": 4})["devices"] == 4
    with pytest.raises(FacegenError, match="contradicts `fabric run --devices 4`"):
        fabric_settings(**defaults | {"devices": 2})


def test_the_gpu_benchmark_runs_as_a_cpu_smoke_check(tmp_path, monkeypatch):
    """benchmarks/gpu_throughput.py waits for a session with a GPU; this keeps it working until then."""
    import runpy

    from conftest import REPO

    out = tmp_path / "throughput.json"
    monkeypatch.setattr(sys, "argv", ["gpu_throughput.py", "--smoke", "--models", "classifier", "--threads", "1",
                                      "--out", str(out)])
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    runpy.run_path(str(REPO / "benchmarks" / "gpu_throughput.py"), run_name="__main__")
    (row,) = json.loads(out.read_text())["results"]
    assert row["model"] == "classifier" and row["step_images_per_second"] > 0 and row["loop_images_per_second"] > 0
    assert 0 < row["step_fraction_of_measured_matmul"] and row["gflops_per_image"] > 0
