"""A run killed anywhere resumes to the very weights of an uninterrupted run, its logs holding each step once.

Kills land at drawn steps (between checkpoints too), in the middle of writing a checkpoint (leaving the
half-written temporary a kill -9 leaves), and, once, as a real SIGKILL of a training process.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY, logged_losses, run_cli

STEPS, EVERY = 8, 3  # checkpoints at 3, 6 and 8: most steps lie between two


class Killed(BaseException):
    """Stands for kill -9: not an Exception, so nothing in facegen catches it."""


def _args(cache, run, steps=STEPS):
    return ["train", "cgan", "--data", cache, "--out", run, "--attrs", "young,male", "--steps", steps,
            "--batch-size", 4, "--log-every", 1, "--sample-every", 4, "--checkpoint-every", EVERY, "--no-progress",
            "--threads", 1, *TINY["cgan"]]


@pytest.fixture(scope="module")
def straight(tiny_cache, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("straight") / "run"
    assert run_cli(*_args(tiny_cache, run)) == 0
    return run


def _weights(run: Path) -> dict:
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["state"]["modules"]
    return {f"{name}.{key}": value for name, module in state.items() for key, value in module.items()}


def _assert_same_run(run: Path, straight: Path) -> None:
    assert logged_losses(run) == logged_losses(straight)  # every step once, with the same losses
    steps = [int(line.split()[0][5:]) for line in (run / "log.txt").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))
    leftovers = [p for p in run.rglob("*") if p.name.endswith(".tmp") or p.name.endswith(".tmp.png")]
    assert not leftovers, leftovers
    a, b = _weights(run), _weights(straight)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    previous = torch.load(run / "checkpoints" / "previous.pt", weights_only=True)
    assert previous["step"] == 6  # the checkpoint before the last is kept


def _kill_at(monkeypatch, step: int) -> None:
    from facegen.training.cgan import CGANMethod

    real = CGANMethod.training_step

    def training_step(self, x, y, at):
        if at == step:
            raise Killed
        return real(self, x, y, at)

    monkeypatch.setattr(CGANMethod, "training_step", training_step)


def _kill_while_writing(monkeypatch, at_step: int) -> None:
    """Die inside torch.save of the checkpoint at `at_step`, leaving half a temporary file, as kill -9 would."""
    from facegen.training import checkpoint

    real = torch.save

    def save(payload, path, *args, **kwargs):
        if isinstance(payload, dict) and payload.get("step") == at_step:
            real(payload, path)
            data = Path(path).read_bytes()
            stray = Path(path).with_name(f".last.pt.killed{at_step}.tmp")
            stray.write_bytes(data[: len(data) // 2])  # the half a file a kill leaves; atomic_write's cleanup never ran
            raise Killed
        return real(payload, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", save)


KILL_POINTS = sorted(random.Random(15).sample(range(EVERY + 1, STEPS), 2))  # drawn once; both after a checkpoint


@pytest.mark.parametrize("kill", [*(f"step-{s}" for s in KILL_POINTS), "writing-checkpoint-6"])
def test_killed_anywhere_resumes_to_the_uninterrupted_run(kill, straight, tiny_cache, tmp_path, monkeypatch):
    run = tmp_path / "run"
    where, step = kill.rsplit("-", 1)
    with monkeypatch.context() as patch:
        (_kill_at if where == "step" else _kill_while_writing)(patch, int(step))
        with pytest.raises(Killed):
            run_cli(*_args(tiny_cache, run))
    logged = [row["step"] for row in logged_losses(run)]
    assert logged[-1] >= torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert run_cli("train", "cgan", "--resume", run, "--no-progress") == 0
    _assert_same_run(run, straight)


def test_a_damaged_last_checkpoint_falls_back_to_the_one_before(straight, tiny_cache, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(*_args(tiny_cache, run, steps=6)) == 0
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # a disk that lost the end of it
    capsys.readouterr()
    assert run_cli("train", "cgan", "--resume", run, "--steps", STEPS, "--no-progress") == 0
    err = capsys.readouterr().err
    assert "damaged" in err and "previous.pt (step 3)" in err and "weights_only=False" not in err
    _assert_same_run(run, straight)


def test_a_divergence_before_any_checkpoint_names_none(tiny_cache, tmp_path, monkeypatch, capsys):
    from facegen.training.cgan import CGANMethod

    real = CGANMethod.training_step
    monkeypatch.setattr(CGANMethod, "training_step",
                        lambda self, x, y, step: real(self, x, y, step) | {"loss_g": torch.tensor(float("inf"))})
    assert run_cli(*_args(tiny_cache, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "diverged at step 0" in err and "no checkpoint was written yet" in err and "last good" not in err


def test_a_real_kill_9_resumes_to_the_uninterrupted_run(straight, tiny_cache, tmp_path):
    """kill -9 of a real training process at a drawn moment after its first checkpoint."""
    run = tmp_path / "run"
    env = os.environ | {"PYTHONPATH": str(REPO / "src")}
    slow = ["--set", "g_channels=64"]  # a little more work per step, so the kill lands mid-run
    command = [sys.executable, "-m", "facegen", *map(str, _args(tiny_cache, run, steps=150)), *slow]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (run / "checkpoints" / "last.pt").is_file() and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 4 minutes"
            time.sleep(0.05)
        time.sleep(random.Random(9).uniform(0.0, 0.5))
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    from facegen.training.checkpoint import load_checkpoint

    done = load_checkpoint(run, report=lambda line: None)["step"]
    if done >= 150:
        pytest.skip("the run finished before the kill landed (a very fast machine)")
    assert run_cli("train", "cgan", "--resume", run, "--no-progress") == 0
    whole = tmp_path / "whole"
    assert run_cli(*_args(tiny_cache, whole, steps=150), *slow) == 0
    assert logged_losses(run) == logged_losses(whole)
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    a, b = _weights(run), _weights(whole)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((run / "training_options.json").read_text())["steps"] == 150
