"""`facegen evaluate` end to end on tiny models: the table, the JSON lines, the judge's accuracy beside each number."""

from __future__ import annotations

import json

import pytest

from conftest import TINY, run_cli


@pytest.fixture(scope="module")
def tiny_models(tiny_cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    common = ["--data", tiny_cache, "--steps", 2, "--batch-size", 4, "--no-progress", "--threads", 1]
    assert run_cli("train", "classifier", "--out", root / "cls", *common, *TINY["classifier"]) == 0
    assert run_cli("train", "cgan", "--out", root / "gan", "--attrs", "young,male", *common, *TINY["cgan"]) == 0
    return root / "cls", root / "gan"


def test_evaluate_a_generator(tiny_models, tiny_cache, tmp_path, capsys):
    classifier, gan = tiny_models
    out = tmp_path / "eval"
    assert run_cli("evaluate", "--model", gan, "--data", tiny_cache, "--classifier", classifier, "--n-fid", 4,
                   "--n-per-value", 3, "--out", out, "--quiet", "--label", "tiny-gan") == 0
    table = capsys.readouterr().out
    assert "control/Male" in table and "fid" in table and "judge on real (balanced)" in table
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    metrics = {row["metric"]: row for row in rows}
    assert {"classifier_accuracy/Young", "control/Young", "control/Male", "fid", "kid", "diversity/inception"} <= set(metrics)
    control = metrics["control/Male"]
    assert control["n_samples"] == 6 and 0.0 <= control["value"] <= 1.0 and "classifier_accuracy" in control
    assert control["judge"] == "plain" and "classifier_balanced_accuracy" in control
    judge = metrics["classifier_accuracy/Young"]
    assert {"recall_at_1", "recall_at_0", "balanced_accuracy"} <= set(judge) and judge["judge"] == "plain"
    assert all(row["model"] == "tiny-gan" and row["timestamp"] for row in rows)
    assert metrics["fid"]["value"] > 0


def test_evaluate_refuses_a_non_classifier_judge(tiny_models, tiny_cache, tmp_path, capsys):
    _, gan = tiny_models
    assert run_cli("evaluate", "--model", gan, "--data", tiny_cache, "--classifier", gan, "--out", tmp_path) == 2
    assert "not an attribute classifier" in capsys.readouterr().err


def test_evaluate_an_editor(tiny_cache, tmp_path, capsys):
    from conftest import FIXTURES  # noqa: F401  (the tiny cache is built from its official layout)

    root = tmp_path
    common = ["--data", tiny_cache, "--steps", 2, "--batch-size", 4, "--no-progress", "--threads", 1]
    assert run_cli("train", "classifier", "--out", root / "cls", *common, *TINY["classifier"]) == 0
    assert run_cli("train", "fader", "--out", root / "fader", "--attrs", "young,male", *common, "--set", "channels=8",
                   "--set", "latent_channels=8", "--set", "d_channels=8") == 0
    out = root / "eval"
    assert run_cli("evaluate", "--model", root / "fader", "--data", tiny_cache, "--classifier", root / "cls",
                   "--n-identity", 2, "--out", out, "--quiet") == 0
    rows = {row["metric"]: row for row in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    assert {"edit/Young", "edit/Male"} <= set(rows) and "reconstruction/psnr_db" not in rows  # changes: no redraw
    redrawn = root / "eval-redraw"
    assert run_cli("evaluate", "--model", root / "fader", "--data", tiny_cache, "--classifier", root / "cls",
                   "--n-identity", 2, "--out", redrawn, "--quiet", "--redraw") == 0
    rows = {row["metric"]: row for row in map(json.loads, (redrawn / "metrics.jsonl").read_text().splitlines())}
    assert {"reconstruction/psnr_db", "reconstruction/ssim", "edit/Young", "edit/Male"} <= set(rows)
    edit = rows["edit/Male"]
    assert 0.0 <= edit["value"] <= 1.0 and edit["n_samples"] == 2 and "others_unchanged" in edit
    assert "control/Male" not in rows and "fid" not in rows  # a fader cannot sample faces from nothing


def test_the_balanced_judge_takes_out_the_classifier_priors(tiny_models, tiny_cache, tmp_path):
    import torch

    from facegen.errors import FacegenError
    from facegen.metrics.judge import Judge

    classifier, gan = tiny_models
    plain, balanced = Judge(classifier), Judge(classifier, decision="balanced")
    rates = plain.pretrained.prior.marginals()
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    p_plain, p_balanced = plain(x), balanced(x)  # (8, 40)
    logit = lambda p: torch.log(p / (1 - p))  # noqa: E731
    for i, name in enumerate(plain.names):
        rate = min(max(rates[name], 1e-3), 1 - 1e-3)
        expected = torch.sigmoid(logit(p_plain[:, i].double()) - torch.logit(torch.tensor(rate, dtype=torch.float64)))
        assert torch.allclose(p_balanced[:, i].double(), expected, atol=1e-5), name
    assert (p_balanced != p_plain).any()
    with pytest.raises(FacegenError, match="judge"):
        Judge(classifier, decision="lenient")
    out = tmp_path / "plain"
    assert run_cli("evaluate", "--model", gan, "--data", tiny_cache, "--classifier", classifier, "--metrics", "control",
                   "--n-per-value", 2, "--judge", "balanced", "--out", out, "--quiet") == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {row["judge"] for row in rows} == {"balanced"}
