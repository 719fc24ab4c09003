"""Inverting the cGAN on a photo, and the pivot: an activation offset fitted with z so the drawing sits on the photo."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facegen.models.cgan import Generator
from facegen.pipelines.inversion import fit_offset, invert, pivot_side


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(4.0 / (a - b).pow(2).flatten(1).mean(dim=1))


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return Generator(n_attributes=2, size=32, z_dim=8, channels=64).eval()


def test_the_offset_goes_on_the_level_a_quarter_of_the_side(generator):
    assert generator.level_sides == [8, 16] and pivot_side(generator) == 8
    assert pivot_side(Generator(n_attributes=2, size=64, z_dim=8, channels=64)) == 16
    assert pivot_side(Generator(n_attributes=2, size=16, z_dim=8, channels=32)) == 8  # no 4 px level: its first
    z, y = torch.randn(2, 8), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    with torch.no_grad():
        plain = generator(z, y)
        assert torch.equal(generator(z, y, torch.zeros(2, *generator.level_shape(16))), plain)
        assert not torch.allclose(generator(z, y, torch.ones(2, *generator.level_shape(8))), plain)
    with pytest.raises(ValueError, match="no 12 px level"):
        generator.level_shape(12)


def test_the_pivot_draws_a_photo_closer_than_z_alone(generator):
    """A target that no z draws (the generator's own drawing with its 8 px activations moved): the offset takes the
    drawing closer than z alone, and the generator's weights are left as they were."""
    torch.manual_seed(1)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    with torch.no_grad():
        x = generator(torch.randn(2, 8), y, torch.randn(2, *generator.level_shape(8)) * 3)
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    z = invert(generator, x, y, steps=60)
    z_fit, offset = fit_offset(generator, x, y, z, steps=60)
    with torch.no_grad():
        alone, pivoted = _psnr(generator(z, y), x), _psnr(generator(z_fit, y, offset), x)
    assert offset.shape == (2, *generator.level_shape(8))
    assert bool((pivoted > alone + 1.0).all()), (alone, pivoted)
    assert all(torch.equal(before[k], v) for k, v in generator.state_dict().items())
    assert all(p.requires_grad for p in generator.parameters())  # as it was given


def test_each_face_is_fitted_on_its_own(generator):
    """A face's fit does not depend on the faces batched with it (the app edits one, the CLI a hundred)."""
    torch.manual_seed(2)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    z = torch.randn(3, 8)
    z_all, offset_all = fit_offset(generator, x, y, z, steps=20)
    z_one, offset_one = fit_offset(generator, x[:1], y[:1], z[:1], steps=20)
    torch.testing.assert_close(z_all[:1], z_one, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(offset_all[:1], offset_one, rtol=1e-4, atol=1e-5)


def test_a_cgan_edit_carries_the_pivot_and_changes_nothing_unasked(tmp_path):
    """The pipeline fits the pivot once per photo (kept for slider moves); nothing asked is the photo itself, and the
    change with the pivot differs from the one with z alone."""
    from hostile_inputs import make_models
    from facegen.pipelines.edit import EditPipeline

    model = make_models(tmp_path)["cgan"]
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (40, 33, 3), dtype=np.uint8)
    pipe = EditPipeline.from_pretrained(model)
    assert pipe.pivot and not EditPipeline.from_pretrained(model, pivot=False).pivot
    x = pipe.load(torch.from_numpy(photo).permute(2, 0, 1).float()[None] / 127.5 - 1)
    source = np.array([[1.0, 0.0]], np.float32)
    faces = pipe.prepare(x, source)
    assert faces.offset is not None and faces.offset.shape[-1] == 8
    assert pipe.prepare(x, source) is faces  # a slider move fits nothing again
    assert not pipe.change(faces, source).any()
    target = np.array([[1.0, 1.0]], np.float32)
    pivoted = pipe.change(faces, target)
    plain = EditPipeline.from_pretrained(model, pivot=False)
    assert plain.prepare(x, source).offset is None
    assert pivoted.abs().sum() > 0 and not torch.allclose(pivoted, plain.change(plain.prepare(x, source), target))
