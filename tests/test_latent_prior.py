"""The cVAE's fitted prior over z: fitting, storing in the model folder, loading, and sampling by default."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_cli
from facegen.attributes import AttributePrior
from facegen.data import open_cache
from facegen.errors import FacegenError
from facegen.models.cvae import Decoder, Encoder
from facegen.models.latent_prior import GaussianMixturePrior
from facegen.pipelines.generate import GenerationPipeline
from facegen.pretrained import load_pretrained, save_latent_prior, save_pretrained
from facegen.training.latent_prior import codes_for_fit, fit_gaussian_mixture, fit_latent_prior

Z_DIM = 8


@pytest.fixture(scope="module")
def tiny_cvae(tiny_cache, tmp_path_factory) -> Path:
    """An untrained 16 px cVAE with z_dim 8, written as a model folder (no prior over z yet)."""
    torch.manual_seed(0)
    cache = open_cache(tiny_cache)
    names = ["Young", "Male", "Smiling"]
    settings = {"n_attributes": len(names), "size": 16, "z_dim": Z_DIM, "channels": 32}
    columns = [cache.attribute_names.index(n) for n in names]
    folder = tmp_path_factory.mktemp("cvae") / "model"
    save_pretrained(folder, model="cvae", size=16, attribute_names=names,
                    modules={"encoder": (settings, Encoder(**settings)), "decoder": (settings, Decoder(**settings))},
                    prior=AttributePrior.from_labels(cache.labels[:, columns], names))
    return folder


@pytest.fixture(scope="module")
def fitted_cvae(tiny_cvae, tiny_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fitted") / "model"
    fit_latent_prior(str(tiny_cvae), str(tiny_cache), out=str(out), components=1, temperature=0.9)
    return out


def test_em_finds_two_clusters_and_the_full_covariance_of_one():
    torch.manual_seed(0)
    a = torch.randn(400, 2) @ torch.tensor([[1.0, 0.0], [0.8, 0.5]]) + torch.tensor([-5.0, 0.0])
    b = torch.randn(200, 2) * 0.5 + torch.tensor([5.0, 2.0])
    prior, info = fit_gaussian_mixture(torch.cat([a, b]), components=2, covariance="full", seed=1)
    order = prior.means[:, 0].argsort()
    torch.testing.assert_close(prior.means[order], torch.tensor([[-5.0, 0.0], [5.0, 2.0]]), atol=0.2, rtol=0)
    torch.testing.assert_close(prior.weights[order], torch.tensor([2 / 3, 1 / 3]), atol=0.01, rtol=0)
    cov = prior.scale_tril[order[0]] @ prior.scale_tril[order[0]].T
    torch.testing.assert_close(cov, torch.cov(a.T), atol=0.05, rtol=0)  # EM's spread of the big cluster = a's own
    assert info["components"] == 2 and info["iterations"] >= 1
    diag, _ = fit_gaussian_mixture(a, components=1, covariance="diag")
    assert torch.count_nonzero(diag.scale_tril[0] - torch.diag(diag.scale_tril[0].diagonal())) == 0


def test_sampling_shape_seed_and_temperature():
    prior, _ = fit_gaussian_mixture(torch.randn(500, 3) * 2 + 1, components=1)
    z = prior.sample(4000, torch.Generator().manual_seed(0))
    assert z.shape == (4000, 3) and z.dtype == torch.float32
    assert torch.equal(z, prior.sample(4000, torch.Generator().manual_seed(0)))  # same seed, same codes
    cold = prior.sample(4000, torch.Generator().manual_seed(0), temperature=0.5)
    torch.testing.assert_close((cold - prior.means).std(0), 0.5 * (z - prior.means).std(0))
    assert prior.log_prob(z[:5]).shape == (5,)


def test_a_conditional_prior_moves_codes_with_the_attributes():
    torch.manual_seed(0)
    y = torch.randint(0, 2, (600, 2)).float()
    z = torch.randn(600, 3) * 0.1 + y @ torch.tensor([[3.0, 0.0, 0.0], [0.0, -2.0, 0.0]])  # z carries y
    prior, info = fit_gaussian_mixture(z, components=1, y=y)
    assert info["conditional"] and prior.n_attributes == 2
    torch.testing.assert_close(prior.attribute_shift, torch.tensor([[3.0, 0.0, 0.0], [0.0, -2.0, 0.0]]),
                               atol=0.05, rtol=0)
    asked = torch.tensor([[1.0, 0.0]]).repeat(500, 1)
    drawn = prior.sample(500, torch.Generator().manual_seed(0), y=asked)
    torch.testing.assert_close(drawn.mean(0), torch.tensor([3.0, 0.0, 0.0]), atol=0.05, rtol=0)
    assert drawn.std(0).max() < 0.15  # only the spread that y does not explain is left
    with pytest.raises(AssertionError, match="this prior is conditional"):
        prior.sample(3)


@pytest.mark.parametrize("codes, components, covariance, message", [
    (torch.randn(10, 3), 6, "full", "at least 12 codes"),
    (torch.full((10, 3), float("nan")), 1, "full", "finite"),
    (torch.randn(10, 3), 1, "spherical", "covariance must be full or diag"),
])
def test_bad_fits_are_refused(codes, components, covariance, message):
    with pytest.raises(FacegenError, match=message):
        fit_gaussian_mixture(codes, components=components, covariance=covariance)


def test_codes_for_fit_means_or_samples():
    mu, logvar = torch.zeros(5, 2), torch.zeros(5, 2)
    assert torch.equal(codes_for_fit(mu, logvar), mu)
    assert codes_for_fit(mu, logvar, codes="samples", draws=3).shape == (15, 2)
    with pytest.raises(FacegenError, match="codes must be"):
        codes_for_fit(mu, logvar, codes="medians")


def test_the_prior_is_saved_in_the_folder_and_loaded_with_the_model(tiny_cvae, fitted_cvae):
    before, after = load_pretrained(tiny_cvae), load_pretrained(fitted_cvae)
    assert before.latent_prior is None
    prior = after.latent_prior
    assert isinstance(prior, GaussianMixturePrior) and prior.z_dim == Z_DIM and prior.temperature == 0.9
    config = json.loads((fitted_cvae / "config.json").read_text())
    assert config["latent_prior"] == {"z_dim": Z_DIM, "components": 1, "temperature": 0.9, "n_attributes": 0}
    assert config["info"]["latent_prior"]["fitted_to"] == "means"
    for name in ("encoder", "decoder"):  # the networks are copied as they were
        for key, value in before.modules[name].state_dict().items():
            assert torch.equal(value, after.modules[name].state_dict()[key])
    assert not list(fitted_cvae.glob("*.pt")) and not list(fitted_cvae.glob("*.pkl"))  # tensors, never a pickle
    # Fitted again in place: replaced, not duplicated.
    save_latent_prior(fitted_cvae, GaussianMixturePrior(z_dim=Z_DIM, components=2))
    assert load_pretrained(fitted_cvae).latent_prior.components == 2
    save_latent_prior(fitted_cvae, prior)


def test_a_conditional_prior_is_stored_and_given_the_faces_attributes(tiny_cvae, tiny_cache, tmp_path):
    out = tmp_path / "model"
    fit_latent_prior(str(tiny_cvae), str(tiny_cache), out=str(out), conditional=True)
    pipe = GenerationPipeline.from_pretrained(out)
    prior = pipe.pretrained.latent_prior
    assert prior.n_attributes == 3 and prior.attribute_shift.shape == (3, Z_DIM)
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert torch.equal(pipe.noise(2, torch.Generator().manual_seed(1), y=y),
                       prior.sample(2, torch.Generator().manual_seed(1), y=y))
    assert pipe("smiling=1", n=2, generator=torch.Generator().manual_seed(0)).x.shape == (2, 3, 16, 16)


def test_generation_uses_the_fitted_prior_by_default(fitted_cvae):
    pipe = GenerationPipeline.from_pretrained(fitted_cvae)
    assert pipe.z_prior == "fitted"
    expected = pipe.pretrained.latent_prior.sample(3, torch.Generator().manual_seed(5))
    assert torch.equal(pipe.noise(3, torch.Generator().manual_seed(5)), expected)
    y = torch.rand(3, 3)
    x = pipe.sample(y, torch.Generator().manual_seed(5))
    assert x.shape == (3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(x, pipe.network(expected, y).clamp(-1, 1))  # the faces of the fitted codes
    normal = GenerationPipeline(pipe.pretrained, z_prior="normal")
    plain = torch.randn(3, Z_DIM, generator=torch.Generator().manual_seed(5))
    assert torch.equal(normal.noise(3, torch.Generator().manual_seed(5)), plain)
    out = pipe("smiling=1", n=4, generator=torch.Generator().manual_seed(0))
    assert len(out.images) == 4


def test_cli_generate_with_and_without_the_fitted_prior(fitted_cvae, tiny_cvae, tmp_path, capsys):
    for z_prior in ("fitted", "normal"):
        path = tmp_path / f"{z_prior}.png"
        assert run_cli("generate", "smiling=1", "-n", 4, "--model", fitted_cvae, "--z-prior", z_prior, "-o", path) == 0
        assert json.loads(path.with_suffix(".json").read_text())["z_prior"] == z_prior
    assert (tmp_path / "fitted.png").read_bytes() != (tmp_path / "normal.png").read_bytes()
    assert run_cli("generate", "-n", 2, "--model", tiny_cvae, "-o", tmp_path / "plain.png") == 0  # no prior: N(0, I)
    capsys.readouterr()
    assert run_cli("generate", "-n", 2, "--model", tiny_cvae, "--z-prior", "fitted", "-o", tmp_path / "x.png") == 2
    err = capsys.readouterr().err.strip()
    assert "no fitted prior" in err and len(err.splitlines()) == 1


def _corrupt(folder: Path, target: Path, *, tensors=None, settings=None) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(folder, target)
    if tensors:
        weights = load_file(str(target / "model.safetensors"))
        save_file(weights | tensors, str(target / "model.safetensors"))
    if settings:
        config = json.loads((target / "config.json").read_text())
        config["latent_prior"] |= settings
        (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.mark.parametrize("change, message", [
    ({"tensors": {"latent_prior.weights": torch.tensor([float("nan")])}}, "not finite"),
    ({"tensors": {"latent_prior.weights": torch.tensor([0.5])}}, "not summing to 1"),
    ({"tensors": {"latent_prior.scale_tril": torch.zeros(1, Z_DIM, Z_DIM)}}, "scale is not positive"),
    ({"settings": {"z_dim": 4}}, "latent_prior z_dim is 4 but the decoder's is 8"),
    ({"settings": {"components": 3}}, "does not match config.json for latent_prior"),
    ({"settings": {"temperature": 0}}, "bad settings for latent_prior"),
    ({"settings": {"shape": "round"}}, "unknown setting"),
    ({"settings": {"n_attributes": 2}}, "latent_prior n_attributes is 2 but attribute_names holds 3"),
])
def test_a_broken_prior_is_refused_in_one_line(fitted_cvae, tmp_path, change, message):
    broken = _corrupt(fitted_cvae, tmp_path / "broken", **change)
    with pytest.raises(FacegenError, match=message) as error:
        load_pretrained(broken)
    assert "\n" not in str(error.value)


def test_bad_pipeline_options_and_fits_are_refused(fitted_cvae, tiny_cvae, tiny_cache, tmp_path):
    pretrained = load_pretrained(fitted_cvae)
    with pytest.raises(FacegenError, match="z_prior must be"):
        GenerationPipeline(pretrained, z_prior="uniform")
    with pytest.raises(FacegenError, match="temperature must be"):
        GenerationPipeline(pretrained, temperature=-1.0)
    pipe = GenerationPipeline(pretrained)  # a temperature for one call: the prior's own (0.9) unless given
    assert pipe.default_temperature == 0.9 and GenerationPipeline(pretrained, z_prior="normal").default_temperature == 1
    y = torch.zeros(3, len(pipe.attribute_names))
    assert torch.equal(pipe.sample(y, torch.Generator().manual_seed(1)),
                       pipe.sample(y, torch.Generator().manual_seed(1), temperature=0.9))
    assert not torch.equal(pipe.sample(y, torch.Generator().manual_seed(1)),
                           pipe.sample(y, torch.Generator().manual_seed(1), temperature=0.2))
    with pytest.raises(FacegenError, match="temperature must be"):
        pipe.sample(y, temperature=True)
    with pytest.raises(FacegenError, match="temperature must be"):
        fit_latent_prior(str(tiny_cvae), str(tiny_cache), out=str(tmp_path / "m"), temperature=0)
    with pytest.raises(FacegenError, match="at least"):
        fit_latent_prior(str(tiny_cvae), str(tiny_cache), out=str(tmp_path / "m"), components=50)
    assert not (tmp_path / "m").exists()


def test_the_script_fits_a_model_folder(tiny_cvae, tiny_cache, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("fit_cvae_prior", REPO / "scripts" / "fit_cvae_prior.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "model"
    assert script.main(["--model", str(tiny_cvae), "--data", str(tiny_cache), "--out", str(out),
                        "--covariance", "diag"]) == 0
    assert load_pretrained(out).latent_prior is not None
    assert script.main(["--model", str(tiny_cvae), "--data", str(tmp_path / "nowhere")]) == 2
    assert load_pretrained(tiny_cvae).latent_prior is None  # a failed fit writes nothing
