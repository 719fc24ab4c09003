"""Which prior over z should the cVAE sample from? FID, KID and attribute control for each option.

Every option decodes with the same network; only where z comes from differs: N(0, I), a Gaussian mixture
fitted to the encoder's codes of the training faces (full or diagonal covariance, K components, fitted to the
posterior means or samples, optionally conditional on y), at a sampling temperature, and, as the ceiling that no
density over z can pass, the training faces' own codes drawn at random ("empirical"). The measures are
`facegen evaluate`'s (same held-out faces, same seed, attributes from the label prior), on fewer faces.

    python benchmarks/cvae_priors.py --n 500 --n-per-value 50 \\
        normal normal@0.7 full:1:means full:1:samples full:10:means diag:20:means full:1:means:cond \\
        full:1:means@0.8 full:1:means@0.6 empirical          # -> benchmarks/results/cvae-priors.jsonl

An option is COVARIANCE:K:CODES[:cond][@TEMPERATURE], `normal[@T]` or `empirical`. About 75 s an option on
one thread of an idle core (500 faces through Inception, 1,200 through the judge).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from facegen.data import open_cache
from facegen.evaluation.run import held_out
from facegen.metrics import protocols
from facegen.metrics.fid import InceptionFeatures, fid_from_features, kid_from_features, real_features
from facegen.metrics.judge import Judge
from facegen.models.latent_prior import GaussianMixturePrior
from facegen.pretrained import load_pretrained
from facegen.training.latent_prior import codes_for_fit, fit_gaussian_mixture, posterior_codes

RESULTS = Path(__file__).resolve().parent / "results"


class Empirical:
    """The training faces' posterior means themselves, drawn uniformly: the aggregate posterior, memorised."""

    def __init__(self, mu: torch.Tensor):
        self.mu = mu

    def sample(self, n: int, generator: torch.Generator | None = None, *, y=None) -> torch.Tensor:
        return self.mu[torch.randint(len(self.mu), (n,), generator=generator)]


def make_prior(option: str, mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor):
    """The prior an option names, and what its fit did."""
    spec, _, temperature = option.partition("@")
    temperature = float(temperature or 1.0)
    if spec == "empirical":
        return Empirical(mu), {}
    if spec == "normal":
        return GaussianMixturePrior(z_dim=mu.shape[1], temperature=temperature), {}
    covariance, components, codes, *flags = spec.split(":")
    z = codes_for_fit(mu, logvar, codes=codes, draws=2)
    labels = y.repeat(len(z) // len(mu), 1) if "cond" in flags else None  # codes_for_fit is draw-major
    tic = time.perf_counter()
    prior, info = fit_gaussian_mixture(z, components=int(components), covariance=covariance, y=labels)
    prior.temperature = temperature
    return prior, {**info, "fit_seconds": round(time.perf_counter() - tic, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("options", nargs="+")
    parser.add_argument("--model", default="cvae")
    parser.add_argument("--data", default="cache/celeba9k-64")
    parser.add_argument("--n", type=int, default=500, help="faces for FID/KID (the protocol's is 2000)")
    parser.add_argument("--n-per-value", type=int, default=50, help="faces per attribute value for control")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "cvae-priors.jsonl"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = load_pretrained(args.model)
    decoder, names = model.modules["decoder"], model.attribute_names
    cache = open_cache(args.data)
    mu, logvar, y_train = posterior_codes(model.modules["encoder"], cache, names)
    judge = Judge("classifier", decision="plain")
    judged = [name for name in names if name in judge.names]
    _, _, pixels_real = held_out(cache, names)
    extractor = InceptionFeatures()
    feats_real = real_features(pixels_real, Path(cache.path) / "inception-valid.npz", extractor=extractor,
                               progress=False)
    for option in args.options:
        prior, info = make_prior(option, mu, logvar, y_train)

        @torch.no_grad()
        def sample(y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            return decoder(prior.sample(len(y), generator, y=y), y).clamp(-1, 1)

        tic = time.perf_counter()
        y = torch.from_numpy(model.prior.sample({}, args.n, np.random.default_rng(args.seed)))
        generator = torch.Generator().manual_seed(args.seed)
        x = torch.cat([sample(y[i:i + 250], generator) for i in range(0, args.n, 250)])
        feats = extractor.features(x, progress=False)
        control = protocols.attribute_control(sample, model.prior, judged, judge, judge.names,
                                              n_per_value=args.n_per_value, seed=args.seed)
        row = {"option": option, "model": args.model, "n": args.n, "n_per_value": args.n_per_value,
               "fid": round(fid_from_features(feats_real, feats), 1),
               "kid": round(kid_from_features(feats_real, feats)[0], 4),
               "control_mean": round(float(np.mean([r["accuracy"] for r in control.values()])), 3),
               "control": {name: round(r["accuracy"], 3) for name, r in control.items()},
               "fit": info, "seconds": round(time.perf_counter() - tic, 1)}
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
