"""A photo's own attribute values: its CelebA labels when it is a file of a CelebA folder, else the classifier's.

`EditPipeline` inherits this: an edit changes what the request names and
keeps each photo's own value of the rest, and the residual editor and the
difference transfer both need those values as the photo's starting point.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facegen.errors import FacegenError
from facegen.kinds import DEFAULT_MODELS, KINDS
from facegen.pretrained import Pretrained, load_pretrained

ImageLike = str | os.PathLike | Image.Image


class PhotoAttributes:
    """Reads photos' own values of `attribute_names`; subclasses provide `load` (photos -> x) and `device`."""

    def __init__(self, attribute_names: Sequence[str], *, classifier: str | os.PathLike | Pretrained | None = None,
                 batch_size: int = 64):
        self._attribute_names = list(attribute_names)
        self.batch_size = batch_size
        self._classifier_spec, self._classifier = classifier, None
        self._label_tables: dict[Path, tuple[dict[str, int], np.ndarray, list[str], Path] | None] = {}

    @property
    def attribute_names(self) -> list[str]:
        return list(self._attribute_names)

    def photo_attributes(self, photos: Sequence[ImageLike] | torch.Tensor,
                         x: torch.Tensor | None = None) -> tuple[np.ndarray, list[str]]:
        """Each photo's own values (n, A) and where each row came from ('labels <file>' or 'classifier')."""
        if isinstance(photos, (str, os.PathLike, Image.Image)):
            photos = [photos]
        paths = [] if isinstance(photos, torch.Tensor) else [
            Path(p) if isinstance(p, (str, os.PathLike)) else None for p in photos]
        n = x.shape[0] if x is not None else len(paths)
        y = np.zeros((n, len(self.attribute_names)), np.float32)
        sources: list[str | None] = [None] * n
        for i, path in enumerate(paths):
            found = self._celeba_labels(path) if path is not None else None
            if found is not None:
                y[i], sources[i] = found
        missing = [i for i, source in enumerate(sources) if source is None]
        if missing:
            x = self.load(photos) if x is None else x
            y[missing] = self._classify(x[missing])
            for i in missing:
                sources[i] = f"classifier {self._classifier.path}"
        return y, sources  # type: ignore[return-value]

    def _celeba_labels(self, path: Path) -> tuple[np.ndarray, str] | None:
        """The photo's row of a CelebA attribute file, when it is a file of a CelebA image folder."""
        folder = path.resolve().parent
        if folder not in self._label_tables:
            self._label_tables[folder] = self._read_labels(folder)
        table = self._label_tables[folder]
        if table is None or path.name not in table[0]:
            return None
        rows, labels, names, label_file = table
        return labels[rows[path.name]], f"labels {label_file}"

    def _read_labels(self, folder: Path):
        from facegen.data import open_dataset

        if "img_align_celeba" not in folder.name:
            return None
        for root in (folder.parent, folder.parent.parent, folder.parent.parent.parent):
            try:
                dataset = open_dataset(root)
            except FacegenError:
                continue
            if dataset.image_dir.resolve() != folder:
                continue
            if not set(self.attribute_names) <= set(dataset.attribute_names):
                return None
            columns = [dataset.attribute_names.index(name) for name in self.attribute_names]
            rows = {name: i for i, name in enumerate(dataset.files) if "/" not in name}
            return rows, dataset.labels[:, columns].astype(np.float32), self.attribute_names, dataset.label_files[0]
        return None

    @torch.no_grad()
    def _classify(self, x: torch.Tensor) -> np.ndarray:
        """The classifier's decision (0 or 1) on each model attribute, (n, A)."""
        classifier = self._load_classifier()
        names = classifier.attribute_names
        unknown = [name for name in self.attribute_names if name not in names]
        if unknown:
            raise FacegenError(f"the classifier {classifier.path} does not know {', '.join(unknown)}; "
                               "give the photo's own values of those attributes explicitly")
        network = classifier.modules["classifier"]
        device = next(network.parameters()).device
        logits = torch.cat([network(x[i:i + self.batch_size].to(device)).cpu()
                            for i in range(0, x.shape[0], self.batch_size)])
        columns = [names.index(name) for name in self.attribute_names]
        return (logits[:, columns] > 0).float().numpy()

    def _load_classifier(self) -> Pretrained:
        if self._classifier is None:
            spec = self._classifier_spec
            if isinstance(spec, Pretrained):
                self._classifier = spec
            else:
                try:
                    self._classifier = load_pretrained(spec or DEFAULT_MODELS["classify"], device=self.device)
                except FacegenError as error:
                    if spec:
                        raise
                    raise FacegenError("cannot tell this photo's own attribute values: it is not from a CelebA "
                                       "folder and no attribute classifier is installed; pass --classifier MODEL "
                                       "or name every attribute's value") from error
            if not KINDS[self._classifier.kind].can_classify:
                raise FacegenError(f"{self._classifier.path} is a {self._classifier.kind} model, not an "
                                   "attribute classifier")
        return self._classifier
