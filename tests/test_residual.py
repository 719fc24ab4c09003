"""The residual editor: change fields, distillation from a cGAN, and edits applied to photos at their own size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FIXTURES, TINY, run_cli
from facegen.models.residual import ResidualEditor, apply_fields
from facegen.pipelines.change import REACH, apply_change, carry_up

PHOTO = FIXTURES / "official" / "img_align_celeba" / "000001.jpg"  # 89 x 109 (CelebA at half size)


@pytest.fixture(scope="module")
def distilled(tiny_cache, tmp_path_factory):
    """A tiny cGAN teacher, and a residual editor distilled from it for three steps."""
    root = tmp_path_factory.mktemp("residual")
    common = ["--data", tiny_cache, "--batch-size", 4, "--no-progress", "--threads", 1, "--attrs", "young,male"]
    assert run_cli("train", "cgan", "--out", root / "teacher", "--steps", 2, *common, *TINY["cgan"]) == 0
    assert run_cli("train", "residual", "--out", root / "editor", "--steps", 3, *common,
                   "--set", f"teacher={json.dumps(str(root / 'teacher'))}", "--set", "channels=8",
                   "--set", "max_channels=16", "--set", "blocks=1", "--set", "style_dim=2") == 0
    return root


def test_fields_are_zero_for_no_change_and_linear_in_the_slider():
    torch.manual_seed(0)
    editor = ResidualEditor(n_attributes=3, size=16, channels=8, max_channels=16, blocks=1)
    x, y = torch.rand(2, 3, 16, 16) * 2 - 1, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    fields = editor(x, y)
    assert fields.shape == (2, 3, 3, 16, 16)
    assert not apply_fields(fields, y, y).any()  # nothing asked: exactly nothing
    full, half = y.clone(), y.clone()
    full[:, 1], half[:, 1] = 1 - y[:, 1], 0.5
    assert torch.allclose(apply_fields(fields, y, half), 0.5 * apply_fields(fields, y, full), atol=1e-6)
    far = y.clone()
    far[:, 1] = 2 * (1 - y[:, 1]) - y[:, 1]  # twice as far: --extrapolate
    assert torch.allclose(apply_fields(fields, y, far), 2 * apply_fields(fields, y, full), atol=1e-5)
    with pytest.raises(AssertionError, match="expected x"):
        editor(torch.zeros(1, 3, 32, 32), y[:1])


def test_the_style_code_picks_a_look_and_its_prior_mean_is_the_default():
    torch.manual_seed(0)
    editor = ResidualEditor(n_attributes=3, size=16, channels=8, max_channels=16, blocks=1, style_dim=4)
    for module in editor.modules():  # as if trained: the conditioning (zero at the start) matters
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.5)
    x, y = torch.rand(2, 3, 16, 16) * 2 - 1, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert torch.equal(editor(x, y), editor(x, y, torch.zeros(2, 4)))  # no code: the prior's mean
    assert not torch.allclose(editor(x, y), editor(x, y, torch.ones(2, 4)))


def test_a_change_is_carried_up_to_the_photo_and_fades_past_the_square():
    photo = np.full((160, 90, 3), 100, np.uint8)  # the centre square is rows 35..124
    out = apply_change(photo, torch.full((3, 16, 16), 0.2))
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert (np.abs(out[45:115, 10:-10, 0].astype(int) - 125.5) <= 0.5).all()  # +0.2 of [-1, 1] is +25.5 levels
    margin = round(round(REACH * 16) * 90 / 16)
    assert (out[:35 - margin] == 100).all() and (out[125 + margin:] == 100).all()  # beyond the margin: untouched
    assert 100 < out[35 - margin // 2, 45, 0] < 126  # fading in the margin
    assert np.array_equal(apply_change(photo, torch.zeros(3, 16, 16)), photo)
    delta, m = carry_up(torch.zeros(3, 8, 8), 40)
    assert delta.shape == (40 + 2 * m, 40 + 2 * m, 3) and m == 5


def test_the_distilled_editor_edits_a_photo_at_its_own_resolution(distilled, monkeypatch, tmp_path):
    from facegen.pipelines import EditPipeline

    monkeypatch.setattr("facegen.pretrained.SHIPPED_DIR", tmp_path / "no-weights")
    model = distilled / "editor" / "model"
    config = json.loads((model / "config.json").read_text())
    assert config["model"] == "residual" and config["modules"]["editor"]["channels"] == 8
    assert config["modules"]["editor"]["style_dim"] == 2  # the style encoder trains but is not exported
    assert (distilled / "editor" / "samples" / "step-000003.png").is_file()
    pipe = EditPipeline.from_pretrained(model)
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    out = pipe.edit(PHOTO, "male=1")  # the photo's own labels come from its CelebA folder
    edited = np.asarray(out.images[0])
    assert edited.shape == photo.shape and not np.array_equal(edited, photo)
    assert out.sources[0].startswith("labels")
    half = pipe.edit(PHOTO, "male=0.5")
    assert torch.allclose(half.change, 0.5 * out.change, atol=1e-6)  # the slider keeps its meaning
    same = pipe.edit(PHOTO, "male=0")  # the photo's own value: nothing changes
    assert np.array_equal(np.asarray(same.images[0]), photo) and not same.change.any()


def test_edit_writes_each_photo_at_its_size_and_copies_an_unchanged_one(distilled, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("facegen.pretrained.SHIPPED_DIR", tmp_path / "no-weights")
    model = distilled / "editor" / "model"
    out = tmp_path / "out.jpg"
    assert run_cli("edit", PHOTO, "--model", model, "-o", out) == 0
    assert out.read_bytes() == PHOTO.read_bytes()  # nothing asked: the photo itself, byte for byte
    assert "copied unchanged" in capsys.readouterr().out
    assert run_cli("edit", PHOTO, "--flip", "young", "--model", model, "-o", out) == 0
    assert Image.open(out).size == Image.open(PHOTO).size and out.read_bytes() != PHOTO.read_bytes()
    assert run_cli("edit", PHOTO, "male=1", "--model", model, "--redraw", "-o", out) == 2
    assert "--redraw needs an encoder-decoder" in capsys.readouterr().err


def test_a_teacher_of_other_attributes_is_refused_in_one_line(distilled, tiny_cache, tmp_path, capsys):
    assert run_cli("train", "residual", "--data", tiny_cache, "--out", tmp_path / "r", "--steps", 1, "--attrs",
                   "young,smiling", "--batch-size", 4, "--no-progress", "--threads", 1,
                   "--set", f"teacher={json.dumps(str(distilled / 'teacher'))}") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--attrs Young,Male" in err


def test_the_change_is_warped_back_and_nothing_else_moves():
    from facegen.align.detect import Face
    from facegen.align.template import template_square
    from facegen.align.warp import align_face
    from facegen.pipelines.change import add_change

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    landmarks = template_square(100) + [150, 100]  # a face 100 px wide, upright, at (150, 100)
    aligned = align_face(image, Face(box=(150, 100, 250, 200), landmarks=landmarks, score=1.0), size=100)
    out = np.asarray(add_change(image, aligned, torch.full((3, 16, 16), 0.1))).astype(int)
    before = np.asarray(image).astype(int)
    moved = np.abs(out - before).sum(-1) > 0
    assert moved[120:180, 170:230].all()  # the middle of the face square
    assert not moved[:, :120].any() and not moved[:, 290:].any() and not moved[:60].any() and not moved[240:].any()


@pytest.mark.parametrize("norm", ["spectral", "r1"])
def test_a_critic_fine_tunes_a_distilled_editor_on_real_photos(distilled, tiny_cache, tmp_path, norm):
    """--init-from a distilled run: the critics start anew; the real photos' critic warms up alone, then the
    editor listens to it and to the pair critic."""
    from safetensors.torch import load_file

    run = tmp_path / "critic"
    assert run_cli("train", "residual", "--data", tiny_cache, "--out", run, "--steps", 3, "--attrs", "young,male",
                   "--batch-size", 4, "--no-progress", "--threads", 1, "--log-every", 1,
                   "--init-from", distilled / "editor", "--set", f"teacher={json.dumps(str(distilled / 'teacher'))}",
                   "--set", "critic_weight=0.5", "--set", "attribute_weight=2", "--set", "sparsity_weight=0.5",
                   "--set", "critic_warmup=1", "--set", "critic_channels=16", "--set", "sparsity_edge=2",
                   "--set", "pair_weight=0.05", "--set", f"critic_norm={json.dumps(norm)}",
                   "--set", "channels=8",
                   "--set", "max_channels=16", "--set", "blocks=1", "--set", "style_dim=2") == 0
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert "critic" in rows[0] and "attribute" not in rows[0]  # step 0: the critic learns alone
    assert {"attribute", "realness", "change", "l1", "critic_labels", "pair", "pairs"} <= set(rows[-1])
    assert ("r1" in rows[-1]) == (norm == "r1")  # the plain critic's smoothness comes from its R1 penalty
    config = json.loads((run / "model" / "config.json").read_text())
    assert set(config["modules"]) == {"editor"}  # the critic is for training only
    before = load_file(distilled / "editor" / "model" / "model.safetensors")
    after = load_file(run / "model" / "model.safetensors")
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)


def test_real_photos_get_one_or_two_attributes_flipped():
    from facegen.training.residual import ResidualMethod

    torch.manual_seed(0)
    method = ResidualMethod(attribute_names=["A", "B", "C", "D"], size=16, prior=None, second_flip=0.5,
                            critic_weight=1.0)
    y = torch.randint(0, 2, (500, 4)).float()
    target = method.real_edits(y)
    moved = (target != y).sum(dim=1)
    assert set(moved.tolist()) == {1, 2} and 0.4 < (moved == 2).float().mean() < 0.6
    assert ((target == 0) | (target == 1)).all()


def test_the_critic_judges_only_the_flips_of_critic_attributes():
    """critic_attributes: real photos get only those attributes flipped (one, or two of them), each of them often;
    the rest of the editor learns from the teacher alone. An unknown name is refused."""
    from facegen.training.residual import ResidualMethod

    torch.manual_seed(0)
    method = ResidualMethod(attribute_names=["A", "B", "C", "D"], size=16, prior=None, second_flip=0.5,
                            critic_weight=1.0, critic_attributes="D, B")
    y = torch.randint(0, 2, (500, 4)).float()
    target = method.real_edits(y)
    moved = target != y
    assert not moved[:, [0, 2]].any() and moved[:, 1].float().mean() > 0.5 and moved[:, 3].float().mean() > 0.5
    assert set(moved.sum(dim=1).tolist()) == {1, 2}
    alone = ResidualMethod(attribute_names=["A", "B"], size=16, prior=None, critic_weight=1.0, critic_attributes="B")
    assert ((alone.real_edits(y[:, :2]) != y[:, :2]).sum(dim=1) == 1).all()
    with pytest.raises(ValueError, match="critic_attributes names E"):
        ResidualMethod(attribute_names=["A", "B"], size=16, prior=None, critic_weight=1.0, critic_attributes="E")


@pytest.mark.parametrize("option", ["critic_weight=-1", "sparsity_weight=-0.1", "lr_critic=0", "critic_channels=0",
                                    "distil_weight=0", "pair_weight=-1", 'critic_norm="batch"', "r1_weight=-1",
                                    'critic_attributes="Bald"'])
def test_bad_critic_options_are_refused_in_one_line(tiny_cache, tmp_path, capsys, option):
    assert run_cli("train", "residual", "--data", tiny_cache, "--out", tmp_path / "r", "--steps", 1, "--attrs",
                   "young,male", "--batch-size", 4, "--no-progress", "--threads", 1, "--set", option) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and option.split("=")[0] in err
    assert not (tmp_path / "r").exists()
