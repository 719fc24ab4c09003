"""The residual editor: a photo's change fields, one per attribute, so an edit is a change applied to the photo.

`ResidualEditor(x, y)` looks at a face x (B, 3, S, S) in [-1, 1] with its own
attributes y (B, A) and returns, for every attribute a, the change field
F_a (B, A, 3, S, S) that moving a by +1 would add to the photo. An edit to
targets y' is then

    delta = sum_a (y'_a - y_a) * F_a          # (B, 3, S, S), `apply_fields`
    edited = photo + up(delta)                # at the photo's own resolution

Why this shape:
- Nothing asked, nothing changed: with y' = y the change is exactly zero, so
  the photo comes back bit for bit; no decoder re-draws the face.
- The change is linear in the slider: 0.5 is exactly half of the full edit,
  and values outside [0, 1] (`--extrapolate`) go further the same way.
- The fields are computed once per photo; a slider move is a weighted sum of
  them, milliseconds even for a large photo.
- The network works at 64 px, where it was trained; the change is smooth, so
  it is carried up to any resolution by interpolation and added there, and
  the photo keeps its own detail.

It is trained by distillation (training/residual.py): the conditional GAN
draws the same face with one attribute flipped, G(z, y') - G(z, y), which is
a clean, strong, located change, and the editor learns to predict it from
G(z, y) alone. Where one face admits several changes (which glasses, which
beard), an optional `style` code of `style_dim` numbers says which; trained
as a conditional VAE's latent, its prior mean (0, the default at inference)
gives one typical, crisp look instead of the blurred average of all looks.

    >>> import torch
    >>> editor = ResidualEditor(n_attributes=3, size=64)
    >>> x, y = torch.zeros(2, 3, 64, 64), torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    >>> fields = editor(x, y)
    >>> fields.shape
    torch.Size([2, 3, 3, 64, 64])
    >>> bool((apply_fields(fields, y, y) == 0).all())
    True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from facegen.models.layers import centered


def apply_fields(fields: torch.Tensor, y_source: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
    """Change fields (B, A, 3, S, S) and attributes (B, A) -> the change (B, 3, S, S) for moving y_source to y_target."""
    assert fields.ndim == 5 and fields.shape[:2] == y_source.shape == y_target.shape, (
        f"expected fields (B, A, 3, S, S) and y (B, A), got {tuple(fields.shape)}, {tuple(y_source.shape)}, "
        f"{tuple(y_target.shape)}")
    step = (y_target - y_source).to(fields.dtype)  # (B, A)
    return torch.einsum("ba,bachw->bchw", step, fields)


class _Block(nn.Module):
    """Two 3x3 convolutions with a residual path; the second is modulated by the attributes (FiLM)."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(c)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        out = F.leaky_relu(self.conv1(h), 0.2)
        out = self.conv2(out) * (1.0 + scale) + shift
        return F.leaky_relu(h + out, 0.2)


class ResidualEditor(nn.Module):
    """x (B, 3, size, size) in [-1, 1], y (B, A) in [0, 1] -> change fields (B, A, 3, size, size).

    A U-Net: strided convolutions down to 8x8, residual blocks conditioned on
    the photo's own attributes, and upsampling (nearest + 3x3 convolution,
    which leaves no checkerboard) with skip connections back to full size,
    where a 3x3 convolution writes 3 channels per attribute.
    """

    def __init__(self, *, n_attributes: int, size: int = 64, channels: int = 32, max_channels: int = 256,
                 blocks: int = 2, style_dim: int = 0):
        super().__init__()
        levels = math.log2(size / 8)
        assert levels.is_integer() and levels >= 1, f"size must be a power of two >= 16, got {size}"
        assert style_dim >= 0, f"style_dim must be at least 0, got {style_dim}"
        self.n_attributes, self.size, self.style_dim = n_attributes, size, style_dim
        widths = [min(channels * 2**i, max_channels) for i in range(int(levels) + 1)]  # [32, 64, 128, 256] at 64 px
        cond_dim = 2 * n_attributes
        self.embed = nn.Sequential(nn.Linear(n_attributes, cond_dim), nn.LeakyReLU(0.2))
        if style_dim:  # how the change looks where several looks fit (which glasses, which beard); 0 = the typical one
            self.style = nn.Linear(style_dim, cond_dim)  # small weights: at the code 0 it adds nothing
            nn.init.normal_(self.style.weight, std=0.02)
            nn.init.zeros_(self.style.bias)
        self.stem = nn.Conv2d(3, widths[0], 3, padding=1)
        self.downs = nn.ModuleList(nn.Conv2d(a, b, 4, 2, 1) for a, b in zip(widths[:-1], widths[1:]))
        self.middle = nn.ModuleList(_Block(widths[-1], cond_dim) for _ in range(blocks))
        self.ups = nn.ModuleList(nn.Conv2d(b, a, 3, padding=1) for a, b in zip(widths[:-1], widths[1:]))
        self.merges = nn.ModuleList(_Block(a, cond_dim) for a in widths[:-1])
        self.head = nn.Conv2d(widths[0], 3 * n_attributes, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1:] == (3, self.size, self.size) and y.shape == (x.shape[0], self.n_attributes), (
            f"expected x (B, 3, {self.size}, {self.size}) and y (B, {self.n_attributes}), "
            f"got {tuple(x.shape)} and {tuple(y.shape)}")
        c = self.embed(centered(y))  # (B, 2A)
        if style is not None and self.style_dim:  # (B, style_dim); None is the prior's mean, 0
            c = c + self.style(style)
        h = F.leaky_relu(self.stem(x), 0.2)  # (B, C0, S, S)
        skips = []
        for down in self.downs:
            skips.append(h)
            h = F.leaky_relu(down(h), 0.2)  # (B, 2C, H/2, W/2)
        for block in self.middle:
            h = block(h, c)  # (B, C_max, 8, 8)
        for up, merge, skip in zip(reversed(self.ups), reversed(self.merges), reversed(skips)):
            h = F.leaky_relu(up(F.interpolate(h, scale_factor=2.0, mode="nearest")), 0.2)  # (B, C/2, 2H, 2W)
            h = merge(h + skip, c)
        fields = self.head(h)  # (B, 3A, S, S)
        return fields.view(x.shape[0], self.n_attributes, 3, self.size, self.size)
