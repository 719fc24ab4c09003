"""Edit photos with a model that encodes and decodes: Fader Networks or the conditional VAE.

    >>> from facegen.pipelines import EditPipeline
    >>> pipe = EditPipeline.from_pretrained("fader")                      # doctest: +SKIP
    >>> out = pipe.edit(["photo.jpg"], request="male=0 young=0.3")      # doctest: +SKIP
    >>> out.images[0].save("edited.png")                                # doctest: +SKIP
    >>> pipe.sweep("photo.jpg", ["male", "smiling"], steps=8).save("strip.png")  # doctest: +SKIP

The photo must be a face framed like CelebA's aligned images (eyes level,
face centred, the centre square holding the head); any size works, its
centre square is resized to the model's size. Other framings are not
aligned here yet.

An edit changes the attributes the request names and keeps the photo's own
values for the rest. Those own values ("source attributes") come from
CelebA's labels when the photo is a file of a CelebA folder (an
`img_align_celeba` folder with its attribute file above it), else from the
attribute classifier, rounded to 0 or 1 like the labels the model was
trained on. A request that names every attribute needs neither.

The low-level verbs: `z = pipe.encode(x, y)` and `x = pipe.decode(z, y)`,
with x (B, 3, S, S) in [-1, 1] and y (B, A) in [0, 1]. The fader's encoder
ignores y; the cVAE's uses it and returns its mean code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from facegen.attributes import EXTRAPOLATE_RANGE, parse_attribute_list, parse_request, resolve_name
from facegen.errors import FacegenError
from facegen.pretrained import Pretrained, load_pretrained

EDITORS = ("fader", "cvae")
ALIGNMENT_NOTE = "the face must be framed like CelebA's aligned photos (centred, eyes level)"
ImageLike = str | os.PathLike | Image.Image


@dataclass
class EditOutput:
    images: list[Image.Image]          # n edited faces, at the model's size
    source_attributes: np.ndarray      # (n, A) each photo's own values
    target_attributes: np.ndarray      # (n, A) the values decoded with
    x: torch.Tensor                    # (n, 3, S, S) edited, in [-1, 1]
    attribute_names: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # per photo: where its own values came from


class EditPipeline:
    """Loads an editing model once (and the classifier when first needed); each call edits a batch."""

    def __init__(self, pretrained: Pretrained, *, classifier: str | os.PathLike | Pretrained | None = None,
                 batch_size: int = 64):
        if pretrained.kind not in EDITORS:
            raise FacegenError(f"{pretrained.path} is a {pretrained.kind} model, which cannot edit photos; "
                               f"use a {' or '.join(EDITORS)} model")
        if batch_size < 1:
            raise FacegenError(f"--batch-size must be at least 1, got {batch_size}")
        self.pretrained, self.kind = pretrained, pretrained.kind
        self.encoder, self.decoder = pretrained.modules["encoder"], pretrained.modules["decoder"]
        self.size, self.batch_size = pretrained.size, batch_size
        self._classifier_spec, self._classifier = classifier, None
        self._label_tables: dict[Path, tuple[dict[str, int], np.ndarray, list[str], Path] | None] = {}

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = "fader", *, device: str = "cpu",
                        classifier: str | os.PathLike | None = None, batch_size: int = 64) -> "EditPipeline":
        return cls(load_pretrained(name_or_path, device=device), classifier=classifier, batch_size=batch_size)

    @property
    def attribute_names(self) -> list[str]:
        return self.pretrained.attribute_names

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    @property
    def decode_side(self) -> int:
        """Smallest side a huge JPEG may be decoded at: the cache's rule (`prepare_image`), so pixels match training."""
        return 8 * self.size

    # ------------------------------------------------------------------ low level

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images x (B, 3, S, S) in [-1, 1] -> codes. The cVAE needs the photos' own y (B, A) and gives its mean."""
        x = self._fit(x).to(self.device)
        if self.kind == "fader":
            return self.encoder(x)  # (B, C, 8, 8)
        if y is None:
            raise FacegenError("the cVAE encodes a photo together with its own attributes; pass y")
        mu, _ = self.encoder(x, y.to(self.device, torch.float32))
        return mu  # (B, z_dim)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Codes and attributes y (B, A) (any real values) -> images (B, 3, S, S) in [-1, 1]."""
        return self.decoder(z.to(self.device), y.to(self.device, torch.float32)).clamp(-1, 1)

    def _fit(self, x: torch.Tensor) -> torch.Tensor:
        """A tensor batch at the model's size (centre square, then an antialiased resize)."""
        assert x.ndim == 4 and x.shape[1] == 3, f"expected images (B, 3, H, W) in [-1, 1], got {tuple(x.shape)}"
        side = min(x.shape[-2:])
        top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
        x = x[..., top:top + side, left:left + side]
        if side != self.size:
            x = F.interpolate(x.float(), size=(self.size, self.size), mode="bicubic", antialias=True,
                              align_corners=False).clamp(-1, 1)
        return x.float()

    # ------------------------------------------------------------------ photos and their attributes

    def load(self, images: ImageLike | Sequence[ImageLike] | torch.Tensor) -> torch.Tensor:
        """Photos (paths or PIL images, any size and mode) or a tensor -> x (n, 3, S, S) in [-1, 1]."""
        from facegen.data import load_photo, square_resize, to_tensor

        if isinstance(images, torch.Tensor):
            return self._fit(images if images.ndim == 4 else images[None])
        items = [images] if isinstance(images, (str, os.PathLike, Image.Image)) else list(images)
        if not items:
            raise FacegenError("no photos to edit")
        decoded = [load_photo(item, min_side=self.decode_side) for item in items]
        pixels = [square_resize(image, self.size) for image in decoded]  # center_square silences the bomb warning
        return to_tensor(np.stack(pixels))  # (n, 3, S, S)

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
                    self._classifier = load_pretrained(spec or "classifier", device=self.device)
                except FacegenError as error:
                    if spec:
                        raise
                    raise FacegenError("cannot tell this photo's own attribute values: it is not from a CelebA "
                                       "folder and no attribute classifier is installed; pass --classifier MODEL "
                                       "or name every attribute's value") from error
            if self._classifier.kind != "classifier":
                raise FacegenError(f"{self._classifier.path} is a {self._classifier.kind} model, not an "
                                   "attribute classifier")
        return self._classifier

    # ------------------------------------------------------------------ edits

    def targets(self, source: np.ndarray, request: Mapping[str, float], flip: Sequence[str]) -> np.ndarray:
        """(n, A): the source values, the request's values where it names one, flipped attributes 1 - round(own)."""
        target = np.array(source, dtype=np.float32, copy=True)
        for name, value in request.items():
            target[:, self.attribute_names.index(name)] = value
        for name in flip:
            column = self.attribute_names.index(name)
            target[:, column] = 1.0 - np.round(source[:, column])
        return target

    def parse(self, request, flip: Sequence[str] | str | None, extrapolate: bool) -> tuple[dict, list[str]]:
        """A request in any form `parse_request` takes, and flip names, checked against the model's attributes."""
        parsed = parse_request(request or {}, self.attribute_names, extrapolate=extrapolate)
        flips = parse_attribute_list(flip, self.attribute_names) if flip else []
        both = [name for name in flips if name in parsed]
        if both:
            raise FacegenError(f"{both[0]} is both set to a value and flipped; do one of the two")
        return parsed, flips

    def edit(self, images: ImageLike | Sequence[ImageLike] | torch.Tensor, request=None, *,
             flip: Sequence[str] | str | None = None, source_attributes: np.ndarray | torch.Tensor | None = None,
             extrapolate: bool = False) -> EditOutput:
        """Edit every photo the same way. Without request and flip: the reconstruction."""
        from facegen.data import to_pil

        parsed, flips = self.parse(request, flip, extrapolate)
        x = self.load(images)
        n, names = x.shape[0], self.attribute_names
        if source_attributes is not None:
            source = np.asarray(source_attributes, dtype=np.float32).reshape(n, len(names))
            sources = ["given"] * n
        elif self.kind == "fader" and not flips and set(parsed) == set(names):
            source, sources = np.full((n, len(names)), np.nan, np.float32), ["not needed"] * n
        else:
            source, sources = self.photo_attributes(images, x)
        target = self.targets(source, parsed, flips)
        y_source, y_target = torch.from_numpy(np.nan_to_num(source)), torch.from_numpy(target)
        parts = [self.decode(self.encode(x[i:i + self.batch_size], y_source[i:i + self.batch_size]),
                             y_target[i:i + self.batch_size]).cpu() for i in range(0, n, self.batch_size)]
        x_out = torch.cat(parts)
        out = to_pil(x_out)
        return EditOutput(images=out if isinstance(out, list) else [out], source_attributes=source,
                          target_attributes=target, x=x_out, attribute_names=names, sources=sources)

    def sweep(self, image: ImageLike | torch.Tensor, attributes: str | Sequence[str], steps: int = 8,
              low: float = 0.0, high: float = 1.0, *, source_attributes: np.ndarray | None = None,
              extrapolate: bool = False) -> Image.Image:
        """The paper's figure: one face, the photo then `steps` decodes from `low` to `high`, one row per attribute."""
        from facegen.data import make_grid

        names = [resolve_name(a, self.attribute_names)[0] for a in
                 ([attributes] if isinstance(attributes, str) else attributes)]
        inverted = [resolve_name(a, self.attribute_names)[1] for a in
                    ([attributes] if isinstance(attributes, str) else attributes)]
        if not names:
            raise FacegenError("name at least one attribute to sweep, e.g. --attr male")
        if not 2 <= steps <= 64:
            raise FacegenError(f"--steps must be between 2 and 64, got {steps}")
        bound_low, bound_high = EXTRAPOLATE_RANGE if extrapolate else (0.0, 1.0)
        if not (bound_low <= low <= bound_high and bound_low <= high <= bound_high):
            advice = "even with --extrapolate" if extrapolate else "use --extrapolate to go beyond [0, 1]"
            raise FacegenError(f"sweep range {low:g}..{high:g} is outside [{bound_low:g}, {bound_high:g}]; {advice}")
        x = self.load(image)[:1]
        if source_attributes is not None:
            source = np.asarray(source_attributes, np.float32).reshape(1, -1)
        else:
            source, _ = self.photo_attributes(image, x)
        values = np.linspace(low, high, steps, dtype=np.float32)
        rows = []
        for name, flipped in zip(names, inverted):
            target = np.repeat(source, steps, axis=0)
            target[:, self.attribute_names.index(name)] = 1.0 - values if flipped else values
            z = self.encode(x, torch.from_numpy(source)).repeat_interleave(steps, dim=0)
            rows += [x, self.decode(z, torch.from_numpy(target)).cpu()]
        return make_grid(torch.cat(rows), nrow=steps + 1)


# ---------------------------------------------------------------------- files (what `facegen edit` does)


def split_tokens(tokens: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Command-line tokens -> (photo files and folders, request tokens). A token is a photo when it exists
    on disk or ends like an image; everything else (name=value, a bare name, a .yaml request) is the request."""
    from facegen.data.celeba import IMAGE_SUFFIXES

    photos, request = [], []
    for token in tokens:
        path = Path(token).expanduser()
        is_request_file = path.suffix.lower() in (".yaml", ".yml", ".json")
        if not is_request_file and (path.exists() or path.suffix.lower() in IMAGE_SUFFIXES):
            photos.append(path)
        else:
            request.append(token)
    return photos, request


def expand_photos(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a folder -> the images directly in it, sorted by name."""
    from facegen.data.celeba import IMAGE_SUFFIXES

    photos: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FacegenError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            photos += found
        else:
            photos.append(path)
    if not photos:
        raise FacegenError("no photo given: name image files or folders, e.g. facegen edit photo.jpg male=0 -o out.png")
    return photos


def output_paths(photos: Sequence[Path], *, output: str | None, out_dir: str | None) -> list[Path]:
    """Where each edited photo goes: `output` for one photo, `out_dir`/<same name> for any number."""
    from facegen.pipelines.output import IMAGE_SUFFIXES as WRITABLE, check_writable

    if out_dir is None:
        if len(photos) > 1:
            raise FacegenError(f"{len(photos)} photos given: write them with --out-dir DIR (one output each), not -o")
        check_writable(output, None, inputs=list(photos))
        return [Path(output)]
    check_writable(None, out_dir, inputs=list(photos))
    targets = [Path(out_dir) / (p.name if p.suffix.lower() in WRITABLE else p.stem + ".png") for p in photos]
    seen: dict[Path, Path] = {}
    for photo, target in zip(photos, targets):
        if target in seen:
            raise FacegenError(f"{seen[target]} and {photo} would both be written to {target}; edit them separately")
        seen[target] = photo
    return targets


def edit_files(pipe: EditPipeline, photos: Sequence[Path], targets: Sequence[Path], request=None, *,
               flip: Sequence[str] | str | None = None, extrapolate: bool = False,
               log=print) -> list[tuple[Path, str]]:
    """Edit photo i into targets[i], in batches. An unreadable photo is reported and skipped; returns the failures."""
    from facegen.data import load_photo
    from facegen.files import save_image

    request, flips = pipe.parse(request, flip, extrapolate)  # a bad request fails before any photo is read
    failures: list[tuple[Path, str]] = []
    counts: dict[str, int] = {}
    for start in range(0, len(photos), pipe.batch_size):
        batch, images, outs = photos[start:start + pipe.batch_size], [], []
        for photo, target in zip(batch, targets[start:start + pipe.batch_size]):
            try:
                images.append(load_photo(photo, min_side=pipe.decode_side))
                outs.append((photo, target))
            except FacegenError as error:
                failures.append((photo, str(error)))
                if len(photos) > 1:  # one photo: the caller raises the error itself
                    log(f"skipped {error}")
        if not images:
            continue
        x = pipe.load(images)
        source = None
        if pipe.kind == "cvae" or flips or set(request) != set(pipe.attribute_names):
            source, sources = pipe.photo_attributes([p for p, _ in outs], x)
            for where in sources:
                counts[where] = counts.get(where, 0) + 1
        result = pipe.edit(x, request, flip=flips, source_attributes=source, extrapolate=extrapolate)
        for image, (_, target) in zip(result.images, outs):
            save_image(image, target)
    if counts:
        parts = [f"{where} ({n} photo{'s' * (n > 1)})" for where, n in counts.items()]
        log("own attribute values from " + "; ".join(parts))
    return failures
