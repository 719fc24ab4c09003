"""What the Edit tab computes, without gradio: read an upload safely, reconstruct it, edit it, sweep it.

A photo is kept between requests as its centre square at PHOTO_SIDE pixels
(a few hundred KB in the session), so a slider move never re-reads the
upload; each model resizes it to its own size.

    >>> import numpy as np
    >>> psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8))
    inf
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facegen.data import load_image, square_resize, to_uint8
from facegen.errors import FacegenError

PHOTO_MAX_PIXELS = 40_000_000  # an upload above this is refused from its header, before decoding (a phone: ~12 MP)
PHOTO_SIDE = 256  # the square a photo is kept at between requests
SWEEP_STEPS = 8  # decodes in the sweep strip, from 0 to 1
# Below this reconstruction PSNR the photo is probably not an aligned face (or not a face at all): the
# page says so. Aligned CelebA faces reconstruct well above it with the shipped models (docs/app.md).
POOR_RECONSTRUCTION_DB = 15.0
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"


def sample_paths() -> list[Path]:
    """The bundled sample faces (CelebA validation images, aligned)."""
    return sorted(SAMPLES_DIR.glob("*.jpg"))


def read_photo(path: str | Path | None) -> np.ndarray:
    """An uploaded file -> its centre square as uint8 (PHOTO_SIDE, PHOTO_SIDE, 3), or a one-line FacegenError.

    `load_image` copes with EXIF rotation, transparency, grayscale and
    corrupt files; the pixel count is checked from the header first, so a
    huge upload is refused without being decoded.
    """
    if not path:
        raise FacegenError("no photo: upload one, or pick a sample face")
    name = Path(path).name
    try:
        with Image.open(path) as header:  # reads the header only
            width, height = header.size
    except Exception:  # noqa: BLE001 - not an image at all: load_image below says so in its own words
        width = height = 0
    if width * height > PHOTO_MAX_PIXELS:
        raise FacegenError(f"{name} is {width}x{height} pixels, over the app's {PHOTO_MAX_PIXELS // 1_000_000} MP; "
                           "crop it to the face first")
    try:
        image = load_image(path, min_side=PHOTO_SIDE)
    except FacegenError as error:  # name the file as the user knows it, not by the server's temporary path
        raise FacegenError(str(error).replace(str(path), name)) from None
    if min(image.size) < 16:
        raise FacegenError(f"{name} is only {image.size[0]}x{image.size[1]} pixels; give a face photo of at least "
                           "64x64")
    return square_resize(image, PHOTO_SIDE)  # (PHOTO_SIDE, PHOTO_SIDE, 3)


def model_input(pipe, pixels: np.ndarray) -> torch.Tensor:
    """The kept photo at the model's size: x (1, 3, S, S) in [-1, 1] (Lanczos, like the training cache)."""
    return pipe.load([Image.fromarray(pixels)])


def own_attributes(pipe, x: torch.Tensor, *, can_classify: bool) -> tuple[np.ndarray, str]:
    """The photo's own values (A,) as the sliders' start, and a sentence saying where they came from."""
    neutral = np.full(len(pipe.attribute_names), 0.5, np.float32)
    if not can_classify:
        return neutral, ("No attribute classifier is installed, so the sliders start at 0.5: set them to what "
                         "the photo shows, then move the one you want to change.")
    try:
        y, _ = pipe.photo_attributes(x, x)  # (1, A): the classifier's reading, 0 or 1
    except FacegenError as error:
        return neutral, f"The sliders start at 0.5 ({error})."
    return y[0], "The sliders start at the photo's own attributes as the classifier reads them."


def edit_face(pipe, x: torch.Tensor, source: np.ndarray, values: Mapping[str, float]) -> torch.Tensor:
    """The photo x (1, 3, S, S) decoded with `values` (all the model's attributes) -> (1, 3, S, S)."""
    out = pipe.edit(x, {name: float(values[name]) for name in pipe.attribute_names},
                    source_attributes=np.asarray(source, np.float32)[None])
    return out.x


def sweep_strip(pipe, x: torch.Tensor, name: str, source: np.ndarray) -> Image.Image:
    """The photo, then SWEEP_STEPS decodes with `name` from 0 to 1 and the rest at the photo's own values."""
    return pipe.sweep(x, name, steps=SWEEP_STEPS, source_attributes=np.asarray(source, np.float32)[None])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def reconstruction_note(x: torch.Tensor, reconstruction: torch.Tensor) -> tuple[float, str]:
    """The reconstruction's PSNR, and a warning when it is so poor that the photo is likely no aligned face."""
    db = psnr(to_uint8(x[0]), to_uint8(reconstruction[0]))
    if db < POOR_RECONSTRUCTION_DB:
        return db, (f"**The model reconstructs this picture poorly ({db:.1f} dB).** It may not be a face, or not "
                    "one framed like CelebA (centred, eyes level, filling the frame); edits will look wrong.")
    return db, f"Reconstruction: {db:.1f} dB PSNR."
