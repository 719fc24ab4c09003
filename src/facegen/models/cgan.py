"""Conditional GAN generators and discriminators.

Two designs behind the same call signature, `G(z, y) -> x` and
`D(x, y) -> (score, attribute_logits)`:

- `Generator` / `Discriminator` (the default): DCGAN-shaped transposed
  convolutions whose BatchNorm takes its scale and shift from the attributes
  (conditional BatchNorm), and a spectrally normalised discriminator with a
  projection term and an auxiliary attribute head. Light enough to train on a
  2-core CPU.
- `StudyGenerator` / `StudyDiscriminator` (`--preset study2018`): the 2018
  study's model as its slides describe it: noise 100 -> 512 and attributes
  -> 512, concatenated, transposed convolutions 1024 -> 512 -> 256 -> 128 -> 3;
  the discriminator convolves the image (3 -> 64) beside a tiled attribute
  map (A -> 64), concatenates, goes up to 1024 and ends in a linear layer and
  a sigmoid (returned as a logit, the sigmoid lives in the BCE loss).

    >>> import torch
    >>> G = Generator(n_attributes=3, size=64)
    >>> G(torch.randn(2, G.z_dim), torch.rand(2, 3)).shape
    torch.Size([2, 3, 64, 64])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from facegen.models.layers import ConditionalBatchNorm2d, centered, tile


def _levels(size: int) -> int:
    """Number of 2x upsamplings from 4x4 to `size`."""
    levels = math.log2(size / 4)
    assert levels.is_integer() and levels >= 1, f"size must be a power of two >= 8, got {size}"
    return int(levels)


def _channels(size: int, top: int, bottom: int) -> list[int]:
    """Channel counts from the 4x4 level down to the output resolution, halving each time."""
    return [max(top // 2**i, bottom) for i in range(_levels(size) + 1)]


# ----------------------------------------------------------------------------- default


class Generator(nn.Module):
    """z (B, z_dim) and y (B, A) in [0, 1] -> x (B, 3, size, size) in [-1, 1]."""

    def __init__(self, *, n_attributes: int, size: int = 64, z_dim: int = 128, channels: int = 256):
        super().__init__()
        self.n_attributes, self.size, self.z_dim = n_attributes, size, z_dim
        widths = _channels(size, channels, 32)  # e.g. [256, 128, 64, 32, 32] for 64x64
        self.fc = nn.Linear(z_dim + n_attributes, widths[0] * 16)
        self.norm0 = ConditionalBatchNorm2d(widths[0], n_attributes)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False) for c_in, c_out in zip(widths[:-2], widths[1:-1]))
        self.norms = nn.ModuleList(ConditionalBatchNorm2d(c, n_attributes) for c in widths[1:-1])
        self.to_rgb = nn.ConvTranspose2d(widths[-2], 3, 4, 2, 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert z.shape[1] == self.z_dim and y.shape[1] == self.n_attributes, (
            f"expected z (B, {self.z_dim}) and y (B, {self.n_attributes}), got {tuple(z.shape)} and {tuple(y.shape)}")
        y = centered(y)
        h = self.fc(torch.cat([z, y], dim=1)).view(z.shape[0], -1, 4, 4)  # (B, C0, 4, 4)
        h = torch.relu(self.norm0(h, y))
        for up, norm in zip(self.ups, self.norms):
            h = torch.relu(norm(up(h), y))  # (B, C/2, 2H, 2W)
        return torch.tanh(self.to_rgb(h))  # (B, 3, size, size)


class Discriminator(nn.Module):
    """x (B, 3, size, size), y (B, A) -> (realness score (B,), attribute logits (B, A)).

    Spectral norm on every layer keeps the hinge game stable; the projection
    term <embed(y), h> scores how well the image matches the attributes
    (Miyato & Koyama 2018); the auxiliary head (AC-GAN) gives the generator a
    direct gradient towards each attribute, which is what attribute control
    needs on 9,000 images.
    """

    def __init__(self, *, n_attributes: int, size: int = 64, channels: int = 256):
        super().__init__()
        self.n_attributes, self.size = n_attributes, size
        widths = _channels(size, channels, 32)[::-1]  # e.g. [32, 32, 64, 128, 256] for 64x64
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(3, widths[1], 4, 2, 1)), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(widths[1:-1], widths[2:]):
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1)), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)  # (B, C, 4, 4)
        self.score = spectral_norm(nn.Linear(widths[-1], 1))
        self.embed = spectral_norm(nn.Linear(n_attributes, widths[-1], bias=False))
        self.classify = nn.Linear(widths[-1], n_attributes)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert x.shape[1:] == (3, self.size, self.size), f"expected images (B, 3, {self.size}, {self.size}), got {tuple(x.shape)}"
        h = self.features(x).sum(dim=(2, 3))  # (B, C)
        score = self.score(h).squeeze(1) + (self.embed(centered(y)) * h).sum(dim=1)
        # Spectral norm keeps h small (|h| ~ 0.1 after 1k steps): normalised features let the attribute head
        # learn at Adam's pace instead of sitting at the label marginals.
        return score, self.classify(F.layer_norm(h, h.shape[1:]))


# ----------------------------------------------------------------------------- study2018


class StudyGenerator(nn.Module):
    """The 2018 study's generator: z (B, 100) -> 4x4x512, y -> 4x4x512, concatenated, up to 3 x size x size."""

    def __init__(self, *, n_attributes: int, size: int = 64, z_dim: int = 100, channels: int = 1024):
        super().__init__()
        self.n_attributes, self.size, self.z_dim = n_attributes, size, z_dim
        half = channels // 2
        self.z_branch = nn.Sequential(nn.ConvTranspose2d(z_dim, half, 4, 1, 0, bias=False), nn.BatchNorm2d(half), nn.ReLU())
        self.y_branch = nn.Sequential(nn.ConvTranspose2d(n_attributes, half, 4, 1, 0, bias=False), nn.BatchNorm2d(half), nn.ReLU())
        widths = _channels(size, channels, 64)  # [1024, 512, 256, 128, 64] for 64x64; the last is replaced by RGB
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-2], widths[1:-1]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers += [nn.ConvTranspose2d(widths[-2], 3, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert z.shape[1] == self.z_dim and y.shape[1] == self.n_attributes, (
            f"expected z (B, {self.z_dim}) and y (B, {self.n_attributes}), got {tuple(z.shape)} and {tuple(y.shape)}")
        h = torch.cat([self.z_branch(z[:, :, None, None]), self.y_branch(y[:, :, None, None])], dim=1)  # (B, 1024, 4, 4)
        return self.body(h)


class StudyDiscriminator(nn.Module):
    """The 2018 study's discriminator: image conv 3 -> 64 beside tiled attributes A -> 64, then 256 -> 512 -> 1024."""

    def __init__(self, *, n_attributes: int, size: int = 64, channels: int = 1024):
        super().__init__()
        self.n_attributes, self.size = n_attributes, size
        self.x_branch = nn.Sequential(nn.Conv2d(3, 64, 4, 2, 1), nn.LeakyReLU(0.2))
        self.y_branch = nn.Sequential(nn.Conv2d(n_attributes, 64, 4, 2, 1), nn.LeakyReLU(0.2))
        widths = [128] + _channels(size // 2, channels, 256)[::-1][1:]  # [128, 256, 512, 1024] for 64x64
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)  # (B, 1024, 4, 4)
        self.score = nn.Linear(widths[-1] * 16, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, None]:
        assert x.shape[1:] == (3, self.size, self.size), f"expected images (B, 3, {self.size}, {self.size}), got {tuple(x.shape)}"
        h = torch.cat([self.x_branch(x), self.y_branch(tile(y, self.size))], dim=1)  # (B, 128, size/2, size/2)
        return self.score(self.body(h).flatten(1)).squeeze(1), None


PRESETS = {
    "default": (Generator, Discriminator),
    "study2018": (StudyGenerator, StudyDiscriminator),
}
