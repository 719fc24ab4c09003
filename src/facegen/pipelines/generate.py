"""Faces from attributes, with any model that can sample: the cGAN or the cVAE.

    >>> import torch
    >>> from facegen.pipelines import GenerationPipeline
    >>> pipe = GenerationPipeline.from_pretrained("cgan")              # the shipped cGAN
    >>> out = pipe("young=1 blond=1 male=0 attractive=1", n=4,
    ...            generator=torch.Generator().manual_seed(0))
    >>> out.images[0].size
    (64, 64)

Attributes the request leaves out are drawn from the training labels given
the ones it names (the model's `AttributePrior`), and returned beside the
images so that a user can see what each face was asked to be.

The noise z comes from the model's fitted prior where it ships one (the
cVAE: a Gaussian mixture fitted to its encoder's codes of the training faces,
`facegen.models.latent_prior`), else from N(0, I); `z_prior="normal"` asks for
N(0, I) whatever the model ships, and `temperature` scales the spread:

    >>> cvae = GenerationPipeline.from_pretrained("cvae")               # fitted prior
    >>> cvae.z_prior, GenerationPipeline(cvae.pretrained, z_prior="normal").z_prior
    ('fitted', 'normal')
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facegen.attributes import AttributePrior, parse_request
from facegen.errors import FacegenError
from facegen.kinds import DEFAULT_MODELS, KINDS, either, names
from facegen.models.cgan import FoldedGenerator, Generator
from facegen.pretrained import Pretrained, load_pretrained
from facegen.validation import is_number

MAX_FACES = 4096  # one call; more is almost surely a typo, and a grid that big is unviewable
Z_PRIORS = ("fitted", "normal")  # where z comes from: the model's fitted prior, or N(0, I)


@dataclass
class GenerationOutput:
    images: list[Image.Image]   # n faces
    attributes: np.ndarray      # (n, A) the values each face was generated with
    attribute_names: list[str]
    request: dict[str, float]   # what the user named (canonical names)
    x: torch.Tensor             # (n, 3, S, S) in [-1, 1]


class GenerationPipeline:
    """Loads a generating model once; each call turns a request into faces.

    With `fast` (the default) the cGAN runs as a `FoldedGenerator`, rewritten
    for inference from `pretrained`'s weights when the pipeline is made: the
    same faces (within 1e-5) at about twice the batch throughput on a CPU
    (benchmarks/generation.py times both). `fast=False` runs the trained
    module as it is; `pretrained.modules` keeps it either way.

    `dtype=torch.bfloat16` runs the network in bfloat16 (noise and output stay
    float32): on CPUs with native bf16 (AVX512-BF16 or AMX) the cGAN then makes
    about twice as many faces/s, within a few 8-bit levels of float32's (too
    little to see); on other CPUs it is many times slower. Off by default.

    `z_prior`: "fitted" (the model's fitted prior over z; refused if it has
    none), "normal" (N(0, I)), or None (the default: fitted where the model
    has one). `temperature` scales z's spread around the prior's centres
    (None: the prior's own, 1 for N(0, I)).
    """

    def __init__(self, pretrained: Pretrained, *, fast: bool = True, dtype: torch.dtype = torch.float32,
                 z_prior: str | None = None, temperature: float | None = None):
        sampler = KINDS[pretrained.kind].sampler  # the module that maps (z, y) to faces
        if sampler is None:
            raise FacegenError(f"{pretrained.path} is a {pretrained.kind} model, which cannot make faces from "
                               f"nothing; generate with {either(names(can='generate'))}, or edit a photo with "
                               "`facegen edit`")
        network = pretrained.modules[sampler]
        # Folded: the cGAN's default generator only; the cVAE's decoder (a subclass) and the study's run as trained.
        self.network = FoldedGenerator(network) if fast and type(network) is Generator else network
        if dtype != torch.float32:
            self.network = copy.deepcopy(self.network).to(dtype)  # a copy: pretrained.modules stay as loaded
        self.pretrained, self.dtype = pretrained, dtype
        self.z_dim = int(self.network.z_dim)
        self.prior: AttributePrior | None = pretrained.prior
        if z_prior not in (None, *Z_PRIORS):
            raise FacegenError(f"z_prior must be {' or '.join(Z_PRIORS)} (or None: the model's own), got {z_prior!r}")
        if z_prior == "fitted" and pretrained.latent_prior is None:
            raise FacegenError(f"{pretrained.path} has no fitted prior over z; fit one (scripts/fit_cvae_prior.py) "
                               "or sample from N(0, I) (z_prior='normal')")
        check_temperature(temperature)
        self.latent_prior = pretrained.latent_prior if z_prior != "normal" else None
        self.z_prior = "fitted" if self.latent_prior is not None else "normal"
        self.temperature = temperature

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = DEFAULT_MODELS["generate"], *, device: str = "cpu", fast: bool = True,
                        dtype: torch.dtype = torch.float32, z_prior: str | None = None,
                        temperature: float | None = None) -> "GenerationPipeline":
        return cls(load_pretrained(name_or_path, device=device), fast=fast, dtype=dtype, z_prior=z_prior,
                   temperature=temperature)

    @property
    def attribute_names(self) -> list[str]:
        return self.pretrained.attribute_names

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @property
    def default_temperature(self) -> float:
        """The spread z is drawn with when a call names none: the pipeline's, else the fitted prior's own, else 1."""
        if self.temperature is not None:
            return float(self.temperature)
        return float(self.latent_prior.temperature) if self.latent_prior is not None else 1.0

    @torch.no_grad()
    def sample(self, y: torch.Tensor, generator: torch.Generator | None = None, *, batch_size: int = 256,
               temperature: float | None = None) -> torch.Tensor:
        """The low-level call: attributes y (n, A) -> images x (n, 3, S, S) in [-1, 1]; noise from `generator`,
        with `temperature` for this call only (None: `default_temperature`)."""
        assert y.ndim == 2 and y.shape[1] == len(self.attribute_names), (
            f"y must be (n, {len(self.attribute_names)}) for attributes {self.attribute_names}, got {tuple(y.shape)}")
        z = self.noise(y.shape[0], generator, y=y, temperature=temperature)  # (n, z_dim), on the CPU: same on any device
        placement = dict(device=self.device, dtype=self.dtype)
        chunks = [self.network(z[i:i + batch_size].to(**placement), y[i:i + batch_size].to(**placement)).float().cpu()
                  for i in range(0, y.shape[0], batch_size)]
        return torch.cat(chunks).clamp(-1, 1)

    def noise(self, n: int, generator: torch.Generator | None = None, *, y: torch.Tensor | None = None,
              temperature: float | None = None) -> torch.Tensor:
        """n codes z (n, z_dim) on the CPU, from the fitted prior (given the faces' attributes y (n, A), if it
        is conditional) or N(0, I) (see `z_prior`); `temperature` for this call only (None: the pipeline's)."""
        check_temperature(temperature)
        temperature = self.default_temperature if temperature is None else temperature
        if self.latent_prior is not None:
            return self.latent_prior.sample(n, generator, temperature=temperature, y=y)
        return torch.randn(n, self.z_dim, generator=generator) * temperature  # * 1.0 leaves z bit for bit

    def attributes_for(self, request: Mapping[str, float], n: int, generator: torch.Generator | None) -> np.ndarray:
        """(n, A): the named values, the rest drawn from the training labels given them."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))  # one draw, whatever the request
        rng = np.random.default_rng(seed)
        if self.prior is not None:
            return self.prior.sample(request, n, rng)
        y = np.full((n, len(self.attribute_names)), 0.5, dtype=np.float32)  # no prior stored: neutral values
        for name, value in request.items():
            y[:, self.attribute_names.index(name)] = value
        return y

    def __call__(self, request: str | Sequence[str] | Mapping[str, float] | None = None, *, n: int = 1,
                 generator: torch.Generator | None = None, extrapolate: bool = False) -> GenerationOutput:
        from facegen.data import to_pil

        if not 1 <= n <= MAX_FACES:
            raise FacegenError(f"the number of faces must be between 1 and {MAX_FACES}, got {n}")
        parsed = parse_request(request or {}, self.attribute_names, extrapolate=extrapolate)
        y = self.attributes_for(parsed, n, generator)
        x = self.sample(torch.from_numpy(y), generator)
        return GenerationOutput(images=to_pil(x), attributes=y,
                                attribute_names=self.attribute_names, request=parsed, x=x)


def check_temperature(temperature: float | None) -> None:
    """A temperature is None (the model's own) or a number in (0, 10]; anything else is one line.

    >>> check_temperature(0.7)
    >>> check_temperature(0)
    Traceback (most recent call last):
    ...
    facegen.errors.FacegenError: temperature must be a number in (0, 10], got 0
    """
    if temperature is not None and not (is_number(temperature) and 0 < temperature <= 10):
        raise FacegenError(f"temperature must be a number in (0, 10], got {temperature!r}")
