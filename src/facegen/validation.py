"""One validation layer for what a user hands facegen: options, model configs, checkpoints.

Everything here turns a bad value into a one-line `FacegenError` that names
the thing to fix, before any module is built, any file is written or any
tensor is allocated. The rules are a few small tables (caps on sizes, the
kinds of each setting), so a config of the wrong shape or a width of 10^7
is refused in a millisecond instead of ending in a KeyError or an 89 GB
allocation.

    >>> check_int("--seed", 7, 0, MAX_SEED)
    7
    >>> check_int("--seed", -1, 0, MAX_SEED)
    Traceback (most recent call last):
    ...
    facegen.errors.FacegenError: --seed must be an integer between 0 and 9223372036854775807, got -1
"""

from __future__ import annotations

import argparse
import inspect
import math
from collections.abc import Callable, Mapping

from facegen.errors import FacegenError
from facegen import kinds
from facegen.kinds import KINDS

MAX_SEED = 2**63 - 1         # what torch, numpy and every seed derived from it accept
MIN_SIZE, MAX_SIZE = 16, 1024  # image side in pixels
MAX_WIDTH = 4096             # channels, latent dimensions, hidden units of any one layer
MAX_ATTRIBUTES = 1024        # attributes a model may condition on
MAX_COUNT = 10**9            # steps, images, intervals
MAX_TEXT = 200               # a string setting (a preset, an augment policy)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_int(value: object) -> bool:
    """A JSON/Python integer (a bool is not one, though Python says it is)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def check_int(name: str, value: object, low: int, high: int) -> int:
    if not is_int(value) or not low <= value <= high:
        raise FacegenError(f"{name} must be an integer between {low} and {high}, got {_show(value)}")
    return value


def check_number(name: str, value: object, low: float = -math.inf, high: float = math.inf) -> float:
    if not is_number(value) or not low <= value <= high:
        span = f"between {low:g} and {high:g}" if math.isfinite(low) and math.isfinite(high) else (
            f"at least {low:g}" if math.isfinite(low) else "finite")
        raise FacegenError(f"{name} must be a number {span}, got {_show(value)}")
    return float(value)


def check_size(name: str, value: object, low: int = MIN_SIZE) -> int:
    if not is_int(value) or value < low or value > MAX_SIZE or value & (value - 1):
        raise FacegenError(f"{name} must be a power of two between {low} and {MAX_SIZE} (64, 128, 256), "
                           f"got {_show(value)}")
    return value


# --------------------------------------------------------------------------- command-line types


def int_type(low: int, high: int) -> Callable[[str], int]:
    """An argparse `type=` for an integer in [low, high]: the refusal is argparse's one line, exit 2."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip().replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {_show(text)}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {_show(text)}")
        return value

    parse.__name__ = "integer"
    return parse


def float_type(low: float, high: float, *, open_low: bool = False) -> Callable[[str], float]:
    """An argparse `type=` for a finite number in [low, high] (or (low, high] with `open_low`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {_show(text)}") from None
        if not math.isfinite(value) or value > high or value < low or (open_low and value == low):
            bound = f"above {low:g}" if open_low else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"must be a finite number {bound} and at most {high:g}, "
                                             f"got {_show(text)}")
        return value

    parse.__name__ = "number"
    return parse


SEED = int_type(0, MAX_SEED)


# --------------------------------------------------------------------------- settings by kind


def _annotation_kinds(annotation: object, default: object) -> set[str]:
    """'int', 'float', 'str', 'bool', 'tuple', 'None' from a (string) annotation, else from the default."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if annotation is inspect.Parameter.empty:
        text = type(default).__name__
    kinds = {kind for kind in ("int", "float", "str", "bool", "tuple", "list", "None") if kind in text}
    return kinds or {"any"}


def check_setting(where: str, name: str, value: object, annotation: object, default: object) -> object:
    """One keyword argument of a module or recipe, against its annotation and the caps by name."""
    kinds = _annotation_kinds(annotation, default)
    label = f"{where} {name}"
    if value is None:
        if "None" in kinds or default is None:
            return value
        raise FacegenError(f"{label} must not be null")
    if "bool" in kinds and isinstance(value, bool):
        return value
    if "int" in kinds and is_int(value):
        high = MAX_WIDTH if any(part in name for part in ("channels", "dim", "hidden", "pool", "shortcut")) else MAX_COUNT
        sized = any(part in name for part in ("channels", "dim", "hidden", "pool", "n_attributes"))
        low = 1 if sized and default != 0 else 0  # a width whose default is 0 is an option that is off
        return check_int(label, value, low, MAX_ATTRIBUTES if name == "n_attributes" else high)
    if "float" in kinds and is_number(value):
        return check_number(label, value, 0.0, 1e6)
    if "str" in kinds and isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise FacegenError(f"{label} is a string of {len(value)} characters; at most {MAX_TEXT}")
        if name == "augment":
            check_augment(label, value)
        return value
    if name == "betas" and isinstance(value, (list, tuple)):  # Adam's: two decay rates, each in [0, 1)
        if len(value) != 2 or not all(is_number(v) and 0.0 <= v < 1.0 for v in value):
            raise FacegenError(f"{label} must be two numbers in [0, 1), like [0.5, 0.999], got {_show(value)}")
        return list(value)
    if kinds & {"tuple", "list"} and isinstance(value, (list, tuple)) and 0 < len(value) <= 16 \
            and all(is_number(v) and 0.0 <= v <= 1e6 for v in value):
        return list(value)
    if "any" in kinds:
        return value
    words = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
             "tuple": "a list of numbers", "list": "a list of numbers"}
    wanted = " or ".join(dict.fromkeys(words[kind] for kind in sorted(kinds) if kind in words)) or "a value"
    raise FacegenError(f"{label} must be {wanted}, got {_show(value)}")


def check_augment(label: str, policy: str) -> None:
    import torch

    from facegen.models.layers import diff_augment

    try:
        diff_augment(torch.zeros(1, 3, 8, 8), policy)
    except KeyError as error:
        raise FacegenError(f"{label}: unknown augmentation {error}; use translation, cutout, color "
                           "(comma-separated) or '' for none") from None


def check_keywords(where: str, values: object, function: Callable, *, skip: tuple[str, ...] = ()) -> dict:
    """A mapping of keyword arguments for `function`: known names only, each of the right kind."""
    if not isinstance(values, Mapping):
        raise FacegenError(f"{where} must be a mapping of settings, got {_show(values)}")
    parameters = {name: p for name, p in inspect.signature(function).parameters.items()
                  if p.kind == p.KEYWORD_ONLY and name not in skip}
    required = [name for name, p in parameters.items() if p.default is inspect.Parameter.empty]
    missing = [name for name in required if name not in values]
    if missing:
        raise FacegenError(f"{where} lacks {', '.join(missing)}")
    unknown = [str(name) for name in values if name not in parameters]
    if unknown:
        raise FacegenError(f"{where} has unknown setting {_show(unknown[0])}; "
                           f"known: {', '.join(sorted(parameters))}")
    return {name: check_setting(where, name, value, parameters[name].annotation, parameters[name].default)
            for name, value in values.items()}


# --------------------------------------------------------------------------- model folders


def check_model_config(config: object, where: str) -> dict:
    """The whole of a model folder's config.json, before any module is built.

    Checks the format, the kind, the preset, the size, the attribute names and
    every module's constructor arguments (known names, right types, capped
    widths, n_attributes agreeing with the names and size with the model's).
    """
    from facegen.pretrained import FORMAT, FORMAT_VERSION

    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise FacegenError(f"{where} is not a facegen model config (no \"format\": \"{FORMAT}\")")
    version = config.get("format_version", 1)
    if not is_int(version) or version < 1:
        raise FacegenError(f"{where}: format_version must be a positive integer, got {_show(version)}")
    if version > FORMAT_VERSION:
        raise FacegenError(f"{where} was written by a newer facegen (format {version}); upgrade facegen")
    kind = config.get("model")
    if not isinstance(kind, str) or kind not in KINDS:
        raise FacegenError(f"{where}: \"model\" must be one of {', '.join(KINDS)}, got {_show(kind)}")
    preset = config.get("preset", "default")
    if not isinstance(preset, str):
        raise FacegenError(f"{where}: \"preset\" must be a string, got {_show(preset)}")
    size = check_size(f"{where}: \"size\"", config.get("size"))
    names = config.get("attribute_names")
    if not isinstance(names, list) or not 1 <= len(names) <= MAX_ATTRIBUTES \
            or not all(isinstance(n, str) and 0 < len(n) <= MAX_TEXT for n in names):
        raise FacegenError(f"{where}: \"attribute_names\" must be a list of 1 to {MAX_ATTRIBUTES} names, "
                           f"got {_show(names)}")
    if len(set(names)) != len(names):
        raise FacegenError(f"{where}: \"attribute_names\" names an attribute twice")
    modules = config.get("modules")
    if not isinstance(modules, dict):
        raise FacegenError(f"{where}: \"modules\" must be a mapping of module name to settings")
    for name, cls in KINDS[kind].module_classes(preset).items():
        if name not in modules:
            raise FacegenError(f"{where} has no settings for the {name} of a {kind} model")
        kwargs = check_keywords(f"{where}: {name}", modules[name], cls.__init__)
        if "n_attributes" in kwargs and kwargs["n_attributes"] != len(names):
            raise FacegenError(f"{where}: {name} n_attributes is {kwargs['n_attributes']} but "
                               f"attribute_names holds {len(names)}")
        if "size" in kwargs and kwargs["size"] != size:
            raise FacegenError(f"{where}: {name} size is {kwargs['size']} but the model's size is {size}")
    if "latent_prior" in config:
        _check_latent_prior(config, kind, where)
    training = config.get("training_modules", {})
    if not isinstance(training, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in training.items()):
        raise FacegenError(f"{where}: \"training_modules\" must be a mapping of module name to settings")
    return config


def _check_latent_prior(config: dict, kind: str, where: str) -> None:
    """A fitted prior over z belongs to a model that samples z, and has that model's z_dim."""
    from facegen.models.latent_prior import GaussianMixturePrior

    sampler = KINDS[kind].sampler
    if sampler is None:
        raise FacegenError(f"{where}: a {kind} model samples no z, so it cannot have a \"latent_prior\"")
    kwargs = check_keywords(f"{where}: latent_prior", config["latent_prior"], GaussianMixturePrior.__init__)
    z_dim = config["modules"][sampler].get("z_dim", 128)
    if kwargs.get("z_dim", 128) != z_dim:
        raise FacegenError(f"{where}: latent_prior z_dim is {kwargs.get('z_dim', 128)} but the {sampler}'s is {z_dim}")
    if kwargs.get("n_attributes", 0) not in (0, len(config["attribute_names"])):
        raise FacegenError(f"{where}: latent_prior n_attributes is {kwargs['n_attributes']} but attribute_names "
                           f"holds {len(config['attribute_names'])}")


# --------------------------------------------------------------------------- checkpoints


def check_checkpoint(payload: dict, where: str) -> dict:
    """A resume file's plain values (method, step, options, stats) and the shape of its state."""
    method = payload.get("method")
    if not isinstance(method, str) or method not in KINDS:
        raise FacegenError(f"{where}: method must be one of {', '.join(KINDS)}, got {_show(method)}")
    check_int(f"{where}: step", payload.get("step"), 0, MAX_COUNT)
    options, state, stats = payload.get("options"), payload.get("state"), payload.get("stats")
    if not isinstance(options, dict) or not isinstance(stats, dict):
        raise FacegenError(f"{where}: options and stats must be mappings")
    if not isinstance(state, dict) or not isinstance(state.get("modules"), dict) \
            or not isinstance(state.get("optimizers"), dict):
        raise FacegenError(f"{where}: state must hold modules and optimizers")
    check_number(f"{where}: stats seconds", stats.get("seconds", 0.0), 0.0)
    check_training_options(options, where)
    return payload


def check_training_options(options: dict, where: str) -> dict:
    """The saved options of a run, as `build_options` would have made them."""
    check_size(f"{where}: size", options.get("size"))
    for name in ("steps", "batch_size", "log_every", "sample_every", "checkpoint_every"):
        check_int(f"{where}: {name}", options.get(name), 1, MAX_COUNT)
    check_int(f"{where}: seed", options.get("seed"), 0, MAX_SEED)
    for name in ("data", "run_dir"):
        if not isinstance(options.get(name), str):
            raise FacegenError(f"{where}: {name} must be a path, got {_show(options.get(name))}")
    names = options.get("attributes")
    if not isinstance(names, list) or not 1 <= len(names) <= MAX_ATTRIBUTES \
            or not all(isinstance(n, str) for n in names):
        raise FacegenError(f"{where}: attributes must be a list of names, got {_show(names)}")
    check_int(f"{where}: num_nodes", options.get("num_nodes", 1), 1, 1024)
    for name in ("accelerator", "strategy", "precision"):
        if not isinstance(options.get(name, ""), str):
            raise FacegenError(f"{where}: {name} must be a string, got {_show(options.get(name))}")
    if not (is_int(options.get("devices", 1)) or isinstance(options.get("devices"), str)):
        raise FacegenError(f"{where}: devices must be a number or a list like 0,1, got {_show(options.get('devices'))}")
    if options.get("threads") is not None:
        check_int(f"{where}: threads", options["threads"], 0, 256)
    if options.get("max_seconds") is not None:
        check_number(f"{where}: max_seconds", options["max_seconds"], 0.0)
    check_method_options(kinds.kind(options.get("model")).method_class(), options.get("method_options") or {},
                         f"{where}: --set")
    return options


def check_method_options(method_cls, settings: object, where: str = "--set") -> dict:
    """A recipe's settings (from --set or a saved run): known names, right kinds, sane ranges."""
    skip = ("attribute_names", "size", "prior", "batch_size", "total_steps")
    return check_keywords(where, settings, method_cls.__init__, skip=skip)

