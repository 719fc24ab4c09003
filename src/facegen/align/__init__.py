"""Edit faces in your own photos: find each face, align it like CelebA, paste the edit back.

The models only know CelebA's framing (`img_align_celeba`: eyes level, at
fixed places). For any other photo:

    from facegen.align import align_face, detect_faces, paste_back, select_faces
    from facegen.data import load_image, square_resize, to_pil, to_tensor

    photo = load_image("my_photo.jpg")                  # EXIF orientation applied
    faces = select_faces(detect_faces(photo), None, source="my_photo.jpg")  # all, left to right
    result = photo
    for face in faces:                                  # align each in the original photo
        aligned = align_face(photo, face, size=256)     # CelebA's centre square, 256 px
        x = to_tensor(square_resize(aligned.image, 64)[None])   # (1, 3, 64, 64) for a 64 px model
        edited = to_pil(model_edit(x))[0]               # any square size
        result = paste_back(result, aligned, edited)    # the photo's size; only this face changes

A 64 px model blurs the face it redraws; `paste_back(..., reference=recon)`
with the model's reconstruction of the same face adds only the edit (the
difference) to the photo, keeping its own detail.

`select_faces` raises the one-line FacegenError for "no face" (exit 2 in
the CLI) and for an index past the last face. Faces are sorted left to
right by the centre of their box, numbered from 0.

Needs the optional extra `pip install 'facegen[align]'` (dlib-bin and
face_recognition_models); without it `align_available()` is False and
`detect_faces` raises a one-line FacegenError that says so.
"""

from facegen.align.detect import Face, align_available, detect_faces, find_landmarks, select_faces
from facegen.align.template import TEMPLATE_CELEBA, TEMPLATE_FACES, celeba_to_square, square_to_celeba, template_square
from facegen.align.warp import AlignedFace, align_face, face_mask, paste_back, similarity_transform

__all__ = [
    "AlignedFace", "Face", "TEMPLATE_CELEBA", "TEMPLATE_FACES", "align_available", "align_face", "celeba_to_square",
    "detect_faces", "face_mask", "find_landmarks", "paste_back", "select_faces", "similarity_transform",
    "square_to_celeba", "template_square",
]
