"""The shared training loop, through the real CLI, on tiny models and a six-image cache."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY, run_cli, logged_losses


def _train(cache, out, *extra, model="cgan", steps=4, attrs="young,male"):
    args = ["train", model, "--data", cache, "--out", out, "--steps", steps, "--batch-size", 4,
            "--log-every", 1, "--sample-every", 2, "--checkpoint-every", 2, "--no-progress", "--threads", 1]
    if attrs:
        args += ["--attrs", attrs]
    return run_cli(*args, *TINY.get(model, []), *extra)




def test_a_run_writes_its_folder(tiny_cache, tmp_path):
    run = tmp_path / "run"
    assert _train(tiny_cache, run) == 0
    for name in ("training_options.json", "log.txt", "stats.jsonl", "checkpoints/last.pt", "model/config.json",
                 "model/model.safetensors", "samples/step-000002.png", "samples/step-000004.png"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    options = json.loads((run / "training_options.json").read_text())
    assert options["attributes"] == ["Young", "Male"] and options["steps"] == 4
    assert len(logged_losses(run)) == 4


def test_resume_continues_bit_for_bit(tiny_cache, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _train(tiny_cache, straight, steps=6) == 0
    assert _train(tiny_cache, resumed, steps=2) == 0
    assert run_cli("train", "cgan", "--resume", resumed, "--steps", 6, "--no-progress") == 0
    assert logged_losses(straight) == logged_losses(resumed)
    a = torch.load(straight / "checkpoints/last.pt", weights_only=True)["state"]["modules"]["generator"]
    b = torch.load(resumed / "checkpoints/last.pt", weights_only=True)["state"]["modules"]["generator"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_to_change_what_it_trains(tiny_cache, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(tiny_cache, run, steps=2) == 0
    assert run_cli("train", "cgan", "--resume", run, "--steps", 4, "--size", 32) == 2
    assert "keeps its settings" in capsys.readouterr().err
    assert run_cli("train", "cgan", "--resume", run, "--steps", 2) == 2  # already done


def test_study2018_preset_and_classifier_train(tiny_cache, tmp_path):
    assert _train(tiny_cache, tmp_path / "study", "--preset", "study2018", "--set", "g_channels=64",
                  "--set", "d_channels=256") == 0
    config = json.loads((tmp_path / "study/model/config.json").read_text())
    assert config["preset"] == "study2018" and config["modules"]["generator"]["z_dim"] == 100
    assert _train(tiny_cache, tmp_path / "cls", model="classifier", attrs=None) == 0
    stats = logged_losses(tmp_path / "cls")
    assert "val/mean" in stats[-1] and 0.0 <= stats[-1]["val/mean"] <= 1.0
    assert len(json.loads((tmp_path / "cls/model/config.json").read_text())["attribute_names"]) == 40


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tiny_cache, tmp_path, monkeypatch, capsys):
    from facegen.training.cgan import CGANMethod

    real_step = CGANMethod.training_step

    def step(self, x, y, step):
        losses = real_step(self, x, y, step)
        return losses | {"loss_g": torch.tensor(float("nan"))} if step == 2 else losses

    monkeypatch.setattr(CGANMethod, "training_step", step)
    run = tmp_path / "run"
    assert _train(tiny_cache, run, steps=6) == 2
    err = capsys.readouterr().err
    assert "diverged at step 2" in err and "loss_g" in err and "Traceback" not in err
    assert torch.load(run / "checkpoints/last.pt", weights_only=True)["step"] == 2


def test_bad_training_requests(tiny_cache, tmp_path, capsys):
    assert _train(tiny_cache, tmp_path / "a", attrs="young,blnd") == 2
    assert "did you mean" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "precious.txt").write_text("mine")
    assert _train(tiny_cache, tmp_path / "full") == 2
    assert (tmp_path / "full" / "precious.txt").read_text() == "mine"
    assert _train(tiny_cache, tmp_path / "b", "--set", "no_such_setting=1") == 2
    assert _train(tiny_cache, tmp_path / "c", "--size", 48) == 2
    assert run_cli("train", "cgan", "--data", tmp_path / "missing", "--attrs", "young", "--out", tmp_path / "d") == 2


def test_balanced_fake_rows_ask_for_rare_attributes_half_the_time():
    import numpy as np

    from facegen.attributes import AttributePrior
    from facegen.training.cgan import CGANMethod

    # Glasses on 5% of faces, never on a smiling one; 10 of 20 rows smile.
    labels = np.zeros((200, 2), dtype=np.uint8)
    labels[:10, 0] = 1
    labels[100:, 1] = 1
    prior = AttributePrior.from_labels(labels, ["Eyeglasses", "Smiling"])
    method = CGANMethod(attribute_names=["Eyeglasses", "Smiling"], size=64, prior=prior, balance=1.0)
    torch.manual_seed(0)
    rows = method._balanced_rows(20_000, "cpu")
    glasses, smiling = rows[:, 0], rows[:, 1]
    # Eyeglasses is picked half the time and then on for half of those; when Smiling is picked and set to 0
    # (a quarter of rows), a glasses row comes with it a tenth of the time (10 of the 100 non-smiling rows).
    assert abs(glasses.mean().item() - (0.25 + 0.25 * 0.1)) < 0.015
    assert not (glasses * smiling).any()  # the rest of each row is a real label row: never both
    # Shuffled real rows only, as before, when balance is 0 (the same draws, so old runs resume bit for bit).
    plain = CGANMethod(attribute_names=["Eyeglasses", "Smiling"], size=64, prior=prior)
    y = torch.from_numpy(labels[:8].astype(np.float32))
    torch.manual_seed(1)
    expected = y[torch.randperm(8)]
    torch.manual_seed(1)
    assert torch.equal(plain._fake_attributes(y), expected)
    with pytest.raises(ValueError, match="balance"):
        CGANMethod(attribute_names=["Eyeglasses"], size=64, prior=prior, balance=1.5)


def test_cgan_trains_with_balanced_rows_and_its_own_auxiliary_weight(tiny_cache, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(tiny_cache, run, "--set", "balance=0.5", "--set", "aux_weight_g=2.0") == 0
    options = json.loads((run / "training_options.json").read_text())["method_options"]
    assert options["balance"] == 0.5 and options["aux_weight_g"] == 2.0
    assert all(torch.isfinite(torch.tensor(row["aux_g"])) for row in logged_losses(run))
    assert _train(tiny_cache, tmp_path / "bad", "--set", "balance=2") == 2
    assert "balance must be in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before the run folder is made
