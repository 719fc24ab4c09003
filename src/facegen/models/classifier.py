"""The attribute classifier: the judge of attribute control and edits (metrics/judge.py).

A small residual CNN that predicts all 40 CelebA attributes (or any label set)
from a face in CelebA framing. Any input size is accepted: images are
resized to the size it was trained at.

    >>> import torch
    >>> C = AttributeClassifier(n_attributes=40, size=64)
    >>> C(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 40])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Block(nn.Module):
    """Two 3x3 convolutions with a shortcut, halving the resolution."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(h)) + self.skip(x))


class AttributeClassifier(nn.Module):
    """x (B, 3, H, W) in [-1, 1] -> attribute logits (B, A)."""

    def __init__(self, *, n_attributes: int, size: int = 64, channels: int = 32, dropout: float = 0.3):
        super().__init__()
        self.n_attributes, self.size = n_attributes, size
        widths = [channels, channels * 2, channels * 4, channels * 8]
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        self.blocks = nn.Sequential(*(_Block(c_in, c_out) for c_in, c_out in zip([channels] + widths[:-1], widths)))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(widths[-1], n_attributes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1] == 3, f"expected images (B, 3, H, W), got {tuple(x.shape)}"
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        h = self.blocks(self.stem(x)).mean(dim=(2, 3))  # (B, C)
        return self.head(self.dropout(h))
