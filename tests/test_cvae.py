"""The conditional VAE: modules, KL schedule, a learning recipe, bit-exact resume and generation (tiny models)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facegen.attributes import AttributePrior
from facegen.cli import main
from facegen.data import prepare_cache
from facegen.models.cvae import Decoder, Encoder, kl_divergence
from conftest import logged_losses
from facegen.training.cvae import CVAEMethod, generator_hinge, kl_weight_at, laplacian_variance

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = {"z_dim": 8, "channels": 32}
TINY_SETTINGS = ["--set", "z_dim=8", "--set", "channels=32", "--set", "d_channels=32"]


@pytest.fixture(scope="module")
def cache16(tmp_path_factory):
    """The six-image fixture data set as a 16x16 cache (4 training images)."""
    out = tmp_path_factory.mktemp("cache") / "c16"
    return prepare_cache(FIXTURES / "official", size=16, out=out, workers=1, progress=False).path


@pytest.mark.parametrize("size", [16, 64])
def test_encoder_and_decoder_shapes_and_ranges(size):
    torch.manual_seed(0)
    E, G = Encoder(n_attributes=3, size=size, **TINY).eval(), Decoder(n_attributes=3, size=size, **TINY).eval()
    x, y = torch.rand(2, 3, size, size) * 2 - 1, torch.tensor([[0.0, 0.5, 1.0], [1.0, 0.25, 0.0]])  # continuous y
    mu, logvar = E(x, y)
    assert mu.shape == logvar.shape == (2, 8) and G.z_dim == 8
    out = G(mu, y)
    assert out.shape == (2, 3, size, size) and out.abs().max() <= 1.0
    assert not torch.allclose(G(mu, y), G(mu, 1 - y))  # the decoder reads y
    with pytest.raises(AssertionError, match="expected z"):
        G(torch.zeros(2, 7), y)


def test_kl_schedule_and_divergence():
    assert [kl_weight_at(s, batch_size=64, kl_weight=0.5, warmup_kimg=6.4) for s in (0, 25, 50, 100, 1000)] == [
        0.0, 0.125, 0.25, 0.5, 0.5]
    assert kl_weight_at(0, batch_size=64, kl_weight=0.5, warmup_kimg=0) == 0.5
    mu, logvar = torch.randn(4, 5), torch.randn(4, 5)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * logvar).exp()), torch.distributions.Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(kl_divergence(mu, logvar), expected)


def test_laplacian_variance_ranks_blur_below_detail():
    torch.manual_seed(0)
    sharp = torch.rand(2, 3, 16, 16) * 2 - 1
    blurred = torch.nn.functional.avg_pool2d(sharp, 3, 1, 1)
    assert (laplacian_variance(blurred) < laplacian_variance(sharp)).all()


def _method(**options) -> CVAEMethod:
    from lightning.fabric import Fabric

    names = ["Young", "Male"]
    prior = AttributePrior.from_labels(np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.uint8), names)
    method = CVAEMethod(attribute_names=names, size=16, prior=prior, batch_size=8, d_channels=32, **TINY, **options)
    torch.manual_seed(0)
    method.configure(Fabric(accelerator="cpu", devices=1))
    return method


def test_losses_go_down_on_a_tiny_batch():
    method = _method(lr=2e-3, kl_warmup_kimg=0.0)
    torch.manual_seed(1)
    x = torch.nn.functional.avg_pool2d(torch.rand(8, 3, 16, 16), 3, 1, 1) * 2 - 1  # smooth, learnable images
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(4, 1)
    stats = [method.training_step(x, y, step) for step in range(25)]
    assert {"loss", "recon_l1", "kl_nats", "loss_d", "adv", "aux"} <= set(stats[0])
    first, last = np.mean([s["recon_l1"] for s in stats[:5]]), np.mean([s["recon_l1"] for s in stats[-5:]])
    assert last < 0.8 * first, (first, last)
    grid, columns = method.sample_grid(_fixed(x, y))
    assert columns == 8 and grid.shape == ((1 + 2 + 2) * 8, 3, 16, 16)
    valid = method.validate(x, y)
    assert set(valid) == {"psnr_db", "kl_nats", "sharpness_rec", "sharpness_prior"}
    assert all(np.isfinite(v) for v in valid.values())


def test_without_adversarial_term_there_is_no_discriminator():
    method = _method(adv_weight=0.0, aux_weight=0.0)
    assert set(method.trainables()) == {"encoder", "decoder"}
    x, y = torch.rand(8, 3, 16, 16) * 2 - 1, torch.rand(8, 2)
    assert set(method.training_step(x, y, 0)) == {"loss", "recon_l1", "kl_nats", "kl_beta"}


def test_adv_reconstructions_weighs_the_critic_on_reconstructions_only():
    """At 0 no gradient of the hinge term reaches the reconstructions; the other decodes' pull is unchanged."""
    score = torch.tensor([0.5, -1.0, 2.0, 0.0, 1.0, -0.5], requires_grad=True)  # 4 reconstructions, 2 samples
    for weight in (0.0, 0.5, 1.0):
        score.grad = None
        generator_hinge(score, 4, weight).backward()
        torch.testing.assert_close(score.grad[:4], torch.full((4,), -weight / 6))
        torch.testing.assert_close(score.grad[4:], torch.full((2,), -1 / 6))
    method = _method(adv_reconstructions=0.0)
    x, y = torch.rand(8, 3, 16, 16) * 2 - 1, torch.randint(0, 2, (8, 2)).float()
    assert np.isfinite(method.training_step(x, y, 0)["adv"].item())
    with pytest.raises(ValueError, match="adv_reconstructions"):
        _method(adv_reconstructions=-1.0)


def _fixed(x, y):
    from facegen.training.method import FixedBatch

    return FixedBatch(x=x, y=y, seed=0)


def _train(cache, out, *extra):
    args = ["train", "cvae", "--data", str(cache), "--attrs", "young,male,smiling", "--batch-size", "4",
            "--log-every", "1", "--sample-every", "2", "--checkpoint-every", "2", "--threads", "1", "--no-progress"]
    return main(args + ["--out", str(out)] + list(extra))




def test_resume_is_bit_for_bit_and_the_model_generates(cache16, tmp_path):
    assert _train(cache16, tmp_path / "whole", "--steps", "4", *TINY_SETTINGS) == 0
    assert _train(cache16, tmp_path / "split", "--steps", "2", *TINY_SETTINGS) == 0
    assert main(["train", "cvae", "--resume", str(tmp_path / "split"), "--steps", "4", "--no-progress"]) == 0
    whole, split = logged_losses(tmp_path / "whole"), logged_losses(tmp_path / "split")
    assert len(whole) == 4 and whole == split
    assert {"val/psnr_db", "val/sharpness_prior"} <= set(whole[1])
    config = json.loads((tmp_path / "whole" / "model" / "config.json").read_text())
    assert config["model"] == "cvae" and set(config["modules"]) == {"encoder", "decoder"}
    assert (tmp_path / "whole" / "samples" / "step-000004.png").is_file()

    grid = tmp_path / "faces.png"
    assert main(["generate", "--model", str(tmp_path / "whole" / "model"), "young=1", "smiling=0.5", "-n", "4",
                 "-o", str(grid)]) == 0
    from PIL import Image

    assert Image.open(grid).size[0] >= 4 * 16


def test_init_from_starts_a_new_run_from_another_runs_weights(cache16, tmp_path, monkeypatch, capsys):
    """Fine-tuning with changed loss weights: the new run's first weights are the source's last, its steps start at 0."""
    assert _train(cache16, tmp_path / "source", "--steps", "2", *TINY_SETTINGS) == 0
    hashes = tmp_path / "hashes"
    monkeypatch.setenv("FACEGEN_DEBUG_WEIGHT_HASHES", str(hashes / "source"))
    assert main(["train", "cvae", "--resume", str(tmp_path / "source"), "--steps", "3", "--no-progress"]) == 0
    monkeypatch.setenv("FACEGEN_DEBUG_WEIGHT_HASHES", str(hashes / "tuned"))
    assert _train(cache16, tmp_path / "tuned", "--steps", "2", *TINY_SETTINGS, "--set", "aux_weight=0.5",
                  "--init-from", str(tmp_path / "source" / "checkpoints" / "last.pt")) == 0
    source = dict(line.split() for line in (hashes / "source" / "rank0.txt").read_text().splitlines())
    tuned = dict(line.split() for line in (hashes / "tuned" / "rank0.txt").read_text().splitlines())
    assert set(source) == {"2", "3"} and set(tuned) == {"0", "1", "2"}
    assert tuned["0"] == source["3"] != source["2"]  # the new run starts where the source's last.pt ended
    options = json.loads((tmp_path / "tuned" / "training_options.json").read_text())
    assert options["init_from"].endswith("last.pt") and options["method_options"]["aux_weight"] == 0.5
    assert len(logged_losses(tmp_path / "tuned")) == 2

    capsys.readouterr()
    assert _train(cache16, tmp_path / "wider", "--steps", "1", "--set", "z_dim=16", "--set", "channels=32",
                  "--set", "d_channels=32", "--init-from", str(tmp_path / "source")) == 2
    assert "does not fit this model" in capsys.readouterr().err
    assert _train(cache16, tmp_path / "none", "--steps", "1", "--init-from", str(tmp_path / "nowhere")) == 2
    assert "no checkpoint" in capsys.readouterr().err and not (tmp_path / "none").exists()
    assert main(["train", "cvae", "--resume", str(tmp_path / "tuned"), "--steps", "3", "--init-from",
                 str(tmp_path / "source"), "--no-progress"]) == 2
    assert "init-from" in capsys.readouterr().err
