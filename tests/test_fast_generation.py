"""The cGAN's inference rewrite (`FoldedGenerator`) makes the faces the plain `Generator` makes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facegen.models.cgan import FoldedGenerator, Generator, interleave_phases, phase_weights

TOLERANCE = 1e-4  # in [-1, 1]; measured differences are about 4e-6, one 8-bit level is 7.8e-3


def _trained_looking(generator: Generator, seed: int) -> Generator:
    """A freshly built generator folds trivially (zero gains, unit variances): give every statistic a value."""
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in generator.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=rng) * 2 + 0.1)
            elif name.endswith(("running_mean", "gain.weight", "gain.bias", "bias.weight", "bias.bias")):
                tensor.copy_(torch.randn(tensor.shape, generator=rng) * 0.3)
    return generator.eval()


@pytest.mark.parametrize("size, channels, batch", [(8, 16, 1), (16, 32, 5), (32, 64, 3)])
def test_a_tiny_random_generator_folds_to_the_same_faces(size, channels, batch):
    torch.manual_seed(size)
    plain = _trained_looking(Generator(n_attributes=4, size=size, channels=channels), seed=size)
    folded = FoldedGenerator(plain)
    z = torch.randn(batch, plain.z_dim)
    y = torch.rand(batch, 4) * 2 - 0.5  # values outside [0, 1] too: --extrapolate passes them
    with torch.no_grad():
        expected, got = plain(z, y), folded(z, y)
    assert got.shape == expected.shape == (batch, 3, size, size) and got.is_contiguous()
    assert (got - expected).abs().max() < TOLERANCE


def test_a_generator_widened_at_high_resolution_folds_and_trains_from_the_recipe(tiny_cache, tmp_path):
    """g_min_channels widens the generator's narrow levels; it is recorded in the model's config, the exported model
    loads with it, and the fold still makes the same faces."""
    from conftest import run_cli
    from facegen.pretrained import load_pretrained

    plain = _trained_looking(Generator(n_attributes=4, size=32, channels=64, min_channels=48), seed=3)
    assert plain.level_shape(16) == (48, 16, 16)  # 64 at 4x4, then never below 48 (32 without the option)
    z, y = torch.randn(3, plain.z_dim), torch.rand(3, 4)
    with torch.no_grad():
        assert (FoldedGenerator(plain)(z, y) - plain(z, y)).abs().max() < TOLERANCE
    assert run_cli("train", "cgan", "--data", tiny_cache, "--attrs", "young,male,smiling", "--out", tmp_path / "wide",
                   "--batch-size", 4, "--threads", 1, "--no-progress", "--steps", 1, "--set", "g_channels=32",
                   "--set", "d_channels=32", "--set", "g_min_channels=16") == 0
    model = load_pretrained(tmp_path / "wide" / "model")
    assert model.config["modules"]["generator"]["min_channels"] == 16
    assert model.modules["generator"].level_shape(8) == (16, 8, 8)  # 32 -> 16 at 8x8: the narrowest level set by it


@pytest.mark.parametrize("blocks", [1, 2])
def test_refine_blocks_fold_to_the_same_faces(blocks):
    """Their BatchNorms stay a per-sample scale and shift in the fold (the block's input is also its skip): trained
    statistics and non-zero last convolutions must still give the plain generator's faces."""
    torch.manual_seed(blocks)
    plain = _trained_looking(Generator(n_attributes=4, size=16, channels=32, refine_blocks=blocks), seed=blocks)
    with torch.no_grad():
        for block in plain.refine:
            torch.nn.init.normal_(block.conv2.weight, std=0.1)  # zero at first: the blocks would be the identity
    z, y = torch.randn(3, plain.z_dim), torch.rand(3, 4) * 2 - 0.5
    with torch.no_grad():
        expected, got = plain(z, y), FoldedGenerator(plain)(z, y)
    assert (got - expected).abs().max() < TOLERANCE
    with torch.no_grad():
        h = torch.zeros(1, plain.refine[0].conv1.in_channels, 8, 8)
        assert (plain.refine[0](h, y[:1]) != 0).any()  # the blocks do change what is drawn


def test_the_phase_convolution_is_the_transposed_convolution():
    weight, x = torch.randn(8, 5, 4, 4), torch.randn(2, 8, 6, 7)
    expected = F.conv_transpose2d(x, weight, stride=2, padding=1)
    got = interleave_phases(F.conv2d(x, phase_weights(weight), padding=1))
    assert torch.allclose(got, expected, atol=1e-5)


def test_the_fold_copies_the_weights():
    plain = _trained_looking(Generator(n_attributes=2, size=8, channels=16), seed=0)
    folded = FoldedGenerator(plain)
    z, y = torch.randn(2, plain.z_dim), torch.rand(2, 2)
    with torch.no_grad():
        before = folded(z, y)
        plain.fc.weight.add_(1.0)
        assert torch.equal(folded(z, y), before)
    assert not any(p.requires_grad for p in folded.parameters())


@pytest.fixture(scope="module")
def shipped():
    """The shipped cGAN behind the default (fast) pipeline and behind the plain one."""
    from facegen.pipelines import GenerationPipeline
    from facegen.pretrained import load_pretrained

    pretrained = load_pretrained("cgan")
    return GenerationPipeline(pretrained), GenerationPipeline(pretrained, fast=False)


def test_the_pipeline_runs_the_shipped_cgan_folded_unless_told_not_to(shipped):
    fast, plain = shipped
    assert isinstance(fast.network, FoldedGenerator)
    assert plain.network is plain.pretrained.modules["generator"] and type(plain.network) is Generator


@pytest.mark.parametrize("n", [1, 7, 300])  # 300: two chunks of the pipeline's batch
def test_shipped_cgan_same_seed_same_faces_as_the_plain_module(shipped, n):
    from facegen.data import to_uint8

    fast, plain = shipped
    request = {"Young": 1.0, "Blond_Hair": 1.0}
    got = fast(request, n=n, generator=torch.Generator().manual_seed(11))
    expected = plain(request, n=n, generator=torch.Generator().manual_seed(11))
    assert np.array_equal(got.attributes, expected.attributes)
    assert (got.x - expected.x).abs().max() < TOLERANCE
    pixels = np.stack([np.asarray(image, dtype=np.int16) for image in got.images])
    assert np.abs(pixels - to_uint8(expected.x).astype(np.int16)).max() <= 1  # rounding may flip a level, no more


def test_bfloat16_is_opt_in_and_close_to_float32(shipped):
    from facegen.pipelines import GenerationPipeline

    fast, _ = shipped
    half = GenerationPipeline(fast.pretrained, dtype=torch.bfloat16)
    assert fast.dtype == torch.float32 and fast.pretrained.modules["generator"].fc.weight.dtype == torch.float32
    got = half.sample(torch.full((4, 12), 0.5), torch.Generator().manual_seed(3))
    expected = fast.sample(torch.full((4, 12), 0.5), torch.Generator().manual_seed(3))
    assert got.dtype == torch.float32
    assert (got - expected).abs().max() < 0.1 and (got - expected).abs().mean() < 0.01  # measured 0.04 and 0.002


def test_the_module_docstring_example_runs():
    import doctest

    from facegen.models import cgan

    assert doctest.testmod(cgan).failed == 0
