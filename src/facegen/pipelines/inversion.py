"""GAN inversion: the noise z from which a conditional generator draws (as nearly as it can) a given photo.

    z = invert(G, x, y)            # x (B, 3, S, S) in [-1, 1] at G's size, y (B, A) the photos' own attributes
    change = G(z, y_new) - G(z, y)  # what `EditPipeline` adds to the photo for a cgan model

Adam from z = 0 (the prior's mean) on the mean squared error between G(z, y)
and the photo, plus a small pull of z towards the prior (so the code stays
where the generator was trained and its attribute inputs keep their
meaning). All photos of a batch are inverted together. The generator does
not reconstruct a photo well (about 18 dB at 64 px): the point is not its
drawing but the change its attribute inputs make to a face laid out like
the photo, which is crisp (the cGAN draws glasses, not their average) and
lands where the photo's features are.

    >>> import torch
    >>> from facegen.models.cgan import Generator
    >>> G = Generator(n_attributes=2, size=16, z_dim=8, channels=32).eval()
    >>> x, y = torch.zeros(3, 3, 16, 16), torch.tensor([[1.0, 0.0]] * 3)
    >>> invert(G, x, y, steps=5).shape
    torch.Size([3, 8])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

STEPS = 200  # Adam steps: 0.16 s a face in batches of 100 on 2 cores, 1 s for one face alone
LEARNING_RATE = 0.05
PRIOR_WEIGHT = 1e-3  # weight of mean(z^2): keeps z near the prior


def invert(generator: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = STEPS,
           lr: float = LEARNING_RATE) -> torch.Tensor:
    """z (B, z_dim) with generator(z, y) close to x (B, 3, S, S); the generator's weights are left as they were."""
    assert x.ndim == 4 and x.shape[0] == y.shape[0], f"expected x (B, 3, S, S) and y (B, A), got {tuple(x.shape)}, " \
                                                     f"{tuple(y.shape)}"
    frozen = [p.requires_grad for p in generator.parameters()]
    generator.requires_grad_(False)
    try:
        with torch.enable_grad():
            z = torch.zeros(x.shape[0], generator.z_dim, device=x.device, requires_grad=True)
            optimizer = torch.optim.Adam([z], lr=lr)
            for _ in range(steps):
                loss = F.mse_loss(generator(z, y), x) + PRIOR_WEIGHT * z.pow(2).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    finally:
        for p, flag in zip(generator.parameters(), frozen):
            p.requires_grad_(flag)
    return z.detach()
