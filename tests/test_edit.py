"""The edit pipeline and `facegen edit` / `facegen sweep`, on tiny untrained models and the fixture photos."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FIXTURES, run_cli
from facegen.attributes import CELEBA_ATTRIBUTES
from facegen.errors import FacegenError
from facegen.models.classifier import AttributeClassifier
from facegen.models.fader import Decoder, Encoder
from facegen.pipelines import EditPipeline
from facegen.pretrained import save_pretrained

ATTRS = ["Young", "Male", "Smiling"]
CELEBA_PHOTO = FIXTURES / "official" / "img_align_celeba" / "000001.jpg"  # labels: Young 1, Male 0, Smiling 1
OTHER_PHOTO = FIXTURES / "custom" / "a.jpg"  # not in a CelebA folder: needs the classifier


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny fader (16 px, 3 attributes) and a tiny 40-attribute classifier, as model folders."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    kwargs = {"size": 16, "channels": 8, "latent_channels": 8}
    save_pretrained(root / "fader", model="fader", size=16, attribute_names=ATTRS,
                    modules={"encoder": (kwargs, Encoder(**kwargs)),
                             "decoder": (kwargs | {"n_attributes": 3}, Decoder(n_attributes=3, **kwargs))})
    classifier_kwargs = {"n_attributes": 40, "size": 16, "channels": 8}
    save_pretrained(root / "classifier", model="classifier", size=16, attribute_names=list(CELEBA_ATTRIBUTES),
                    modules={"classifier": (classifier_kwargs, AttributeClassifier(**classifier_kwargs))})
    return root


@pytest.fixture(autouse=True)
def no_shipped_models(monkeypatch, tmp_path):
    """Tests must not depend on whether a shipped classifier is installed yet."""
    monkeypatch.setattr("facegen.pretrained.SHIPPED_DIR", tmp_path / "no-weights")


def _edit(models, *args):
    return run_cli("edit", *args, "--model", models / "fader")


def test_edit_one_celeba_photo_uses_its_labels(models, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert _edit(models, CELEBA_PHOTO, "male=1", "young=0.3", "-o", out) == 0
    captured = capsys.readouterr()
    assert "list_attr_celeba.txt" in captured.err and "CelebA" in captured.out
    image = Image.open(out)
    assert image.size == Image.open(CELEBA_PHOTO).size and image.mode == "RGB"  # the photo's own resolution


def test_api_keeps_unnamed_attributes_and_flips(models):
    pipe = EditPipeline.from_pretrained(models / "fader")
    out = pipe.edit([CELEBA_PHOTO], "male=1 young=0.3")
    assert out.source_attributes.tolist() == [[1.0, 0.0, 1.0]] and out.sources[0].startswith("labels")
    assert out.target_attributes.tolist() == [[pytest.approx(0.3), 1.0, 1.0]]  # Smiling kept
    flipped = pipe.edit([CELEBA_PHOTO], flip=["smiling", "female"])
    assert flipped.target_attributes.tolist() == [[1.0, 1.0, 0.0]]
    with pytest.raises(FacegenError, match="both set to a value and flipped"):
        pipe.edit([CELEBA_PHOTO], "male=1", flip="male")


def test_no_attribute_gives_the_photo_back_and_redraw_the_reconstruction(models):
    pipe = EditPipeline.from_pretrained(models / "fader")
    out = pipe.edit(CELEBA_PHOTO)
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(Image.open(CELEBA_PHOTO).convert("RGB")))
    assert not out.change.any() and out.sources == ["not needed"]
    redraw = EditPipeline.from_pretrained(models / "fader", redraw=True)
    out = redraw.edit(CELEBA_PHOTO)
    x = redraw.load(CELEBA_PHOTO)
    expected = redraw.decode(redraw.encode(x), torch.tensor([[1.0, 0.0, 1.0]]))
    assert torch.equal(out.x, expected) and out.images[0].size == (16, 16)  # the study's way: the decode
    assert redraw.encode(x).shape == (1, 8, 8, 8) and out.x.shape == (1, 3, 16, 16)


def test_a_change_is_the_difference_of_two_decodes_added_to_the_photo(models):
    pipe = EditPipeline.from_pretrained(models / "fader")
    x = pipe.load(CELEBA_PHOTO)
    out = pipe.edit(CELEBA_PHOTO, "male=1")
    z, y = pipe.encode(x), torch.tensor([[1.0, 0.0, 1.0]])
    expected = pipe.decode(z, torch.tensor([[1.0, 1.0, 1.0]])) - pipe.decode(z, y)
    assert torch.allclose(out.change, expected) and torch.allclose(out.x, (x + expected).clamp(-1, 1))
    photo = np.asarray(Image.open(CELEBA_PHOTO).convert("RGB")).astype(int)
    edited = np.asarray(out.images[0]).astype(int)
    assert edited.shape == photo.shape and np.abs(edited - photo).max() > 0


def test_a_request_naming_everything_needs_no_source_when_redrawn(models):
    pipe = EditPipeline.from_pretrained(models / "fader", redraw=True)
    out = pipe.edit(torch.zeros(2, 3, 40, 40), {"young": 1, "male": 0, "smiling": 0.5})
    assert out.sources == ["not needed"] * 2 and len(out.images) == 2


def test_other_photos_need_the_classifier(models, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert _edit(models, OTHER_PHOTO, "male=0", "-o", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--classifier" in err
    assert _edit(models, OTHER_PHOTO, "male=0", "-o", out, "--classifier", models / "classifier") == 0
    assert "classifier" in capsys.readouterr().err and out.is_file()


@pytest.mark.parametrize("name", ["b_gray.jpg", "c_alpha.png"])
def test_grayscale_and_rgba_photos_are_converted(models, tmp_path, name):
    out = tmp_path / "out.png"
    assert _edit(models, FIXTURES / "custom" / name, "--flip", "male", "-o", out,
                 "--classifier", models / "classifier") == 0
    assert Image.open(out).mode == "RGB"


def test_batch_edit_of_a_folder_keeps_names(models, tmp_path):
    out_dir = tmp_path / "edited"
    folder = FIXTURES / "official" / "img_align_celeba"
    assert _edit(models, folder, "--flip", "male", "--out-dir", out_dir, "--batch-size", 4) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(p.name for p in folder.iterdir())


def test_a_corrupt_file_among_many_is_reported_and_the_rest_done(models, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("000001.jpg", "000002.jpg"):
        shutil.copy(FIXTURES / "official" / "img_align_celeba" / name, folder / name)
    (folder / "broken.jpg").write_text("not an image")
    out_dir = tmp_path / "edited"
    assert _edit(models, folder, "smiling=0", "--out-dir", out_dir, "--classifier", models / "classifier") == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert sorted(p.name for p in out_dir.iterdir()) == ["000001.jpg", "000002.jpg"]


def test_bad_input_is_one_line_and_exit_2(models, tmp_path, capsys):
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("hello")
    cases = [
        (not_image, "male=0"),                       # not an image
        (CELEBA_PHOTO, "wizard=1"),                  # unknown attribute
        (CELEBA_PHOTO, "male=1.5"),                  # out of range without --extrapolate
        (tmp_path / "missing.jpg", "male=0"),        # no such file
    ]
    for photo, request in cases:
        assert _edit(models, photo, request, "-o", tmp_path / "o.png") == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("facegen: error:"), err
    assert _edit(models, CELEBA_PHOTO, "male=1.5", "--extrapolate", "-o", tmp_path / "o.png") == 0
    assert _edit(models, CELEBA_PHOTO, CELEBA_PHOTO.parent, "-o", tmp_path / "o.png") == 2  # several, need --out-dir
    assert _edit(models, CELEBA_PHOTO, "-o", CELEBA_PHOTO) == 2  # never overwrite the input


def test_sweep_writes_one_row_per_attribute(models, tmp_path):
    out = tmp_path / "strip.png"
    assert run_cli("sweep", CELEBA_PHOTO, "--attr", "male", "--attr", "smiling,young", "--steps", 4,
                   "--model", models / "fader", "-o", out) == 0
    side = min(Image.open(CELEBA_PHOTO).size)  # tiles at the photo's own resolution
    assert Image.open(out).size == (2 + 5 * (side + 2), 2 + 3 * (side + 2))  # photo + 4 steps, 3 rows
    assert run_cli("sweep", CELEBA_PHOTO, "--attr", "male", "--high", "2", "--model", models / "fader",
                   "-o", out) == 2
    pipe = EditPipeline.from_pretrained(models / "fader")
    grid = pipe.sweep(CELEBA_PHOTO, ["male"], steps=3, low=-1, high=2, extrapolate=True)
    assert grid.size == (2 + 4 * (side + 2), 2 + side + 2)
    tiles = np.asarray(grid)[2:2 + side].reshape(side, -1, 3)
    photo_tile, first = tiles[:, 2:2 + side], tiles[:, 2 + (side + 2):2 + (side + 2) + side]
    assert not np.array_equal(photo_tile, first)  # male=-1 changes the face ...
    redrawn = EditPipeline.from_pretrained(models / "fader", redraw=True).sweep(CELEBA_PHOTO, ["male"], steps=3)
    assert redrawn.size == (2 + 4 * 18, 2 + 18)  # ... and the study's way shows the decodes at the model's size


def test_photo_attributes_read_labels_from_any_celeba_layout(models):
    pipe = EditPipeline.from_pretrained(models / "fader")
    for photo in (FIXTURES / "archive/Img/img_align_celeba/000001.jpg",
                  FIXTURES / "kaggle/img_align_celeba/img_align_celeba/000001.jpg"):
        y, sources = pipe.photo_attributes([photo])
        assert np.array_equal(y, [[1.0, 0.0, 1.0]]) and sources[0].startswith("labels"), (photo, sources)


def test_the_cvae_edits_through_the_same_pipeline(tmp_path):
    from facegen.models.cvae import Decoder as CVAEDecoder, Encoder as CVAEEncoder

    kwargs = {"n_attributes": 3, "size": 16, "z_dim": 8, "channels": 32}
    save_pretrained(tmp_path / "cvae", model="cvae", size=16, attribute_names=ATTRS,
                    modules={"encoder": (kwargs, CVAEEncoder(**kwargs)), "decoder": (kwargs, CVAEDecoder(**kwargs))})
    pipe = EditPipeline.from_pretrained(tmp_path / "cvae")
    x = pipe.load(CELEBA_PHOTO)
    assert pipe.encode(x, torch.tensor([[1.0, 0.0, 1.0]])).shape == (1, 8)
    out = pipe.edit([CELEBA_PHOTO], "male=1")  # encoded with the photo's own labels
    assert out.target_attributes.tolist() == [[1.0, 1.0, 1.0]] and out.images[0].size == Image.open(CELEBA_PHOTO).size
    with pytest.raises(FacegenError, match="pass y"):
        pipe.encode(x)


def test_photos_are_preprocessed_exactly_like_the_training_cache(models):
    from facegen.data import prepare_image, to_tensor

    pipe = EditPipeline.from_pretrained(models / "fader")
    assert torch.equal(pipe.load(CELEBA_PHOTO), to_tensor(prepare_image(CELEBA_PHOTO, 16)[None]))
