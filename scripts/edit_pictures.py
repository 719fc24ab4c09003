"""Before/after pictures of photo edits for the README: full-size held-out CelebA photos, one attribute flipped.

    python scripts/edit_pictures.py --model residual --out docs/img
    # docs/img/edit-male.png, edit-blond_hair.png, ...: pairs of (photo, edited) at 178 x 218

The photos are the full-size CelebA images of ../shared/data/celeba-fullres-100
that fall in facegen's validation split (crc32(name) % 10 == 0), so no model
trained on them. For each attribute the photos whose own label lets the edit
show (a beardless face for Male, a face without glasses for Eyeglasses, ...)
come first; each is flipped to the opposite of its own label.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from facegen.data import open_dataset
from facegen.pipelines.edit import EditPipeline

REPO = Path(__file__).resolve().parents[1]
FULLRES = REPO.parent / "shared" / "data" / "celeba-fullres-100"
ATTRIBUTES = ("Male", "Blond_Hair", "Young", "Attractive", "Smiling", "Eyeglasses")
PREFERRED = {"Blond_Hair": 0, "Young": 1, "Smiling": 0, "Eyeglasses": 0}  # the own value a telling edit starts from


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="residual")
    parser.add_argument("--out", default="docs/img")
    parser.add_argument("--per-attribute", type=int, default=3)
    parser.add_argument("--zoom", type=int, default=1, help="nearest-neighbour zoom of the saved picture")
    args = parser.parse_args()
    dataset = open_dataset(FULLRES)
    held_out = dataset.indices("valid").tolist()
    pipe = EditPipeline.from_pretrained(args.model)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for name in ATTRIBUTES:
        column = dataset.attribute_names.index(name)
        wanted = PREFERRED.get(name)
        order = sorted(held_out, key=lambda i: wanted is not None and dataset.labels[i, column] != wanted)
        chosen = order[:args.per_attribute]
        photos = [dataset.image_dir / dataset.files[i] for i in chosen]
        out = pipe.edit(photos, flip=[name])
        tiles = []
        for path, edited in zip(photos, out.images):
            tiles += [np.asarray(Image.open(path).convert("RGB")), np.asarray(edited), np.full((218, 6, 3), 255, np.uint8)]
        strip = Image.fromarray(np.concatenate(tiles[:-1], axis=1))
        if args.zoom > 1:
            strip = strip.resize((strip.width * args.zoom, strip.height * args.zoom), Image.Resampling.NEAREST)
        target = Path(args.out) / f"edit-{name.lower()}.png"
        strip.save(target)
        print(f"{target}: {', '.join(dataset.files[i] for i in chosen)} flipped on {name}")


if __name__ == "__main__":
    main()
