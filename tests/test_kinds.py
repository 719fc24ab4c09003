"""The table of model kinds: every kind trains, exports, loads and runs the commands it claims, and no others."""

from __future__ import annotations

import json

import pytest

from conftest import FIXTURES, TINY, run_cli
from facegen.kinds import CAPABILITIES, KINDS, all_presets, kind, names

PHOTO = FIXTURES / "official" / "img_align_celeba" / "000001.jpg"  # a CelebA file: its labels are its own values
OTHER_PHOTO = FIXTURES / "custom" / "a.jpg"  # not in a CelebA folder: a classifier reads its own values
SETTINGS = {  # tiny widths, so that each kind trains in seconds
    "cgan": TINY["cgan"],
    "classifier": TINY["classifier"],
    "fader": ["--set", "channels=8", "--set", "latent_channels=8", "--set", "d_channels=8"],
    "cvae": ["--set", "z_dim=8", "--set", "channels=32", "--set", "d_channels=32"],
    "residual": ["--set", "channels=8", "--set", "max_channels=16", "--set", "blocks=1"],
}


def test_the_table_agrees_with_the_code_it_names():
    from facegen.cli import build_parser
    from facegen.models import cgan
    from facegen.training import fader
    from facegen.training.method import Method

    assert set(SETTINGS) == set(KINDS)
    for row in KINDS.values():
        assert issubclass(row.method_class(), Method)
        assert set(row.can) <= set(CAPABILITIES) and row.can
        assert (row.sampler is not None) == row.can_generate
        for preset in row.presets or ("default",):
            assert row.module_classes(preset)
    assert KINDS["cgan"].presets == tuple(cgan.PRESETS) and KINDS["fader"].presets == fader.PRESETS
    train = build_parser().parse_args(["train", "cgan"])
    assert train.model == "cgan"
    assert set(all_presets()) == {p for row in KINDS.values() for p in row.presets}
    assert names(can="edit", encoder_decoder=True) == ("cgan", "fader", "cvae")
    assert all(row.can_generate and row.encoder_decoder for row in KINDS.values() if row.inverts)


def test_an_unknown_kind_is_refused_in_one_line():
    from facegen.errors import FacegenError

    with pytest.raises(FacegenError, match="unknown model kind 'gan'; choose cgan, residual, fader, cvae or "
                                           "classifier"):
        kind("gan")


def test_each_kind_takes_its_own_presets(tiny_cache, tmp_path, capsys):
    run = tmp_path / "paper"  # refused before the table: --preset offered only the cGAN's presets
    assert run_cli("train", "fader", "--preset", "paper", "--data", tiny_cache, "--out", run, "--steps", 1,
                   "--batch-size", 4, "--attrs", "young,male", "--no-progress", "--threads", 1, *SETTINGS["fader"]) == 0
    assert json.loads((run / "model" / "config.json").read_text())["preset"] == "paper"
    assert run_cli("train", "fader", "--preset", "study2018", "--data", tiny_cache, "--out", tmp_path / "r") == 2
    assert "not a fader preset; choose default or paper" in capsys.readouterr().err
    assert run_cli("train", "classifier", "--preset", "default", "--data", tiny_cache, "--out", tmp_path / "r") == 2
    assert "has no presets" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tiny_cache, tmp_path_factory):
    """Every kind, trained for two steps on the six-image cache and exported (the residual editor from the cGAN)."""
    root = tmp_path_factory.mktemp("kinds")
    common = ["--data", tiny_cache, "--batch-size", 4, "--steps", 2, "--no-progress", "--threads", 1,
              "--attrs", "young,male", "--sample-every", 2, "--checkpoint-every", 2]
    for name in KINDS:  # the table's order puts the cGAN before the residual editor that learns from it
        extra = ["--set", f"teacher={json.dumps(str(root / 'cgan'))}"] if name == "residual" else []
        assert run_cli("train", name, "--out", root / name, *common, *SETTINGS[name], *extra) == 0, name
    return root


@pytest.mark.parametrize("name", list(KINDS))
def test_every_kind_trains_exports_loads_and_runs_what_it_claims(name, trained, tiny_cache, tmp_path, monkeypatch):
    from facegen.pipelines import EditPipeline
    from facegen.pretrained import load_pretrained

    monkeypatch.setattr("facegen.pretrained.SHIPPED_DIR", tmp_path / "no-weights")
    model = trained / name / "model"
    loaded = load_pretrained(model)
    assert loaded.kind == name and set(loaded.modules) == set(KINDS[name].modules)
    row = KINDS[name]
    generate = run_cli("generate", "young=1", "-n", 2, "--model", model, "-o", tmp_path / "faces.png")
    assert generate == (0 if row.can_generate else 2)
    edit = run_cli("edit", PHOTO, "male=1", "--model", model, "-o", tmp_path / "edited.png")
    assert edit == (0 if row.can_edit else 2)
    redraw = run_cli("edit", PHOTO, "male=1", "--model", model, "--redraw", "-o", tmp_path / "redrawn.png")
    assert redraw == (0 if row.can_edit and row.encoder_decoder else 2)
    metrics = ["accuracy"] + (["control"] if row.can_generate else []) + (["edit"] if row.can_edit else [])
    assert run_cli("evaluate", "--model", model, "--data", tiny_cache, "--classifier",
                   trained / "classifier" / "model", "--metrics", ",".join(metrics), "--n-per-value", 1,
                   "--n-edit", 2, "--n-identity", 0, "--out", tmp_path / "eval", "--quiet") == 0
    if row.can_classify:  # it reads a photo's own values for an editor
        out = EditPipeline.from_pretrained(trained / "fader" / "model", classifier=model).edit([OTHER_PHOTO], "male=1")
        assert out.sources[0].startswith("classifier")
