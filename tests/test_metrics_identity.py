"""Identity distance with dlib's face descriptor, on a few real CelebA faces (skipped without dlib or data)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from facegen.errors import FacegenError
from facegen.metrics import identity
from facegen.metrics.identity import (IdentityEmbedder, identity_available, identity_distance,
                                      same_person_fraction)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba-9k" / "img_align_celeba"
needs_dlib = pytest.mark.skipif(not identity_available(),
                                reason="dlib / face_recognition_models absent: pip install 'facegen[identity]'")
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"CelebA sample not found at {DATA}")


def celeba_square(index: int, size_px: int = 64, mild_change: bool = False) -> torch.Tensor:
    """One aligned CelebA image, centre-cropped to a square and resized: (3, size, size) in [-1, 1]."""
    image = Image.open(DATA / f"{index:06d}.jpg").convert("RGB")
    width, height = image.size
    top = (height - width) // 2
    image = image.crop((0, top, width, top + width)).resize((size_px, size_px), Image.BICUBIC)
    if mild_change:
        image = image.filter(ImageFilter.GaussianBlur(0.6)).point(lambda v: min(255, int(v * 1.1)))
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    return torch.stack([celeba_square(i) for i in range(1, 7)])  # (6, 3, 64, 64)


@needs_dlib
@needs_data
def test_same_image_is_distance_zero(faces):
    embedder = IdentityEmbedder()
    descriptors = embedder.embed(faces)
    assert descriptors.shape == (6, 128)
    assert np.allclose(identity_distance(faces, faces, embedder), 0.0)


@needs_dlib
@needs_data
def test_different_people_are_usually_far_apart(faces):
    # Consecutive CelebA images are (almost always) different people.
    distances = identity_distance(faces, faces.roll(1, dims=0))
    assert same_person_fraction(distances) <= 1 / 6 and distances.mean() > 0.6


@needs_dlib
@needs_data
def test_mildly_changed_face_is_the_same_person(faces):
    changed = torch.stack([celeba_square(i, mild_change=True) for i in range(1, 7)])
    distances = identity_distance(faces, changed)
    assert (distances < 0.6).all() and (distances > 0).all()


@needs_dlib
def test_uint8_and_float_inputs_agree():
    pixels = np.random.default_rng(0).integers(0, 256, size=(1, 40, 40, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    embedder = IdentityEmbedder()
    assert np.allclose(embedder.embed(pixels), embedder.embed(x))


def test_same_person_fraction_uses_dlibs_threshold():
    assert same_person_fraction(np.array([0.1, 0.59, 0.6, 1.0])) == 0.5


def test_missing_models_make_identity_unavailable(monkeypatch):
    import facegen.align.detect

    monkeypatch.setattr(facegen.align.detect, "models_folder", lambda: None)  # as if the package were absent
    identity_available.cache_clear()
    try:
        assert identity_available() is False
        with pytest.raises(FacegenError, match=r"pip install 'facegen\[identity\]'"):
            IdentityEmbedder()
    finally:
        monkeypatch.undo()
        identity_available.cache_clear()
    assert identity.identity_available() == (identity.descriptor_folder() is not None and _dlib_imports())


def _dlib_imports() -> bool:
    try:
        import dlib  # noqa: F401
    except ImportError:
        return False
    return True
