"""How an edit's strength changes what it does: the asked value pushed past 0 and 1 inside the model.

    python benchmarks/probe_strength.py --design cgan --strength 1 2 3 --n 100
    # writes benchmarks/results/probe-strength-<design>.json and a sheet per attribute in --pictures

A flip asks for the other value (1 - own). At strength k the model is asked for
own + k * (flip - own): k = 1 is `facegen edit --flip`, k = 2 asks a face without
glasses for Eyeglasses = 2 (and one with glasses for -1), as `--extrapolate`
allows. For the cGAN this moves its conditional BatchNorms k times as far, which
is not the same as multiplying the change by k (the residual editor's changes
are linear in the value, so for it the two are the same). Measured as in
`edit_photos.py`, on the first --n held-out photos: the judge's flips and dlib's
same-person rate; the sheets show the photo and each strength at the photo's own
size, to be judged by eye. The strength a user gets at a slider's end is chosen
from the pictures, not from these flip rates (the judge is not to be tuned to).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from edit_photos import DESIGNS, held_out_photos  # noqa: E402

from facegen.data import make_grid, square_resize, to_tensor  # noqa: E402
from facegen.pipelines.edit import EditPipeline  # noqa: E402

ATTRIBUTES = ("Male", "Blond_Hair", "Smiling", "Eyeglasses", "Young")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--design", default="cgan", choices=sorted(DESIGNS))
    parser.add_argument("--model-path", help="a model folder for the design (default: the shipped model)")
    parser.add_argument("--strength", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    parser.add_argument("--attributes", nargs="+", default=list(ATTRIBUTES))
    parser.add_argument("--cache", default="cache/celeba9k-64")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--n-pictures", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pictures", default="out/probe-strength")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from facegen.metrics.identity import IdentityEmbedder, identity_available
    from facegen.metrics.judge import Judge

    kind, redraw = DESIGNS[args.design]
    pipe = EditPipeline.from_pretrained(args.model_path or kind, redraw=redraw, batch_size=50,
                                        pivot=args.design != "cgan-z")
    photos, labels, cache_names = held_out_photos(args.cache, None, args.n)
    names = pipe.attribute_names
    source = labels[:, [cache_names.index(name) for name in names]]
    classifier = Judge("classifier")
    columns = [classifier.names.index(name) for name in names]
    squares = lambda images: np.stack([square_resize(im, 64) for im in images])  # noqa: E731
    judge = lambda images: (classifier(to_tensor(squares(images))) > 0.5).numpy()[:, columns]  # noqa: E731
    embedder = IdentityEmbedder() if identity_available() else None
    native = lambda images: np.stack([square_resize(im, min(photos[0].size)) for im in images])  # noqa: E731
    original = embedder.embed(native(photos)) if embedder else None
    Path(args.pictures).mkdir(parents=True, exist_ok=True)

    result = {"design": args.design, "model": str(pipe.pretrained.path), "n": len(photos),
              "strengths": args.strength, "attributes": {}}
    tic = time.perf_counter()
    for name in args.attributes:
        a = names.index(name)
        own = np.round(source[:, a])
        rows = {}
        tiles = [np.stack([np.asarray(p) for p in photos[:args.n_pictures]])]
        for k in args.strength:
            edited: list[Image.Image | None] = [None] * len(photos)
            for value in (0.0, 1.0):
                group = np.flatnonzero(own == value)
                if not len(group):
                    continue
                asked = value + k * ((1.0 - value) - value)  # own 0 -> k, own 1 -> 1 - k
                out = pipe.edit([photos[i] for i in group], {name: asked}, source_attributes=source[group],
                                extrapolate=True)
                for i, image in zip(group, out.images):
                    edited[i] = image
            hits = judge(edited)[:, a] == (own == 0)
            row = {"flip": float(hits.mean()), "flip_to_1": float(hits[own == 0].mean()) if (own == 0).any() else None,
                   "flip_to_0": float(hits[own == 1].mean()) if (own == 1).any() else None}
            if embedder is not None:
                distances = np.linalg.norm(embedder.embed(native(edited)) - original, axis=1)
                row |= {"identity_same_fraction": float((distances < 0.6).mean()),
                        "identity_distance_median": float(np.median(distances))}
            rows[str(k)] = row
            tiles.append(np.stack([np.asarray(p) for p in edited[:args.n_pictures]]))
            print(f"{name:12s} strength {k:.1f}  flip {row['flip']:.3f} (to 1 {row['flip_to_1'] or 0:.3f}, to 0 "
                  f"{row['flip_to_0'] or 0:.3f})  same person {row.get('identity_same_fraction', float('nan')):.3f}",
                  flush=True)
        result["attributes"][name] = rows
        grid = make_grid(np.concatenate(tiles), nrow=args.n_pictures)
        grid = grid.resize((grid.width * 2, grid.height * 2), Image.Resampling.LANCZOS)  # 2x, to judge by eye
        grid.save(Path(args.pictures) / f"{args.design}{args.tag}-{name}.png")
    result["seconds"] = round(time.perf_counter() - tic, 1)
    write_result(f"probe-strength-{args.design}{args.tag}", result)


if __name__ == "__main__":
    main()
