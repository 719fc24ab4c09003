"""Trained models on disk: `config.json` + `model.safetensors`, never a pickle.

The config holds the constructor arguments of each module, so loading
rebuilds the modules from it and then fills in the weights:

    folder/
      config.json        {"model": "cgan", "preset": "default", "size": 64,
                          "attribute_names": [...], "modules": {"generator": {...kwargs}}}
      model.safetensors  "generator.<param>" ..., plus "prior_patterns", "prior_counts"

A cVAE may also carry a fitted prior over its codes z (`GaussianMixturePrior`,
written by `save_latent_prior`): its constructor arguments under
"latent_prior" in config.json and its tensors as "latent_prior.<buffer>"
(float32 always), loaded as `Pretrained.latent_prior`.

Shipped models live in `facegen/weights/<name>/` and are found by name (the
kind's name, see `facegen.kinds`); anything else is a path.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facegen import __version__
from facegen.attributes import AttributePrior
from facegen.errors import FacegenError
from facegen.files import atomic_write
from facegen.validation import check_model_config

FORMAT = "facegen-model"
FORMAT_VERSION = 1
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
TRAINING_NAME = "training.safetensors"  # optional: what training needs beside the inference modules (a GAN's critic)
TRAINING_MODULES = "training_modules"  # config key of those modules' constructor settings
SHIPPED_DIR = Path(__file__).resolve().parent / "weights"
_PRIOR_KEYS = ("prior_patterns", "prior_counts")
LATENT_PRIOR = "latent_prior"  # config key and tensor prefix of a fitted prior over z


def module_classes(model: str, preset: str = "default") -> dict[str, type[nn.Module]]:
    """The inference modules of a model kind, by name (its row of `facegen.kinds`; no class names in files)."""
    from facegen.kinds import kind

    return kind(model).module_classes(preset)


@dataclass
class Pretrained:
    """A loaded model: its config, its modules (eval mode), and the label prior it was trained with."""

    path: Path
    config: dict
    modules: dict[str, nn.Module]
    prior: AttributePrior | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    latent_prior: nn.Module | None = None  # a GaussianMixturePrior over z, on the CPU, where one was fitted

    @property
    def kind(self) -> str:
        return self.config["model"]

    @property
    def attribute_names(self) -> list[str]:
        return list(self.config["attribute_names"])

    @property
    def size(self) -> int:
        return int(self.config["size"])


def save_pretrained(folder: str | Path, *, model: str, preset: str = "default", size: int,
                    attribute_names: list[str], modules: dict[str, tuple[dict, nn.Module]],
                    prior: AttributePrior | None = None, info: dict | None = None,
                    dtype: torch.dtype = torch.float32, latent_prior: nn.Module | None = None,
                    training_modules: dict[str, tuple[dict, nn.Module | dict]] | None = None) -> Path:
    """Write config.json + model.safetensors atomically (a reader never sees half a model).

    `modules` maps a name to (constructor kwargs, module). Floating-point
    weights are stored as `dtype` (float16 for the shipped models); a
    `latent_prior` is stored as float32 whatever `dtype` says.

    `training_modules` (same form, or a state dict in place of the module) are what a later run needs to go on training
    the model but inference never uses, such as a GAN's discriminator: without
    it a continued GAN faces a new critic, which set its generator back in every
    try (docs/notes/cgan.md). They go into training.safetensors beside the model,
    in float32 whatever `dtype` says, and `load_pretrained` never reads them.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, (_, module) in modules.items():
        for key, value in module.state_dict().items():
            value = value.detach().cpu()
            tensors[f"{name}.{key}"] = (value.to(dtype) if value.is_floating_point() else value).contiguous()
    if prior is not None:
        for key, value in prior.to_arrays().items():
            tensors[key] = torch.from_numpy(np.ascontiguousarray(value))
    config = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "facegen_version": __version__,
        "model": model, "preset": preset, "size": size, "attribute_names": list(attribute_names),
        "modules": {name: kwargs for name, (kwargs, _) in modules.items()}, **({"info": info} if info else {}),
    }
    if latent_prior is not None:
        config[LATENT_PRIOR] = latent_prior_settings(latent_prior)
        tensors |= _latent_prior_tensors(latent_prior)
    training = None
    if training_modules:
        config[TRAINING_MODULES] = {name: kwargs for name, (kwargs, _) in training_modules.items()}
        training = {name: module if isinstance(module, dict) else module.state_dict()
                    for name, (_, module) in training_modules.items()}
    return _write_model(folder, tensors, config, training)


def _write_model(folder: Path, tensors: dict[str, torch.Tensor], config: dict,
                 training: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
    """The weights, then the config, each atomically: a config names only weights already in place. `training`
    (module name -> state dict) goes into training.safetensors as it is; a stale one (from an earlier export into the
    same folder) goes when the new config names none."""
    from safetensors.torch import save_file

    atomic_write(folder / WEIGHTS_NAME, lambda path: save_file(tensors, str(path), metadata={"format": FORMAT}))
    if training is not None:
        flat = {f"{name}.{key}": value.detach().cpu().contiguous()
                for name, state in training.items() for key, value in state.items()}
        atomic_write(folder / TRAINING_NAME, lambda path: save_file(flat, str(path), metadata={"format": FORMAT}))
    elif TRAINING_MODULES not in config:
        (folder / TRAINING_NAME).unlink(missing_ok=True)
    atomic_write(folder / CONFIG_NAME, lambda path: path.write_text(json.dumps(config, indent=2) + "\n"))
    return folder


def latent_prior_settings(prior: nn.Module) -> dict:
    """The constructor arguments of a GaussianMixturePrior, as config.json holds them."""
    return {"z_dim": int(prior.z_dim), "components": int(prior.components), "temperature": float(prior.temperature),
            "n_attributes": int(prior.n_attributes)}


def _latent_prior_tensors(prior: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{LATENT_PRIOR}.{key}": value.detach().cpu().float().contiguous()
            for key, value in prior.state_dict().items()}


def save_latent_prior(folder: str | Path, prior: nn.Module, *, info: dict | None = None,
                      source: str | Path | None = None) -> Path:
    """Put a fitted latent prior into a model folder (replacing any there), leaving every other tensor as stored.

    With `source` (another model folder) the model is copied from there first,
    so a shipped model can be given a prior in a new folder. `info` (how the
    prior was fitted) goes into config.json's "info".
    """
    from safetensors.torch import load_file

    source = resolve_model_path(source or folder)
    config = json.loads((source / CONFIG_NAME).read_text())
    tensors = {key: value for key, value in load_file(str(source / WEIGHTS_NAME)).items()
               if not key.startswith(f"{LATENT_PRIOR}.")}
    tensors |= _latent_prior_tensors(prior)
    config[LATENT_PRIOR] = latent_prior_settings(prior)
    if info is not None:
        config["info"] = {**config.get("info", {}), LATENT_PRIOR: info}
    check_model_config(config, str(Path(folder) / CONFIG_NAME))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    training = load_training_modules(source) if TRAINING_MODULES in config else None
    return _write_model(folder, tensors, config, training)


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A shipped model's name (`cgan`, `fader`, ...) or a folder / config.json / model.safetensors path."""
    text = str(name_or_path)
    shipped = SHIPPED_DIR / text
    if "/" not in text and os.sep not in text and (shipped / CONFIG_NAME).is_file():
        return shipped
    path = Path(text).expanduser()
    if path.is_file() and path.name in (CONFIG_NAME, WEIGHTS_NAME):
        path = path.parent
    if not path.exists():
        names = sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / CONFIG_NAME).is_file()) if SHIPPED_DIR.is_dir() else []
        raise FacegenError(f"model {text!r} not found: give a shipped model ({', '.join(names) or 'none installed'}) "
                           "or a folder holding config.json and model.safetensors")
    if (path / "model" / CONFIG_NAME).is_file():  # a training run folder: use its exported model
        path = path / "model"
    if not (path / CONFIG_NAME).is_file() or not (path / WEIGHTS_NAME).is_file():
        raise FacegenError(f"{path} is not a facegen model: it needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    return path


def load_pretrained(name_or_path: str | Path, *, device: str | torch.device = "cpu") -> Pretrained:
    """Rebuild the modules from config.json and load model.safetensors into them, checking that they match."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve_model_path(name_or_path)
    try:
        config = json.loads((path / CONFIG_NAME).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise FacegenError(f"{path / CONFIG_NAME} is not readable JSON ({_first_line(error)[:160]})") from None
    config = check_model_config(config, str(path / CONFIG_NAME))  # kinds, types, ranges: before any module exists
    try:
        tensors = load_file(str(path / WEIGHTS_NAME), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise FacegenError(f"{path / WEIGHTS_NAME} is not a valid safetensors file ({_first_line(error)}); "
                           "facegen loads weights only from safetensors, never from pickles") from None
    modules: dict[str, nn.Module] = {}
    for name, cls in module_classes(config["model"], config.get("preset", "default")).items():
        if name not in config.get("modules", {}):
            raise FacegenError(f"{path / CONFIG_NAME} has no settings for the {name} of a {config['model']} model")
        modules[name] = _build(path, name, cls, config["modules"][name], tensors).to(device).eval()
    latent_prior = None
    if LATENT_PRIOR in config:  # sampled on the CPU, whatever the device: the same codes on any machine
        from facegen.models.latent_prior import GaussianMixturePrior

        latent_prior = _build(path, LATENT_PRIOR, GaussianMixturePrior, config[LATENT_PRIOR], tensors).eval()
        problem = latent_prior.problem()
        if problem:
            raise FacegenError(f"{path / WEIGHTS_NAME}: the latent prior {problem}; fit it again "
                               "(scripts/fit_cvae_prior.py) or remove \"latent_prior\" from config.json")
    prior = None
    if all(key in tensors for key in _PRIOR_KEYS):
        prior = AttributePrior.from_arrays({key: tensors[key].numpy() for key in _PRIOR_KEYS}, config["attribute_names"])
    extra = {k: v for k, v in tensors.items() if "." not in k and k not in _PRIOR_KEYS}
    return Pretrained(path=path, config=config, modules=modules, prior=prior, extra=extra, latent_prior=latent_prior)


def load_training_modules(name_or_path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """The training modules a model folder keeps beside its inference ones (module name -> state dict; {} when it
    keeps none): what `--init-from` gives a recipe so that a GAN goes on against its own critic."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve_model_path(name_or_path)
    config = json.loads((path / CONFIG_NAME).read_text())
    names = config.get(TRAINING_MODULES) or {}
    if not names:
        return {}
    try:
        tensors = load_file(str(path / TRAINING_NAME), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise FacegenError(f"{path / TRAINING_NAME} is not a valid safetensors file ({_first_line(error)}); "
                           f"{CONFIG_NAME} names training modules ({', '.join(names)}) that should be in it") from None
    modules = {name: {key[len(name) + 1:]: value for key, value in tensors.items() if key.startswith(f"{name}.")}
               for name in names}
    empty = [name for name, state in modules.items() if not state]
    if empty:
        raise FacegenError(f"{path / TRAINING_NAME} holds no weights for {', '.join(empty)}, which {CONFIG_NAME} names")
    return modules


def _build(path: Path, name: str, cls: type[nn.Module], kwargs: dict, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """One module rebuilt from its settings and filled with the "<name>." tensors, refusing any mismatch."""
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated until the weights file agrees
            module = cls(**kwargs)
    except (TypeError, ValueError, AssertionError) as error:
        raise FacegenError(f"{path / CONFIG_NAME}: bad settings for {name} ({_first_line(error)})") from None
    prefix = f"{name}."
    state = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
                  else f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, config says {tuple(expected[wrong[0]].shape)}")
        raise FacegenError(f"{path / WEIGHTS_NAME} does not match {CONFIG_NAME} for {name}: {detail}")
    module = cls(**kwargs)
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return module


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
