"""The model kinds facegen knows, as one table: a kind is one row.

Everything that asks "which kinds can edit?" or "how is a fader trained?"
reads this table: the CLI's choices, loading a model folder, the generation
and edit pipelines, `facegen evaluate`, the browser app's catalogue and the
training loop. Adding a model is adding a row (and its modules and recipe).

    >>> KINDS["fader"].can_edit, KINDS["fader"].can_generate
    (True, False)
    >>> names(can="edit")
    ('cgan', 'residual', 'fader', 'cvae')
    >>> names(can="generate")
    ('cgan', 'cvae')
    >>> kind("gan")
    Traceback (most recent call last):
    ...
    facegen.errors.FacegenError: unknown model kind 'gan'; choose cgan, residual, fader, cvae or classifier

The classes are named as "module:attribute" and imported only when asked for,
so reading the table (for `--help`, say) imports no torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from facegen.errors import FacegenError

CAPABILITIES = ("generate", "edit", "classify")


@dataclass(frozen=True)
class Kind:
    name: str
    modules: dict[str, str]    # inference module name -> "module:Class" (rebuilt from config.json on loading)
    can: tuple[str, ...]       # of CAPABILITIES: what its inference modules do
    method: str                # its training recipe, "module:Class" (facegen.training.*)
    presets: tuple[str, ...] = ()  # the recipe's `preset` values (architecture and loss), if it has the setting
    encoder_decoder: bool = False  # edits by decode(encode(x), y'): can also redraw the face (`redraw=True`)
    encoder_takes_y: bool = False  # its encoder reads the photo's own attributes with the photo
    inverts: bool = False      # has no encoder: a photo's code is found by optimisation (GAN inversion)
    sampler: str | None = None  # generators: the module that maps (z, y) to faces
    summary: str = ""          # what it is, for --help

    @property
    def can_generate(self) -> bool:
        return "generate" in self.can

    @property
    def can_edit(self) -> bool:
        return "edit" in self.can

    @property
    def can_classify(self) -> bool:
        return "classify" in self.can

    def module_classes(self, preset: str = "default") -> dict:
        """The inference modules' classes by name; a cGAN's generator depends on its preset."""
        if self.name == "cgan":  # the one kind whose inference architecture is chosen by the preset
            from facegen.models import cgan

            if preset not in cgan.PRESETS:
                raise FacegenError(f"unknown cgan preset {preset!r}; choose from {', '.join(cgan.PRESETS)}")
            return {"generator": cgan.PRESETS[preset][0]}
        return {name: _import(target) for name, target in self.modules.items()}

    def check_preset(self, preset: str) -> str:
        if not self.presets:
            raise FacegenError(f"--preset: a {self.name} model has no presets; drop --preset (or use --set)")
        if preset not in self.presets:
            raise FacegenError(f"--preset {preset} is not a {self.name} preset; choose {either(self.presets)}")
        return preset

    def method_class(self) -> type:
        return _import(self.method)


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("cgan", {"generator": "facegen.models.cgan:Generator"}, ("generate", "edit"),
         "facegen.training.cgan:CGANMethod", presets=("default", "study2018"), sampler="generator",
         encoder_decoder=True, encoder_takes_y=True, inverts=True,
         summary="conditional GAN: faces from attributes and noise; edits photos by inverting itself"),
    Kind("residual", {"editor": "facegen.models.residual:ResidualEditor"}, ("edit",),
         "facegen.training.residual:ResidualMethod", summary="residual editor distilled from the cGAN"),
    Kind("fader", {"encoder": "facegen.models.fader:Encoder", "decoder": "facegen.models.fader:Decoder"}, ("edit",),
         "facegen.training.fader:FaderMethod", presets=("default", "paper"), encoder_decoder=True,
         summary="Fader Networks: an encoder-decoder with attribute-free codes"),
    Kind("cvae", {"encoder": "facegen.models.cvae:Encoder", "decoder": "facegen.models.cvae:Decoder"},
         ("generate", "edit"), "facegen.training.cvae:CVAEMethod", encoder_decoder=True, encoder_takes_y=True,
         sampler="decoder",
         summary="conditional VAE: generates and edits"),
    Kind("classifier", {"classifier": "facegen.models.classifier:AttributeClassifier"}, ("classify",),
         "facegen.training.classifier:ClassifierMethod",
         summary="the attribute classifier that reads photos and judges the others"),
)}


# The shipped model each task uses when none is named (a name in facegen/weights/): `facegen generate`, `edit` and
# `sweep`, the pipelines' from_pretrained, the judge of `facegen evaluate`, and the reader of a photo's own values.
DEFAULT_MODELS = {"generate": "cgan", "edit": "residual", "classify": "classifier"}


def kind(name: str) -> Kind:
    """The row of a kind, or a one-line refusal naming the kinds there are."""
    if not isinstance(name, str) or name not in KINDS:
        raise FacegenError(f"unknown model kind {name!r}; choose {either(KINDS)}")
    return KINDS[name]


def names(*, can: str | None = None, encoder_decoder: bool | None = None) -> tuple[str, ...]:
    """The kinds, in the table's order, that can do `can` (and are / are not encoder-decoders)."""
    assert can is None or can in CAPABILITIES, f"can must be one of {CAPABILITIES}, got {can!r}"
    return tuple(k.name for k in KINDS.values() if (can is None or can in k.can)
                 and (encoder_decoder is None or k.encoder_decoder == encoder_decoder))


def all_presets() -> tuple[str, ...]:
    """Every preset of any kind, once each (the CLI's choices; each kind then checks its own)."""
    return tuple(dict.fromkeys(p for k in KINDS.values() for p in k.presets))


def either(items) -> str:
    """'a, b or c' (for messages).

    >>> either(["residual", "fader", "cvae"])
    'residual, fader or cvae'
    """
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _import(target: str):
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
