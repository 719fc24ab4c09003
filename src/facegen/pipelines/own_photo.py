"""Edit faces in any photo: find them, align each like CelebA, edit, paste the result back.

    facegen edit my_photo.jpg --align male=0 -o out.jpg        # every face found
    facegen edit group.jpg --align --face 1 smiling=1 -o out.jpg

The model sees each face at its own size (64 px for the shipped models); only
the edit's difference from the model's unedited reconstruction is warped back
(`paste_back(..., reference=...)`), so the photo keeps its own resolution and
sharpness and pixels outside the soft face mask are left exactly as they were.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from facegen.errors import FacegenError
from facegen.pipelines.edit import EditPipeline

ALIGN_SIZE = 256  # aligned crop side before the model's own resize: fine enough to blend back into big photos


def edit_photo_aligned(pipe: EditPipeline, photo: str | Path, request=None, *, flip=None, extrapolate: bool = False,
                       face: int | None = None, detector: str = "hog") -> tuple[Image.Image, int, list[str]]:
    """The edited photo at its own resolution, how many faces were edited, and where their own values came from."""
    from facegen.align import align_face, detect_faces, paste_back, select_faces
    from facegen.data import load_image

    image = load_image(photo)
    faces = select_faces(detect_faces(image, detector=detector), face, source=str(photo), detector=detector)
    aligned = [align_face(image, found, size=ALIGN_SIZE) for found in faces]
    x = pipe.load([a.image for a in aligned])  # (n, 3, S, S), the same crop-resize as training
    source, sources = pipe.photo_attributes([a.image for a in aligned], x)
    edited = pipe.edit(x, request, flip=flip, source_attributes=source, extrapolate=extrapolate)
    reconstructed = pipe.edit(x, None, source_attributes=source)  # what the model makes of the face unedited
    result = image
    for face_aligned, after, before in zip(aligned, edited.images, reconstructed.images):
        result = paste_back(result, face_aligned, after, reference=before)
    return result, len(aligned), sources


def check_align_inputs(photos: list[Path]) -> None:
    from facegen.align import align_available

    if not align_available():
        raise FacegenError("aligning your own photos needs dlib and its models: pip install 'facegen[align]'")
    if not photos:
        raise FacegenError("--align needs at least one photo")
