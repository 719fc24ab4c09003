"""Fit a trained cVAE's latent prior to its encoder's codes of the training faces (the two-stage VAE's idea).

    python scripts/fit_cvae_prior.py --model runs/cvae --data cache/celeba9k-64 --components 10

The encoder reads every training face with its own labels; the mixture is fitted
by EM to the posterior means (or to posterior samples, `codes="samples"`), and
written into the model folder beside the weights. No network is retrained: the
decoder gets codes like the ones it learnt from, instead of N(0, I) codes it
never saw. docs/notes/cvae.md compares the options.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from facegen.errors import FacegenError
from facegen.models.latent_prior import GaussianMixturePrior, component_log_probs

COVARIANCES = ("full", "diag")
CODES = ("means", "samples")


@torch.no_grad()
def posterior_codes(encoder: torch.nn.Module, cache, attribute_names: list[str], *, split: str = "train",
                    batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The encoder's (mu, logvar), each (N, z_dim), of every `split` image of the cache, read with its own labels
    y (N, A), which are returned too."""
    from facegen.data import to_tensor

    missing = [name for name in attribute_names if name not in cache.attribute_names]
    if missing:
        raise FacegenError(f"{cache.path} has no labels for {', '.join(missing[:5])}; fit the prior on the data "
                           "the model was trained on")
    index = cache.indices(split)
    if len(index) == 0:
        raise FacegenError(f"{cache.path} has no {split} images to fit a prior to")
    columns = [cache.attribute_names.index(name) for name in attribute_names]
    mus, logvars, ys = [], [], []
    for start in range(0, len(index), batch_size):
        rows = index[start:start + batch_size]
        x = to_tensor(np.asarray(cache.images[rows]))                                     # (B, 3, S, S)
        y = torch.from_numpy(cache.labels[rows][:, columns].astype(np.float32))           # (B, A)
        mu, logvar = encoder(x, y)
        mus.append(mu)
        logvars.append(logvar)
        ys.append(y)
    return torch.cat(mus), torch.cat(logvars), torch.cat(ys)


def fit_gaussian_mixture(z: torch.Tensor, *, components: int = 1, covariance: str = "full",
                         y: torch.Tensor | None = None, iterations: int = 200, seed: int = 0, floor: float = 1e-3,
                         tolerance: float = 1e-5) -> tuple[GaussianMixturePrior, dict]:
    """EM for a K-component Gaussian mixture over codes z (N, D); returns the prior and what the fit did.

    Components start from k-means++ seeds; `floor` (a fraction of the codes'
    mean variance) is added to every variance so that no component collapses
    onto a few codes. Float64 throughout: a 128-d full covariance is otherwise
    badly conditioned. With the codes' labels y (N, A) the prior is
    conditional: the least-squares map from centred y to z is taken out of the
    codes first, the mixture fitted to what is left, and the map stored.

    >>> z = torch.cat([torch.randn(200, 2) - 4, torch.randn(200, 2) + 4])
    >>> prior, info = fit_gaussian_mixture(z, components=2, seed=0)
    >>> sorted(round(float(m), 0) for m in prior.means[:, 0])
    [-4.0, 4.0]
    """
    if covariance not in COVARIANCES:
        raise FacegenError(f"covariance must be {' or '.join(COVARIANCES)}, got {covariance!r}")
    if z.ndim != 2 or not torch.isfinite(z).all():
        raise FacegenError(f"codes must be a finite (N, D) array, got shape {tuple(z.shape)}")
    n, d = z.shape
    if not 1 <= components <= 1024 or n < 2 * components:
        raise FacegenError(f"{components} components need at least {2 * components} codes, got {n}; "
                           "fit fewer components")
    z = z.double()
    attribute_mean = shift = None
    if y is not None:
        if y.ndim != 2 or len(y) != n or not torch.isfinite(y).all():
            raise FacegenError(f"labels must be a finite ({n}, A) array for {n} codes, got shape {tuple(y.shape)}")
        attribute_mean = y.double().mean(dim=0)                                            # (A,)
        centred = y.double() - attribute_mean                                              # (N, A)
        shift = torch.linalg.lstsq(centred, z - z.mean(dim=0)).solution                    # (A, D)
        z = z - centred @ shift
    reg = floor * float(z.var(dim=0).mean())
    generator = torch.Generator().manual_seed(seed)
    means = _kmeans_pp(z, components, generator)                                          # (K, D)
    resp = torch.nn.functional.one_hot(torch.cdist(z, means).argmin(dim=1), components).double()  # (N, K)
    previous, log_likelihood, done = -math.inf, -math.inf, 0
    for done in range(1, iterations + 1):
        weights, means, scale_tril = _m_step(z, resp, covariance, reg)
        log_joint = component_log_probs(z, weights, means, scale_tril)                     # (N, K)
        log_likelihood = float(log_joint.logsumexp(dim=1).mean())
        resp = (log_joint - log_joint.logsumexp(dim=1, keepdim=True)).exp()
        if log_likelihood - previous < tolerance * abs(log_likelihood):
            break
        previous = log_likelihood
    prior = GaussianMixturePrior(z_dim=d, components=components, n_attributes=0 if y is None else y.shape[1])
    prior.weights.copy_(weights.float())
    prior.means.copy_(means.float())
    prior.scale_tril.copy_(scale_tril.float())
    if y is not None:
        prior.attribute_mean.copy_(attribute_mean.float())
        prior.attribute_shift.copy_(shift.float())
    return prior, {"components": components, "covariance": covariance, "conditional": y is not None,
                   "iterations": done, "codes": n, "log_likelihood_per_code": round(log_likelihood, 3),
                   "floor": floor, "seed": seed}


def _kmeans_pp(z: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centre drawn with probability proportional to its squared distance."""
    centres = [z[int(torch.randint(len(z), (1,), generator=generator))]]
    for _ in range(1, k):
        distance = torch.cdist(z, torch.stack(centres)).min(dim=1).values.pow(2)           # (N,)
        centres.append(z[int(torch.multinomial(distance / distance.sum(), 1, generator=generator))])
    return torch.stack(centres)


def _m_step(z: torch.Tensor, resp: torch.Tensor, covariance: str, reg: float):
    """Weights (K,), means (K, D) and Cholesky factors (K, D, D) from responsibilities (N, K)."""
    counts = resp.sum(dim=0) + 1e-10                                                      # (K,)
    means = resp.T @ z / counts[:, None]                                                  # (K, D)
    eye = torch.eye(z.shape[1], dtype=z.dtype)
    factors = []
    for k in range(resp.shape[1]):
        diff = z - means[k]                                                               # (N, D)
        if covariance == "full":
            cov = (resp[:, k, None] * diff).T @ diff / counts[k] + reg * eye
            factors.append(torch.linalg.cholesky(cov))
        else:
            var = (resp[:, k, None] * diff.pow(2)).sum(dim=0) / counts[k] + reg
            factors.append(torch.diag(var.sqrt()))
    return counts / counts.sum(), means, torch.stack(factors)


def codes_for_fit(mu: torch.Tensor, logvar: torch.Tensor, *, codes: str = "means", draws: int = 1,
                  seed: int = 0) -> torch.Tensor:
    """What the mixture is fitted to: the posterior means, or `draws` samples of q(z | x, y) per face
    ((draws * N, D), draw-major: the labels of row i are y[i % N])."""
    if codes not in CODES:
        raise FacegenError(f"codes must be {' or '.join(CODES)}, got {codes!r}")
    if codes == "means":
        return mu
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(draws, *mu.shape, generator=generator)                           # (draws, N, D)
    return (mu + (0.5 * logvar).exp() * noise).reshape(-1, mu.shape[1])


def fit_latent_prior(model: str, data: str, *, out: str | None = None, components: int = 1,
                     covariance: str = "full", codes: str = "means", conditional: bool = False,
                     temperature: float = 1.0, iterations: int = 200, seed: int = 0) -> tuple[str, dict]:
    """Encode the training faces of `data`, fit the mixture, write it into `out` (default: the model's folder)."""
    from facegen.data import open_cache
    from facegen.kinds import KINDS
    from facegen.pretrained import load_pretrained, save_latent_prior

    pretrained = load_pretrained(model)
    if not KINDS[pretrained.kind].encoder_decoder or KINDS[pretrained.kind].sampler is None \
            or "encoder" not in pretrained.modules:
        raise FacegenError(f"{pretrained.path} is a {pretrained.kind} model; a latent prior is fitted to a cvae's "
                           "encoder codes")
    if not 0 < temperature <= 10:
        raise FacegenError(f"temperature must be in (0, 10], got {temperature}")
    cache = open_cache(data)
    if cache.size != pretrained.size:
        raise FacegenError(f"{cache.path} holds {cache.size}px images but the model is {pretrained.size}px; "
                           f"fit on a cache of the model's size (facegen prepare --size {pretrained.size})")
    mu, logvar, y = posterior_codes(pretrained.modules["encoder"], cache, pretrained.attribute_names)
    prior, info = fit_gaussian_mixture(codes_for_fit(mu, logvar, codes=codes, seed=seed), components=components,
                                       covariance=covariance, y=y if conditional else None, iterations=iterations,
                                       seed=seed)
    prior.temperature = float(temperature)
    info = {**info, "fitted_to": codes, "data": str(data), "split": "train", "temperature": float(temperature)}
    folder = save_latent_prior(out or pretrained.path, prior, info=info, source=pretrained.path)
    return str(folder), info
