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

The drawing from z alone misses the photo (18.5 dB), so its change lands
beside the photo's features: a second mouth, glasses beside the eyes.
`fit_offset` then fits, with z, an offset added to the generator's raw
activations at 16 x 16 (the pivot): the drawing comes to about 29 dB of
the photo, and since the attributes still act through every conditional
BatchNorm after that level, G(z, y', offset) - G(z, y, offset) is the
generator's change drawn on the photo's own eyes and mouth (a probe on 40
faces, docs/notes/editing.md).

    >>> import torch
    >>> from facegen.models.cgan import Generator
    >>> G = Generator(n_attributes=2, size=16, z_dim=8, channels=32).eval()
    >>> x, y = torch.zeros(3, 3, 16, 16), torch.tensor([[1.0, 0.0]] * 3)
    >>> z = invert(G, x, y, steps=5)
    >>> z.shape, fit_offset(G, x, y, z, side=8, steps=5)[1].shape
    (torch.Size([3, 8]), torch.Size([3, 32, 8, 8]))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

STEPS = 200  # Adam steps: 0.16 s a face in batches of 100 on 2 cores, 1 s for one face alone
LEARNING_RATE = 0.05
PRIOR_WEIGHT = 1e-3  # weight of mean(z^2): keeps z near the prior
PIVOT_FRACTION = 4  # the offset goes on the level a quarter of the output's side (16 px of 64), or the nearest below
PIVOT_STEPS = 200  # Adam steps on z and the offset together, after `invert`


def invert(generator: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = STEPS,
           lr: float = LEARNING_RATE) -> torch.Tensor:
    """z (B, z_dim) with generator(z, y) close to x (B, 3, S, S); the generator's weights are left as they were."""
    assert x.ndim == 4 and x.shape[0] == y.shape[0], f"expected x (B, 3, S, S) and y (B, A), got {tuple(x.shape)}, " \
                                                     f"{tuple(y.shape)}"
    with _frozen(generator):
        z = torch.zeros(x.shape[0], generator.z_dim, device=x.device, requires_grad=True)
        _minimise([z], lambda: F.mse_loss(generator(z, y), x) + PRIOR_WEIGHT * z.pow(2).mean(), steps=steps, lr=lr)
    return z.detach()


def pivot_side(generator: torch.nn.Module) -> int:
    """The level (px) whose activations get the fitted offset: a quarter of the output's side where the generator
    has that level (16 of 64: a probe found it fits the photo to 29 dB and keeps the attributes' change), else the
    nearest one below it, else its first."""
    sides = generator.level_sides
    below = [side for side in sides if side <= generator.size // PIVOT_FRACTION]
    return max(below) if below else sides[0]


def fit_offset(generator: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, *,
               side: int | None = None, steps: int = PIVOT_STEPS, lr: float = LEARNING_RATE
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """z (B, z_dim) refined, and an offset (B, C, side, side) on the generator's raw activations at that level
    (default `pivot_side`), so that generator(z, y, offset) draws x (B, 3, S, S) closely. The offset is learnt in
    units of each face's activation spread there, so one learning rate suits z and it alike; each face is fitted on
    its own loss."""
    assert x.ndim == 4 and x.shape[0] == y.shape[0] == z.shape[0], (
        f"expected x (B, 3, S, S), y (B, A) and z (B, z_dim), got {tuple(x.shape)}, {tuple(y.shape)}, "
        f"{tuple(z.shape)}")
    side = pivot_side(generator) if side is None else side
    with _frozen(generator):
        with torch.no_grad():  # each face's activation spread at that level, for its offset's units
            raw = generator.activations(z, y, side)  # (B, C, side, side)
        scale = raw.flatten(1).std(dim=1).clamp(min=1e-6)[:, None, None, None]
        unit = torch.zeros_like(raw, requires_grad=True)
        z = z.detach().clone().requires_grad_(True)

        def loss() -> torch.Tensor:  # a sum over faces of each face's own loss: no face's fit depends on the others
            error = (generator(z, y, unit * scale) - x).pow(2).flatten(1).mean(dim=1)
            return (error + PRIOR_WEIGHT * z.pow(2).mean(dim=1)).sum()

        _minimise([unit, z], loss, steps=steps, lr=lr)
    return z.detach(), (unit * scale).detach()


@contextmanager
def _frozen(generator: torch.nn.Module) -> Iterator[None]:
    """The generator's weights take no gradient inside; each parameter's requires_grad is restored after."""
    flags = [p.requires_grad for p in generator.parameters()]
    generator.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(generator.parameters(), flags):
            p.requires_grad_(flag)


def _minimise(parameters: list[torch.Tensor], loss: Callable[[], torch.Tensor], *, steps: int, lr: float) -> None:
    """`steps` Adam steps on `parameters` (leaf tensors that require grad) against `loss()`, with gradients on even
    when called under torch.no_grad (the edit pipeline's inference)."""
    with torch.enable_grad():
        optimizer = torch.optim.Adam(parameters, lr=lr)
        for _ in range(steps):
            value = loss()
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
