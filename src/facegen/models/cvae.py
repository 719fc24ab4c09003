"""The conditional VAE: an encoder q(z | x, y) and a decoder p(x | z, y).

The 2018 study's "what to try next". One model serves both jobs:

- generate: `decoder(torch.randn(n, decoder.z_dim), y)` samples z from the prior;
- edit: `mu, _ = encoder(x, y_own)`, then `decoder(mu, y_new)`.

Both take y in [0, 1], mapped to [-1, 1] inside (`centered`), so fractional
and, with care, extrapolated values are meaningful. The encoder sees y as
tiled maps beside the image, so it need not spend z on what y already says;
the decoder takes y twice: concatenated to z at the first layer and as the
scale and shift of every BatchNorm (conditional BatchNorm), so each
resolution is told the attributes directly and cannot ignore them as easily
as a single input concatenation (the classic cVAE failure: attributes read
from z, y ignored, edits do nothing).

Widths were chosen for a 1-thread CPU budget (see `facegen.training.cvae`):
at 64x64 with the defaults the encoder costs 68 MFLOP and the decoder 55
MFLOP per image (forward, counted with `FlopCounterMode`).

    >>> import torch
    >>> E, D = Encoder(n_attributes=3, size=64), Decoder(n_attributes=3, size=64)
    >>> mu, logvar = E(torch.zeros(2, 3, 64, 64), torch.rand(2, 3))
    >>> mu.shape, logvar.shape
    (torch.Size([2, 128]), torch.Size([2, 128]))
    >>> D(mu, torch.rand(2, 3)).shape
    torch.Size([2, 3, 64, 64])
"""

from __future__ import annotations

import torch
from torch import nn

from facegen.models.cgan import Generator
from facegen.models.layers import centered, tile, channel_widths

LOGVAR_RANGE = (-12.0, 6.0)  # keeps exp(logvar) finite early in training; std from 2.5e-3 to 20


class Encoder(nn.Module):
    """x (B, 3, size, size) in [-1, 1] and y (B, A) in [0, 1] -> (mu, logvar), each (B, z_dim)."""

    def __init__(self, *, n_attributes: int, size: int = 64, z_dim: int = 128, channels: int = 256):
        super().__init__()
        self.n_attributes, self.size, self.z_dim = n_attributes, size, z_dim
        widths = channel_widths(size, channels, 32)[::-1]  # e.g. [32, 32, 64, 128, 256] from 64x64 down to 4x4
        layers: list[nn.Module] = [nn.Conv2d(3 + n_attributes, widths[1], 4, 2, 1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(widths[1:-1], widths[2:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)  # (B, C, 4, 4)
        # Flattened, not pooled: where things are in the face is what a reconstruction needs.
        self.to_posterior = nn.Linear(widths[-1] * 16 + n_attributes, 2 * z_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert x.shape[1:] == (3, self.size, self.size) and y.shape == (x.shape[0], self.n_attributes), (
            f"expected x (B, 3, {self.size}, {self.size}) and y (B, {self.n_attributes}), "
            f"got {tuple(x.shape)} and {tuple(y.shape)}")
        y = centered(y)
        h = self.features(torch.cat([x, tile(y, self.size)], dim=1)).flatten(1)  # (B, C*16)
        mu, logvar = self.to_posterior(torch.cat([h, y], dim=1)).chunk(2, dim=1)  # (B, z_dim) each
        return mu, logvar.clamp(*LOGVAR_RANGE)


class Decoder(Generator):
    """z (B, z_dim) and y (B, A) in [0, 1] -> x (B, 3, size, size) in [-1, 1].

    The cGAN's default generator, reused as it is: conditional BatchNorm at
    every resolution, so a cVAE and a cGAN of the same width compare as
    objectives, not as architectures.
    """

    def __init__(self, *, n_attributes: int, size: int = 64, z_dim: int = 128, channels: int = 256):
        super().__init__(n_attributes=n_attributes, size=size, z_dim=z_dim, channels=channels)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) in nats, summed over z: (B,).

    >>> kl_divergence(torch.zeros(2, 4), torch.zeros(2, 4)).tolist()
    [0.0, 0.0]
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
