"""A fitted prior over a latent code z: a mixture of K full-covariance Gaussians.

A VAE's decoder has only seen codes from its encoder, and where the KL term
lost to the reconstruction term those codes do not fill N(0, I): samples from
N(0, I) land where the decoder was never trained and come out as noise. The
remedy of Dai & Wipf's two-stage VAE (and of Ghosh et al.'s "ex-post density
estimation") is a second, small density fitted to the encoder's codes of the
training images; sampling z from it gives the decoder codes it knows.

A diagonal mixture is the same module with diagonal `scale_tril`; a single
Gaussian is `components=1`. `temperature` scales each component's spread
around its mean (1 = as fitted). The fit itself is in
`facegen.training.latent_prior`.

    >>> import torch
    >>> prior = GaussianMixturePrior(z_dim=4, components=2)
    >>> prior.sample(3, torch.Generator().manual_seed(0)).shape
    torch.Size([3, 4])
    >>> prior.log_prob(torch.zeros(1, 4)).shape
    torch.Size([1])
"""

from __future__ import annotations

import math

import torch
from torch import nn


class GaussianMixturePrior(nn.Module):
    """p(z) = sum_k weights[k] N(z; means[k], scale_tril[k] scale_tril[k]^T), sampled on the CPU."""

    def __init__(self, *, z_dim: int = 128, components: int = 1, temperature: float = 1.0):
        super().__init__()
        assert 1 <= components <= 1024 and 1 <= z_dim <= 4096, (
            f"components must be in 1..1024 and z_dim in 1..4096, got {components} and {z_dim}")
        assert 0 < temperature <= 10, f"temperature must be in (0, 10], got {temperature}"
        self.z_dim, self.components, self.temperature = z_dim, components, float(temperature)
        # Until fitted (or loaded): K copies of N(0, I), so an unfitted prior is the plain VAE prior.
        self.register_buffer("weights", torch.full((components,), 1.0 / components))        # (K,)
        self.register_buffer("means", torch.zeros(components, z_dim))                      # (K, D)
        self.register_buffer("scale_tril", torch.eye(z_dim).repeat(components, 1, 1))      # (K, D, D)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, *,
               temperature: float | None = None) -> torch.Tensor:
        """n codes (n, z_dim), float32 on the CPU; the same generator state gives the same codes."""
        temperature = self.temperature if temperature is None else float(temperature)
        k = torch.multinomial(self.weights.float().cpu(), n, replacement=True, generator=generator)  # (n,)
        eps = torch.randn(n, self.z_dim, 1, generator=generator)                                    # (n, D, 1)
        scale = self.scale_tril.float().cpu()[k]                                                    # (n, D, D)
        return self.means.float().cpu()[k] + temperature * (scale @ eps).squeeze(-1)                # (n, D)

    def problem(self) -> str | None:
        """Why these buffers are not a usable mixture (non-finite, weights not summing to 1, a singular
        component), or None."""
        if not all(bool(torch.isfinite(b).all()) for b in (self.weights, self.means, self.scale_tril)):
            return "holds values that are not finite"
        if bool((self.weights < 0).any()) or abs(float(self.weights.double().sum()) - 1) > 1e-3:
            return "has weights that are not a distribution (negative, or not summing to 1)"
        if bool((self.scale_tril.diagonal(dim1=1, dim2=2) <= 0).any()):
            return "has a component whose scale is not positive"
        return None

    @torch.no_grad()
    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) in nats: (n,) for z (n, z_dim)."""
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be (n, {self.z_dim}), got {tuple(z.shape)}"
        return component_log_probs(z.double(), self.weights.double(), self.means.double(),
                                   self.scale_tril.double()).logsumexp(dim=1).to(z.dtype)


def component_log_probs(z: torch.Tensor, weights: torch.Tensor, means: torch.Tensor,
                        scale_tril: torch.Tensor) -> torch.Tensor:
    """log(weights[k] N(z_i; means[k], L_k L_k^T)) for every code and component: (n, K)."""
    diff = (z[None] - means[:, None]).transpose(1, 2)                                   # (K, D, n)
    white = torch.linalg.solve_triangular(scale_tril, diff, upper=False)                # (K, D, n)
    log_det = scale_tril.diagonal(dim1=1, dim2=2).abs().log().sum(dim=1)                # (K,)
    d = z.shape[1]
    log_normal = -0.5 * white.pow(2).sum(dim=1) - log_det[:, None] - 0.5 * d * math.log(2 * math.pi)  # (K, n)
    return (log_normal + weights.clamp_min(1e-300).log()[:, None]).T                    # (n, K)
