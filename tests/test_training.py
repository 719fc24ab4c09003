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


def test_balanced_real_photos_follow_the_distribution_of_balanced_fake_rows():
    import numpy as np

    from facegen.attributes import AttributePrior
    from facegen.training.cgan import CGANMethod

    rng = np.random.default_rng(0)
    labels = np.zeros((400, 3), dtype=np.uint8)  # Eyeglasses on 6%, Young on 78%, Smiling on half, correlated
    labels[:24, 0] = 1
    labels[:, 1] = rng.random(400) < np.where(labels[:, 0] == 1, 0.3, 0.8)
    labels[:, 2] = rng.random(400) < 0.5
    names = ["Eyeglasses", "Young", "Smiling"]
    prior = AttributePrior.from_labels(labels, names)
    method = CGANMethod(attribute_names=names, size=64, prior=prior, balance=1.0, balance_real=1.0)
    weights = method.real_weights(labels)
    p = weights / weights.sum()
    torch.manual_seed(0)
    rows = method._balanced_rows(60_000, "cpu").numpy()
    # The same marginals and the same pairwise co-occurrences as the fake rows the generator is asked for.
    for a in range(3):
        assert abs(p @ labels[:, a] - rows[:, a].mean()) < 0.01, names[a]
        for b in range(a + 1, 3):
            assert abs(p @ (labels[:, a] & labels[:, b]) - (rows[:, a] * rows[:, b]).mean()) < 0.01
    assert p @ labels[:, 0] > 0.2  # glasses photos come up far more often than their 6%
    half = CGANMethod(attribute_names=names, size=64, prior=prior, balance_real=0.5).real_weights(labels)
    assert np.allclose(half / half.sum(), 0.5 / 400 + 0.5 * p)
    assert CGANMethod(attribute_names=names, size=64, prior=prior).real_weights(labels) is None  # plain epochs
    with pytest.raises(ValueError, match="balance_real"):
        CGANMethod(attribute_names=names, size=64, prior=prior, balance_real=-0.1)


def test_weighted_batches_are_drawn_by_weight_and_the_same_on_any_number_of_processes():
    import numpy as np

    from facegen.training.method import Batches

    images = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1).repeat(3, axis=3)  # image i is all i
    labels = np.arange(20, dtype=np.uint8)[:, None]
    weights = np.where(np.arange(20) < 5, 3.0, 0.0)  # only the first five, evenly
    weights[5] = 1.0  # and image 5 a third as often as each of them

    def seen(world: int, step: int) -> list[int]:
        parts = [Batches(images, labels, np.arange(20), batch_size=8, seed=3, rank=r, world_size=world,
                         flip=False, weights=weights)(step) for r in range(world)]
        return sorted(int(v) for _, y in parts for v in y[:, 0])

    counts = np.bincount([i for step in range(400) for i in seen(1, step)], minlength=20)
    assert counts[6:].sum() == 0 and counts[:5].min() > 500
    assert abs(counts[5] / counts[:5].mean() - 1 / 3) < 0.08
    for step in (0, 7, 1000):
        assert seen(1, step) == seen(2, step) == seen(4, step)
    assert seen(1, 0) != seen(1, 1)


def test_cgan_trains_with_balanced_rows_and_its_own_auxiliary_weight(tiny_cache, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(tiny_cache, run, "--set", "balance=0.5", "--set", "aux_weight_g=2.0",
                  "--set", "balance_real=0.5") == 0
    options = json.loads((run / "training_options.json").read_text())["method_options"]
    assert options["balance"] == 0.5 and options["aux_weight_g"] == 2.0 and options["balance_real"] == 0.5
    assert all(torch.isfinite(torch.tensor(row["aux_g"])) for row in logged_losses(run))
    assert _train(tiny_cache, tmp_path / "bad", "--set", "balance=2") == 2
    assert "balance must be in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before the run folder is made
