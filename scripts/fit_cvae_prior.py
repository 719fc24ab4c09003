"""Fit a trained cVAE's prior over z to its encoder's codes of the training faces, and store it in the model folder.

    python scripts/fit_cvae_prior.py --model runs/cvae --data cache/celeba9k-64          # into runs/cvae's model
    python scripts/fit_cvae_prior.py --model cvae --data cache/celeba9k-64 \\
        --components 1 --covariance full --out src/facegen/weights/cvae                   # the shipped prior

`facegen generate --model <folder>` and `GenerationPipeline` then sample z from
it by default (`--z-prior normal` for N(0, I)). The shipped cVAE's prior was
made by the second command (docs/notes/cvae.md: why these settings). It
takes about 10 s on one thread: encoding ~8k faces, then EM.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from facegen.errors import FacegenError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a cvae: shipped name, model folder or run folder")
    parser.add_argument("--data", required=True, help="the cache the model was trained on (its train split is read)")
    parser.add_argument("--out", help="model folder to write (default: the model's own folder, in place)")
    parser.add_argument("--components", type=int, default=1, help="Gaussians in the mixture (default 1)")
    parser.add_argument("--covariance", choices=("full", "diag"), default="full", help="default full")
    parser.add_argument("--codes", choices=("means", "samples"), default="means",
                        help="fit to the posterior means or to one sample of q(z | x, y) per face (default means)")
    parser.add_argument("--conditional", action="store_true",
                        help="a prior p(z | y): codes shifted by a least-squares map from the attributes (default off)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="the sampling temperature stored with the prior (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    from facegen.training.latent_prior import fit_latent_prior

    torch.set_num_threads(args.threads)
    try:
        folder, info = fit_latent_prior(args.model, args.data, out=args.out, components=args.components,
                                        covariance=args.covariance, codes=args.codes, conditional=args.conditional,
                                        temperature=args.temperature,
                                        seed=args.seed)
    except FacegenError as error:
        print(f"fit_cvae_prior: {error}", file=sys.stderr)
        return 2
    print(json.dumps(info))
    print(f"wrote the prior into {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
