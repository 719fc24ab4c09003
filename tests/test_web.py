"""The browser app's computations and `facegen serve`'s start-up checks, without a server.

Models here are tiny and untrained (random weights written with `save_pretrained`): the app's code does
not care what the faces look like, only that a slider changes them and the same seed repeats them.
The own-photo tests need dlib (`pip install 'facegen[align]'`) and most of them the full-size CelebA
images in ../shared/data/celeba-fullres-100 (see test_align.py); they skip with the reason when absent.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FIXTURES, run_cli
from test_align import FULLRES, needs_data, needs_dlib, place_in_canvas, placement_matrix
from facegen.attributes import AttributePrior
from facegen.errors import FacegenError
from facegen.pretrained import save_pretrained

NAMES = ["Young", "Male", "Smiling"]


def tiny_model(kind: str, folder: Path, names: list[str] = NAMES, size: int = 16) -> Path:
    """A random-weight model of `kind` at `size` px, with a prior from random labels, in `folder`."""
    torch.manual_seed(0)
    a = len(names)
    if kind == "cgan":
        from facegen.models.cgan import Generator

        kwargs = {"generator": {"n_attributes": a, "size": size, "z_dim": 8, "channels": 32}}
        modules = {"generator": (kwargs["generator"], Generator(**kwargs["generator"]))}
    elif kind in ("fader", "cvae"):
        from facegen.models import cvae, fader

        if kind == "fader":
            enc, dec = {"size": size, "channels": 8, "latent_channels": 16}, {"n_attributes": a, "size": size,
                                                                               "channels": 8, "latent_channels": 16}
        else:
            enc = dec = {"n_attributes": a, "size": size, "z_dim": 8, "channels": 32}
        module = fader if kind == "fader" else cvae
        modules = {"encoder": (enc, module.Encoder(**enc)), "decoder": (dec, module.Decoder(**dec))}
    elif kind == "residual":
        from facegen.models.residual import ResidualEditor

        kwargs = {"n_attributes": a, "size": size, "channels": 8, "max_channels": 16, "blocks": 1}
        modules = {"editor": (kwargs, ResidualEditor(**kwargs))}
    else:
        from facegen.models.classifier import AttributeClassifier

        kwargs = {"n_attributes": a, "size": size, "channels": 8}
        modules = {"classifier": (kwargs, AttributeClassifier(**kwargs))}
    for _, module in modules.values():  # BatchNorm statistics of a "trained" model, not of nothing
        with torch.no_grad():
            for layer in module.modules():
                if isinstance(layer, torch.nn.BatchNorm2d):
                    layer.running_var.fill_(0.25)
    labels = np.random.default_rng(0).integers(0, 2, (50, a))
    return save_pretrained(folder, model=kind, size=size, attribute_names=names, modules=modules,
                           prior=AttributePrior.from_labels(labels, names))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("web-models")
    return {kind: tiny_model(kind, root / kind) for kind in ("cgan", "residual", "fader", "cvae", "classifier")}


@pytest.fixture(scope="module")
def catalog(models):
    from facegen.web.catalog import Catalog

    return Catalog.load([models["cgan"], models["residual"], models["fader"], models["cvae"], models["classifier"]],
                        shipped=False)


def test_shipped_models_open_on_the_command_lines_defaults():
    from facegen.web.catalog import Catalog, shipped_names

    assert shipped_names()[:4] == ["cgan", "residual", "fader", "cvae"]
    catalog = Catalog.load([])
    assert catalog.generators[0].key == "cgan" and catalog.editors[0].key == "residual"


def test_catalog_sorts_models_by_what_they_can_do(catalog, models):
    assert [e.kind for e in catalog.generators] == ["cgan", "cvae"]
    assert [e.kind for e in catalog.editors] == ["cgan", "residual", "fader", "cvae"]  # no shipped default here
    assert catalog.classifier is not None and catalog.classifier.kind == "classifier"
    assert catalog.get(str(models["fader"]), task="edit").editor is not None
    with pytest.raises(FacegenError, match="cannot generate"):
        catalog.get(str(models["fader"]), task="generate")
    assert catalog.attribute_union(catalog.generators) == NAMES
    assert set(catalog.generators[0].defaults().values()) <= {0.0, 1.0}  # the commoner value of each label


def test_catalog_refuses_a_missing_model(tmp_path):
    from facegen.web.catalog import Catalog

    with pytest.raises(FacegenError, match="not found"):
        Catalog.load([tmp_path / "nothing"], shipped=False)


def test_same_seed_same_faces_and_a_slider_changes_them(catalog):
    from facegen.web.faces import generate_faces

    pipe = catalog.generators[0].generator
    values = {"Young": 1.0, "Male": 0.0, "Smiling": 0.0}
    a = generate_faces(pipe, values, seed=3, count=4)
    assert a.shape == (4, 3, 16, 16)
    assert torch.equal(a, generate_faces(pipe, values, seed=3, count=4))
    assert not torch.equal(a, generate_faces(pipe, {**values, "Smiling": 1.0}, seed=3, count=4))
    assert not torch.equal(a, generate_faces(pipe, values, seed=4, count=4))
    with pytest.raises(FacegenError, match="between 1 and"):
        generate_faces(pipe, values, seed=3, count=1000)


def test_the_spread_of_the_noise_changes_the_faces_and_is_kept_with_them(catalog):
    """The Generate tab's spread slider: the model's own spread by default, a lower one gives other faces from the
    same seed, it is written into the download, and a spread off the slider's range is one readable line."""
    from facegen.web.faces import OutputFolder, generate_faces
    from facegen.web.generate_tab import spread_of

    entry = catalog.generators[0]
    pipe, values = entry.generator, {"Young": 1.0, "Male": 0.0, "Smiling": 0.0}
    own = generate_faces(pipe, values, seed=3, count=2)
    assert torch.equal(own, generate_faces(pipe, values, seed=3, count=2, temperature=pipe.default_temperature))
    narrow = generate_faces(pipe, values, seed=3, count=2, temperature=0.3)
    assert not torch.equal(own, narrow)
    path = OutputFolder(keep=1).write_faces(narrow, model="m", seed=3, values=values, temperature=0.3)
    with zipfile.ZipFile(path) as archive:
        assert json.loads(archive.read("attributes.json"))["temperature"] == 0.3
    assert spread_of(None, entry) == spread_of("", entry) == pipe.default_temperature and spread_of(0.5, entry) == 0.5
    for bad in (0.0, 2.0, "wide", float("nan")):
        with pytest.raises(FacegenError, match="spread of the noise must be between"):
            spread_of(bad, entry)


def test_download_zip_holds_each_face_and_its_values(catalog):
    from facegen.web.faces import OutputFolder, generate_faces

    folder = OutputFolder(keep=2)
    values = {"Young": 1.0, "Male": 0.5, "Smiling": 0.0}
    x = generate_faces(catalog.generators[0].generator, values, seed=0, count=3)
    paths = [folder.write_faces(x, model="m", seed=0, values=values) for _ in range(4)]
    with zipfile.ZipFile(paths[-1]) as archive:
        assert sorted(archive.namelist()) == ["attributes.json", "face-00.png", "face-01.png", "face-02.png"]
        assert json.loads(archive.read("attributes.json"))["attributes"] == values
        assert Image.open(io.BytesIO(archive.read("face-00.png"))).size == (16, 16)
    assert not paths[0].exists() and paths[-1].exists()  # only the newest `keep` are kept


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but holds no pixels: a huge upload without the memory."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_read_photo_refuses_bad_uploads_in_one_readable_line(tmp_path):
    from facegen.web.photos import read_photo

    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    with pytest.raises(FacegenError, match=r"^notes.txt: not a readable image"):
        read_photo(text)
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header_only(9000, 9000))
    with pytest.raises(FacegenError, match=r"^huge.png is 9000x9000 pixels, over the app's 40 MP"):
        read_photo(huge)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8)).save(tiny)
    with pytest.raises(FacegenError, match="only 8x8 pixels"):
        read_photo(tiny)
    with pytest.raises(FacegenError, match="no photo"):
        read_photo(None)


def test_read_photo_keeps_the_centre_square_of_any_mode(tmp_path):
    from facegen.web.photos import PHOTO_SIDE, read_photo

    path = tmp_path / "gray.png"
    Image.new("LA", (300, 400), (90, 255)).save(path)
    pixels = read_photo(path)
    assert pixels.shape == (PHOTO_SIDE, PHOTO_SIDE, 3) and pixels.dtype == np.uint8
    assert pixels[0, 0].tolist() == [90, 90, 90]


def test_samples_are_aligned_celeba_validation_faces():
    from facegen.web.photos import read_photo, sample_paths

    samples = sample_paths()
    assert len(samples) == 4
    for path in samples:
        name = path.name.removeprefix("celeba-")
        assert zlib.crc32(name.encode()) % 10 == 0, f"{name} is not in the validation split"
        assert Image.open(path).size == (178, 218) and path.stat().st_size < 20_000
        read_photo(path)


def test_edit_reconstructs_edits_and_sweeps(catalog):
    from facegen.web.photos import (SWEEP_STEPS, SWEEP_TILE, edit_face, model_input, open_crop, own_attributes,
                                    reconstruction_note, sample_paths, sweep_strip)

    photo = open_crop(sample_paths()[0])
    for entry in catalog.editors:
        pipe = entry.editor
        x = model_input(pipe, photo)
        assert x.shape == (1, 3, 16, 16)
        source, where = own_attributes(pipe, x, can_classify=True)
        assert source.shape == (1, 3) and set(source.ravel().tolist()) <= {0.0, 1.0} and "classifier" in where
        own = dict(zip(NAMES, source[0]))
        crop = photo.crops[0]
        rebuilt = edit_face(pipe, crop, x, source[0], own)
        changed = edit_face(pipe, crop, x, source[0], {**own, "Male": 1.0 - own["Male"]})
        assert rebuilt.size == changed.size == crop.size  # the crop's own resolution
        assert np.array_equal(np.asarray(rebuilt), np.asarray(crop))  # own values: the face as it was
        assert not np.array_equal(np.asarray(rebuilt), np.asarray(changed))
        assert np.array_equal(np.asarray(changed), np.asarray(edit_face(pipe, crop, x, source[0],
                                                                        {**own, "Male": 1.0 - own["Male"]})))
        db, note = reconstruction_note(crop, rebuilt)
        assert db == float("inf") and "until a slider moves" in note
        side = min(SWEEP_TILE, crop.width)
        assert sweep_strip(pipe, crop, "Smiling", source[0]).size == ((SWEEP_STEPS + 1) * (side + 2) + 2, side + 4)
    neutral, where = own_attributes(catalog.editors[0].editor, x, can_classify=False)
    assert neutral.tolist() == [[0.5] * 3] and "No attribute classifier" in where


def test_an_aligned_crop_is_edited_as_it_is(catalog):
    """The sample faces (and uploads ticked as aligned crops) skip face finding: the edit is the result."""
    from facegen.web.photos import chosen_faces, edit_face, edit_photo, faces_note, model_input, open_crop, \
        own_attributes, sample_paths

    photo = open_crop(sample_paths()[1])
    assert photo.aligned_crop and photo.name == sample_paths()[1].name and photo.crops[0].size == (256, 256)
    assert chosen_faces(photo, None) == [0] and faces_note(photo, [0]) == ""
    pipe = catalog.editors[0].editor
    x = model_input(pipe, photo)
    source, _ = own_attributes(pipe, x, can_classify=True)
    values = {**dict(zip(NAMES, source[0])), "Smiling": 1.0 - source[0][2]}
    face, whole = edit_photo(pipe, photo, x, source, values, [0])
    assert whole is None and np.array_equal(np.asarray(face), np.asarray(edit_face(pipe, photo.crops[0], x, source[0],
                                                                                  values)))


# --------------------------------------------------------------------------- own photos (the path of edit --align)


def near_square(aligned, size) -> np.ndarray:
    """bool (H, W): photo pixels within the aligned square and the margin its change may fade over."""
    from facegen.pipelines.change import REACH

    xs, ys = np.meshgrid(np.arange(size[0]), np.arange(size[1]))
    u = aligned.matrix[0, 0] * xs + aligned.matrix[0, 1] * ys + aligned.matrix[0, 2]
    v = aligned.matrix[1, 0] * xs + aligned.matrix[1, 1] * ys + aligned.matrix[1, 2]
    reach = (REACH + 0.02) * aligned.size
    return (u > -reach) & (u < aligned.size + reach) & (v > -reach) & (v < aligned.size + reach)


def photo_with_one_face(tmp_path) -> Path:
    """A made-up ordinary photo: a full-size CelebA face, scaled, turned 5 degrees and off-centre on a canvas."""
    face = Image.open(FULLRES / "000006.jpg").convert("RGB")
    path = tmp_path / "holiday.png"  # PNG: what is read back is exactly the canvas
    place_in_canvas(face, (420, 320), placement_matrix(face.size, (420, 320), 1.4, 5.0, (60, -20))).save(path)
    return path


def photo_with_two_faces(tmp_path) -> Path:
    """Two full-size CelebA faces side by side (as in test_align.py's two-face test)."""
    left, right = (Image.open(FULLRES / name).convert("RGB") for name in ("000001.jpg", "000009.jpg"))
    canvas = Image.new("RGB", (420, 260), (90, 90, 90))
    canvas.paste(left, (20, 20))
    canvas.paste(right.resize((151, 185)), (240, 50))
    canvas.save(tmp_path / "pair.png")
    return tmp_path / "pair.png"


def _changed(after: Image.Image, before: Image.Image) -> np.ndarray:
    return np.any(np.asarray(after) != np.asarray(before), axis=-1)  # (H, W) bool


@needs_dlib
@needs_data
def test_an_ordinary_photo_is_found_aligned_edited_and_pasted_back(catalog, tmp_path):
    from facegen.align import face_mask
    from facegen.web.photos import chosen_faces, edit_photo, faces_note, model_input, open_photo, own_attributes

    photo = open_photo(photo_with_one_face(tmp_path))
    assert not photo.aligned_crop and photo.name == "holiday.png"
    assert photo.image.size == (420, 320) and len(photo.crops) == 1 and photo.crops[0].size == (256, 256)
    assert faces_note(photo, chosen_faces(photo, None)) == "1 face found."
    mask = face_mask(photo.faces[0])  # (H, W) in [0, 1]: the face
    for entry in catalog.editors:  # residual, fader and cvae
        pipe = entry.editor
        x = model_input(pipe, photo)
        source, _ = own_attributes(pipe, x, can_classify=True)
        own = dict(zip(NAMES, source[0]))
        face, whole = edit_photo(pipe, photo, x, source, {**own, "Male": 1.0 - own["Male"]}, [0])
        assert face.size == photo.crops[0].size and whole.size == (420, 320)  # the canvas's own size
        changed = _changed(whole, photo.image)
        assert changed[mask > 0.5].mean() > 0.5, entry.kind  # the face changed ...
        assert not changed[~near_square(photo.faces[0], photo.image.size)].any(), entry.kind  # ... nothing else
        _, same = edit_photo(pipe, photo, x, source, own, [0])
        assert np.array_equal(np.asarray(same), np.asarray(photo.image))  # own values: the photo as it was


@needs_dlib
def test_an_ordinary_photo_is_turned_upright_from_its_exif_tag():
    from facegen.data import load_image
    from facegen.web.photos import open_photo

    photo = open_photo(FIXTURES / "align" / "one_face_exif_rotated.jpg")
    assert photo.image.size == load_image(FIXTURES / "align" / "one_face.jpg").size and len(photo.crops) == 1


@needs_dlib
@needs_data
def test_the_face_choice_edits_one_face_or_all_of_them(catalog, tmp_path):
    from facegen.align import face_mask
    from facegen.web.photos import chosen_faces, edit_photo, faces_note, model_input, open_photo, own_attributes

    photo = open_photo(photo_with_two_faces(tmp_path))
    assert len(photo.crops) == 2 and photo.faces[0].face.box[2] < 220 < photo.faces[1].face.box[0]  # left to right
    assert chosen_faces(photo, None) == [0, 1] and chosen_faces(photo, 1) == [1]
    with pytest.raises(FacegenError, match="pair.png: there is no face 2; it has faces 0 to 1, left to right"):
        chosen_faces(photo, 2)  # the CLI's --face check and message
    assert "editing face 1" in faces_note(photo, [1]) and "editing all of them" in faces_note(photo, [0, 1])
    pipe = catalog.editors[0].editor
    x = model_input(pipe, photo)
    source, _ = own_attributes(pipe, x, can_classify=False)  # 0.5 each: a slider moved from 0.5 edits every face
    masks = [face_mask(face) > 0.5 for face in photo.faces]
    values = {**dict.fromkeys(NAMES, 0.5), "Male": 1.0}
    _, second = edit_photo(pipe, photo, x, source, values, chosen_faces(photo, 1))
    assert _changed(second, photo.image)[masks[1]].mean() > 0.5 and not _changed(second, photo.image)[masks[0]].any()
    _, both = edit_photo(pipe, photo, x, source, values, chosen_faces(photo, None))
    assert all(_changed(both, photo.image)[mask].mean() > 0.5 for mask in masks)


@needs_dlib
def test_no_face_or_a_corrupt_file_is_one_readable_line(tmp_path):
    from facegen.web.photos import ALREADY_ALIGNED, open_photo

    blank = tmp_path / "wall.png"
    Image.new("RGB", (400, 300), (120, 130, 140)).save(blank)
    with pytest.raises(FacegenError, match=r"^wall.png: no face found; .*crop closer") as error:
        open_photo(blank)
    assert ALREADY_ALIGNED in str(error.value) and "\n" not in str(error.value)
    junk = tmp_path / "broken.jpg"
    junk.write_bytes(b"\xff\xd8\xff not really a JPEG")
    with pytest.raises(FacegenError, match=r"^broken.jpg: not a readable image"):
        open_photo(junk)


def test_without_dlib_an_ordinary_photo_says_what_to_install(monkeypatch, tmp_path):
    from facegen.web import photos

    monkeypatch.setattr(photos, "can_find_faces", lambda: False)
    Image.new("RGB", (64, 64)).save(tmp_path / "me.png")
    with pytest.raises(FacegenError, match=r"needs dlib: pip install 'facegen\[align\]'; .*tick 'Already a CelebA"):
        photos.open_photo(tmp_path / "me.png")


def test_the_edited_photo_is_written_as_the_upload_was(tmp_path):
    from facegen.web.faces import OutputFolder

    folder = OutputFolder()
    image = Image.new("RGB", (40, 30), (10, 200, 30))
    assert folder.write_photo(image, "holiday-edited.JPG").suffix == ".JPG"
    png = folder.write_photo(image, "scan-edited.webp")
    assert png.name == "scan-edited.png" and np.array_equal(np.asarray(Image.open(png)), np.asarray(image))


def test_serve_without_gradio_says_how_to_install_it(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert run_cli("serve") == 2
    assert "pip install 'facegen[web]'" in capsys.readouterr().err


def test_serve_with_a_bad_model_or_a_busy_port_fails_before_starting(tmp_path, models, capsys):
    import socket

    pytest.importorskip("gradio", reason="the web extra (gradio) is not installed")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert run_cli("serve", "--model", models["cgan"], "--port", port) == 2
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert run_cli("serve", "--model", tmp_path / "missing", "--port", port) == 2
    assert "not found" in capsys.readouterr().err
    assert run_cli("serve", "--model", models["cgan"], "--concurrency", 0) == 2
    assert "--concurrency must be between 1 and 64" in capsys.readouterr().err


def test_docstring_examples_run():
    import doctest

    from facegen.web import catalog, faces, photos

    for module in (catalog, faces, photos):
        assert doctest.testmod(module).failed == 0, module.__name__
