"""Carry a change computed at the model's size up to the photo's own resolution, and add it there.

An edit is a change applied to the photo: the model works on the face's
square at its own size (64 px), says how each pixel there should change, and
that change (smooth, since the model cannot see finer detail) is
interpolated up to the photo's resolution and added. Pixels the change does
not reach keep their exact values, and an edit that changes nothing returns
the photo bit for bit.

- `apply_change`: a photo framed like CelebA's aligned images, the change
  made for its centre square (`facegen edit` without --align).
- `add_change`: any photo, the change made for a face aligned out of it
  (`facegen edit --align`, the app); it is warped back along the alignment.

Hair and shoulders often continue past the square (CelebA's 178 x 218 photos
keep 20 rows above and below it), so the change's outermost values reach a
little further out (`REACH`, a fraction of the square's side) and fade to
zero there: a blond edit does not stop in a hard line at the square's top.

    >>> import numpy as np, torch
    >>> photo = np.full((160, 89, 3), 100, np.uint8)          # the square is rows 35..123
    >>> out = apply_change(photo, torch.full((3, 64, 64), 0.2))
    >>> int(out[80, 44, 0]), int(out[0, 44, 0]), out.shape    # +0.2 in [-1, 1] units is +25.5 levels
    (126, 100, (160, 89, 3))
    >>> bool((apply_change(photo, torch.zeros(3, 64, 64)) == photo).all())
    True
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from facegen.data.images import center_square_box

if TYPE_CHECKING:
    from facegen.align import AlignedFace

REACH = 0.125  # how far past the square's edge the change continues, fading to 0, as a fraction of its side


def extend(change: torch.Tensor, *, reach: float = REACH) -> tuple[torch.Tensor, int]:
    """A change (3, S, S) continued past its edges by `pad` px: its edge values, fading linearly to zero.

    Returns (3, S + 2 pad, S + 2 pad) and pad.
    """
    assert change.ndim == 3 and change.shape[0] == 3 and change.shape[1] == change.shape[2], (
        f"expected a change (3, S, S), got {tuple(change.shape)}")
    size = change.shape[-1]
    pad = max(1, round(reach * size))
    ramp = torch.ones(size + 2 * pad)
    fade = (torch.arange(pad, dtype=torch.float32) + 0.5) / pad  # (pad,) rising towards the square
    ramp[:pad], ramp[-pad:] = fade, fade.flip(0)
    extended = F.pad(change.float()[None], (pad,) * 4, mode="replicate")[0] * (ramp[:, None] * ramp[None, :])
    return extended, pad


def carry_up(change: torch.Tensor, side: int, *, reach: float = REACH) -> tuple[np.ndarray, int]:
    """A change (3, S, S) in [-1, 1] units -> (side + 2m, side + 2m, 3) float32 in 0..255 levels, and the margin m
    (in px of `side`) it reaches past the square on every side. Bicubic interpolation of `extend(change)`."""
    extended, pad = extend(change, reach=reach)
    margin = round(pad * side / change.shape[-1])  # photo px past each edge
    up = F.interpolate(extended[None], size=(side + 2 * margin,) * 2, mode="bicubic", align_corners=False)[0]
    return (up * 127.5).permute(1, 2, 0).numpy(), margin  # (side + 2m, side + 2m, 3)


def apply_change(photo: np.ndarray, change: torch.Tensor, *, reach: float = REACH) -> np.ndarray:
    """The photo uint8 (H, W, 3) with `change` (3, S, S), made for its centre square, added at full resolution."""
    assert photo.ndim == 3 and photo.shape[2] == 3 and photo.dtype == np.uint8, (
        f"expected a photo uint8 (H, W, 3), got {photo.dtype} {photo.shape}")
    if not bool(change.any()):
        return photo.copy()
    height, width = photo.shape[:2]
    left, top, right, _ = center_square_box(width, height)
    delta, margin = carry_up(change, right - left, reach=reach)
    # The extended square, clipped to the photo: photo row y is delta row y - (top - margin), and so for columns.
    x0, y0 = max(0, left - margin), max(0, top - margin)
    x1, y1 = min(width, right + margin), min(height, top + (right - left) + margin)
    part = delta[y0 - (top - margin):y1 - (top - margin), x0 - (left - margin):x1 - (left - margin)]
    out = photo.copy()
    region = out[y0:y1, x0:x1].astype(np.float32) + part
    out[y0:y1, x0:x1] = np.clip(np.rint(region), 0, 255).astype(np.uint8)
    return out


# Where each aligned face's change lands in its photo, kept while the face lives (an open photo in the app):
# the geometry is the same for every slider move.
_PLACEMENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def add_change(image: Image.Image, aligned: AlignedFace, change: torch.Tensor, *,
               reach: float = REACH) -> Image.Image:
    """`image` with `change` (3, S, S), made for the face `aligned` out of it, added at the photo's resolution.

    The change, extended past the aligned square (`extend`), is sampled at
    every photo pixel of that region through the alignment (bicubic) and
    added; every pixel outside it keeps its exact value.
    """
    rgb = image.convert("RGB")
    if rgb.size != aligned.photo_size:
        raise ValueError(f"add_change got a {rgb.size} image for a face aligned in a {aligned.photo_size} one")
    if not bool(change.any()):
        return rgb.copy()
    extended, pad = extend(change, reach=reach)
    region, grid = _placement(aligned, change.shape[-1], pad)
    left, top, right, bottom = region
    if right <= left or bottom <= top:
        return rgb.copy()
    sampled = F.grid_sample(extended[None], grid, mode="bicubic", padding_mode="zeros", align_corners=False)[0]
    sampled = sampled * (grid[0].abs() <= 1).all(-1)  # bicubic reads past the edge: nothing lands outside
    out = np.array(rgb)  # (H, W, 3), a copy
    shifted = out[top:bottom, left:right].astype(np.float32) + (sampled * 127.5).permute(1, 2, 0).numpy()
    out[top:bottom, left:right] = np.clip(np.rint(shifted), 0, 255).astype(np.uint8)
    return Image.fromarray(out)


def _placement(aligned: AlignedFace, size: int, pad: int) -> tuple[tuple[int, int, int, int], torch.Tensor]:
    """The photo region the extended square covers, and for each of its pixels where to sample the extended
    change: grid (1, h, w, 2) in grid_sample's [-1, 1] coordinates (align_corners=False)."""
    from facegen.align.warp import apply

    cached = _PLACEMENTS.get(aligned)
    if cached is not None and cached[0] == (size, pad):
        return cached[1], cached[2]
    side = aligned.size
    margin = pad * side / size  # aligned px past each edge
    corners = np.array([[-margin, -margin], [side + margin, -margin], [-margin, side + margin],
                        [side + margin, side + margin]], np.float64) - 0.5
    photo = apply(aligned.inverse, corners)
    width, height = aligned.photo_size
    left, top = np.floor(photo.min(0)).astype(int) - 1
    right, bottom = np.ceil(photo.max(0)).astype(int) + 2
    region = (max(0, int(left)), max(0, int(top)), min(width, int(right)), min(height, int(bottom)))
    xs = np.arange(region[0], region[2], dtype=np.float64)[None, :]  # (1, w) photo px
    ys = np.arange(region[1], region[3], dtype=np.float64)[:, None]  # (h, 1)
    (m00, m01, m02), (m10, m11, m12) = aligned.matrix
    u = m00 * xs + m01 * ys + m02  # (h, w) aligned px (pixel centres at integers)
    v = m10 * xs + m11 * ys + m12
    extent = side + 2 * margin  # the extended square's side in aligned px
    gx = (u + 0.5 + margin) / extent * 2 - 1
    gy = (v + 0.5 + margin) / extent * 2 - 1
    grid = torch.from_numpy(np.stack([gx, gy], axis=-1).astype(np.float32))[None]  # (1, h, w, 2)
    _PLACEMENTS[aligned] = ((size, pad), region, grid)
    return region, grid
