"""PSNR and SSIM: exact values on cases worked by hand, and agreement with torchmetrics where it is installed."""

import math

import pytest
import torch

from facegen.metrics.reconstruction import psnr, ssim


def test_identical_images_give_inf_psnr_and_unit_ssim():
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    assert torch.isinf(psnr(x, x)).all()
    assert torch.allclose(ssim(x, x), torch.ones(3))


def test_psnr_by_hand():
    x = torch.zeros(2, 3, 8, 8)
    y = x.clone()
    y[0] += 0.2  # 0.1 on the [0, 1] scale everywhere: MSE 0.01 -> 20 dB
    y[1, :, :4] = 1.0  # half the pixels off by 0.5: MSE 0.125 -> 9.03 dB
    assert psnr(x, y).tolist() == pytest.approx([20.0, 10 * math.log10(8)])


def test_ssim_of_flat_images_by_hand():
    # Constant images have no variance: SSIM = (2 a b + C1) / (a^2 + b^2 + C1) with a, b on [0, 1].
    a, b = 0.3, 0.6
    x = torch.full((1, 3, 12, 12), a * 2 - 1)
    y = torch.full((1, 3, 12, 12), b * 2 - 1)
    c1 = 0.01 ** 2
    assert ssim(x, y).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)


def test_ssim_falls_with_noise_and_is_per_image():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32, generator=generator).repeat(3, 1, 1, 1) * 2 - 1
    noise = torch.randn(x.shape, generator=generator)
    y = (x + noise * torch.tensor([0.0, 0.1, 0.5]).view(3, 1, 1, 1)).clamp(-1, 1)
    values = ssim(x, y)
    assert values.shape == (3,) and values[0] == pytest.approx(1.0) and values[0] > values[1] > values[2]


def test_ssim_and_psnr_match_torchmetrics():
    functional = pytest.importorskip("torchmetrics.functional.image")
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 24, 24, generator=generator, dtype=torch.float64) * 2 - 1
    y = (x + 0.2 * torch.randn(x.shape, generator=generator, dtype=torch.float64)).clamp(-1, 1)
    x01, y01 = (x + 1) / 2, (y + 1) / 2
    expected_psnr = functional.peak_signal_noise_ratio(y01, x01, data_range=1.0, reduction="none", dim=(1, 2, 3))
    assert psnr(y, x).tolist() == pytest.approx(expected_psnr.tolist(), rel=1e-5)
    # torchmetrics' map covers a reflect-padded border too; inside it the maps agree, so compare there.
    _, full_map = functional.structural_similarity_index_measure(
        y01, x01, data_range=1.0, reduction="none", return_full_image=True)
    expected_ssim = full_map[..., 5:-5, 5:-5].mean(dim=(1, 2, 3))
    assert ssim(y, x).tolist() == pytest.approx(expected_ssim.tolist(), abs=1e-6)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
