"""Probe: does fitting the cGAN closer to the photo put its crisp change where the photo's features are?

    python benchmarks/probe_pivot.py --n 40 --methods residual z feat8 feat16   # -> benchmarks/results/probe-pivot.json

For each held-out photo the cGAN is fitted to the photo's 64-px centre square
in one of several ways, then each of five attributes is flipped and the
difference G(fit, y') - G(fit, y) is added to the photo at its own size:

- z:      the shipped inversion (pipelines/inversion.py), noise only;
- feat16 / feat8: then an offset on the generator's activations at 16x16
          (or 8x8), fitted to the photo; the attribute inputs still act on
          every level after it;
- pti:    then the generator's own weights tuned to the photo (pivotal
          tuning, Roich et al. 2022), one copy per photo;
- residual: the shipped residual editor, for comparison.

It prints the fit (PSNR at 64 px), the judge's flips (and with --identity
dlib's same-person rate), and writes a sheet of pictures per method in --out:
the photos, the fit, then one row per attribute. Not a shipped editor; the
findings are in docs/notes/editing.md.
"""

from __future__ import annotations

import argparse
import copy
import json
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

from facegen.data import make_grid, square_resize, to_tensor  # noqa: E402
from facegen.models.layers import centered  # noqa: E402
from facegen.pipelines.change import apply_change  # noqa: E402
from facegen.pipelines.inversion import invert  # noqa: E402
from facegen.pretrained import load_pretrained  # noqa: E402

ATTRS = ("Male", "Blond_Hair", "Smiling", "Eyeglasses", "Young")


def forward_offset(G, z, y, offset=None, level=1):
    """G(z, y) with `offset` (B, C, R, R) added to the raw activations after up-layer `level` (0: 8x8, 1: 16x16)."""
    yc = centered(y)
    h = G.fc(torch.cat([z, yc], dim=1)).view(z.shape[0], -1, 4, 4)
    h = torch.relu(G.norm0(h, yc))
    for i, (up, norm) in enumerate(zip(G.ups, G.norms)):
        h = up(h)
        if offset is not None and i == level:
            h = h + offset
        h = torch.relu(norm(h, yc))
    return torch.tanh(G.to_rgb(h))


def fit_offset(G, x, y, z, level, steps, lr, weight):
    """Adam on z and an activation offset at `level` (in units of the activations' spread) so G draws x."""
    with torch.no_grad():
        yc = centered(y)
        h = G.fc(torch.cat([z, yc], dim=1)).view(z.shape[0], -1, 4, 4)
        h = torch.relu(G.norm0(h, yc))
        for i, (up, norm) in enumerate(zip(G.ups, G.norms)):
            h = up(h)
            if i == level:
                shape = h.shape
                scale = h.std()
                break
            h = torch.relu(norm(h, yc))
    offset = torch.zeros(shape, requires_grad=True)
    z = z.clone().requires_grad_(True)
    opt = torch.optim.Adam([offset, z], lr=lr)
    for _ in range(steps):
        out = forward_offset(G, z, y, offset * scale, level)
        loss = F.mse_loss(out, x) + weight * offset.pow(2).mean() + 1e-3 * z.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return z.detach(), (offset * scale).detach()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--methods", nargs="+", default=["z", "feat16", "pti"])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight", type=float, default=0.0)
    p.add_argument("--pti-steps", type=int, default=100)
    p.add_argument("--pti-lr", type=float, default=3e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--identity", action="store_true")
    p.add_argument("--out", default="out/probe-pivot")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    photos, labels, cache_names = held_out_photos("cache/celeba9k-64", None, args.n)
    pre = load_pretrained("cgan")
    G = pre.modules["generator"].eval().requires_grad_(False)
    names = pre.attribute_names
    y = torch.tensor(labels[:, [cache_names.index(n) for n in names]])
    x = to_tensor(np.stack([square_resize(ph, 64) for ph in photos]))
    from facegen.metrics.judge import Judge
    judge_net = Judge("classifier")
    cols = [judge_net.names.index(n) for n in names]
    judge = lambda ims: (judge_net(to_tensor(np.stack([square_resize(im, 64) for im in ims]))) > 0.5).numpy()[:, cols]  # noqa: E731
    embedder = None
    if args.identity:
        from facegen.metrics.identity import IdentityEmbedder
        embedder = IdentityEmbedder()
        native = lambda ims: np.stack([square_resize(im, min(photos[0].size)) for im in ims])  # noqa: E731
        ref = embedder.embed(native(photos))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    z0 = invert(G, x, y)
    t_z = time.perf_counter() - tic
    results = {}
    for method in args.methods:
        tic = time.perf_counter()
        if method == "z":
            draw = lambda target: G(z0, target)
        elif method == "residual":
            from facegen.models.residual import apply_fields
            editor = load_pretrained("residual").modules["editor"].eval()
            fields = editor(x, y)
            draw = lambda target: x + apply_fields(fields, y, target)
        elif method.startswith("feat"):
            level = {"feat8": 0, "feat16": 1, "feat32": 2}[method]
            z1, off = fit_offset(G, x, y, z0, level, args.steps, args.lr, args.weight)
            draw = lambda target, z1=z1, off=off, level=level: forward_offset(G, z1, target, off, level)
        elif method == "pti":
            tuned = []
            for i in range(len(x)):
                g = copy.deepcopy(G).requires_grad_(True)
                opt = torch.optim.Adam(g.parameters(), lr=args.pti_lr)
                for _ in range(args.pti_steps):
                    loss = F.mse_loss(g(z0[i:i + 1], y[i:i + 1]), x[i:i + 1])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                tuned.append(g.requires_grad_(False))
            draw = lambda target: torch.cat([g(z0[i:i + 1], target[i:i + 1]) for i, g in enumerate(tuned)])
        with torch.no_grad():
            base = draw(y)
            psnr = float((10 * torch.log10(4.0 / ((base - x) ** 2).mean(dim=(1, 2, 3)))).mean())
            seconds = time.perf_counter() - tic + t_z
            row = {"fit_psnr_db": None if method == "residual" else psnr, "seconds_per_face": seconds / len(x)}
            sheet = [x[:10], base[:10]]
            for name in ATTRS:
                a = names.index(name)
                target = y.clone()
                target[:, a] = 1 - y[:, a].round()
                change = draw(target) - base
                out = [Image.fromarray(apply_change(np.asarray(ph), d)) for ph, d in zip(photos, change)]
                dec = judge(out)
                hit = float((dec[:, a] == (target[:, a] > 0.5).numpy()).mean())
                r = {"flip": hit, "change_levels": float(change.abs().mean() * 127.5)}
                if embedder is not None:
                    dist = np.linalg.norm(embedder.embed(native(out)) - ref, axis=1)
                    r["same"] = float((dist < 0.6).mean())
                row[name] = r
                sheet.append(to_tensor(np.stack([square_resize(o, 64) for o in out[:10]])))
            results[method] = row
            print(method, json.dumps(row), flush=True)
            grid = make_grid(torch.cat(sheet), nrow=10)
            grid.resize((grid.width * 3, grid.height * 3)).save(Path(args.out) / f"{method}.png")
    write_result("probe-pivot", {"n": len(photos), "attributes": list(ATTRS), "steps": args.steps, "lr": args.lr,
                                 "offset_weight": args.weight, "methods": results})


if __name__ == "__main__":
    main()
