"""Fader Networks: the modules (shapes, y at every decoder layer, continuous y) and the recipe on the real loop."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import run_cli, logged_losses
from facegen.models.fader import Decoder, Encoder, LatentDiscriminator, PatchDiscriminator
from facegen.training.fader import FaderMethod, lambda_schedule

TINY = ["--set", "channels=8", "--set", "latent_channels=8", "--set", "d_channels=8"]


@pytest.mark.parametrize("upsample", ["transpose", "nearest"])
@pytest.mark.parametrize("size", [16, 64, 128])
def test_shapes_at_every_size(size, upsample):
    E = Encoder(size=size, channels=8, latent_channels=16)
    D = Decoder(n_attributes=3, size=size, channels=8, latent_channels=16, upsample=upsample)
    z = E(torch.zeros(2, 3, size, size))
    assert z.shape == (2, 16, 8, 8)  # an 8x8 code at every size
    x = D(z, torch.rand(2, 3))
    assert x.shape == (2, 3, size, size) and x.abs().max() <= 1
    assert LatentDiscriminator(n_attributes=3, latent_channels=16)(z).shape == (2, 3)
    for pool in (1, 2):
        score, logits = PatchDiscriminator(n_attributes=3, size=size, channels=8, classifier_pool=pool)(x)
        assert score.shape == (2, 8, 8) and logits.shape == (2, 3)


def test_nearest_decoder_has_no_transposed_convolutions():
    D = Decoder(n_attributes=2, size=64, channels=8, latent_channels=16, upsample="nearest")
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in D.modules())
    with pytest.raises(ValueError, match="upsample"):
        Decoder(n_attributes=2, size=64, upsample="bilinear-ish")


def test_pooled_attribute_trunk_ignores_single_pixel_patterns():
    """With classifier_pool=2 the attribute logits see 2x2 means: a +/- checkerboard of period 2 is invisible."""
    torch.manual_seed(0)
    P = PatchDiscriminator(n_attributes=3, size=16, channels=8, classifier_pool=2).eval()
    x = torch.rand(1, 3, 16, 16) * 0.5
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 0.4 - 0.2  # (16, 16), 2x2 means 0
    assert torch.allclose(P(x)[1], P(x + checker)[1], atol=1e-5)
    full = PatchDiscriminator(n_attributes=3, size=16, channels=8, classifier_pool=1).eval()
    assert not torch.allclose(full(x)[1], full(x + checker)[1], atol=1e-5)


@pytest.mark.parametrize("upsample", ["transpose", "nearest"])
def test_attributes_reach_every_decoder_layer(upsample):
    D = Decoder(n_attributes=2, size=64, channels=8, latent_channels=16, upsample=upsample)
    seen = []
    hooks = [layer.register_forward_pre_hook(lambda m, args: seen.append(args[0])) for layer in [*D.ups, D.to_rgb]]
    y = torch.tensor([[1.0, 0.25]])
    D(torch.zeros(1, 16, 8, 8), y)
    for hook in hooks:
        hook.remove()
    assert len(seen) == 3  # 8 -> 16 -> 32 -> 64
    for h in seen:  # the last 4 channels are the pairs (y, 1 - y), tiled over the map
        assert torch.equal(h[0, -4:, :, :].mean(dim=(1, 2)), torch.tensor([1.0, 0.25, 0.0, 0.75]))
        assert h[0, -4:].std(dim=(1, 2)).max() == 0


def test_continuous_y_lies_between_the_ends():
    torch.manual_seed(0)
    D = Decoder(n_attributes=1, size=16, channels=8, latent_channels=8).eval()
    z = torch.randn(1, 8, 8, 8)
    ends = [D(z, torch.tensor([[v]])) for v in (0.0, 0.5, 1.0)]
    assert not torch.equal(ends[0], ends[2])
    assert (ends[1] - ends[0]).abs().mean() < (ends[2] - ends[0]).abs().mean()
    assert torch.isfinite(D(z, torch.tensor([[3.0]]))).all()  # extrapolation is defined


def test_lambda_ramps_linearly_then_holds():
    values = [lambda_schedule(s, lambda_latent=1e-3, ramp_steps=4) for s in range(7)]
    assert values == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert lambda_schedule(0, lambda_latent=1e-3, ramp_steps=0) == 1e-3


def test_edit_targets_change_attributes():
    method = FaderMethod(attribute_names=["a", "b", "c"], size=16, prior=None, shuffle_fraction=0.0)
    torch.manual_seed(0)
    y = (torch.rand(64, 3) < 0.5).float()
    target = method.edit_targets(y)
    assert ((target != y).sum(1) == 1).all()  # exactly one attribute flipped per face


def _train(cache, out, *extra, steps=4):
    return run_cli("train", "fader", "--data", cache, "--out", out, "--steps", steps, "--batch-size", 4,
                   "--attrs", "young,male,smiling", "--log-every", 1, "--sample-every", 2, "--checkpoint-every", 2,
                   "--no-progress", "--threads", 1, *TINY, *extra)




def test_train_exports_and_resumes_bit_for_bit(tiny_cache, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _train(tiny_cache, straight, steps=6) == 0
    assert _train(tiny_cache, resumed, steps=2) == 0
    assert run_cli("train", "fader", "--resume", resumed, "--steps", 6, "--no-progress") == 0
    assert logged_losses(straight) == logged_losses(resumed)
    rows = logged_losses(straight)
    assert {"rec", "fool", "latent_d", "adv_g", "cls_g", "patch_d", "cls_d", "val/psnr"} <= set().union(*rows)
    config = json.loads((straight / "model/config.json").read_text())
    assert config["model"] == "fader" and set(config["modules"]) == {"encoder", "decoder"}
    assert config["modules"]["decoder"]["n_attributes"] == 3
    assert config["modules"]["decoder"]["upsample"] == "transpose"
    from PIL import Image

    grid = Image.open(straight / "samples/step-000006.png")  # rows: original, reconstruction, 3 flips
    assert grid.size[1] == 2 + 5 * 18 and (grid.size[0] - 2) % 18 == 0


def test_paper_preset_trains_without_the_patch_discriminator(tiny_cache, tmp_path):
    assert _train(tiny_cache, tmp_path / "paper", "--set", "preset=paper", steps=2) == 0
    assert "patch_d" not in logged_losses(tmp_path / "paper")[-1]
    assert _train(tiny_cache, tmp_path / "nearest", "--set", "upsample=nearest", steps=1) == 0
    config = json.loads((tmp_path / "nearest/model/config.json").read_text())
    assert config["modules"]["decoder"]["upsample"] == "nearest"


@pytest.mark.parametrize("upsample", ["transpose", "nearest"])
@pytest.mark.parametrize("size,shortcut", [(64, 1), (64, 2), (128, 1)])
def test_shortcut_maps_travel_in_the_code_and_reach_the_decoder(size, shortcut, upsample):
    torch.manual_seed(0)
    E = Encoder(size=size, channels=8, latent_channels=16, shortcut=shortcut)
    D = Decoder(n_attributes=2, size=size, channels=8, latent_channels=16, shortcut=shortcut, upsample=upsample)
    x = torch.rand(2, 3, size, size) * 2 - 1
    code = E(x)
    plain = Encoder(size=size, channels=8, latent_channels=16)
    plain.load_state_dict(E.state_dict())
    assert code.shape == (2, E.code_channels, 8, 8) and E.code_channels == D.code_channels > 16
    assert torch.equal(code[:, :16], plain(x))  # the latent proper is the plain encoder's code
    # The 16x16 map comes back unfolded: the first shortcut channels are the encoder's 16x16 features.
    maps, h = [], x
    for layer in E.layers:
        h = layer(h)
        maps.append(h)
    assert torch.equal(torch.nn.functional.pixel_shuffle(code[:, 16:16 + D.skip_channels[0]], 2), maps[-4])
    y = torch.rand(2, 2)
    changed = code.clone()
    changed[:, 16:] += 1.0  # only the shortcut part
    assert not torch.allclose(D(code, y), D(changed, y))
    with pytest.raises(AssertionError, match="expected z"):
        D(code[:, :16], y)


def test_fader_trains_and_edits_with_a_shortcut(tiny_cache, tmp_path, capsys):
    from conftest import FIXTURES
    from facegen.data import prepare_cache

    cache32 = tmp_path / "tiny32"  # at 16 px the 8x8 latent is one level down: no map above it to pass on
    prepare_cache(FIXTURES / "official", size=32, out=cache32, workers=1, progress=False)
    run = tmp_path / "shortcut"
    assert _train(cache32, run, "--set", "shortcut=1", steps=2) == 0
    config = json.loads((run / "model/config.json").read_text())
    assert config["modules"]["encoder"]["shortcut"] == config["modules"]["decoder"]["shortcut"] == 1
    from facegen.pipelines.edit import EditPipeline

    pipe = EditPipeline.from_pretrained(run / "model")
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    y = torch.tensor([[1.0, 0.0, 1.0]] * 3)
    z = pipe.encode(x, y)
    assert z.shape == (3, pipe.modules["encoder"].code_channels, 8, 8)
    assert pipe.decode(z, y).shape == (3, 3, 32, 32)
    assert _train(tiny_cache, tmp_path / "bad", "--set", "shortcut=1", steps=1) == 2
    assert "shortcut must be between 0 and 0 at 16 px" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
