"""Fader Networks (Lample et al. 2017, arXiv 1706.00409): an encoder, a decoder fed the attributes, two critics.

- `Encoder`: x (B, 3, S, S) -> z (B, C, 8, 8). Conv 4x4 stride 2 + BatchNorm
  + LeakyReLU(0.2), as in the paper (no BatchNorm on the first layer).
- `Decoder`: z and y -> x. Transposed conv 4x4 stride 2 + BatchNorm + ReLU;
  the attributes, each as the pair (y, 1 - y), are tiled and concatenated
  to the input of EVERY layer (the 2018 study injected them once, at the
  input, and could only change the sex). y is continuous: 0.5 is half way.
- `LatentDiscriminator`: z -> attribute logits, with dropout; the encoder is
  trained to fool it, so that z carries as little of y as possible.
- `PatchDiscriminator`: x -> (realness per 8x8 patch, attribute logits). Not
  in the paper's main recipe (its optional "patch discriminator"); here it
  is what makes edits sharp and strong (AttGAN-style, He et al. 2019): its
  attribute head is trained on real photos only, and the decoder is trained
  so that decodes with changed attributes look real and are classified as
  the attributes asked for.

Why an 8x8 latent at every image size: the paper's 2x2x512 at 256 px throws
away the detail a 64 px reconstruction needs (PSNR well under 25 dB); an 8x8
code keeps the layout of the face, and the attribute terms above, not a
bottleneck, are what make the decoder obey y.

    >>> import torch
    >>> E, D = Encoder(size=64), Decoder(n_attributes=3, size=64)
    >>> z = E(torch.zeros(2, 3, 64, 64))
    >>> z.shape
    torch.Size([2, 128, 8, 8])
    >>> D(z, torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.25]])).shape
    torch.Size([2, 3, 64, 64])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from facegen.models.layers import levels, tile

LATENT_SIDE = 8  # pixels of the latent map, at every image size


def steps_to_latent(size: int) -> int:
    """Number of stride-2 steps between `size` and the 8x8 latent."""
    return levels(size, LATENT_SIDE)


def _widths(size: int, channels: int, latent_channels: int) -> list[int]:
    """Encoder output widths, doubling each level, the last one `latent_channels`: [32, 64, 128] at 64 px."""
    levels = steps_to_latent(size)
    return [min(channels * 2**i, latent_channels) for i in range(levels - 1)] + [latent_channels]


def pairs(y: torch.Tensor) -> torch.Tensor:
    """Attributes (B, A) in [0, 1] -> (B, 2A) as the paper feeds them: (y, 1 - y) per attribute."""
    return torch.cat([y, 1.0 - y], dim=1)


def shortcut_channels(size: int, channels: int, latent_channels: int, shortcut: int) -> list[int]:
    """Channels each shortcut adds to the code once folded to 8x8: [256] for the 16x16x64 map at 64 px."""
    levels = steps_to_latent(size)
    if not 0 <= shortcut < levels:
        raise ValueError(f"shortcut must be between 0 and {levels - 1} at {size} px, got {shortcut}")
    widths = _widths(size, channels, latent_channels)
    return [widths[-2 - j] * 4 ** (j + 1) for j in range(shortcut)]


class Encoder(nn.Module):
    """x (B, 3, size, size) in [-1, 1] -> code (B, code_channels, 8, 8).

    The code is the latent z (its first `latent_channels` channels, what the
    latent discriminator sees) followed, when `shortcut` > 0, by the encoder's
    last `shortcut` feature maps above the latent folded to 8x8 (pixel
    unshuffle). Those are AttGAN's shortcut (He et al. 2019): detail that
    reaches the decoder without passing through z, for a sharper
    reconstruction; the attribute terms must then override it.
    """

    def __init__(self, *, size: int = 64, channels: int = 32, latent_channels: int = 128, shortcut: int = 0):
        super().__init__()
        self.size, self.latent_channels, self.shortcut = size, latent_channels, shortcut
        self.code_channels = latent_channels + sum(shortcut_channels(size, channels, latent_channels, shortcut))
        widths = _widths(size, channels, latent_channels)
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip([3] + widths[:-1], widths)):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=i == 0)]
            layers += [nn.BatchNorm2d(c_out)] if i > 0 else []
            layers += [nn.LeakyReLU(0.2)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1:] == (3, self.size, self.size), (
            f"expected images (B, 3, {self.size}, {self.size}), got {tuple(x.shape)}")
        if not self.shortcut:
            return self.layers(x)  # (B, C, 8, 8)
        maps, h = [], x
        for layer in self.layers:
            h = layer(h)
            if isinstance(layer, nn.LeakyReLU):
                maps.append(h)  # each level's output, largest first
        z, above = maps[-1], maps[-1 - self.shortcut:-1][::-1]  # above: 16x16 first, then 32x32, ...
        folded = [F.pixel_unshuffle(m, 2 ** (j + 1)) for j, m in enumerate(above)]  # each (B, C_j, 8, 8)
        return torch.cat([z] + folded, dim=1)  # (B, code_channels, 8, 8)


class Decoder(nn.Module):
    """z (B, C, 8, 8) and y (B, A) in [0, 1] (any real value works) -> x (B, 3, size, size) in [-1, 1].

    `upsample="transpose"`: the paper's transposed 4x4 convolutions (they
    leave a checkerboard grid at our budget: the first shipped model's faces
    were covered in it). `upsample="nearest"`: nearest-neighbour doubling then
    a 3x3 convolution at each level (Odena et al. 2016, "Deconvolution and
    checkerboard artifacts"); the last doubling's convolution makes RGB. It
    costs 0.11 GFLOP per face at 64 px against 0.05 (a variant with one more
    32-channel 3x3 layer at full size cost 0.24 and ran five times slower).
    Either way y is tiled and concatenated to the input of every layer.
    """

    def __init__(self, *, n_attributes: int, size: int = 64, channels: int = 32, latent_channels: int = 128,
                 upsample: str = "transpose", shortcut: int = 0):
        super().__init__()
        if upsample not in ("transpose", "nearest"):
            raise ValueError(f"upsample must be 'transpose' or 'nearest', got {upsample!r}")
        self.n_attributes, self.size, self.latent_channels = n_attributes, size, latent_channels
        self.upsample, self.shortcut = upsample, shortcut
        self.skip_channels = shortcut_channels(size, channels, latent_channels, shortcut)
        self.code_channels = latent_channels + sum(self.skip_channels)
        widths = _widths(size, channels, latent_channels)[::-1]  # [128, 64, 32] at 64 px
        extra = 2 * n_attributes
        # Level i's input also holds the encoder's map of the same size when a shortcut brings one.
        skip_in = [0] + [widths[i] if i <= shortcut else 0 for i in range(1, len(widths))]
        if upsample == "transpose":
            self.ups = nn.ModuleList(nn.ConvTranspose2d(c_in + s + extra, c_out, 4, 2, 1, bias=False)
                                     for c_in, s, c_out in zip(widths[:-1], skip_in, widths[1:]))
            self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in widths[1:])
            self.to_rgb = nn.ConvTranspose2d(widths[-1] + skip_in[-1] + extra, 3, 4, 2, 1)
        else:  # the same widths; each doubling is nearest-neighbour, then a 3x3 convolution (the last one to RGB)
            self.ups = nn.ModuleList(nn.Conv2d(c_in + s + extra, c_out, 3, 1, 1, bias=False)
                                     for c_in, s, c_out in zip(widths[:-1], skip_in, widths[1:]))
            self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in widths[1:])
            self.to_rgb = nn.Conv2d(widths[-1] + skip_in[-1] + extra, 3, 3, 1, 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert z.ndim == 4 and z.shape[1:] == (self.code_channels, LATENT_SIDE, LATENT_SIDE), (
            f"expected z (B, {self.code_channels}, {LATENT_SIDE}, {LATENT_SIDE}), got {tuple(z.shape)}")
        assert y.ndim == 2 and y.shape == (z.shape[0], self.n_attributes), (
            f"expected y ({z.shape[0]}, {self.n_attributes}), got {tuple(y.shape)}")
        y2 = pairs(y.to(z.dtype))  # (B, 2A)
        h, skips = z[:, :self.latent_channels], {}
        start = self.latent_channels
        for j, width in enumerate(self.skip_channels):  # unfold each shortcut map to its own size
            skips[LATENT_SIDE * 2 ** (j + 1)] = F.pixel_shuffle(z[:, start:start + width], 2 ** (j + 1))
            start += width
        for up, norm in zip(self.ups, self.norms):
            if h.shape[-1] in skips:  # the encoder's map of this size, beside the decoder's
                h = torch.cat([h, skips[h.shape[-1]]], dim=1)
            if self.upsample == "nearest":
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")  # (B, C, 2H, 2W)
            h = torch.relu(norm(up(torch.cat([h, tile(y2, h.shape[-1])], dim=1))))  # (B, C', 2H, 2W)
        if h.shape[-1] in skips:
            h = torch.cat([h, skips[h.shape[-1]]], dim=1)
        if self.upsample == "nearest":
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        return torch.tanh(self.to_rgb(torch.cat([h, tile(y2, h.shape[-1])], dim=1)))  # (B, 3, size, size)


class LatentDiscriminator(nn.Module):
    """z (B, C, 8, 8) -> attribute logits (B, A). Dropout, as the paper's, keeps it from memorising codes."""

    def __init__(self, *, n_attributes: int, latent_channels: int = 128, hidden: int = 256, dropout: float = 0.3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(latent_channels, hidden, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, hidden, 4, 4)
            nn.Conv2d(hidden, hidden, 4, 1, 0), nn.LeakyReLU(0.2))  # (B, hidden, 1, 1)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                                  nn.Dropout(dropout), nn.Linear(hidden, n_attributes))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(z).flatten(1))


class PatchDiscriminator(nn.Module):
    """x (B, 3, size, size) -> (realness (B, 8, 8) per patch, attribute logits (B, A)).

    Spectral norm on every layer (the hinge game then needs no gradient
    penalty, which would cost a second backward pass on a CPU).
    """

    def __init__(self, *, n_attributes: int, size: int = 64, channels: int = 32, classifier_pool: int = 1):
        super().__init__()
        self.size, self.classifier_pool = size, classifier_pool
        widths = [min(channels * 2**i, 8 * channels) for i in range(steps_to_latent(size))]  # [32, 64, 128] at 64 px
        layers: list[nn.Module] = []
        for c_in, c_out in zip([3] + widths[:-1], widths):
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1)), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)  # (B, C, 8, 8)
        self.score = spectral_norm(nn.Conv2d(widths[-1], 1, 3, 1, 1))
        # The attribute head has its own trunk, without spectral norm: on the shared spectrally-normalised
        # features its loss stayed at the label marginals (0.51 vs 0.54) for 2,000 steps, and the decoder
        # satisfied that ignorant critic with global tints. Unconstrained, it reached 0.36 in 300 steps.
        # Unconstrained at full resolution, though, the decoder learnt pixel-level patterns that it read as
        # the asked-for attributes (its loss on edits fell to 0.09 while the judge saw half the edits fail,
        # under a checkerboard). `classifier_pool` > 1 shows it an average-pooled image: attributes survive
        # at 32x32, single-pixel patterns do not.
        pool_levels = int(math.log2(classifier_pool))
        assert 2**pool_levels == classifier_pool and size // classifier_pool >= 8, (
            f"classifier_pool must be a power of two leaving at least 8 pixels, got {classifier_pool}")
        inner = [min(channels * 2**i, 8 * channels) for i in range(steps_to_latent(size) - pool_levels)]
        outs = inner + [2 * (inner[-1] if inner else channels)]  # down to 4x4 pixels
        trunk: list[nn.Module] = []
        for c_in, c_out in zip([3] + outs[:-1], outs):
            trunk += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
        self.classify = nn.Sequential(*trunk)  # (B, 2C, 4, 4)
        self.head = nn.Linear(outs[-1], n_attributes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert x.shape[1:] == (3, self.size, self.size), (
            f"expected images (B, 3, {self.size}, {self.size}), got {tuple(x.shape)}")
        h = self.features(x)  # (B, C, 8, 8)
        pooled = F.avg_pool2d(x, self.classifier_pool) if self.classifier_pool > 1 else x
        a = self.classify(pooled).mean(dim=(2, 3))  # (B, 2C)
        return self.score(h).squeeze(1), self.head(F.layer_norm(a, a.shape[1:]))
