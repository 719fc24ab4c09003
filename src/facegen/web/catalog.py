"""The models the app offers: the shipped defaults that are installed, plus any `--model PATH`.

Everything is loaded once at start, so a bad path fails before the server
binds its port, and a slider move never waits for a disk read.

    >>> catalog = Catalog.load([], shipped=False)
    >>> catalog.generators, catalog.editors
    ([], [])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from facegen.errors import FacegenError
from facegen.kinds import DEFAULT_MODELS, KINDS
from facegen.pretrained import CONFIG_NAME, SHIPPED_DIR, Pretrained, load_pretrained

# Shipped models in the order of the table of kinds; each tab opens on the model its command uses by default
# (generate: cgan, the first generator; edit: `editors` puts the default editor first).
SHIPPED_ORDER = tuple(KINDS)


@dataclass
class ModelEntry:
    """One model in the app's drop-downs."""

    key: str  # what the drop-down returns: a shipped name ("cgan") or the path given
    label: str  # what a person reads: "cgan (shipped)", "runs/fader/model (fader)"
    pretrained: Pretrained
    generator: object | None = None  # a GenerationPipeline when the kind can generate
    editor: object | None = None  # an EditPipeline when the kind can edit

    @property
    def kind(self) -> str:
        return self.pretrained.kind

    @property
    def attribute_names(self) -> list[str]:
        return self.pretrained.attribute_names

    @property
    def size(self) -> int:
        return self.pretrained.size

    def defaults(self) -> dict[str, float]:
        """Slider start values: each attribute's commoner value in the training labels (0.5 without a prior)."""
        if self.pretrained.prior is None:
            return {name: 0.5 for name in self.attribute_names}
        return {name: float(round(share)) for name, share in self.pretrained.prior.marginals().items()}


class Catalog:
    """The loaded models, in the order shown: shipped ones first, then those given with --model."""

    def __init__(self, entries: Sequence[ModelEntry], classifier: Pretrained | None = None):
        self.entries = list(entries)
        self.classifier = classifier  # reads a photo's own attributes (the sliders' start values) when editing
        self._by_key = {entry.key: entry for entry in self.entries}

    @classmethod
    def load(cls, paths: Sequence[str | Path] = (), *, shipped: bool = True) -> Catalog:
        """Shipped models found in `facegen/weights/` (if `shipped`) and every path in `paths`.

        A classifier among `paths` replaces the shipped one as the reader of a photo's own attributes.
        """
        found: list[tuple[str, str, Pretrained]] = []
        if shipped:
            found += [(name, f"{name} (shipped)", load_pretrained(name)) for name in shipped_names()]
        for path in paths:
            pretrained = load_pretrained(path)  # any kind it loads, the app serves (see _entry)
            if str(path) not in {key for key, _, _ in found}:  # the same path twice: offer it once
                found.append((str(path), f"{path} ({pretrained.kind})", pretrained))
        classifiers = [pretrained for _, _, pretrained in found if KINDS[pretrained.kind].can_classify]
        classifier = classifiers[-1] if classifiers else None  # a given one comes after the shipped one
        entries = [_entry(key, label, pretrained, classifier) for key, label, pretrained in found
                   if not KINDS[pretrained.kind].can_classify]
        return cls(entries, classifier)

    @property
    def generators(self) -> list[ModelEntry]:
        return [entry for entry in self.entries if entry.generator is not None]

    @property
    def editors(self) -> list[ModelEntry]:
        """The models that edit, the shipped default of `facegen edit` first (the tab opens on it)."""
        found = [entry for entry in self.entries if entry.editor is not None]
        return sorted(found, key=lambda entry: entry.key != DEFAULT_MODELS["edit"])

    def get(self, key: str, *, task: str) -> ModelEntry:
        """The entry for a drop-down value; `task` is "generate" or "edit"."""
        entry = self._by_key.get(key)
        if entry is None or (entry.generator if task == "generate" else entry.editor) is None:
            offered = self.generators if task == "generate" else self.editors
            raise FacegenError(f"model {key!r} cannot {task} here; choose one of "
                               f"{', '.join(e.key for e in offered) or 'none (start with --model PATH)'}")
        return entry

    @staticmethod
    def attribute_union(entries: Sequence[ModelEntry]) -> list[str]:
        """Every attribute any of `entries` takes, in first-seen order: one slider each."""
        names: list[str] = []
        for entry in entries:
            names += [name for name in entry.attribute_names if name not in names]
        return names


def shipped_names() -> list[str]:
    """Names of the shipped models that are installed (a folder with a config in `facegen/weights/`)."""
    if not SHIPPED_DIR.is_dir():
        return []
    names = [path.name for path in SHIPPED_DIR.iterdir() if (path / CONFIG_NAME).is_file()]
    return sorted(names, key=lambda name: (SHIPPED_ORDER.index(name) if name in SHIPPED_ORDER else len(SHIPPED_ORDER),
                                           name))


def _entry(key: str, label: str, pretrained: Pretrained, classifier: Pretrained | None) -> ModelEntry:
    entry = ModelEntry(key=key, label=label, pretrained=pretrained)
    if KINDS[pretrained.kind].can_generate:
        from facegen.pipelines.generate import GenerationPipeline

        entry.generator = GenerationPipeline(pretrained)
    if KINDS[pretrained.kind].can_edit:
        from facegen.pipelines.edit import EditPipeline

        entry.editor = EditPipeline(pretrained, classifier=classifier)
    return entry
