"""Decode any picture a user holds into the square RGB arrays the models eat.

Everything that turns a file into pixels goes through `load_image`, and
everything that turns pixels into a training array through `square_resize`,
so the cache, the pipelines and the tests all see exactly the same numbers:

    >>> from PIL import Image
    >>> face = Image.new("RGB", (178, 218), (200, 150, 120))   # a CelebA-sized picture
    >>> center_square(face).size                               # rows 20..198
    (178, 178)
    >>> square_resize(face, 64).shape
    (64, 64, 3)
    >>> x = to_tensor(square_resize(face, 64))                 # (1, 3, 64, 64) in [-1, 1]
    >>> bool((to_uint8(x)[0] == square_resize(face, 64)).all())
    True

Conventions:
- The centre square keeps the shorter side whole and takes the middle of the
  longer one. An odd margin rounds down: the extra pixel goes to the bottom
  (or right), so 178x218 gives rows 20..198 (FaderNetworks' crop) and its
  half-size 89x109 gives rows 10..99, the same framing.
- Resizing is Pillow's Lanczos filter on the cropped square (crop, then resize).
- Tensors are float32 `(N, 3, H, W)` in [-1, 1]; arrays are uint8 `(N, H, W, 3)`.

torch is imported inside the four tensor helpers only, so that the worker
processes of `facegen prepare` (which only decode) start fast.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image, ImageOps

from facegen.errors import FacegenError

# Image files, by name: what facegen reads (anything PIL decodes that photos come as) and what it writes (formats
# that browsers and viewers show; no TIFF or GIF output).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
WRITABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

if TYPE_CHECKING:
    import torch

# Pillow's own decode limit (twice its warning limit, about 179 MP). Above it
# we refuse with one line instead of Pillow's DecompressionBombError.
MAX_PIXELS = 2 * 89_478_485
MIN_PHOTO_SIDE = 16  # a photo to edit: smaller holds no face (the app refuses the same)

# A JPEG above this many pixels is decoded at 1/2, 1/4 or 1/8 scale (libjpeg
# scales in the DCT, almost free) as long as its shorter side stays at least
# LARGE_IMAGE_MIN_SIDE: a 10,000 x 10,000 photo then costs 1,250^2, not 100 MP.
LARGE_IMAGE_PIXELS = 16_000_000
LARGE_IMAGE_MIN_SIDE = 2048

WHITE = (255, 255, 255)


def load_image(source: str | os.PathLike | BinaryIO | bytes, *, min_side: int | None = None) -> Image.Image:
    """Read one picture as an RGB image, or raise a one-line `FacegenError`.

    EXIF orientation is applied; grayscale, 16-bit, palette, CMYK and other
    modes are converted, and transparency is composited on white. `min_side`
    lets a JPEG decode at reduced scale while its shorter side stays at least
    that many pixels (a cheap first step when only a small result is wanted).

    >>> buffer = io.BytesIO()
    >>> Image.new("LA", (30, 20), (0, 0)).save(buffer, format="PNG")   # transparent black
    >>> load_image(buffer.getvalue()).getpixel((0, 0))
    (255, 255, 255)
    """
    name = _describe(source)
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            # We apply our own bound below; Pillow's warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as opened:
                width, height = opened.size
                if width * height > MAX_PIXELS:
                    raise FacegenError(f"{name}: too many pixels ({width}x{height}, over {MAX_PIXELS / 1e6:.0f} "
                                       f"MP); shrink it first")
                _draft(opened, min_side)
                opened.load()
                img = ImageOps.exif_transpose(opened)  # a new image, still valid once the file is closed
        return to_rgb(img)
    except FacegenError:
        raise
    except FileNotFoundError:
        raise FacegenError(f"{name}: no such file") from None
    except Image.DecompressionBombError:
        raise FacegenError(f"{name}: too many pixels (over {MAX_PIXELS / 1e6:.0f} MP); shrink it first") from None
    except Exception as error:  # noqa: BLE001 - corrupt files make Pillow raise almost anything
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise FacegenError(f"{name}: not a readable image ({reason})") from None


def load_photo(source: str | os.PathLike | Image.Image, *, min_side: int | None = None) -> Image.Image:
    """A face photo to edit: `load_image`, then refused in one line when under MIN_PHOTO_SIDE px a side
    (a 1x1 picture would come back as a garbage face). A PIL image is checked as it is."""
    image = source if isinstance(source, Image.Image) else load_image(source, min_side=min_side)
    if min(image.size) < MIN_PHOTO_SIDE:
        name = "the photo" if isinstance(source, Image.Image) else _describe(source)
        raise FacegenError(f"{name} is only {image.size[0]}x{image.size[1]} pixels; give a face photo of at least "
                           f"{MIN_PHOTO_SIDE}x{MIN_PHOTO_SIDE} (64x64 or more for a good edit)")
    return image


def center_square(img: Image.Image) -> Image.Image:
    """The centre square of `img` (odd margins round down: the extra pixel goes bottom/right).

    >>> center_square(Image.new("RGB", (89, 109))).size
    (89, 89)
    """
    with warnings.catch_warnings():  # load_image already bounded the size; cropping a big one is not a bomb
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return img.crop(center_square_box(*img.size))


def center_square_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of the centre square of a width x height image.

    >>> center_square_box(178, 218), center_square_box(89, 109)
    ((0, 20, 178, 198), (0, 10, 89, 99))
    """
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def square_resize(img: Image.Image, size: int) -> np.ndarray:
    """Centre square of `img`, Lanczos-resized to `size`: uint8 `(size, size, 3)`.

    >>> square_resize(Image.new("RGB", (89, 109), (9, 8, 7)), 32)[0, 0].tolist()
    [9, 8, 7]
    """
    img = to_rgb(img)
    square = center_square(img)
    if square.size != (size, size):
        # Crop first, then resize (not resize(box=...)): the filter must not reach past the crop's edge.
        square = square.resize((size, size), Image.Resampling.LANCZOS)
    return np.array(square, dtype=np.uint8)  # (size, size, 3), writable


def prepare_image(source: str | os.PathLike | BinaryIO | bytes, size: int) -> np.ndarray:
    """The one decode-crop-resize used by the cache: uint8 `(size, size, 3)`.

    A JPEG whose shorter side is at least 16 x `size` decodes at reduced scale
    first (still at least 8 x `size`, plenty for Lanczos); CelebA's 178 px
    never qualifies at the smallest cache size, 16.
    """
    return square_resize(load_image(source, min_side=8 * size), size)


def to_tensor(images: np.ndarray | Image.Image) -> "torch.Tensor":
    """uint8 `(N, H, W, 3)` -> float32 `(N, 3, H, W)` in [-1, 1]; one `(H, W, 3)` image -> a batch of one.

    >>> to_tensor(np.full((2, 4, 4, 3), 255, np.uint8)).shape
    torch.Size([2, 3, 4, 4])
    >>> to_tensor(np.zeros((4, 4, 3), np.uint8)).shape
    torch.Size([1, 3, 4, 4])
    """
    import torch

    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim not in (3, 4) or array.shape[-1] != 3:
        raise ValueError(f"to_tensor wants uint8 (N, H, W, 3) or (H, W, 3), got {array.dtype} {array.shape}")
    if array.ndim == 3:
        array = array[None]  # (1, H, W, 3)
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)  # (N, 3, H, W)
    return x.to(torch.float32).div_(127.5).sub_(1.0)


def to_uint8(x: "torch.Tensor") -> np.ndarray:
    """float `(N, 3, H, W)` in [-1, 1] -> uint8 `(N, H, W, 3)`, clamped and rounded; `(3, H, W)` -> `(H, W, 3)`.

    >>> import torch
    >>> to_uint8(torch.tensor([-2.0, -1.0, 0.0, 1.0]).view(1, 4, 1).expand(3, 4, 1))[:, 0, 0].tolist()
    [0, 0, 128, 255]
    """
    import torch

    if x.ndim not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"to_uint8 wants (N, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
    pixels = ((x.detach().float().cpu().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return pixels.movedim(-3, -1).numpy()  # (N, H, W, 3) or (H, W, 3)


def to_pil(x: "torch.Tensor") -> list[Image.Image]:
    """`(N, 3, H, W)` in [-1, 1] -> a list of N PIL images (one image `(3, H, W)`: a list of one; see `to_image`)."""
    pixels = to_uint8(x)
    return [Image.fromarray(image) for image in (pixels[None] if pixels.ndim == 3 else pixels)]


def to_image(x: "torch.Tensor") -> Image.Image:
    """One image `(3, H, W)` in [-1, 1] -> a PIL image."""
    if x.ndim != 3:
        raise ValueError(f"to_image wants one image (3, H, W), got {tuple(x.shape)}; use to_pil for a batch")
    return Image.fromarray(to_uint8(x))


def make_grid(images: "np.ndarray | torch.Tensor", nrow: int = 8, padding: int = 2,
              pad_value: int = 255) -> Image.Image:
    """Tile N images into one picture, `nrow` images per row, `padding` px between and around.

    `images` is uint8 `(N, H, W, 3)` or a float tensor `(N, 3, H, W)` in [-1, 1].

    >>> make_grid(np.zeros((5, 8, 8, 3), np.uint8), nrow=4).size   # 4 columns, 2 rows
    (42, 22)
    """
    pixels = images if isinstance(images, np.ndarray) else to_uint8(images)
    if pixels.ndim == 3:
        pixels = pixels[None]
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3 or len(pixels) == 0:
        raise ValueError(f"make_grid wants uint8 (N, H, W, 3) with N >= 1, got {pixels.dtype} {pixels.shape}")
    count, height, width, _ = pixels.shape
    columns = max(1, min(nrow, count))
    rows = -(-count // columns)
    grid = np.full((rows * (height + padding) + padding, columns * (width + padding) + padding, 3),
                   pad_value, np.uint8)
    for index, image in enumerate(pixels):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        grid[top:top + height, left:left + width] = image
    return Image.fromarray(grid)


# --------------------------------------------------------------------------- helpers


def _describe(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "name", None) or "image data"


def _draft(img: Image.Image, min_side: int | None) -> None:
    """Ask libjpeg to decode at 1/2, 1/4 or 1/8 scale when the caller needs fewer pixels."""
    if img.format != "JPEG":
        return
    width, height = img.size
    if min_side is None:
        if width * height <= LARGE_IMAGE_PIXELS:
            return
        min_side = LARGE_IMAGE_MIN_SIDE
    short = min(width, height)
    if short <= 2 * min_side:
        return
    # draft picks the largest reduction whose result is still at least the requested size.
    scale = short / min_side
    img.draft("RGB", (int(width / scale) + 1, int(height / scale) + 1))


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; transparency composited on white, 16-bit scaled to 8-bit."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "F") or mode.startswith("I;16"):
        values = np.asarray(img, dtype=np.float64)
        if mode != "F" and (mode.startswith("I;16") or values.max(initial=0) > 255):
            values = values / 257.0  # 65535 -> 255
        return Image.fromarray(np.clip(values.round(), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
    elif mode == "L" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, WHITE)
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")
