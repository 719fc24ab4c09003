"""Conditional GAN generators and discriminators.

Two designs behind the same call signature, `G(z, y) -> x` and
`D(x, y) -> (score, attribute_logits)`:

- `Generator` / `Discriminator` (the default): DCGAN-shaped transposed
  convolutions whose BatchNorm takes its scale and shift from the attributes
  (conditional BatchNorm), and a spectrally normalised discriminator with a
  projection term and an auxiliary attribute head. Light enough to train on a
  2-core CPU.
- `FoldedGenerator`: a trained `Generator` rewritten for inference, the same
  faces at about twice the batch throughput on a CPU (the generation
  pipeline runs it).
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

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from facegen.models.layers import ConditionalBatchNorm2d, centered, tile, channel_widths


# ----------------------------------------------------------------------------- default


class Generator(nn.Module):
    """z (B, z_dim) and y (B, A) in [0, 1] -> x (B, 3, size, size) in [-1, 1]."""

    def __init__(self, *, n_attributes: int, size: int = 64, z_dim: int = 128, channels: int = 256,
                 min_channels: int = 32, refine_blocks: int = 0):
        super().__init__()
        self.n_attributes, self.size, self.z_dim = n_attributes, size, z_dim
        # e.g. [256, 128, 64, 32, 32] for 64x64; min_channels=64 widens the 32x32 level: [256, 128, 64, 64, 64]
        widths = channel_widths(size, channels, min_channels)
        self.fc = nn.Linear(z_dim + n_attributes, widths[0] * 16)
        self.norm0 = ConditionalBatchNorm2d(widths[0], n_attributes)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False) for c_in, c_out in zip(widths[:-2], widths[1:-1]))
        self.norms = nn.ModuleList(ConditionalBatchNorm2d(c, n_attributes) for c in widths[1:-1])
        # Residual 3x3 blocks at the last level (size/2), where the detail is drawn; each starts as the identity.
        if not 0 <= refine_blocks <= 8:
            raise ValueError(f"refine_blocks must be 0 to 8, got {refine_blocks}")
        self.refine = nn.ModuleList(RefineBlock(widths[-2], n_attributes) for _ in range(refine_blocks))
        self.to_rgb = nn.ConvTranspose2d(widths[-2], 3, 4, 2, 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        """`offset` (B, C, R, R), if given, is added to the raw activations of the R x R level (before its
        conditional BatchNorm): how an edit fits the generator closer to a photo (pipelines/inversion.py)."""
        h = self._trunk(z, y, offset)
        if len(self.refine):
            y = centered(y)
            for block in self.refine:
                h = block(h, y)
        return torch.tanh(self.to_rgb(h))  # (B, 3, size, size)

    def activations(self, z: torch.Tensor, y: torch.Tensor, side: int) -> torch.Tensor:
        """The raw activations (B, C, side, side) of the side x side level, before its conditional BatchNorm: where
        `forward`'s offset goes."""
        return self._trunk(z, y, stop_at=side)

    def _trunk(self, z: torch.Tensor, y: torch.Tensor, offset: torch.Tensor | None = None,
               stop_at: int | None = None) -> torch.Tensor:
        """Everything before `to_rgb` (B, C, size/2, size/2), the offset added at its level; with `stop_at`, the raw
        activations of that level instead."""
        assert z.shape[1] == self.z_dim and y.shape[1] == self.n_attributes, (
            f"expected z (B, {self.z_dim}) and y (B, {self.n_attributes}), got {tuple(z.shape)} and {tuple(y.shape)}")
        y = centered(y)
        h = self.fc(torch.cat([z, y], dim=1)).view(z.shape[0], -1, 4, 4)  # (B, C0, 4, 4)
        h = torch.relu(self.norm0(h, y))
        placed = offset is None
        for up, norm in zip(self.ups, self.norms):
            h = up(h)  # (B, C/2, 2H, 2W)
            if not placed and offset.shape[1:] == h.shape[1:]:
                h, placed = h + offset, True
            if h.shape[-1] == stop_at:
                return h
            h = torch.relu(norm(h, y))
        if stop_at is not None:
            raise ValueError(f"this generator's levels are {self.level_sides} px; no {stop_at} px level")
        assert placed, f"no level of this generator has activations of shape {tuple(offset.shape[1:])}"
        return h

    @property
    def level_sides(self) -> list[int]:
        """The sides (px) of the levels whose raw activations can take an offset: each up-layer doubles the 4x4."""
        return [4 * 2 ** (i + 1) for i in range(len(self.norms))]

    def level_shape(self, side: int) -> tuple[int, int, int]:
        """The shape (C, side, side) of the raw activations at the side x side level, where an offset can go."""
        if side not in self.level_sides:
            raise ValueError(f"this generator's levels are {self.level_sides} px; no {side} px level")
        return self.norms[self.level_sides.index(side)].norm.num_features, side, side


class RefineBlock(nn.Module):
    """h + conv(relu(cbn(conv(relu(cbn(h)))))), two 3x3 convolutions: what a transposed convolution alone cannot
    draw, spatial context at the finest feature level (the pre-activation residual block of SNGAN's and BigGAN's
    generators, without the upsampling). The last convolution starts at zero, so a trained generator given new
    blocks draws exactly what it drew before (the way `--init-from` grows the shipped generator).

        >>> block = RefineBlock(4, 2)
        >>> h = torch.rand(3, 4, 8, 8)
        >>> torch.equal(block(h, torch.rand(3, 2)), h)
        True
    """

    def __init__(self, channels: int, n_attributes: int):
        super().__init__()
        self.norm1 = ConditionalBatchNorm2d(channels, n_attributes)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = ConditionalBatchNorm2d(channels, n_attributes)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        nn.init.zeros_(self.conv2.weight)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """h (B, C, R, R) and y already centred (B, A)."""
        r = self.conv1(torch.relu(self.norm1(h, y)))
        return h + self.conv2(torch.relu(self.norm2(r, y)))


class FoldedGenerator(nn.Module):
    """A trained `Generator` in eval mode, rewritten for inference: the same faces, faster.

    - Eval-mode BatchNorm is a fixed per-channel affine map, so it folds into
      the weights of the layer before it. What is left of each conditional
      BatchNorm is a per-sample scale and shift, both linear in y: one Linear
      computes all of them, and each level costs one in-place multiply-add
      and a ReLU (into a fresh tensor they took several times longer, mostly
      page faults on a new 34 MB buffer at batch 256).
    - Activations are channels_last, the layout in which oneDNN's transposed
      convolutions run fastest on our CPUs.
    - Refine blocks' BatchNorms cannot fold into the convolution before them
      (the block's input is also its skip), so theirs stay a per-sample scale
      and shift too, one multiply-add each.
    - The last layer, 32 -> 3 channels, is a 2x2 convolution that gives each
      of the four output pixels of a 2x2 block its own 3 channels, then an
      interleave: oneDNN's transposed convolution with 3 output channels ran
      at a sixth of its usual rate.

    The weights are copied: later changes to `generator` do not reach this module.

        >>> G = Generator(n_attributes=3, size=16).eval()
        >>> z, y = torch.randn(2, G.z_dim), torch.rand(2, 3)
        >>> torch.allclose(FoldedGenerator(G)(z, y), G(z, y), atol=1e-5)
        True
        >>> G = Generator(n_attributes=3, size=16, refine_blocks=1).eval()
        >>> _ = torch.nn.init.normal_(G.refine[0].conv2.weight, std=0.1)
        >>> torch.allclose(FoldedGenerator(G)(z, y), G(z, y), atol=1e-5)
        True
    """

    def __init__(self, generator: Generator):
        super().__init__()
        G = generator
        self.n_attributes, self.size, self.z_dim = G.n_attributes, G.size, G.z_dim
        main = [G.norm0, *G.norms]  # each folds its 1 / std into the layer before it
        # A refine block's input is also its skip, so its norms keep their 1 / std in the per-sample scale.
        blocks = [norm for block in G.refine for norm in (block.norm1, block.norm2)]
        norms = main + blocks
        self.widths = [norm.norm.num_features for norm in norms]  # channels of each normalised level
        self.n_main = len(main)
        self.fc, self.ups = copy.deepcopy(G.fc), copy.deepcopy(G.ups)
        self.refine = nn.ModuleList(nn.ModuleList([copy.deepcopy(b.conv1), copy.deepcopy(b.conv2)]) for b in G.refine)
        self.style = nn.Linear(self.n_attributes, 2 * sum(self.widths))
        self.to_rgb = nn.Conv2d(G.to_rgb.in_channels, 4 * 3, 2, padding=1)
        with torch.no_grad():
            # norm(h) = h * inv_std + offset; on the main path inv_std moves into the weights that made h.
            inv_stds = [torch.rsqrt(norm.norm.running_var + norm.norm.eps) for norm in norms]
            offsets = [-norm.norm.running_mean * inv_std for norm, inv_std in zip(norms, inv_stds)]
            kept = [torch.ones_like(s) for s in inv_stds[:self.n_main]] + inv_stds[self.n_main:]  # what stays here
            self.fc.weight.view(self.widths[0], 16, -1).mul_(inv_stds[0][:, None, None])  # fc's outputs are (C0, 4, 4)
            self.fc.bias.view(self.widths[0], 16).mul_(inv_stds[0][:, None])
            for up, inv_std in zip(self.ups, inv_stds[1:self.n_main]):
                up.weight.mul_(inv_std[None, :, None, None])  # (C_in, C_out, 4, 4)
            # (h * inv_std + offset) * (1 + gain(y)) + bias(y) = h * scale(y) + shift(y), both linear in y.
            self.style.weight.copy_(torch.cat(
                [k[:, None] * norm.gain.weight for norm, k in zip(norms, kept)]
                + [offset[:, None] * norm.gain.weight + norm.bias.weight for norm, offset in zip(norms, offsets)]))
            self.style.bias.copy_(torch.cat(
                [k * (1.0 + norm.gain.bias) for norm, k in zip(norms, kept)]
                + [offset * (1.0 + norm.gain.bias) + norm.bias.bias for norm, offset in zip(norms, offsets)]))
            self.to_rgb.weight.copy_(phase_weights(G.to_rgb.weight))
            self.to_rgb.bias.copy_(G.to_rgb.bias.repeat(4))
        self.requires_grad_(False)
        self.to(device=G.fc.weight.device, memory_format=torch.channels_last)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert z.shape[1] == self.z_dim and y.shape[1] == self.n_attributes, (
            f"expected z (B, {self.z_dim}) and y (B, {self.n_attributes}), got {tuple(z.shape)} and {tuple(y.shape)}")
        y = centered(y)
        scales, shifts = self.style(y)[:, :, None, None].split(sum(self.widths), dim=1)  # (B, sum(C), 1, 1) each
        scales, shifts = scales.split(self.widths, dim=1), shifts.split(self.widths, dim=1)
        h = self.fc(torch.cat([z, y], dim=1)).view(z.shape[0], -1, 4, 4)  # (B, C0, 4, 4)
        h = h.contiguous(memory_format=torch.channels_last)
        for i in range(self.n_main):
            if i:
                h = self.ups[i - 1](h)  # (B, C/2, 2H, 2W), channels_last
            h = torch.addcmul(shifts[i], h, scales[i], out=h).relu_()
        for j, (conv1, conv2) in enumerate(self.refine):  # h + conv2(relu(cbn2(conv1(relu(cbn1(h))))))
            k = self.n_main + 2 * j
            r = conv1(torch.addcmul(shifts[k], h, scales[k]).relu_())
            r = torch.addcmul(shifts[k + 1], r, scales[k + 1], out=r).relu_()
            h = h.add_(conv2(r))
        return interleave_phases(self.to_rgb(h)).tanh_()  # (B, 3, size, size), contiguous


def phase_weights(weight: torch.Tensor) -> torch.Tensor:
    """ConvTranspose2d(kernel 4, stride 2, padding 1) weights (C_in, C_out, 4, 4) as the weights
    (4 * C_out, C_in, 2, 2) of a Conv2d(kernel 2, padding 1) that computes the same output phase by phase.

    Output row 2i + a of the transposed convolution sums input rows i + a - 1 + t (t = 0, 1) through
    kernel row 3 - a - 2t; so does row i + a of the 2x2 convolution, through its tap t, in the output
    channels of phase (a, b). Same for columns.
    """
    c_in, c_out = weight.shape[:2]
    taps = weight.flip(2, 3).reshape(c_in, c_out, 2, 2, 2, 2)  # (C_in, C_out, t, a, u, b): flipped row 2t + a
    return taps.permute(3, 5, 1, 0, 2, 4).reshape(4 * c_out, c_in, 2, 2)  # (a, b, C_out) x (C_in, t, u)


def interleave_phases(phases: torch.Tensor) -> torch.Tensor:
    """(B, 4 * C, H + 1, W + 1) from `phase_weights`' convolution -> (B, C, 2H, 2W), contiguous."""
    batch, channels, height, width = phases.shape[0], phases.shape[1] // 4, phases.shape[2] - 1, phases.shape[3] - 1
    x = phases.new_empty(batch, channels, height, 2, width, 2)  # pixel (2i + a, 2j + b) at [:, :, i, a, j, b]
    for a in range(2):
        for b in range(2):
            first = (2 * a + b) * channels
            x[:, :, :, a, :, b] = phases[:, first:first + channels, a:a + height, b:b + width]
    return x.view(batch, channels, 2 * height, 2 * width)


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
        widths = channel_widths(size, channels, 32)[::-1]  # e.g. [32, 32, 64, 128, 256] for 64x64
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
        return self._heads(h, y)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activations after each of its convolutions, from (B, C1, size/2, size/2) down to (B, C, 4, 4): what a
        reconstruction measured in the critic's features compares (VAE-GAN, Larsen et al. 2016)."""
        maps = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                maps.append(x)
        return maps

    def _heads(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
        widths = channel_widths(size, channels, 64)  # [1024, 512, 256, 128, 64] for 64x64; the last is replaced by RGB
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
        widths = [128] + channel_widths(size // 2, channels, 256)[::-1][1:]  # [128, 256, 512, 1024] for 64x64
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
