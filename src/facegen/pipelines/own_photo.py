"""Edit faces in any photo: find them, align each like CelebA, edit, paste the result back.

    facegen edit my_photo.jpg --align male=0 -o out.jpg        # every face found
    facegen edit group.jpg --align --face 1 smiling=1 -o out.jpg

The model sees each face at its own size (64 px for the shipped models); only
the edit's difference from the model's unedited reconstruction is warped back
(`paste_back(..., reference=...)`), so the photo keeps its own resolution and
sharpness and pixels outside the soft face mask are left exactly as they were.
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
    """Edit the aligned faces x (n, 3, S, S) with their own values `source` (n, A) and blend each back into `image`.

    Only each edit's difference from the model's unedited reconstruction of
    the same face is added, inside that face's soft mask: the photo keeps its
    size and sharpness, and with nothing changed it comes back as it was.
    Returns the photo and the edit at the model's size (for a preview).
    Used by `facegen edit --align` and the app's Edit a photo tab alike.
    """
    from facegen.align import paste_back

    edited = pipe.edit(x, request, flip=flip, source_attributes=source, extrapolate=extrapolate)
    reconstructed = pipe.edit(x, None, source_attributes=source)  # what the model makes of the face unedited
    result = image
    for face_aligned, after, before in zip(aligned, edited.images, reconstructed.images, strict=True):
        result = paste_back(result, face_aligned, after, reference=before)
    return result, edited


def check_align_inputs(photos: list[Path]) -> None:
    from facegen.align import align_available

    if not align_available():
        raise FacegenError("aligning your own photos needs dlib and its models: pip install 'facegen[align]'")
    if not photos:
        raise FacegenError("--align needs at least one photo")
