"""What the Edit tab computes, without gradio: read an upload safely, find and align its faces, edit, sweep.

An ordinary photo takes the path of `facegen edit --align`
(`facegen.pipelines.own_photo`): every face is found, aligned like CelebA
and kept in the session with the whole photo, so a slider move never re-reads
the upload or searches it again; the edit is pasted back into the photo at
its own size. A photo that already is a CelebA-aligned crop (the sample
faces) is kept as its centre square at PHOTO_SIDE pixels, edited as it is.
Each model resizes the faces to its own size.

"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from facegen.data import load_image, square_resize
from facegen.errors import FacegenError
from facegen.metrics.reconstruction import pixel_psnr

if TYPE_CHECKING:
    from facegen.align import AlignedFace

PHOTO_MAX_PIXELS = 40_000_000  # an upload above this is refused from its header, before decoding (a phone: ~12 MP)
PHOTO_SIDE = 256  # the square a photo is kept at between requests
SWEEP_STEPS = 8  # edits in the sweep strip, from 0 to 1
SWEEP_TILE = 128  # px: the side of each of the strip's faces
# Below this reconstruction PSNR the photo is probably not an aligned face (or not a face at all): the
# page says so. Aligned CelebA faces reconstruct well above it with the shipped models (docs/app.md).
POOR_RECONSTRUCTION_DB = 15.0
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"
ALREADY_ALIGNED = "Already a CelebA-aligned crop"  # the tab's check box that skips finding faces


@dataclass(frozen=True, eq=False)
class OpenedPhoto:
    """A photo as the tab keeps it between requests.

    crops: each face as CelebA framing has it, RGB squares, left to right.
    image: the whole upload, upright at its own size, that edits are pasted
        back into; None when the upload was already an aligned crop (then
        `crops` holds its centre square and the edit is the result).
    faces: where each crop sits in `image`, for the paste back.
    """

    name: str
    crops: list[Image.Image]
    image: Image.Image | None = None
    faces: list[AlignedFace] = field(default_factory=list)

    @property
    def aligned_crop(self) -> bool:
        return self.image is None


def sample_paths() -> list[Path]:
    """The bundled sample faces (CelebA validation images, aligned)."""
    return sorted(SAMPLES_DIR.glob("*.jpg"))


def read_photo(path: str | Path | None) -> np.ndarray:
    """An uploaded file -> its centre square as uint8 (PHOTO_SIDE, PHOTO_SIDE, 3), or a one-line FacegenError."""
    return square_resize(read_upload(path, min_side=PHOTO_SIDE), PHOTO_SIDE)  # (PHOTO_SIDE, PHOTO_SIDE, 3)


def read_upload(path: str | Path | None, *, min_side: int | None = None) -> Image.Image:
    """An uploaded file -> an upright RGB image (at its own size without `min_side`), or a one-line FacegenError.

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
        image = load_image(path, min_side=min_side)
    except FacegenError as error:  # name the file as the user knows it, not by the server's temporary path
        raise FacegenError(str(error).replace(str(path), name)) from None
    if min(image.size) < 16:
        raise FacegenError(f"{name} is only {image.size[0]}x{image.size[1]} pixels; give a face photo of at least "
                           "64x64")
    return image


def can_find_faces() -> bool:
    """True when the align extra (dlib and its landmark model) is installed."""
    from facegen.align import align_available

    return align_available()


def open_crop(path: str | Path | None) -> OpenedPhoto:
    """A photo that already is a CelebA-aligned crop: one face, its centre square, edited as it is."""
    pixels = read_photo(path)
    return OpenedPhoto(Path(path).name, [Image.fromarray(pixels)])


def open_photo(path: str | Path | None) -> OpenedPhoto:
    """Any photo: every face found (left to right) and aligned like CelebA, as `facegen edit --align` does.

    Raises a one-line FacegenError when the align extra is missing or no face is found.
    """
    from facegen.align import detect_faces
    from facegen.pipelines.own_photo import align_faces

    image = read_upload(path)  # a corrupt file says so first, whatever is installed
    name = Path(path).name
    if not can_find_faces():
        raise FacegenError("finding faces in a photo needs dlib: pip install 'facegen[align]'; for a crop aligned "
                           f"like CelebA's, tick '{ALREADY_ALIGNED}'")
    faces = detect_faces(image)
    if not faces:
        raise FacegenError(f"{name}: no face found; use a photo with an upright, frontal face, or crop closer to it "
                           f"(for a crop aligned like CelebA's, tick '{ALREADY_ALIGNED}')")
    aligned = align_faces(image, faces)
    return OpenedPhoto(name, [face.image for face in aligned], image, aligned)


def chosen_faces(photo: OpenedPhoto, face: int | None) -> list[int]:
    """The faces to edit: all (`face` None) or just that one (0 = leftmost), like `facegen edit --align --face N`."""
    if photo.aligned_crop:
        return [0]
    from facegen.align import select_faces

    found = [aligned.face for aligned in photo.faces]
    return [found.index(chosen) for chosen in select_faces(found, face, source=photo.name)]


def faces_note(photo: OpenedPhoto, faces: Sequence[int]) -> str:
    """What the page says about the faces found: how many, and which ones the sliders edit."""
    if photo.aligned_crop:
        return ""
    count = len(photo.crops)
    if count == 1:
        return "1 face found."
    if len(faces) == 1:
        return f"{count} faces found (numbered from 0, left to right); editing face {faces[0]}."
    return (f"{count} faces found (numbered from 0, left to right); editing all of them. The sliders start at "
            f"face {faces[0]}'s values; a slider you move sets that attribute on every face, the others keep "
            "their own.")


def model_input(pipe, photo: OpenedPhoto) -> torch.Tensor:
    """The photo's faces at the model's size: x (n, 3, S, S) in [-1, 1] (Lanczos, like the training cache)."""
    return pipe.load(photo.crops)


def own_attributes(pipe, x: torch.Tensor, *, can_classify: bool) -> tuple[np.ndarray, str]:
    """Each face's own values (n, A) as the sliders' start, and a sentence saying where they came from."""
    neutral = np.full((x.shape[0], len(pipe.attribute_names)), 0.5, np.float32)
    if not can_classify:
        return neutral, ("No attribute classifier is installed, so the sliders start at 0.5: set them to what "
                         "the photo shows, then move the one you want to change.")
    try:
        y, _ = pipe.photo_attributes(x, x)  # (n, A): the classifier's reading, 0 or 1
    except FacegenError as error:
        return neutral, f"The sliders start at 0.5 ({error})."
    return y, "The sliders start at the face's own attributes as the classifier reads them."


def face_preview(pipe, crop: Image.Image, edited, i: int = 0) -> Image.Image:
    """Face i of an `EditPipeline.edit` output shown on its crop: the change added at the crop's resolution
    (a redrawing model's decode as it is, at the model's size)."""
    from facegen.pipelines.change import apply_change

    if pipe.redraw:
        return edited.images[i]
    return Image.fromarray(apply_change(np.asarray(crop.convert("RGB")), edited.change[i]))


def edit_face(pipe, crop: Image.Image, x: torch.Tensor, source: np.ndarray, values: Mapping[str, float]) -> Image.Image:
    """The face x (1, 3, S, S) (`crop` at the model's size) edited to `values` (all the model's attributes),
    shown on the crop at its own resolution."""
    out = pipe.edit(x, {name: float(values[name]) for name in pipe.attribute_names},
                    source_attributes=np.asarray(source, np.float32)[None])
    return face_preview(pipe, crop, out)


def edit_photo(pipe, photo: OpenedPhoto, x: torch.Tensor, source: np.ndarray, values: Mapping[str, float],
               faces: Sequence[int]) -> tuple[Image.Image, Image.Image | None]:
    """The sliders applied: the first chosen face edited (on its crop), and the whole photo with every chosen
    face edited and put back at its own size (None for an aligned crop).

    x (n, 3, S, S) and source (n, A) hold every face of the photo. The
    sliders start at the first chosen face's own values: an attribute whose
    slider differs from that is set on every chosen face, and each face keeps
    its own value of the rest, like `facegen edit --align name=value`.
    """
    from facegen.pipelines.own_photo import edit_and_paste

    if photo.aligned_crop:
        return edit_face(pipe, photo.crops[0], x, source[0], values), None
    own = dict(zip(pipe.attribute_names, source[faces[0]]))
    request = {name: float(values[name]) for name in pipe.attribute_names if abs(values[name] - own[name]) > 1e-6}
    chosen = list(faces)
    result, edited = edit_and_paste(pipe, photo.image, [photo.faces[i] for i in chosen], x[chosen], source[chosen],
                                    request)
    return face_preview(pipe, photo.crops[chosen[0]], edited), result


def sweep_strip(pipe, crop: Image.Image, name: str, source: np.ndarray) -> Image.Image:
    """The face, then SWEEP_STEPS edits with `name` from 0 to 1 and the rest at the face's own values."""
    return pipe.sweep(crop, name, steps=SWEEP_STEPS, source_attributes=np.asarray(source, np.float32)[None],
                      tile_max=SWEEP_TILE)


def reconstruction_note(crop: Image.Image, reconstruction: Image.Image) -> tuple[float, str]:
    """The reconstruction's PSNR, and a warning when it is so poor that the photo is likely no aligned face."""
    if reconstruction.size != crop.size:  # a redrawing model's decode, at its size: compare at that size
        crop = crop.resize(reconstruction.size, Image.Resampling.LANCZOS)
    db = pixel_psnr(np.asarray(crop.convert("RGB")), np.asarray(reconstruction.convert("RGB")))
    if math.isinf(db):
        return db, "Nothing is changed until a slider moves: the edit is added to the photo itself."
    if db < POOR_RECONSTRUCTION_DB:
        return db, (f"**The model reconstructs this picture poorly ({db:.1f} dB).** It may not be a face, or not "
                    "one framed like CelebA (centred, eyes level, filling the frame); edits will look wrong.")
    return db, f"Reconstruction: {db:.1f} dB PSNR."
