"""--init-from an exported model (a shipped name or a model folder): training goes on from the weights a user has."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY, run_cli
from facegen.pretrained import load_pretrained
from facegen.training.loop import _init_checkpoint, _load_weights, method_class
from facegen.training.method import build_method

ATTRS = "young,male,smiling"
SMALL = {"fader": ["--set", "channels=8", "--set", "latent_channels=8", "--set", "d_channels=8"],
         "cvae": ["--set", "z_dim=8", "--set", "channels=32", "--set", "d_channels=32"]}


def _train(kind, cache, out, *extra):
    return run_cli("train", kind, "--data", cache, "--attrs", ATTRS, "--out", out, "--batch-size", 4,
                   "--threads", 1, "--no-progress", "--log-every", 1, "--checkpoint-every", 2, "--sample-every", 2,
                   *TINY.get(kind, SMALL.get(kind, [])), *extra)


def _configured(run):
    """The recipe of a finished run, configured afresh on the CPU (new weights, new optimizers)."""
    from lightning.fabric import Fabric

    options = json.loads((run / "training_options.json").read_text())
    model = load_pretrained(run / "model")
    method = build_method(method_class(options["model"]), attribute_names=options["attributes"],
                          size=options["size"], prior=model.prior, batch_size=options["batch_size"],
                          steps=options["steps"], method_options=options["method_options"])
    torch.manual_seed(1)
    method.configure(Fabric(accelerator="cpu", devices=1))
    return method, model


@pytest.mark.parametrize("kind", ["cgan", "fader", "cvae", "classifier", "residual"])
def test_an_exported_model_fills_the_recipe_it_was_exported_from(kind, tiny_cache, tmp_path):
    """Every exported module lands where the recipe trains and averages it; the export then gives it back."""
    source, extra = tmp_path / "source", []
    if kind == "residual":  # the editor distils a cGAN of the same attributes
        assert _train("cgan", tiny_cache, tmp_path / "teacher", "--steps", 1) == 0
        extra = ["--set", f"teacher={json.dumps(str(tmp_path / 'teacher'))}", "--set", "channels=8",
                 "--set", "max_channels=16", "--set", "blocks=1"]
    assert _train(kind, tiny_cache, source, "--steps", 2, *extra) == 0
    method, model = _configured(source)
    before = {name: {k: v.clone() for k, v in module.state_dict().items()} for name, (_, module) in
              method.export().items()}
    _load_weights(method, kind, _init_checkpoint(method, str(source / "model")), str(source / "model"))
    for name, (_, module) in method.export().items():
        loaded, theirs = module.state_dict(), model.modules[name].state_dict()
        assert loaded.keys() == theirs.keys()
        for key in loaded:
            torch.testing.assert_close(loaded[key].float(), theirs[key].float(), msg=f"{kind} {name}.{key}")
        assert any(not torch.equal(before[name][k], loaded[k]) for k in loaded if loaded[k].is_floating_point())
    state = method.state_dict()["modules"]  # the trained copies too (a GAN's generator, an EMA's source)
    wanted = method.from_export({name: module.state_dict() for name, module in model.modules.items()})
    assert set(wanted) <= set(state) and set(state) - set(wanted) <= set(method.fresh_modules)
    for name, weights in wanted.items():
        for key, value in weights.items():
            torch.testing.assert_close(state[name][key].float(), value.float(), msg=f"{kind} {name}.{key}")


def test_a_gan_goes_on_from_its_exported_generator(tiny_cache, tmp_path, capsys):
    """While only the discriminator learns (d_warmup), the generator stays exactly the exported one."""
    source = tmp_path / "source"
    assert _train("cgan", tiny_cache, source, "--steps", 2) == 0
    assert _train("cgan", tiny_cache, tmp_path / "warm", "--steps", 2, "--set", "d_warmup=2",
                  "--init-from", source / "model") == 0
    mine = load_pretrained(tmp_path / "warm" / "model").modules["generator"].state_dict()
    theirs = load_pretrained(source / "model").modules["generator"].state_dict()
    for key in theirs:
        torch.testing.assert_close(mine[key].float(), theirs[key].float())
    options = json.loads((tmp_path / "warm" / "training_options.json").read_text())
    assert options["init_from"] == str(source / "model")
    stats = [json.loads(line) for line in (tmp_path / "warm" / "stats.jsonl").read_text().splitlines()]
    assert all("loss_g" not in row and "loss_d" in row for row in stats)  # the generator never stepped
    assert "val/d_heldout" in stats[-1] and "val/d_heldout" not in stats[0]  # held-out realness at sample steps
    last = stats[-1]  # and the training photos' by the same discriminator at the same step
    assert abs(last["val/d_gap"] - (last["val/d_train"] - last["val/d_heldout"])) < 1e-6

    assert _train("cgan", tiny_cache, tmp_path / "on", "--steps", 1, "--init-from", source / "model") == 0
    moved = load_pretrained(tmp_path / "on" / "model").modules["generator"].state_dict()
    assert any(not torch.allclose(moved[k].float(), theirs[k].float()) for k in theirs if "running" not in k)

    capsys.readouterr()
    assert _train("fader", tiny_cache, tmp_path / "wrong", "--steps", 1, "--init-from", source / "model") == 2
    err = capsys.readouterr().err
    assert "is a cgan model, not fader" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "wrong").exists()
    assert _train("cgan", tiny_cache, tmp_path / "bad", "--steps", 1, "--set", "d_warmup=-1") == 2
    capsys.readouterr()
    assert _train("cgan", tiny_cache, tmp_path / "typo", "--steps", 1, "--init-from", "cgna") == 2
    err = capsys.readouterr().err
    assert "no checkpoint or model at cgna" in err and "cgan" in err and len(err.strip().splitlines()) == 1

    import shutil  # a run folder whose checkpoints are gone still holds its exported model

    shutil.rmtree(source / "checkpoints")
    assert _train("cgan", tiny_cache, tmp_path / "from-run", "--steps", 1, "--set", "d_warmup=1",
                  "--init-from", source) == 0
    mine = load_pretrained(tmp_path / "from-run" / "model").modules["generator"].state_dict()
    for key in theirs:
        torch.testing.assert_close(mine[key].float(), theirs[key].float())


def test_a_gan_goes_on_against_the_discriminator_kept_beside_its_model(tiny_cache, tmp_path, capsys):
    """The exported cGAN keeps its discriminator in training.safetensors (float32; inference never reads it) and
    --init-from that model starts the new run's discriminator from it; shipping keeps it; without the file the
    discriminator starts anew, and a damaged one is refused in one line."""
    import shutil

    from facegen.pretrained import TRAINING_NAME, load_training_modules
    from facegen.training.checkpoint import load_checkpoint

    source = tmp_path / "source"
    assert _train("cgan", tiny_cache, source, "--steps", 2) == 0
    kept = load_training_modules(source / "model")["discriminator"]
    trained = load_checkpoint(source)["state"]["modules"]["discriminator"]
    assert kept.keys() == trained.keys()
    for key in trained:
        assert kept[key].dtype == trained[key].dtype
        torch.testing.assert_close(kept[key], trained[key], msg=key)
    config = json.loads((source / "model" / "config.json").read_text())
    assert config["training_modules"]["discriminator"]["n_attributes"] == 3
    assert set(load_pretrained(source / "model").modules) == {"generator"}  # inference builds only the generator

    method, _ = _configured(source)
    _load_weights(method, "cgan", _init_checkpoint(method, str(source / "model")), str(source / "model"))
    for key, value in method.D.state_dict().items():
        torch.testing.assert_close(value, trained[key], msg=key)

    import importlib.util  # scripts/ship_model.py carries it along into a (here temporary) shipped folder
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("ship_model", Path(__file__).parents[1] / "scripts" / "ship_model.py")
    ship_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship_model)
    ship_model.SHIPPED_DIR = tmp_path / "shipped"
    shipped = ship_model.ship(str(source / "model"), "cgan-test")
    for key, value in load_training_modules(shipped)["discriminator"].items():
        torch.testing.assert_close(value, trained[key], msg=key)

    bare = tmp_path / "bare"  # a model exported before discriminators were kept: a new one, as before
    shutil.copytree(source / "model", bare)
    (bare / TRAINING_NAME).unlink()
    config.pop("training_modules")
    (bare / "config.json").write_text(json.dumps(config))
    fresh, _ = _configured(source)
    new_weights = {k: v.clone() for k, v in fresh.D.state_dict().items()}
    _load_weights(fresh, "cgan", _init_checkpoint(fresh, str(bare)), str(bare))
    for key, value in fresh.D.state_dict().items():
        torch.testing.assert_close(value, new_weights[key], msg=key)

    (source / "model" / TRAINING_NAME).write_bytes(b"not safetensors")
    capsys.readouterr()
    assert _train("cgan", tiny_cache, tmp_path / "damaged", "--steps", 1, "--init-from", source / "model") == 2
    err = capsys.readouterr().err.strip()
    assert TRAINING_NAME in err and len(err.splitlines()) == 1, err


def test_init_from_grows_a_generator_by_refine_blocks_that_start_as_the_identity(tiny_cache, tmp_path):
    """--set g_refine_blocks=N --init-from a model without them: the grown generator draws exactly the faces of the
    exported one until it trains, its discriminator is the kept one, and the blocks are in the new export."""
    from facegen.training.checkpoint import load_checkpoint

    source = tmp_path / "source"
    assert _train("cgan", tiny_cache, source, "--steps", 2) == 0
    assert _train("cgan", tiny_cache, tmp_path / "grown", "--steps", 2, "--set", "d_warmup=2",
                  "--set", "g_refine_blocks=1", "--init-from", source / "model") == 0
    grown = load_pretrained(tmp_path / "grown" / "model").modules["generator"]
    theirs = load_pretrained(source / "model").modules["generator"]
    assert len(grown.refine) == 1 and len(theirs.refine) == 0
    z, y = torch.randn(4, theirs.z_dim), torch.rand(4, 3)
    torch.testing.assert_close(grown(z, y), theirs(z, y))
    assert _train("cgan", tiny_cache, tmp_path / "trained", "--steps", 2, "--set", "g_refine_blocks=1",
                  "--init-from", source / "model") == 0
    trained = load_pretrained(tmp_path / "trained" / "model").modules["generator"]
    assert trained.refine[0].conv2.weight.abs().sum() > 0  # the blocks learn
    assert _train("cgan", tiny_cache, tmp_path / "from-checkpoint", "--steps", 2, "--set", "d_warmup=2",
                  "--set", "g_refine_blocks=1", "--init-from", source / "checkpoints" / "last.pt") == 0
    grown = load_pretrained(tmp_path / "from-checkpoint" / "model").modules["generator"]
    torch.testing.assert_close(grown(z, y), theirs(z, y))  # a run's checkpoint grows the same way
    kept = load_checkpoint(source)["state"]["modules"]["discriminator"]
    method, _ = _configured(tmp_path / "grown")
    _load_weights(method, "cgan", _init_checkpoint(method, str(source / "model")), str(source / "model"))
    for key, value in method.D.state_dict().items():
        torch.testing.assert_close(value, kept[key], msg=key)


def test_an_anchor_holds_the_generator_near_a_models_faces_and_lets_go_over_anchor_steps(tiny_cache, tmp_path, capsys):
    """anchor: the L1 distance to another cGAN's faces (same z and y) is added to the generator's loss, logged as
    `anchor`, at anchor_weight until d_warmup ends and then falling linearly to 0 over anchor_steps; a model of
    another kind or other attributes is refused in one line before the run folder exists."""
    source = tmp_path / "source"
    assert _train("cgan", tiny_cache, source, "--steps", 2) == 0
    anchored = ["--set", f"anchor={json.dumps(str(source / 'model'))}", "--set", "anchor_weight=5"]
    assert _train("cgan", tiny_cache, tmp_path / "held", "--steps", 3, "--init-from", source / "model",
                  "--set", "d_warmup=1", "--set", "anchor_steps=4", *anchored) == 0
    stats = [json.loads(line) for line in (tmp_path / "held" / "stats.jsonl").read_text().splitlines()]
    assert "anchor" not in stats[0] and stats[1]["anchor"] == 0.0  # the first G step starts at the anchor's faces
    assert stats[2]["anchor"] > 0.0  # and leaves them
    method, _ = _configured(tmp_path / "held")
    assert [method._anchor_weight(s) for s in (0, 1, 3, 5, 9)] == [5.0, 5.0, 2.5, 0.0, 0.0]

    assert _train("fader", tiny_cache, tmp_path / "fader", "--steps", 1) == 0
    for wrong, words in (([f"anchor={json.dumps(str(tmp_path / 'fader' / 'model'))}", "anchor_weight=1"], "is a fader"),
                         ([f"anchor={json.dumps(str(source / 'model'))}"], "anchor_weight"),
                         (["anchor_weight=1"], "anchor=")):
        capsys.readouterr()
        settings = [arg for setting in wrong for arg in ("--set", setting)]
        assert _train("cgan", tiny_cache, tmp_path / "wrong", "--steps", 1, *settings) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "wrong").exists()


def test_the_generators_learning_rate_ramps_up_after_the_discriminators_warmup(tiny_cache, tmp_path):
    """g_warmup: G's first steps after d_warmup are small (fresh Adam moments would take full-size ones)."""
    source = tmp_path / "source"
    assert _train("cgan", tiny_cache, source, "--steps", 1, "--set", "d_warmup=1", "--set", "g_warmup=4") == 0
    method, _ = _configured(source)
    x, y = torch.rand(4, 3, 16, 16) * 2 - 1, torch.randint(0, 2, (4, 3)).float()
    rates = []
    for step in range(6):
        method.training_step(x, y, step)
        rates.append(method.opt_g.param_groups[0]["lr"])
    lr = method.lr_g
    assert rates[0] == lr  # step 0: D alone, G's optimizer untouched
    assert rates[1:] == pytest.approx([lr / 4, lr / 2, 3 * lr / 4, lr, lr])


def test_a_cvae_decoder_starts_from_a_cgan_generator(tiny_cache, tmp_path, capsys):
    """decoder_from: the cVAE's decoder starts as the cGAN's generator; while decoder_warmup lasts only the encoder
    (and the critic) learn, so the exported decoder keeps the generator's weights exactly."""
    gan = tmp_path / "gan"
    assert _train("cgan", tiny_cache, gan, "--steps", 1) == 0
    start = ["--set", f"decoder_from={json.dumps(str(gan / 'model'))}", "--set", "channels=32", "--set",
             "d_channels=32"]
    assert run_cli("train", "cvae", "--data", tiny_cache, "--attrs", ATTRS, "--out", tmp_path / "vae",
                   "--batch-size", 4, "--threads", 1, "--no-progress", "--steps", 2, "--log-every", 1,
                   "--set", "decoder_warmup=2", *start) == 0
    decoder = load_pretrained(tmp_path / "vae" / "model").modules["decoder"]
    generator = load_pretrained(gan / "model").modules["generator"]
    theirs = dict(generator.named_parameters())
    for key, value in decoder.named_parameters():
        torch.testing.assert_close(value, theirs[key], msg=key)
    # A decoder of another shape is refused in one line, before the run folder exists.
    _refused_in_one_line(capsys, tiny_cache, tmp_path / "wide", ["--set", f"decoder_from={json.dumps(str(gan / 'model'))}",
                                                                 "--set", "channels=64"], "channels", "decoder_from")


def test_a_cvae_critic_starts_from_a_cgan_discriminator_and_measures_reconstruction(tiny_cache, tmp_path, capsys):
    """critic_from: the cVAE's critic starts as a cGAN run's discriminator (VAE-GAN from a trained GAN), and
    feature_weight adds the reconstruction measured in that critic's features, logged as recon_feature."""
    from facegen.training.checkpoint import load_checkpoint

    gan = tmp_path / "gan"
    assert _train("cgan", tiny_cache, gan, "--steps", 1) == 0
    start = ["--set", f"critic_from={json.dumps(str(gan))}", "--set", "channels=32", "--set", "d_channels=32",
             "--set", "feature_weight=1.0"]
    method, _ = _configured(gan)  # the cGAN recipe, for its attribute names and label prior
    critic = load_checkpoint(gan)["state"]["modules"]["discriminator"]
    from facegen.training.cvae import CVAEMethod
    from lightning.fabric import Fabric

    vae = build_method(CVAEMethod, attribute_names=method.attribute_names, size=16, prior=method.prior, batch_size=4,
                       steps=2, method_options={"critic_from": str(gan), "channels": 32, "d_channels": 32,
                                                "feature_weight": 1.0, "z_dim": 8})
    vae.configure(Fabric(accelerator="cpu", devices=1))
    for key, value in vae.D.state_dict().items():
        torch.testing.assert_close(value, critic[key], msg=key)
    x, y = torch.rand(4, 3, 16, 16) * 2 - 1, torch.randint(0, 2, (4, 3)).float()
    losses = vae.training_step(x, y, 0)
    assert losses["recon_feature"] > 0
    assert vae._feature_distance(x, x).item() == 0.0  # a perfect reconstruction costs nothing
    assert run_cli("train", "cvae", "--data", tiny_cache, "--attrs", ATTRS, "--out", tmp_path / "vae",
                   "--batch-size", 4, "--threads", 1, "--no-progress", "--steps", 2, "--log-every", 1, *start) == 0
    assert "recon_feature" in (tmp_path / "vae" / "stats.jsonl").read_text()
    # A critic of another width is refused in one line, before the run folder exists.
    _refused_in_one_line(capsys, tiny_cache, tmp_path / "wide", ["--set", f"critic_from={json.dumps(str(gan))}",
                                                                 "--set", "d_channels=64"], "d_channels=32", "critic_from")


def test_a_residual_editors_critic_starts_from_a_cgan_discriminator(tiny_cache, tmp_path, capsys):
    """critic_from for the residual editor: its critic of edited photos starts as the teacher run's discriminator,
    whose attribute head has already learnt; a critic of another width or norm is refused before the run starts."""
    from lightning.fabric import Fabric

    from facegen.training.checkpoint import load_checkpoint
    from facegen.training.residual import ResidualMethod

    gan = tmp_path / "gan"
    assert _train("cgan", tiny_cache, gan, "--steps", 1) == 0
    method, _ = _configured(gan)
    options = {"teacher": str(gan / "model"), "channels": 8, "max_channels": 16, "blocks": 1,
               "critic_from": str(gan), "critic_channels": 32, "critic_weight": 1.0, "attribute_weight": 1.0}
    editor = build_method(ResidualMethod, attribute_names=method.attribute_names, size=16, prior=method.prior,
                          batch_size=4, steps=2, method_options=options)
    editor.configure(Fabric(accelerator="cpu", devices=1))
    critic = load_checkpoint(gan)["state"]["modules"]["discriminator"]
    for key, value in editor.critic.state_dict().items():
        torch.testing.assert_close(value, critic[key], msg=key)
    x, y = torch.rand(4, 3, 16, 16) * 2 - 1, torch.randint(0, 2, (4, 3)).float()
    losses = editor.training_step(x, y, 0)
    assert {"realness", "attribute", "critic_labels"} <= losses.keys()
    teacher = ["--set", f"teacher={json.dumps(str(gan / 'model'))}", "--set", "channels=8", "--set", "max_channels=16",
               "--set", "blocks=1", "--set", "critic_weight=1", "--set", f"critic_from={json.dumps(str(gan))}"]
    _refused_in_one_line(capsys, tiny_cache, tmp_path / "wide", [*teacher, "--set", "critic_channels=64"],
                         "critic_channels=32", "critic_from", kind="residual")
    _refused_in_one_line(capsys, tiny_cache, tmp_path / "r1", [*teacher, "--set", "critic_channels=32", "--set",
                                                               'critic_norm="r1"'], "critic_from", kind="residual")


def _refused_in_one_line(capsys, cache, out, settings, *words, kind="cvae"):
    """`facegen train <kind>` with these settings exits 2 with one line that names `words`, and makes no run
    folder."""
    capsys.readouterr()
    assert run_cli("train", kind, "--data", cache, "--attrs", ATTRS, "--out", out, *settings) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and all(word in message for word in words), message
    assert not out.exists()
