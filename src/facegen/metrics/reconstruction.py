"""Pixel-level reconstruction quality: PSNR and SSIM, one value per image, in pure torch.

Both take images in facegen's [-1, 1] range and measure them on the [0, 1]
scale (data range 1), the convention of torchmetrics and scikit-image, so the
numbers compare with published ones.

    x_reconstructed = edit_fn(x, y, y)
    print(psnr(x_reconstructed, x).mean(), ssim(x_reconstructed, x).mean())
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

SSIM_WINDOW_PX = 11  # Gaussian window side (Wang et al. 2004)
SSIM_SIGMA_PX = 1.5  # Gaussian window std
SSIM_K1, SSIM_K2 = 0.01, 0.03  # stabilisers, times the data range 1


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"need two image batches (B, C, H, W) of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    # [-1, 1] -> [0, 1]; float64 so that a PSNR of 60 dB is still exact.
    return (x.detach().double() + 1) / 2, (y.detach().double() + 1) / 2


def psnr_from_mse(mse, peak: float = 1.0):
    """PSNR in dB of a mean squared error measured on a scale `peak` wide (a tensor, or a float: inf at 0).

    >>> psnr_from_mse(0.01), psnr_from_mse(0.0)
    (20.0, inf)
    """
    if isinstance(mse, torch.Tensor):
        return 10 * torch.log10(peak**2 / mse)
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def pixel_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of one shape (inf when equal).

    >>> pixel_psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8))
    inf
    """
    return psnr_from_mse(float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)), peak=255.0)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, (B,), of images in [-1, 1] measured on [0, 1]; inf where equal.

    >>> x = torch.zeros(1, 3, 8, 8)
    >>> psnr(x, x + 0.2).tolist()  # error 0.1 on the [0, 1] scale -> 20 dB
    [20.0]
    """
    x, y = _check_pair(x, y)
    mse = (x - y).pow(2).flatten(1).mean(1)  # (B,)
    return psnr_from_mse(mse).float()


def _gaussian_window(channels: int) -> torch.Tensor:
    offsets = torch.arange(SSIM_WINDOW_PX, dtype=torch.float64) - (SSIM_WINDOW_PX - 1) / 2
    profile = torch.exp(-(offsets / SSIM_SIGMA_PX) ** 2 / 2)
    profile = profile / profile.sum()  # (K,)
    window = profile[:, None] * profile[None, :]  # (K, K), separable Gaussian
    return window.expand(channels, 1, SSIM_WINDOW_PX, SSIM_WINDOW_PX)  # (C, 1, K, K) depthwise


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural similarity, (B,), of images in [-1, 1] measured on [0, 1]; 1.0 where equal.

    The standard Gaussian-window SSIM (11x11, sigma 1.5, K1 0.01, K2 0.03),
    its map taken over "valid" window positions only (no padding), as in
    Wang et al.'s reference code, then averaged over pixels and channels.
    (torchmetrics also averages a reflect-padded 5 px border; its map equals
    ours inside that border.) Images need to be at least 11x11.

    >>> x = torch.rand(2, 3, 16, 16) * 2 - 1
    >>> ssim(x, x).tolist()
    [1.0, 1.0]
    """
    x, y = _check_pair(x, y)
    if min(x.shape[-2:]) < SSIM_WINDOW_PX:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW_PX}x{SSIM_WINDOW_PX} px, got {tuple(x.shape[-2:])}")
    channels = x.shape[1]
    window = _gaussian_window(channels).to(x.device)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)  # (B, C, H - 10, W - 10)

    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov_xy = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1).float()  # (B,)
