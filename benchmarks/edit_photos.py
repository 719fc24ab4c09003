"""How well each editing design changes real photos, at their own resolution, on held-out CelebA faces.

    python benchmarks/edit_photos.py --design residual fader fader-redraw cvae --n 300
    # writes benchmarks/results/edit-photos-<design>.json and a before/after sheet per design in --pictures

Every held-out photo (the cache's validation split, read from the CelebA
folder it was built from, at the file's own size) is edited through
`EditPipeline.edit`, exactly as `facegen edit` does, once per attribute with
that attribute flipped (1 - own label). Measured per attribute and direction:

- flips: the shipped classifier's decision on the edited photo (its centre
  square at 64 px, as the classifier was trained) equals the asked value;
  beside it the classifier's own recall on the real photos of that class
  (how often it is right on real faces: the ceiling of any flip rate);
- others kept: the other attributes' decisions unchanged from the original;
- identity: dlib's descriptor distance between the original and the edited
  centre square (at the photo's resolution); under 0.6 counts as the same person;
- nothing asked: PSNR of the output against the photo, at full resolution;
- sweep: mean absolute change, in 0..255 levels inside the face ellipse,
  between the two ends (0 and 1) of the sweep strip;
- where the edit lands: the mean absolute change, in 0..255 levels, inside
  the face ellipse of the centre square and over the rest of the photo;
- with `--second-classifier PATH`: the flip rate as another classifier sees
  it. An editor trained against a classifier fools that classifier and,
  as measured, the judge too (docs/notes/editing.md): agreement between
  two classifiers is no proof that a face changed; look at the pictures.

Designs: `residual` (the residual editor), `fader` / `cvae` (difference
transfer of the shipped models), `cgan` (difference transfer after inverting
the cGAN on each photo), `fader-redraw` / `cvae-redraw` / `cgan-redraw` (the
model's own decode, the 2018 study's way). `--model-path DESIGN=PATH` points a design
at another model folder (a training run, say).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from facegen.data import load_image, make_grid, open_cache, square_resize, to_tensor  # noqa: E402
from facegen.data.celeba import open_dataset  # noqa: E402
from facegen.metrics.reconstruction import pixel_psnr  # noqa: E402
from facegen.pipelines.edit import EditPipeline  # noqa: E402

DESIGNS = {"residual": ("residual", False), "cgan": ("cgan", False), "cgan-redraw": ("cgan", True),
           "cgan-z": ("cgan", False),  # the cGAN inverted by z alone, without the fitted 16x16 offset
           "fader": ("fader", False), "fader-redraw": ("fader", True), "cvae": ("cvae", False),
           "cvae-redraw": ("cvae", True)}
PICTURE_ATTRIBUTES = ("Male", "Blond_Hair", "Young", "Attractive", "Smiling", "Eyeglasses")
SWEEP_ATTRIBUTES = ("Male", "Blond_Hair", "Young", "Attractive")


def held_out_photos(cache_path: str, data: str | None, n: int) -> tuple[list[Image.Image], np.ndarray, list[str]]:
    """The first n validation photos at their own size, their 40 labels, and the cache's attribute names."""
    cache = open_cache(cache_path)
    root = data or cache.manifest.get("source")
    dataset = open_dataset(root)
    index = cache.indices("valid")[:n]
    photos = [load_image(dataset.image_dir / cache.files[i]) for i in index]
    return photos, cache.labels[index].astype(np.float32), cache.attribute_names


def ellipse(side: int) -> np.ndarray:
    """The face region of a CelebA centre square: a bool (side, side) ellipse (the paste-back mask's shape)."""
    from facegen.align.warp import MASK_AXES, MASK_CENTER

    v, u = np.mgrid[0:side, 0:side] / side
    return ((u - MASK_CENTER[0]) / MASK_AXES[0]) ** 2 + ((v - MASK_CENTER[1]) / MASK_AXES[1]) ** 2 <= 1.0


def ellipse_in_photo(height: int, width: int) -> np.ndarray:
    """The face ellipse of a photo's centre square, as a bool (height, width) mask of the whole photo."""
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    mask = np.zeros((height, width), bool)
    mask[top:top + side, left:left + side] = ellipse(side)
    return mask


def run(design: str, model: str, redraw: bool, photos, labels, cache_names, args) -> dict:
    from facegen.metrics.judge import Judge
    from facegen.metrics.identity import IdentityEmbedder, identity_available

    pipe = EditPipeline.from_pretrained(model, redraw=redraw, batch_size=50, pivot=design != "cgan-z")
    names = pipe.attribute_names
    source = labels[:, [cache_names.index(name) for name in names]]  # (n, A) own CelebA labels
    classifier = Judge("classifier")
    columns = [classifier.names.index(name) for name in names]
    squares = lambda images: np.stack([square_resize(im, 64) for im in images])  # noqa: E731
    judge = lambda images: (classifier(to_tensor(squares(images))) > 0.5).numpy()[:, columns]  # noqa: E731
    real = judge(photos)  # (n, A) the judge on the real photos
    second = None
    if args.second_classifier:
        second_net = Judge(args.second_classifier)
        second_columns = [second_net.names.index(name) for name in names]
        second = lambda images: (second_net(to_tensor(squares(images))) > 0.5).numpy()[:, second_columns]  # noqa: E731
    faces = [ellipse_in_photo(p.height, p.width) for p in photos]  # (H, W) bool each
    truth = source > 0.5
    embedder = IdentityEmbedder() if identity_available() and args.n_identity else None
    n_id = min(args.n_identity, len(photos))
    native = lambda images: np.stack([square_resize(im, min(photos[0].size)) for im in images[:n_id]])  # noqa: E731
    original_descriptors = embedder.embed(native(photos)) if embedder else None

    tic = time.perf_counter()
    kept = pipe.edit(photos, source_attributes=source)
    if redraw:  # the study's output is the 64 px decode: compare it with the photo at that size
        same = [pixel_psnr(np.asarray(k), square_resize(p, pipe.size)) for k, p in zip(kept.images, photos)]
    else:
        same = [pixel_psnr(np.asarray(k), np.asarray(p)) for k, p in zip(kept.images, photos)]
    result = {"design": design, "model": str(pipe.pretrained.path), "redraw": redraw, "n": len(photos),
              "output_size": list(kept.images[0].size), "photo_size": list(photos[0].size),
              "nothing_asked_psnr_db_median": float(np.median(same)),
              "nothing_asked_identical_fraction": float(np.mean([math.isinf(v) for v in same])),
              "attributes": {}}
    sheet = [to_tensor(squares(photos[:8]))]
    for a, name in enumerate(names):
        out = pipe.edit(photos, flip=[name], source_attributes=source)
        decided = judge(out.images)  # (n, A)
        wanted = ~truth[:, a]
        hits = decided[:, a] == wanted
        others = [b for b in range(len(names)) if b != a]
        row = {"flip": float(hits.mean()),
               "flip_to_1": float(hits[wanted].mean()) if wanted.any() else None,
               "flip_to_0": float(hits[~wanted].mean()) if (~wanted).any() else None,
               "n_to_1": int(wanted.sum()), "n_to_0": int((~wanted).sum()),
               "judge_recall_at_1_real": float((real[:, a] == truth[:, a])[truth[:, a]].mean()) if truth[:, a].any() else None,
               "judge_recall_at_0_real": float((real[:, a] == truth[:, a])[~truth[:, a]].mean()) if (~truth[:, a]).any() else None,
               "others_kept": float((decided[:, others] == real[:, others]).mean())}
        if second is not None:
            row["flip_by_second_classifier"] = float((second(out.images)[:, a] == wanted).mean())
        moved = [np.abs(np.asarray(o, np.float32) - np.asarray(p, np.float32)).mean(axis=2)
                 for o, p in zip(out.images, photos)]
        row["change_in_face_levels"] = float(np.mean([m[f].mean() for m, f in zip(moved, faces)]))
        row["change_elsewhere_levels"] = float(np.mean([m[~f].mean() for m, f in zip(moved, faces)]))
        if embedder is not None:
            distances = np.linalg.norm(embedder.embed(native(out.images)) - original_descriptors, axis=1)
            row |= {"identity_same_fraction": float((distances < 0.6).mean()),
                    "identity_distance_median": float(np.median(distances)), "identity_n": n_id}
        result["attributes"][name] = row
        print(f"{design:13s} {name:17s} flip {row['flip']:.3f} (to 1 {row['flip_to_1'] or 0:.3f}, to 0 "
              f"{row['flip_to_0'] or 0:.3f})  same person {row.get('identity_same_fraction', float('nan')):.3f}  "
              f"second {row.get('flip_by_second_classifier', float('nan')):.3f}  change face/elsewhere "
              f"{row['change_in_face_levels']:.1f}/{row['change_elsewhere_levels']:.1f}", flush=True)
        if name in PICTURE_ATTRIBUTES:
            sheet.append(to_tensor(squares(out.images[:8])))
    result["seconds"] = round(time.perf_counter() - tic, 1)
    mean = lambda key: float(np.mean([r[key] for r in result["attributes"].values() if key in r]))  # noqa: E731
    result["mean_flip"] = mean("flip")
    result["mean_change_in_face_levels"] = mean("change_in_face_levels")
    result["mean_change_elsewhere_levels"] = mean("change_elsewhere_levels")
    if second is not None:
        result["second_classifier"] = str(args.second_classifier)
        result["mean_flip_by_second_classifier"] = mean("flip_by_second_classifier")
    if embedder is not None:
        result["mean_identity_same_fraction"] = mean("identity_same_fraction")

    # The sweep strip's two ends, in the face ellipse, on the first photos.
    mask = None
    changes = {}
    for name in [s for s in SWEEP_ATTRIBUTES if s in names]:
        levels = []
        for i, photo in enumerate(photos[:args.n_sweep]):
            strip = np.asarray(pipe.sweep(photo, name, steps=2, source_attributes=source[i:i + 1]))
            side = strip.shape[0] - 4  # one row of 3 tiles (photo, value 0, value 1), 2 px padding around each
            first = strip[2:2 + side, 2 + (side + 2):2 + (side + 2) + side].astype(np.float32)
            last = strip[2:2 + side, 2 + 2 * (side + 2):2 + 2 * (side + 2) + side].astype(np.float32)
            mask = ellipse(side) if mask is None or mask.shape[0] != side else mask
            levels.append(float(np.abs(last - first)[mask].mean()))
        changes[name] = float(np.mean(levels))
    result["sweep_end_to_end_change_levels"] = changes
    grid = make_grid(torch.cat(sheet), nrow=8)
    Path(args.pictures).mkdir(parents=True, exist_ok=True)
    grid.resize((grid.width * 2, grid.height * 2), Image.Resampling.NEAREST).save(Path(args.pictures) / f"{design}.png")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--design", nargs="+", default=["residual", "fader", "fader-redraw", "cvae"],
                        choices=sorted(DESIGNS))
    parser.add_argument("--model-path", action="append", default=[], metavar="DESIGN=PATH")
    parser.add_argument("--cache", default="cache/celeba9k-64", help="its validation split is the held-out set")
    parser.add_argument("--data", help="the CelebA folder the cache was built from (default: the cache's record)")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--n-identity", type=int, default=300, help="photos per attribute for dlib (0: none)")
    parser.add_argument("--n-sweep", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pictures", default="out/edit-photos")
    parser.add_argument("--tag", default="", help="appended to the result file's name")
    parser.add_argument("--second-classifier", help="a classifier (model folder) whose flip rate is recorded beside")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = dict(item.split("=", 1) for item in args.model_path)
    photos, labels, cache_names = held_out_photos(args.cache, args.data, args.n)
    for design in args.design:
        kind, redraw = DESIGNS[design]
        result = run(design, paths.get(design, kind), redraw, photos, labels, cache_names, args)
        write_result(f"edit-photos-{design}{args.tag}", result)


if __name__ == "__main__":
    main()
