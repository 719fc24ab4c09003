"""Own photos: detect faces, align them to CelebA's framing, paste an edit back.

The geometry tests run anywhere; the detection tests need dlib
(`pip install 'facegen[align]'`) and the recovery tests the full-size CelebA
images in ../shared/data/celeba-fullres-100; both skip with a reason when absent.
"""

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegen.align import (AlignedFace, Face, align_available, align_face, celeba_to_square, detect_faces,
                           face_mask, paste_back, select_faces, similarity_transform, square_to_celeba,
                           template_square)
from facegen.align import detect as detect_module
from facegen.align.template import TEMPLATE_CELEBA, TEMPLATE_FACES
from facegen.align.warp import apply
from facegen.errors import FacegenError

FULLRES = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba-fullres-100" / "img_align_celeba"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "align"
needs_dlib = pytest.mark.skipif(not align_available(),
                                reason="dlib / face_recognition_models absent: pip install 'facegen[align]'")
needs_data = pytest.mark.skipif(not FULLRES.is_dir(), reason=f"full-size CelebA images not found at {FULLRES}")

# (celeba index, canvas (width, height), scale, rotation degrees, shift of the face's centre from the canvas centre)
PLACEMENTS = [
    (2, (360, 300), 1.0, 0.0, (0, 0)),
    (6, (420, 320), 1.4, 5.0, (60, -20)),
    (5, (300, 360), 0.8, -5.0, (-50, 30)),
    (7, (480, 360), 1.7, 3.0, (-90, 10)),
    (11, (360, 300), 1.2, -4.0, (40, 25)),
    (13, (400, 400), 0.9, 2.0, (0, -60)),
]


def placement_matrix(image_size, canvas_size, scale, degrees, shift) -> np.ndarray:
    """(2, 3) CelebA px -> canvas px: rotate by `degrees` (counter-clockwise on screen), scale, centre + shift."""
    angle = math.radians(degrees)
    linear = scale * np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    centre_in = (np.array(image_size) - 1) / 2
    centre_out = (np.array(canvas_size) - 1) / 2 + shift
    return np.hstack([linear, (centre_out - linear @ centre_in)[:, None]])


def place_in_canvas(image: Image.Image, canvas_size, matrix: np.ndarray, background=(96, 110, 120)) -> Image.Image:
    """`image` warped by `matrix` (image px -> canvas px) onto a flat canvas: a made-up 'own photo'."""
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    offset = inverse[:, 2] + 0.5 - inverse[:, :2] @ [0.5, 0.5]  # integer-centred -> Pillow's pixel-edge convention
    data = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    canvas = Image.new("RGB", canvas_size, background)
    warped = image.transform(canvas_size, Image.Transform.AFFINE, data, Image.Resampling.BICUBIC)
    inside = Image.new("L", image.size, 255).transform(canvas_size, Image.Transform.AFFINE, data,
                                                        Image.Resampling.BILINEAR)
    canvas.paste(warped, mask=inside)
    return canvas


def synthetic_face(matrix: np.ndarray) -> Face:
    """A Face whose landmarks are the template carried by `matrix` (CelebA px -> photo px); no dlib needed."""
    landmarks = apply(matrix, TEMPLATE_CELEBA)
    left, top = landmarks.min(0) - 30
    right, bottom = landmarks.max(0) + 30
    return Face(box=(int(left), int(top), int(right), int(bottom)), landmarks=landmarks, score=1.0)


# --------------------------------------------------------------------------- geometry (no dlib)


def test_template_was_derived_from_data():
    assert TEMPLATE_FACES >= 100
    eyes_right, eyes_left, nose = TEMPLATE_CELEBA[:2].mean(0), TEMPLATE_CELEBA[2:4].mean(0), TEMPLATE_CELEBA[4]
    # CelebA's published mean eye centres are about (69, 111) and (108, 111); eye corners sit a little lower.
    assert abs(eyes_left[0] - 69) < 4 and abs(eyes_right[0] - 108) < 4
    assert 108 < eyes_left[1] < 118 and abs(eyes_left[1] - eyes_right[1]) < 2
    assert abs(nose[0] - 89) < 3 and eyes_left[1] + 20 < nose[1] < eyes_left[1] + 40


def test_frames_round_trip():
    points = np.array([[0.0, 20.0], [177.0, 197.0], [60.5, 110.25]])
    assert np.allclose(square_to_celeba(celeba_to_square(points, 256), 256), points)
    assert np.allclose(celeba_to_square(np.array([[-0.5, 19.5]]), 64), [[-0.5, -0.5]])  # square's corner


def test_similarity_transform_recovers_a_known_one():
    matrix = placement_matrix((178, 218), (500, 400), 1.7, -4.0, (30, -12))
    src = np.random.default_rng(0).uniform(0, 200, (5, 2))
    assert np.allclose(similarity_transform(src, apply(matrix, src)), matrix)


def test_align_face_puts_landmarks_on_the_template():
    face_photo = Image.effect_noise((178, 218), 60).convert("RGB")
    matrix = placement_matrix((178, 218), (420, 360), 1.5, 5.0, (20, 10))
    photo = place_in_canvas(face_photo, (420, 360), matrix)
    aligned = align_face(photo, synthetic_face(matrix), size=256)
    assert aligned.image.size == (256, 256)
    assert np.allclose(apply(aligned.matrix, aligned.face.landmarks), template_square(256), atol=1e-6)
    assert aligned.scale == pytest.approx(256 / 178 / 1.5)
    # The aligned square is CelebA's own centre square (the placement undone), up to resampling.
    expected = np.asarray(face_photo.crop((0, 20, 178, 198)).resize((256, 256), Image.Resampling.BICUBIC), float)
    assert np.abs(np.asarray(aligned.image, float) - expected)[40:-40, 40:-40].mean() < 25  # noise: resampling blurs


def test_paste_back_changes_only_the_masked_face():
    photo = Image.effect_noise((500, 420), 50).convert("RGB")
    matrix = placement_matrix((178, 218), (500, 420), 1.3, -3.0, (-40, 15))
    aligned = align_face(photo, synthetic_face(matrix), size=128)
    edited = Image.new("RGB", (64, 64), (255, 0, 0))  # the "edit": a 64 px model that paints everything red
    result = paste_back(photo, aligned, edited)
    assert result.size == photo.size
    changed = np.any(np.asarray(result) != np.asarray(photo), axis=-1)
    mask = face_mask(aligned)
    assert not changed[mask == 0].any()  # outside the mask: bit-identical
    assert changed[mask > 0.5].mean() > 0.99
    assert np.asarray(result)[mask == 1].tolist() == [[255, 0, 0]] * int((mask == 1).sum())
    # The mask covers the face between the eyes and the mouth, and not the canvas corners.
    eyes = apply(matrix, TEMPLATE_CELEBA).mean(0).round().astype(int)
    assert mask[eyes[1], eyes[0]] == 1 and mask[0, 0] == 0 and mask[-1, -1] == 0
    assert 0.2 < mask.sum() / (178 * 178 * 1.3 ** 2) < 0.9  # a face-sized region, not the whole square


def test_paste_back_with_reference_adds_only_the_difference():
    photo = Image.effect_noise((300, 300), 50).convert("RGB")
    aligned = align_face(photo, synthetic_face(placement_matrix((178, 218), (300, 300), 1.0, 0.0, (0, 0))))
    grey = Image.new("RGB", (64, 64), (100, 100, 100))
    assert np.array_equal(np.asarray(paste_back(photo, aligned, grey, reference=grey)), np.asarray(photo))
    brighter = paste_back(photo, aligned, Image.new("RGB", (64, 64), (110, 100, 100)), reference=grey)
    delta = np.asarray(brighter, int) - np.asarray(photo, int)  # (H, W, 3)
    inside = face_mask(aligned) == 1
    assert np.all(delta[inside, 1:] == 0) and np.all(delta[inside, 0] == np.minimum(10, 255 - np.asarray(photo)[
        inside, 0].astype(int)))


def test_face_partly_outside_the_photo_still_aligns_and_pastes():
    photo = Image.effect_noise((200, 160), 50).convert("RGB")
    matrix = placement_matrix((178, 218), (200, 160), 1.2, 0.0, (-90, 40))  # half the face off the left edge
    aligned = align_face(photo, synthetic_face(matrix), size=64)
    assert aligned.image.size == (64, 64)
    result = paste_back(photo, aligned, Image.new("RGB", (64, 64), (0, 255, 0)))
    assert result.size == photo.size and not np.array_equal(np.asarray(result), np.asarray(photo))


def test_select_faces_all_one_or_a_clear_error():
    faces = [synthetic_face(placement_matrix((178, 218), (600, 300), 1.0, 0.0, (dx, 0))) for dx in (-150, 150)]
    assert select_faces(faces) == faces and select_faces(faces, 1) == [faces[1]]
    with pytest.raises(FacegenError, match="me.jpg: no face found; try --detector cnn"):
        select_faces([], source="me.jpg")
    with pytest.raises(FacegenError, match="there is no face 2; it has faces 0 to 1, left to right"):
        select_faces(faces, 2)


def test_missing_dlib_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(detect_module, "align_available", lambda: False)
    monkeypatch.setattr(detect_module, "_MODELS", {})
    with pytest.raises(FacegenError, match=r"pip install 'facegen\[align\]'"):
        detect_faces(Image.new("RGB", (64, 64)))


def test_models_are_found_without_importing_the_package():
    folder = detect_module.models_folder()
    if folder is None:
        pytest.skip("face_recognition_models absent: pip install 'facegen[align]'")
    assert (folder / detect_module.LANDMARKS_FILE).is_file()


# --------------------------------------------------------------------------- detection (dlib)


@needs_dlib
def test_no_face_in_noise_or_flat_colour():
    assert detect_faces(Image.new("RGB", (320, 240), (128, 140, 150))) == []
    assert detect_faces(Image.effect_noise((320, 240), 80).convert("RGB")) == []


@needs_dlib
def test_fixture_photo_has_one_face():
    from facegen.data import load_image

    faces = detect_faces(load_image(FIXTURES / "one_face.jpg"))
    assert len(faces) == 1 and faces[0].landmarks.shape == (5, 2)
    # The same photo stored sideways with an EXIF orientation tag: load_image turns it upright.
    turned = load_image(FIXTURES / "one_face_exif_rotated.jpg")
    assert turned.size == load_image(FIXTURES / "one_face.jpg").size
    assert len(detect_faces(turned)) == 1


@needs_dlib
@needs_data
def test_two_faces_side_by_side_come_left_to_right():
    left, right = (Image.open(FULLRES / name).convert("RGB") for name in ("000001.jpg", "000009.jpg"))
    canvas = Image.new("RGB", (420, 260), (90, 90, 90))
    canvas.paste(left, (20, 20))
    canvas.paste(right.resize((151, 185)), (240, 50))
    faces = detect_faces(canvas)
    assert len(faces) == 2
    assert faces[0].box[2] < 220 < faces[1].box[0]


@needs_dlib
@needs_data
def test_alignment_recovers_celeba_framing():
    """Shifted, scaled, rotated faces land where CelebA put them (errors in px of the 178x218 frame)."""
    vs_celeba, vs_direct, vs_template = [], [], []
    for index, canvas_size, scale, degrees, shift in PLACEMENTS:
        original = Image.open(FULLRES / f"{index:06d}.jpg").convert("RGB")
        direct = detect_faces(original)
        assert len(direct) == 1
        truth = direct[0].landmarks  # (5, 2) where CelebA's own crop has them
        matrix = placement_matrix(original.size, canvas_size, scale, degrees, shift)
        faces = detect_faces(place_in_canvas(original, canvas_size, matrix))
        assert len(faces) == 1, (index, len(faces))
        aligned = align_face(place_in_canvas(original, canvas_size, matrix), faces[0], size=178)
        # CelebA's points carried into the canvas and through our alignment: back where CelebA had them?
        recovered = square_to_celeba(apply(aligned.matrix, apply(matrix, truth)), 178)
        vs_celeba.append(np.linalg.norm(recovered - truth, axis=1))
        direct_aligned = align_face(original, direct[0], size=178)
        vs_direct.append(np.linalg.norm(recovered - square_to_celeba(apply(direct_aligned.matrix, truth), 178),
                                        axis=1))
        vs_template.append(np.linalg.norm(square_to_celeba(apply(aligned.matrix, faces[0].landmarks), 178)
                                          - TEMPLATE_CELEBA, axis=1))
    vs_celeba, vs_direct, vs_template = (np.array(e) for e in (vs_celeba, vs_direct, vs_template))
    print(f"\nlandmark error px (178x218 frame), mean/max: vs CelebA's own crop {vs_celeba.mean():.2f}/"
          f"{vs_celeba.max():.2f}, vs aligning the crop itself {vs_direct.mean():.2f}/{vs_direct.max():.2f}, "
          f"vs the template {vs_template.mean():.2f}/{vs_template.max():.2f}")
    assert vs_direct.mean() < 1.5 and vs_direct.max() < 4  # placement does not change the alignment
    assert vs_celeba.mean() < 4 and vs_celeba.max() < 10  # CelebA itself is aligned only roughly
    assert vs_template.mean() < 4


@needs_dlib
@needs_data
def test_edit_pasted_back_changes_only_the_face():
    original = Image.open(FULLRES / "000006.jpg").convert("RGB")
    matrix = placement_matrix(original.size, (420, 320), 1.4, 5.0, (60, -20))
    photo = place_in_canvas(original, (420, 320), matrix)
    (face,) = detect_faces(photo)
    aligned = align_face(photo, face, size=256)
    edited = Image.fromarray(255 - np.asarray(aligned.image.resize((64, 64), Image.Resampling.LANCZOS)))
    result = paste_back(photo, aligned, edited)
    changed = np.any(np.asarray(result) != np.asarray(photo), axis=-1)
    mask = face_mask(aligned)
    assert not changed[mask == 0].any() and changed[mask == 1].mean() > 0.95
    ys, xs = np.nonzero(changed)
    centre = apply(matrix, TEMPLATE_CELEBA).mean(0)
    assert abs(xs.mean() - centre[0]) < 20 and abs(ys.mean() - centre[1]) < 30
