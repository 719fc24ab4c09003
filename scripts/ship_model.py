"""Copy a trained model into the package as a shipped default, with float16 weights.

    python scripts/ship_model.py runs/cgan-default cgan      # -> src/facegen/weights/cgan/

The model card (MODEL_CARD.md) beside it is written by hand from the run's
stats and `facegen evaluate`'s metrics.jsonl.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from facegen.pretrained import SHIPPED_DIR, load_pretrained, save_pretrained


def ship(run: str, name: str) -> Path:
    model = load_pretrained(run)
    config = model.config
    modules = {key: (config["modules"][key], module) for key, module in model.modules.items()}
    target = SHIPPED_DIR / name
    save_pretrained(target, model=config["model"], preset=config.get("preset", "default"), size=config["size"],
                    attribute_names=config["attribute_names"], modules=modules, prior=model.prior,
                    info=config.get("info"), dtype=torch.float16, latent_prior=model.latent_prior)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print(ship(sys.argv[1], sys.argv[2]))
