"""Probe of the issue's design (b): invert the shipped cGAN on each photo, then apply its change to the photo.

    python benchmarks/probe_cgan_inversion.py --n 100 --steps 200      # -> benchmarks/results/probe-cgan-inversion.json

Not a shipped editor: a measurement to compare with `benchmarks/edit_photos.py`'s designs on the same held-out
photos and the same judge. For each photo z* = argmin |G(z, y) - x|^2 + 1e-3 |z|^2 (Adam from z = 0, the photo's
own labels y, all photos in one batch), then per attribute

- transfer: the photo + up(G(z*, y') - G(z*, y)) at its own resolution (`apply_change`);
- redraw: G(z*, y') itself, at 64 px (how far the pure inversion goes, and whom it keeps).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from edit_photos import held_out_photos  # noqa: E402

from facegen.data import make_grid, square_resize, to_tensor, to_uint8  # noqa: E402
from facegen.metrics.identity import IdentityEmbedder, identity_available  # noqa: E402
from facegen.metrics.judge import Judge  # noqa: E402
from facegen.metrics.reconstruction import psnr  # noqa: E402
from facegen.pipelines.change import apply_change  # noqa: E402
from facegen.pretrained import load_pretrained  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--cache", default="cache/celeba9k-64")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photos, labels, cache_names = held_out_photos(args.cache, None, args.n)
    gan = load_pretrained("cgan")
    names = gan.attribute_names
    G = gan.modules["generator"].eval().requires_grad_(False)  # the plain module: the folded one is not differentiable
    y = torch.from_numpy(labels[:, [cache_names.index(name) for name in names]])  # (n, A)
    x = to_tensor(np.stack([square_resize(p, gan.size) for p in photos]))  # (n, 3, 64, 64)

    tic = time.perf_counter()
    z = torch.zeros(len(x), G.z_dim, requires_grad=True)
    optimizer = torch.optim.Adam([z], lr=args.lr)
    for _ in range(args.steps):
        loss = F.mse_loss(G(z, y), x) + 1e-3 * z.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - tic
    z = z.detach()
    with torch.no_grad():
        base = G(z, y)
    reconstruction_db = float(psnr(base, x).median())

    judge = Judge("classifier")
    columns = [judge.names.index(name) for name in names]
    decide = lambda images: (judge(images) > 0.5).numpy()[:, columns]  # noqa: E731
    truth = y.numpy() > 0.5
    embedder = IdentityEmbedder() if identity_available() else None
    side = min(photos[0].size)
    squares = np.stack([square_resize(p, side) for p in photos])
    original = embedder.embed(squares) if embedder else None
    result = {"n": len(x), "steps": args.steps, "inversion_seconds": round(seconds, 1),
              "inversion_seconds_per_face_batched": round(seconds / len(x), 3),
              "reconstruction_psnr_db_median": reconstruction_db,
              "attributes": {}}
    sheet = [x[:8], base[:8]]
    for a, name in enumerate(names):
        target = y.clone()
        target[:, a] = 1 - target[:, a]
        with torch.no_grad():
            drawn = G(z, target)
        change = drawn - base
        edited = [apply_change(np.asarray(p), c) for p, c in zip(photos, change)]
        transfer = decide(to_tensor(np.stack([square_resize(Image.fromarray(e), gan.size) for e in edited])))
        redraw = decide(drawn)
        wanted = ~truth[:, a]
        row = {"transfer_flip": float((transfer[:, a] == wanted).mean()),
               "redraw_flip": float((redraw[:, a] == wanted).mean())}
        if embedder is not None:
            near = np.linalg.norm(embedder.embed(np.stack([square_resize(Image.fromarray(e), side) for e in edited]))
                                  - original, axis=1)
            far = np.linalg.norm(embedder.embed(to_uint8(drawn)) - original, axis=1)
            row |= {"transfer_same_person": float((near < 0.6).mean()), "redraw_same_person": float((far < 0.6).mean())}
        result["attributes"][name] = row
        print(name, {k: round(v, 3) for k, v in row.items()}, flush=True)
        if name in ("Male", "Blond_Hair", "Smiling", "Eyeglasses"):
            sheet += [to_tensor(np.stack([square_resize(Image.fromarray(e), gan.size) for e in edited[:8]])), drawn[:8]]
    for key in ("transfer_flip", "redraw_flip", "transfer_same_person", "redraw_same_person"):
        values = [r[key] for r in result["attributes"].values() if key in r]
        if values:
            result[f"mean_{key}"] = float(np.mean(values))
    Path("out").mkdir(exist_ok=True)
    make_grid(torch.cat(sheet), nrow=8).save("out/probe-cgan-inversion.png")
    write_result("probe-cgan-inversion", result)


if __name__ == "__main__":
    main()
