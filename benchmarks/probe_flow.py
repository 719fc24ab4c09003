"""Probe: split the pivot's change into a warp of the photo's own pixels plus what the warp cannot explain.

    python benchmarks/probe_flow.py Smiling      # -> out/probe-flow-Smiling.png

For each of the first 6 held-out full-size photos: the cGAN fitted (pivot), base = G(z*, y, o*), target =
G(z*, y', o*) with one attribute flipped. A smooth flow F (2 x 16 x 16, bicubic to 64) is fitted so that
warp(base, F) ~ target (L1 + total variation); then
    out = warp(photo, F) + (target - warp(base, F))     (F = 0 gives today's additive edit)
at the photo's full resolution. Prints how much of the change's L1 the warp explains and writes a sheet:
photo, additive, warp + rest, warp alone. Not a shipped editor; the finding is in docs/notes/editing.md.
"""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from facegen.data import load_image, make_grid, square_resize, to_tensor  # noqa: E402
from facegen.data.celeba import open_dataset  # noqa
from facegen.data.images import center_square_box  # noqa
from facegen.pipelines.change import apply_change  # noqa
from facegen.pipelines.edit import EditPipeline  # noqa

torch.set_num_threads(1)
FULLRES = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba-fullres-100"
ATTR = sys.argv[1] if len(sys.argv) > 1 else "Smiling"
N = 6


def identity_grid(n, size):
    lin = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    return torch.stack([gx, gy], -1)[None].expand(n, -1, -1, -1)


def warp(img, flow):
    """img (B, C, H, W); flow (B, 2, H, W) in grid units ([-1, 1] spans the image): sample img at x + flow."""
    grid = identity_grid(img.shape[0], img.shape[-1]) + flow.permute(0, 2, 3, 1)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)


def fit_flow(base, target, steps=150, res=16, smooth=0.05):
    coarse = torch.zeros(base.shape[0], 2, res, res, requires_grad=True)
    opt = torch.optim.Adam([coarse], lr=0.01)
    for _ in range(steps):
        flow = F.interpolate(coarse, size=base.shape[-2:], mode="bicubic", align_corners=False)
        loss = (warp(base, flow) - target).abs().mean() + smooth * (
            (coarse[..., 1:, :] - coarse[..., :-1, :]).abs().mean() + (coarse[..., 1:] - coarse[..., :-1]).abs().mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        flow = F.interpolate(coarse, size=base.shape[-2:], mode="bicubic", align_corners=False)
    return flow.detach()


def warp_photo(photo, flow64):
    """photo uint8 (H, W, 3); flow64 (2, 64, 64) in the centre square's grid units -> the photo warped in its square,
    the flow faded to zero at the square's edges."""
    h, w = photo.shape[:2]
    left, top, right, bottom = center_square_box(w, h)
    side = right - left
    ramp = torch.ones(64)
    k = 6
    ramp[:k] = torch.linspace(0, 1, k)
    ramp[-k:] = torch.linspace(1, 0, k)
    flow64 = flow64 * (ramp[:, None] * ramp[None, :])
    flow = F.interpolate(flow64[None], size=(side, side), mode="bicubic", align_corners=False)  # grid units of square
    square = torch.from_numpy(photo[top:top + side, left:left + side].astype(np.float32)).permute(2, 0, 1)[None]
    warped = warp(square, flow)[0].permute(1, 2, 0).numpy()
    out = photo.copy()
    out[top:top + side, left:left + side] = np.clip(np.rint(warped), 0, 255).astype(np.uint8)
    return out


pipe = EditPipeline.from_pretrained("cgan", batch_size=50)
ds = open_dataset(FULLRES)
held = ds.indices("valid").tolist()
names = pipe.attribute_names
cols = [ds.attribute_names.index(n) for n in names]
a = names.index(ATTR)
held = held[:N]
photos = [np.asarray(load_image(ds.image_dir / ds.files[i])) for i in held]
y = torch.tensor(ds.labels[held][:, cols], dtype=torch.float32)
x = to_tensor(np.stack([square_resize(Image.fromarray(p), 64) for p in photos]))
faces = pipe.prepare(x, y)
y2 = y.clone()
y2[:, a] = 1 - y2[:, a]
with torch.no_grad():
    target = pipe.decode(faces.code, y2, faces.offset).cpu()
base = faces.base.cpu()
flow = fit_flow(base, target)
with torch.no_grad():
    rest = target - warp(base, flow)
print("L1 additive", (target - base).abs().mean().item(), "L1 rest after warp", rest.abs().mean().item(),
      "flow px (64)", (flow.abs() * 32).mean().item(), "max", (flow.abs() * 32).max().item())
tiles = []
for i, p in enumerate(photos):
    additive = apply_change(p, target[i] - base[i])
    warped = warp_photo(p, flow[i])
    both = apply_change(warped, rest[i])
    tiles += [p, additive, both, warped]
grid = make_grid(np.stack(tiles), nrow=4)
Path("out").mkdir(exist_ok=True)
grid.save(f"out/probe-flow-{ATTR}.png")
