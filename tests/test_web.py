"""The browser app's computations and `facegen serve`'s start-up checks, without a server.

Models here are tiny and untrained (random weights written with `save_pretrained`): the app's code does
not care what the faces look like, only that a slider changes them and the same seed repeats them.
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

from conftest import run_cli
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
    return {kind: tiny_model(kind, root / kind) for kind in ("cgan", "fader", "cvae", "classifier")}


@pytest.fixture(scope="module")
def catalog(models):
    from facegen.web.catalog import Catalog

    return Catalog.load([models["cgan"], models["fader"], models["cvae"], models["classifier"]], shipped=False)


def test_catalog_sorts_models_by_what_they_can_do(catalog, models):
    assert [e.kind for e in catalog.generators] == ["cgan", "cvae"]
    assert [e.kind for e in catalog.editors] == ["fader", "cvae"]
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
    from facegen.web.photos import (SWEEP_STEPS, edit_face, model_input, own_attributes, read_photo,
                                    reconstruction_note, sample_paths, sweep_strip)

    pixels = read_photo(sample_paths()[0])
    for entry in catalog.editors:
        pipe = entry.editor
        x = model_input(pipe, pixels)
        assert x.shape == (1, 3, 16, 16)
        source, where = own_attributes(pipe, x, can_classify=True)
        assert source.shape == (3,) and set(source.tolist()) <= {0.0, 1.0} and "classifier" in where
        own = dict(zip(NAMES, source))
        rebuilt = edit_face(pipe, x, source, own)
        changed = edit_face(pipe, x, source, {**own, "Male": 1.0 - own["Male"]})
        assert rebuilt.shape == (1, 3, 16, 16) and not torch.equal(rebuilt, changed)
        assert torch.equal(rebuilt, edit_face(pipe, x, source, own))  # deterministic: the same slider, the same face
        db, note = reconstruction_note(x, rebuilt)
        assert note.startswith("**The model reconstructs this picture poorly") == (db < 15.0)
        assert sweep_strip(pipe, x, "Smiling", source).size == ((SWEEP_STEPS + 1) * 18 + 2, 20)
    neutral, where = own_attributes(catalog.editors[0].editor, x, can_classify=False)
    assert neutral.tolist() == [0.5] * 3 and "No attribute classifier" in where


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
