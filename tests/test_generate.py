"""`facegen generate` and the generation pipeline, on a tiny cGAN trained in seconds."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, run_cli


@pytest.fixture(scope="module")
def tiny_model(tiny_cache, tmp_path_factory):
    run = tmp_path_factory.mktemp("gen") / "run"
    assert run_cli("train", "cgan", "--data", tiny_cache, "--out", run, "--steps", 2, "--batch-size", 4,
                   "--attrs", "young,male,blond_hair", "--no-progress", "--threads", 1, *TINY["cgan"]) == 0
    return run / "model"


def test_generate_writes_a_grid_and_the_values_beside_it(tiny_model, tmp_path):
    out = tmp_path / "faces.png"
    assert run_cli("generate", "young=1", "blond=1", "female=1", "-n", 6, "--seed", 3, "--model", tiny_model,
                   "-o", out) == 0
    grid = Image.open(out)
    assert grid.size == (6 * 18 + 2, 18 + 2)  # 16 px faces, 2 px padding
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["request"] == {"Young": 1.0, "Blond_Hair": 1.0, "Male": 0.0}
    assert len(sidecar["faces"]) == 6 and all(face["Male"] == 0.0 for face in sidecar["faces"])


def test_same_seed_same_faces_and_out_dir(tiny_model, tmp_path):
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    for path, seed in ((a, 1), (b, 1), (c, 2)):
        assert run_cli("generate", "male=1", "-n", 4, "--seed", seed, "--model", tiny_model, "-o", path) == 0
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    assert not np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(c)))
    assert run_cli("generate", "-n", 3, "--model", tiny_model, "--out-dir", tmp_path / "many") == 0
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == [
        "attributes.json", "face-0000.png", "face-0001.png", "face-0002.png"]


def test_python_api_and_continuous_values(tiny_model):
    from facegen.pipelines import GenerationPipeline

    pipe = GenerationPipeline.from_pretrained(tiny_model)
    out = pipe({"Male": 0.5}, n=2, generator=torch.Generator().manual_seed(0))
    assert len(out.images) == 2 and out.images[0].size == (16, 16)
    assert np.allclose(out.attributes[:, pipe.attribute_names.index("Male")], 0.5)
    y = torch.zeros(1, 3)
    x0, x1, xh = (pipe.sample(y + v, torch.Generator().manual_seed(0)) for v in (0.0, 1.0, 0.5))
    assert not torch.equal(x0, x1) and not torch.equal(xh, x0) and not torch.equal(xh, x1)


@pytest.mark.parametrize("args, message", [
    (["blnd=1"], "did you mean"),
    (["young=1.7"], "outside [0, 1]"),
    (["-n", "0"], "between 1 and"),
    (["-n", "100000"], "between 1 and"),
    (["-o", "/nonexistent/folder/faces.png"], "does not exist"),
    (["-o", "faces.txt"], "must end in"),
])
def test_bad_requests_are_one_line_and_exit_2(tiny_model, args, message, capsys):
    assert run_cli("generate", "--model", tiny_model, *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_pickle_or_mismatched_model_is_refused(tiny_model, tmp_path, capsys):
    import shutil

    fake = tmp_path / "pickled"
    shutil.copytree(tiny_model, fake)
    (fake / "model.safetensors").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    assert run_cli("generate", "--model", fake, "-o", tmp_path / "x.png") == 2
    assert "never from pickles" in capsys.readouterr().err

    wrong = tmp_path / "wrong"
    shutil.copytree(tiny_model, wrong)
    config = json.loads((wrong / "config.json").read_text())
    config["modules"]["generator"]["channels"] = 64
    (wrong / "config.json").write_text(json.dumps(config))
    assert run_cli("generate", "--model", wrong, "-o", tmp_path / "y.png") == 2
    assert "does not match" in capsys.readouterr().err
    assert run_cli("generate", "--model", tmp_path / "nothing-here") == 2
