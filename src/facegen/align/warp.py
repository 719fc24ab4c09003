"""Warp a face into CelebA's framing and the edited face back into the photo.

Transforms are 2x3 float64 matrices on (x, y, 1) in pixels with pixel
centres at integers. `AlignedFace.matrix` maps photo pixels to aligned
pixels, `AlignedFace.inverse` the other way.

    >>> import numpy as np
    >>> src = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    >>> dst = src * 2 + [5.0, 1.0]                           # scale 2, shift (5, 1)
    >>> (similarity_transform(src, dst).round(6) + 0.0).tolist()   # + 0.0 turns -0.0 into 0.0
    [[2.0, 0.0, 5.0], [0.0, 2.0, 1.0]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from facegen.align.detect import Face
from facegen.align.template import template_square

# The blend mask: an ellipse in the aligned square, in fractions of its side.
# It holds forehead to chin and cheek to cheek of CelebA's framing (eyes at
# 0.52, base of the nose at 0.69 of the side) and stays inside the square, so
# the corners (background the models draw poorly) never reach the photo.
MASK_CENTER = (0.5, 0.54)
MASK_AXES = (0.40, 0.45)
FEATHER = 0.3  # fraction of the ellipse's radius over which the mask fades from 1 to 0


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """One face warped to CelebA's framing: the centre square of a 178x218 crop at `size` px.

    image: RGB `size` x `size`, ready for `square_resize(image, model_size)`.
    matrix: (2, 3) photo px -> aligned px; inverse: (2, 3) aligned px -> photo px.
    scale: aligned px per photo px (below 1: the face was larger than `size` in the photo).
    """

    image: Image.Image
    matrix: np.ndarray
    inverse: np.ndarray
    face: Face
    photo_size: tuple[int, int]  # (width, height) of the photo it came from

    @property
    def size(self) -> int:
        return self.image.width

    @property
    def scale(self) -> float:
        return float(math.hypot(*self.matrix[:, 0]))


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation, uniform scale and shift taking (N, 2) `src` onto `dst` (Umeyama 1991): (2, 3)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)  # (2, 2)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])  # a rotation, never a mirror
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / src_c.var(0).sum()
    linear = scale * rotation
    return np.hstack([linear, (dst_mean - linear @ src_mean)[:, None]])


def invert(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a (2, 3) affine matrix."""
    linear_inv = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear_inv, -linear_inv @ matrix[:, 2:]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2) points through a (2, 3) matrix."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def align_face(image: Image.Image, face: Face, size: int = 256) -> AlignedFace:
    """Warp `face` of `image` onto CelebA's framing: the centre square of the 178x218 crop, `size` px wide.

    The five landmarks go to the template by a least-squares similarity
    (rotation, uniform scale, shift). Parts of the square beyond the photo's
    edge are mirrored in, not black, so the model sees no hard border.
    Align above the model's size (256 for a 64 px model) and let the caller
    resize: the paste back is then not blocky.
    """
    matrix = similarity_transform(face.landmarks, template_square(size))  # photo -> aligned
    inverse = invert(matrix)
    rgb = image.convert("RGB")
    aligned = _warp(rgb, inverse, (size, size))
    return AlignedFace(image=aligned, matrix=matrix, inverse=inverse, face=face, photo_size=rgb.size)


def paste_back(image: Image.Image, aligned: AlignedFace, edited: Image.Image, *,
               reference: Image.Image | None = None, feather: float = FEATHER) -> Image.Image:
    """Blend `edited` (the aligned square after the edit, any size) back into `image` at full resolution.

    Only pixels inside the soft elliptical mask (`face_mask`) change; every
    pixel outside is bit-identical to `image`. With `reference` (the model's
    output for the same face without the edit, e.g. its reconstruction, at
    the size of `edited`) only the difference `edited - reference` is added
    to the photo, so the photo's own detail survives a low-resolution model;
    without it the edited pixels replace the photo's inside the mask.
    """
    rgb = image.convert("RGB")
    if rgb.size != aligned.photo_size:
        raise ValueError(f"paste_back got a {rgb.size} image for a face aligned in a {aligned.photo_size} one")
    region = _mask_box(aligned)
    left, top, right, bottom = region
    if right <= left or bottom <= top:
        return rgb.copy()
    size = (right - left, bottom - top)
    edited = _square(edited, "edited")
    # region px -> aligned px -> edited px: the matrix the warp back samples with.
    region_to_aligned = aligned.matrix @ np.array([[1.0, 0, left], [0, 1, top], [0, 0, 1]])
    to_edited = _zoom(region_to_aligned, edited.width / aligned.size)
    if reference is None:
        new_face = _warp_back(edited, to_edited, size)
    else:
        reference = _square(reference, "reference")
        if reference.size != edited.size:
            raise ValueError(f"reference {reference.size} and edited {edited.size} must have the same size")
        delta = np.asarray(edited, np.float32) - np.asarray(reference, np.float32)  # (E, E, 3)
        channels = [_warp_back(Image.fromarray(np.ascontiguousarray(delta[..., c]), "F"), to_edited, size)
                    for c in range(3)]
        photo = np.asarray(rgb.crop(region), np.float32)  # (h, w, 3)
        shifted = photo + np.stack([np.asarray(channel) for channel in channels], axis=-1)
        new_face = Image.fromarray(np.clip(np.round(shifted), 0, 255).astype(np.uint8))
    out = rgb.copy()
    # Pillow's masked paste leaves a pixel whose mask is 0 exactly as it was.
    out.paste(new_face, (left, top), Image.fromarray(_mask(aligned, region, feather)))
    return out


def face_mask(aligned: AlignedFace, *, feather: float = FEATHER) -> np.ndarray:
    """The blend weight `paste_back` gives each photo pixel: float32 (H, W) in [0, 1], 0 outside the ellipse."""
    width, height = aligned.photo_size
    mask = np.zeros((height, width), np.float32)
    left, top, right, bottom = _mask_box(aligned)
    if right > left and bottom > top:
        mask[top:bottom, left:right] = _mask(aligned, (left, top, right, bottom), feather) / 255.0
    return mask


# --------------------------------------------------------------------------- helpers


def _square(image: Image.Image, name: str) -> Image.Image:
    if image.width != image.height:
        raise ValueError(f"the {name} face must be square (the aligned square at any size), got {image.size}")
    return image if image.mode == "F" else image.convert("RGB")


def _mask_box(aligned: AlignedFace) -> tuple[int, int, int, int]:
    """Photo pixels that can lie inside the ellipse, clipped to the photo."""
    size = aligned.size
    (cx, cy), (ax, ay) = MASK_CENTER, MASK_AXES
    corners = np.array([[cx - ax, cy - ay], [cx + ax, cy - ay], [cx - ax, cy + ay], [cx + ax, cy + ay]]) * size
    photo = apply(aligned.inverse, corners - 0.5)
    width, height = aligned.photo_size
    left, top = np.floor(photo.min(0)).astype(int) - 1
    right, bottom = np.ceil(photo.max(0)).astype(int) + 2
    return max(0, left), max(0, top), min(width, right), min(height, bottom)


def _mask(aligned: AlignedFace, region: tuple[int, int, int, int], feather: float) -> np.ndarray:
    """Soft ellipse, uint8 (h, w) over `region` of the photo, computed at each photo pixel (no resampling)."""
    left, top, right, bottom = region
    xs = np.arange(left, right, dtype=np.float32)[None, :]  # (1, w) photo px
    ys = np.arange(top, bottom, dtype=np.float32)[:, None]  # (h, 1)
    (m00, m01, m02), (m10, m11, m12) = aligned.matrix.astype(np.float32)
    u = (m00 * xs + (m01 * ys + m02 + 0.5)) / aligned.size - MASK_CENTER[0]  # (h, w) fraction of the side
    v = (m10 * xs + (m11 * ys + m12 + 0.5)) / aligned.size - MASK_CENTER[1]
    radius = np.sqrt((u / MASK_AXES[0]) ** 2 + (v / MASK_AXES[1]) ** 2)
    ramp = np.clip((1.0 - radius) / max(feather, 1e-6), 0.0, 1.0)
    smooth = ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep: the fade has no visible edge
    return np.round(smooth * 255).astype(np.uint8)


def _zoom(matrix: np.ndarray, zoom: float) -> np.ndarray:
    """`matrix` followed by resizing its output square by `zoom` (its edges stay its edges)."""
    return zoom * matrix + [[0, 0, 0.5 * zoom - 0.5], [0, 0, 0.5 * zoom - 0.5]]


def _pillow_affine(matrix: np.ndarray) -> tuple[float, ...]:
    """Pillow's AFFINE data (output continuous px -> input continuous px) for an integer-centred (2, 3) matrix."""
    linear, shift = matrix[:, :2], matrix[:, 2]
    offset = shift + 0.5 - linear @ [0.5, 0.5]
    return (linear[0, 0], linear[0, 1], offset[0], linear[1, 0], linear[1, 1], offset[1])


def _warp(rgb: Image.Image, out_to_in: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Resample `rgb` onto an output grid of `size`; `out_to_in` maps output px to input px.

    Only the footprint is read; it is mirrored where it leaves the picture,
    and box-reduced first where the output is much smaller than the input
    (bicubic alone would alias).
    """
    width, height = size
    corners = apply(out_to_in, np.array([[-0.5, -0.5], [width - 0.5, -0.5], [-0.5, height - 0.5],
                                         [width - 0.5, height - 0.5]]))
    left, top = np.floor(corners.min(0)).astype(int) - 3  # bicubic reads 2 px around each sample
    right, bottom = np.ceil(corners.max(0)).astype(int) + 3
    inside = rgb.crop((max(0, left), max(0, top), min(rgb.width, right), min(rgb.height, bottom)))
    pad = ((max(0, top) - top, bottom - min(rgb.height, bottom)), (max(0, left) - left, right - min(rgb.width, right)))
    if inside.width == 0 or inside.height == 0:
        return Image.new("RGB", size)  # the face lies wholly outside the photo: nothing to read
    if any(p for pair in pad for p in pair):
        inside = Image.fromarray(np.pad(np.asarray(inside), (*pad, (0, 0)), mode="symmetric"))
    # footprint px -> input px is a shift by (left, top); then shrink by an integer factor.
    local = out_to_in - np.array([[0, 0, left], [0, 0, top]], np.float64)
    factor = int(math.hypot(*out_to_in[:, 0]))  # input px per output px, rounded down
    if factor >= 2:
        inside = inside.reduce(factor)
        # reduced pixel j covers footprint px [j*factor, (j+1)*factor): centre at j*factor + (factor-1)/2.
        local = local / factor
        local[:, 2] -= (factor - 1) / (2 * factor)
    return inside.transform(size, Image.Transform.AFFINE, _pillow_affine(local), Image.Resampling.BICUBIC)


def _warp_back(edited: Image.Image, region_to_edited: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """`edited` (RGB or "F") sampled at each region px; `region_to_edited` maps region px to edited px.

    Where the face is smaller in the photo than `edited`, it is Lanczos-shrunk
    first (bicubic sampling alone would alias).
    """
    shrink = math.hypot(*region_to_edited[:, 0])  # edited px per photo px
    if shrink > 1.5:
        side = max(1, round(edited.width / shrink))
        region_to_edited = _zoom(region_to_edited, side / edited.width)
        edited = edited.resize((side, side), Image.Resampling.LANCZOS)
    return edited.transform(size, Image.Transform.AFFINE, _pillow_affine(region_to_edited), Image.Resampling.BICUBIC)
