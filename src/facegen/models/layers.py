"""Layers shared by the models: conditioning, tiling, differentiable augmentation.

`x` is always an image batch (B, C, H, W); `y` an attribute batch (B, A) with
values in [0, 1] (continuous values are meaningful, not only 0 and 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def levels(size: int, start: int) -> int:
    """Number of 2x steps between a `start` x `start` map and `size` x `size` images (at least one).

    >>> levels(64, 4), levels(64, 8)
    (4, 3)
    """
    steps = math.log2(size / start)
    assert steps.is_integer() and steps >= 1, f"size must be a power of two >= {2 * start}, got {size}"
    return int(steps)


def channel_widths(size: int, top: int, bottom: int) -> list[int]:
    """Channel counts from the 4x4 level to `size`, halving each level from `top`, never below `bottom`.

    >>> channel_widths(64, 256, 32)
    [256, 128, 64, 32, 32]
    """
    return [max(top // 2**i, bottom) for i in range(levels(size, 4) + 1)]


def tile(y: torch.Tensor, size: int) -> torch.Tensor:
    """Attributes (B, A) as constant feature maps (B, A, size, size)."""
    return y[:, :, None, None].expand(-1, -1, size, size)


def centered(y: torch.Tensor) -> torch.Tensor:
    """Attributes in [0, 1] mapped to [-1, 1], so 'absent' is not 'no signal'."""
    return y * 2.0 - 1.0


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose scale and shift are linear functions of the attributes.

    Linear in y, so a fader value of 0.5 lands halfway between the two
    styles and values outside [0, 1] extrapolate smoothly.
    """

    def __init__(self, channels: int, n_attributes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(n_attributes, channels)
        self.bias = nn.Linear(n_attributes, channels)
        for layer in (self.gain, self.bias):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain = 1.0 + self.gain(y)[:, :, None, None]  # (B, C, 1, 1)
        bias = self.bias(y)[:, :, None, None]
        return self.norm(x) * gain + bias


def diff_augment(x: torch.Tensor, policy: str = "translation") -> torch.Tensor:
    """DiffAugment (Zhao et al. 2020): the same random, differentiable
    augmentation for real and fake images before the discriminator, so a
    discriminator cannot memorise 9,000 images.

    The default policy is translation only. Colour jitter shifts blur the line
    between blond, brown and black hair, which the discriminator's attribute
    head must see; cutout (half the face hidden) slowed the discriminator so
    much on our CPU budget that its attribute head was still at the label
    marginals after 1,000 steps.
    """
    for name in filter(None, policy.split(",")):
        x = _AUGMENTS[name.strip()](x)
    return x.contiguous()


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    batch, _, height, width = x.shape
    shift_h, shift_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    dy = torch.randint(-shift_h, shift_h + 1, (batch, 1, 1), device=x.device)
    dx = torch.randint(-shift_w, shift_w + 1, (batch, 1, 1), device=x.device)
    grid_b, grid_y, grid_x = torch.meshgrid(
        torch.arange(batch, device=x.device), torch.arange(height, device=x.device),
        torch.arange(width, device=x.device), indexing="ij")
    grid_y = torch.clamp(grid_y + dy + 1, 0, height + 1)
    grid_x = torch.clamp(grid_x + dx + 1, 0, width + 1)
    padded = F.pad(x, [1, 1, 1, 1])  # zero border, (B, C, H+2, W+2)
    return padded.permute(0, 2, 3, 1)[grid_b, grid_y, grid_x].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    batch, _, height, width = x.shape
    cut_h, cut_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    off_y = torch.randint(0, height + (1 - cut_h % 2), (batch, 1, 1), device=x.device)
    off_x = torch.randint(0, width + (1 - cut_w % 2), (batch, 1, 1), device=x.device)
    grid_b, grid_y, grid_x = torch.meshgrid(
        torch.arange(batch, device=x.device), torch.arange(cut_h, device=x.device),
        torch.arange(cut_w, device=x.device), indexing="ij")
    grid_y = torch.clamp(grid_y + off_y - cut_h // 2, 0, height - 1)
    grid_x = torch.clamp(grid_x + off_x - cut_w // 2, 0, width - 1)
    mask = torch.ones(batch, height, width, dtype=x.dtype, device=x.device)
    mask[grid_b, grid_y, grid_x] = 0
    return x * mask.unsqueeze(1)


def _color(x: torch.Tensor) -> torch.Tensor:
    batch = x.shape[0]
    x = x + (torch.rand(batch, 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(batch, 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(batch, 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


_AUGMENTS = {"translation": _translation, "cutout": _cutout, "color": _color}
AUGMENT_POLICIES = tuple(_AUGMENTS)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
