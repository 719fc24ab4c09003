"""Edit faces in any photo: find them, align each like CelebA, edit, paste the result back.

    facegen edit my_photo.jpg --align male=0 -o out.jpg        # every face found
    facegen edit group.jpg --align --face 1 smiling=1 -o out.jpg

The model sees each face at its own size (64 px for the shipped models) and
gives the change the edit asks for there; the change is carried up to the
aligned square, warped back into the photo and added (`add_change`), so the
photo keeps its own resolution and sharpness, and every pixel the change does
not reach is left exactly as it was. With `redraw` (the study's way) the
model's decode replaces the face inside a soft elliptical mask instead.
The browser app's Edit a photo tab runs the same `align_faces` and
`edit_and_paste`, keeping the aligned faces in its session between slider moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from facegen.errors import FacegenError
from facegen.pipelines.edit import EditOutput, EditPipeline

if TYPE_CHECKING:
    import numpy as np
    import torch

    from facegen.align import AlignedFace, Face

ALIGN_SIZE = 256  # aligned crop side before the model's own resize: fine enough to blend back into big photos


def edit_photo_aligned(pipe: EditPipeline, photo: str | Path, request=None, *, flip=None, extrapolate: bool = False,
                       face: int | None = None, detector: str = "hog") -> tuple[Image.Image, int, list[str]]:
    """The edited photo at its own resolution, how many faces were edited, and where their own values came from."""
    from facegen.align import detect_faces, select_faces
    from facegen.data import load_image

    image = load_image(photo)
    faces = select_faces(detect_faces(image, detector=detector), face, source=str(photo), detector=detector)
    aligned = align_faces(image, faces)
    x = pipe.load([a.image for a in aligned])  # (n, 3, S, S), the same crop-resize as training
    source, sources = pipe.photo_attributes([a.image for a in aligned], x)
    result, _ = edit_and_paste(pipe, image, aligned, x, source, request, flip=flip, extrapolate=extrapolate)
    return result, len(aligned), sources


def align_faces(image: Image.Image, faces: Sequence[Face]) -> list[AlignedFace]:
    """Each face of `image` warped to CelebA's framing at ALIGN_SIZE px (`pipe.load` resizes it to the model's)."""
    from facegen.align import align_face

    return [align_face(image, found, size=ALIGN_SIZE) for found in faces]


def edit_and_paste(pipe: EditPipeline, image: Image.Image, aligned: Sequence[AlignedFace], x: torch.Tensor,
                   source: np.ndarray, request=None, *, flip=None,
                   extrapolate: bool = False) -> tuple[Image.Image, EditOutput]:
    """Edit the aligned faces x (n, 3, S, S) with their own values `source` (n, A) and put each back into `image`.

    Each face's change is added to the photo at its own resolution: the photo
    keeps its size and sharpness, and with nothing changed it comes back as
    it was. Returns the photo and the edit at the model's size (for a preview).
    Used by `facegen edit --align` and the app's Edit a photo tab alike.
    """
    edited = pipe.edit(x, request, flip=flip, source_attributes=source, extrapolate=extrapolate)
    reconstructed = pipe.edit(x, None, source_attributes=source) if pipe.redraw else None
    return paste_changes(image, aligned, edited, reconstructed), edited


def paste_changes(image: Image.Image, aligned: Sequence[AlignedFace], edited: EditOutput,
                  reconstructed: EditOutput | None = None) -> Image.Image:
    """Every face's edit (`EditPipeline.edit` of the aligned faces) put back into the photo at its own size.

    With `reconstructed` (a redrawing model's decode of the faces unedited)
    the difference of the two decodes is pasted inside the soft face mask,
    as the study's way needs; else each face's change is added as it is.
    """
    from facegen.align import paste_back
    from facegen.pipelines.change import add_change

    result = image
    for i, face_aligned in enumerate(aligned):
        if reconstructed is not None:
            result = paste_back(result, face_aligned, edited.images[i], reference=reconstructed.images[i])
        elif edited.change[i].any():
            result = add_change(result, face_aligned, edited.change[i])
    return result


def check_align_inputs(photos: list[Path]) -> None:
    from facegen.align import align_available

    if not align_available():
        raise FacegenError("aligning your own photos needs dlib and its models: pip install 'facegen[align]'")
    if not photos:
        raise FacegenError("--align needs at least one photo")
