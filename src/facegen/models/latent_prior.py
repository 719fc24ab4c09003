"""A fitted prior over a latent code z: a mixture of K full-covariance Gaussians.

A VAE's decoder has only seen codes from its encoder, and where the KL term
lost to the reconstruction term those codes do not fill N(0, I): samples from
N(0, I) land where the decoder was never trained and come out as noise. The
remedy of Dai & Wipf's two-stage VAE (and of Ghosh et al.'s "ex-post density
estimation") is a second, small density fitted to the encoder's codes of the
training images; sampling z from it gives the decoder codes it knows.

A diagonal mixture is the same module with diagonal `scale_tril`; a single
Gaussian is `components=1`. `temperature` scales each component's spread
around its mean (1 = as fitted). With `n_attributes` > 0 the prior is
conditional, p(z | y): every code is shifted by (y - attribute_mean) @
attribute_shift, a least-squares map from the labels to the codes, because a
cVAE's codes still carry some of the attributes and a code drawn for someone
else's face argues with the y it is decoded with. The fit itself is in
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

    def __init__(self, *, z_dim: int = 128, components: int = 1, temperature: float = 1.0, n_attributes: int = 0):
        super().__init__()
        assert 1 <= components <= 1024 and 1 <= z_dim <= 4096 and 0 <= n_attributes <= 1024, (
            f"components must be in 1..1024, z_dim in 1..4096 and n_attributes in 0..1024, "
            f"got {components}, {z_dim} and {n_attributes}")
        assert 0 < temperature <= 10, f"temperature must be in (0, 10], got {temperature}"
        self.z_dim, self.components, self.temperature = z_dim, components, float(temperature)
        self.n_attributes = n_attributes
        # Until fitted (or loaded): K copies of N(0, I), so an unfitted prior is the plain VAE prior.
        self.register_buffer("weights", torch.full((components,), 1.0 / components))        # (K,)
        self.register_buffer("means", torch.zeros(components, z_dim))                      # (K, D)
        self.register_buffer("scale_tril", torch.eye(z_dim).repeat(components, 1, 1))      # (K, D, D)
        if n_attributes:
            self.register_buffer("attribute_mean", torch.zeros(n_attributes))              # (A,)
            self.register_buffer("attribute_shift", torch.zeros(n_attributes, z_dim))      # (A, D)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, *, temperature: float | None = None,
               y: torch.Tensor | None = None) -> torch.Tensor:
        """n codes (n, z_dim), float32 on the CPU, for attributes y (n, A) if the prior is conditional;
        the same generator state gives the same codes."""
        temperature = self.temperature if temperature is None else float(temperature)
        k = torch.multinomial(self.weights.float().cpu(), n, replacement=True, generator=generator)  # (n,)
        eps = torch.randn(n, self.z_dim, 1, generator=generator)                                    # (n, D, 1)
        scale = self.scale_tril.float().cpu()[k]                                                    # (n, D, D)
        z = self.means.float().cpu()[k] + temperature * (scale @ eps).squeeze(-1)                   # (n, D)
        return z + self.shift(y, n)

    def shift(self, y: torch.Tensor | None, n: int) -> torch.Tensor | float:
        """What attributes y (n, A) add to a code: (n, D), or 0 for an unconditional prior."""
        if not self.n_attributes:
            return 0.0
        assert y is not None and tuple(y.shape) == (n, self.n_attributes), (
            f"this prior is conditional: pass y of shape ({n}, {self.n_attributes}), got "
            f"{None if y is None else tuple(y.shape)}")
        return (y.float().cpu() - self.attribute_mean.float().cpu()) @ self.attribute_shift.float().cpu()

    def problem(self) -> str | None:
        """Why these buffers are not a usable mixture (non-finite, weights not summing to 1, a singular
        component), or None."""
        if not all(bool(torch.isfinite(b).all()) for b in self.buffers()):
            return "holds values that are not finite"
        if bool((self.weights < 0).any()) or abs(float(self.weights.double().sum()) - 1) > 1e-3:
            return "has weights that are not a distribution (negative, or not summing to 1)"
        if bool((self.scale_tril.diagonal(dim1=1, dim2=2) <= 0).any()):
            return "has a component whose scale is not positive"
        return None

    @torch.no_grad()
    def log_prob(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(z) (or log p(z | y)) in nats: (n,) for z (n, z_dim)."""
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be (n, {self.z_dim}), got {tuple(z.shape)}"
        z = z.cpu() - self.shift(y, len(z))
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
