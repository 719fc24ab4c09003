"""Copy a trained model into the package as a shipped default, with float16 weights.

    python scripts/ship_model.py runs/cgan-default cgan      # -> src/facegen/weights/cgan/

The model card (MODEL_CARD.md) beside it is written by hand from the run's
stats and `facegen evaluate`'s metrics.jsonl.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from facegen.pretrained import SHIPPED_DIR, load_pretrained, load_training_modules, save_pretrained


def ship(run: str, name: str) -> Path:
    """The run's exported model in float16; a discriminator it kept (`training.safetensors`) goes along in float32,
    so that `facegen train --init-from NAME` goes on against it."""
    model = load_pretrained(run)
    config = model.config
    modules = {key: (config["modules"][key], module) for key, module in model.modules.items()}
    training = _training_modules(run, config)
    target = SHIPPED_DIR / name
    save_pretrained(target, model=config["model"], preset=config.get("preset", "default"), size=config["size"],
                    attribute_names=config["attribute_names"], modules=modules, prior=model.prior,
                    info=config.get("info"), dtype=torch.float16, latent_prior=model.latent_prior,
                    training_modules=training)
    return target


def _training_modules(run: str, config: dict) -> dict:
    """The training modules the run kept, as stored (float32)."""
    return {name: (config["training_modules"][name], state) for name, state in load_training_modules(run).items()}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print(ship(sys.argv[1], sys.argv[2]))
