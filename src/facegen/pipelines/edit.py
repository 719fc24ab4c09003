"""Edit photos: the change an editing model asks for, applied to the photo at its own resolution.

(Skipped as a doctest: it needs a photo.jpg and the shipped residual editor; tests/test_edit.py runs the same calls.)

    >>> from facegen.pipelines import EditPipeline
    >>> pipe = EditPipeline.from_pretrained("residual")                   # doctest: +SKIP
    >>> out = pipe.edit(["photo.jpg"], request="male=0 young=0.3")      # doctest: +SKIP
    >>> out.images[0].save("edited.png")                                # doctest: +SKIP
    >>> pipe.sweep("photo.jpg", ["male", "smiling"], steps=8).save("strip.png")  # doctest: +SKIP

An edit is a change applied to the photo. The model looks at the photo's
centre square at its own size (64 px) and gives, for each pixel there, how
it should change; that change is carried up to the photo's resolution and
added (`facegen.pipelines.change`). The photo keeps its size, its sharpness
and every pixel the change does not reach; with nothing asked it comes back
unchanged, bit for bit. Each kind of model gives the change its own way:

- `residual` (the default): change fields predicted for the photo, one per
  attribute, weighted by how far each attribute moves (models/residual.py).
- `fader`, `cvae` (encoder-decoders): difference transfer,
  decode(z, y') - decode(z, y) with z the photo's code and y its own
  attributes; what the decoder cannot reconstruct cancels out. With
  `redraw=True` they give what the 2018 study showed instead: the decode
  itself, a new drawing of the face at the model's size.
- `cgan`: the same difference, G(z*, y', o*) - G(z*, y, o*), with z* found
  by inverting the generator on the photo and o* an offset on its 16 x 16
  activations fitted with it, so that its drawing sits on the photo's own
  features (pipelines/inversion.py; `pivot=False`: z* alone, as before).

The photo must be a face framed like CelebA's aligned images (eyes level,
face centred, the centre square holding the head); `facegen edit --align`
(pipelines/own_photo.py) frames any photo that way first.

An edit changes the attributes the request names and keeps the photo's own
values for the rest. Those own values ("source attributes") come from
CelebA's labels when the photo is a file of a CelebA folder (an
`img_align_celeba` folder with its attribute file above it), else from the
attribute classifier, rounded to 0 or 1 like the labels the models were
trained on.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from facegen.attributes import EXTRAPOLATE_RANGE, parse_attribute_list, parse_request, resolve_name
from facegen.errors import FacegenError
from facegen.kinds import DEFAULT_MODELS, KINDS, either, names
from facegen.pipelines.photo_attributes import ImageLike, PhotoAttributes
from facegen.pretrained import Pretrained, load_pretrained

EDITORS = names(can="edit")  # the kinds that edit photos (facegen.kinds)
ENCODER_DECODERS = names(can="edit", encoder_decoder=True)  # and of those, the ones that can also redraw
ALIGNMENT_NOTE = "the face must be framed like CelebA's aligned photos (centred, eyes level)"
PREPARED_KEPT = 8  # batches of prepared faces kept for the next edit of the same faces (a slider move)
SWEEP_TILE_MAX = 256  # px: the sweep strip's tiles are the photo's centre square at most this large


@dataclass
class EditOutput:
    images: list[Image.Image]          # n edited photos, each at its own size (model size for tensor input or redraw)
    source_attributes: np.ndarray      # (n, A) each photo's own values
    target_attributes: np.ndarray      # (n, A) the values edited to
    x: torch.Tensor                    # (n, 3, S, S) the edited faces at the model's size, in [-1, 1]
    change: torch.Tensor               # (n, 3, S, S) what was added at the model's size ([-1, 1] units)
    attribute_names: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # per photo: where its own values came from


@dataclass
class PreparedFaces:
    """What an edit of these faces needs, computed once (a slider move reuses it).

    x (n, 3, S, S) the faces at the model's size and y (n, A) their own
    values; then either `fields` (n, A, 3, S, S) of a residual editor, or
    `code` and `base` = decode(code, y) (n, 3, S, S) of an encoder-decoder,
    with an inverted cGAN's fitted activation `offset` (n, C, 16, 16).
    """

    x: torch.Tensor
    y: torch.Tensor
    fields: torch.Tensor | None = None
    code: torch.Tensor | None = None
    base: torch.Tensor | None = None
    offset: torch.Tensor | None = None


class EditPipeline(PhotoAttributes):
    """Loads an editing model once (and the classifier when first needed); each call edits a batch."""

    def __init__(self, pretrained: Pretrained, *, classifier: str | os.PathLike | Pretrained | None = None,
                 batch_size: int = 64, redraw: bool = False, pivot: bool = True):
        if pretrained.kind not in EDITORS:
            raise FacegenError(f"{pretrained.path} is a {pretrained.kind} model, which cannot edit photos; "
                               f"use a {either(EDITORS)} model")
        if batch_size < 1:
            raise FacegenError(f"--batch-size must be at least 1, got {batch_size}")
        if redraw and pretrained.kind not in ENCODER_DECODERS:
            raise FacegenError(f"--redraw needs an encoder-decoder ({' or '.join(ENCODER_DECODERS)}); "
                               f"a {pretrained.kind} model only changes the photo")
        super().__init__(pretrained.attribute_names, classifier=classifier, batch_size=batch_size)
        self.pretrained, self.kind, self.redraw = pretrained, pretrained.kind, redraw
        self.modules = pretrained.modules
        self.pivot = pivot and KINDS[self.kind].inverts and hasattr(self.modules[KINDS[self.kind].sampler],
                                                                    "level_shape")  # the study's generator: z only
        self.size, self.batch_size = pretrained.size, batch_size
        self._prepared: OrderedDict[bytes, PreparedFaces] = OrderedDict()  # the last faces prepared (see prepare)
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = DEFAULT_MODELS["edit"], *, device: str = "cpu",
                        classifier: str | os.PathLike | None = None, batch_size: int = 64,
                        redraw: bool = False, pivot: bool = True) -> "EditPipeline":
        return cls(load_pretrained(name_or_path, device=device), classifier=classifier, batch_size=batch_size,
                   redraw=redraw, pivot=pivot)

    @property
    def device(self) -> torch.device:
        return next(next(iter(self.modules.values())).parameters()).device

    # ------------------------------------------------------------------ low level

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder-decoders: images x (B, 3, S, S) in [-1, 1] -> codes. The cVAE needs the photos' own y and gives its mean."""
        if self.kind not in ENCODER_DECODERS:
            raise FacegenError(f"a {self.kind} model has no code to encode into; use prepare() and change()")
        x = self.fit(x).to(self.device)
        if not KINDS[self.kind].encoder_takes_y:  # the fader's encoder: the photo alone
            return self.modules["encoder"](x)  # (B, C, 8, 8)
        if y is None:
            raise FacegenError(f"a {self.kind} model encodes a photo together with its own attributes; pass y")
        y = y.to(self.device, torch.float32)
        if KINDS[self.kind].inverts:  # a GAN: the code whose drawing is the photo, found by optimisation
            from facegen.pipelines.inversion import invert

            return invert(self.modules[KINDS[self.kind].sampler], x, y)  # (B, z_dim)
        mu, _ = self.modules["encoder"](x, y)
        return mu  # (B, z_dim)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        """Codes and attributes y (B, A) (any real values) -> images (B, 3, S, S) in [-1, 1]; an inverted cGAN's
        fitted `offset` goes with its codes."""
        decoder = self.modules["decoder" if "decoder" in self.modules else KINDS[self.kind].sampler]
        extra = () if offset is None else (offset.to(self.device),)
        return decoder(z.to(self.device), y.to(self.device, torch.float32), *extra).clamp(-1, 1)

    @torch.no_grad()
    def prepare(self, x: torch.Tensor, y_source: torch.Tensor | np.ndarray) -> PreparedFaces:
        """Faces x (B, 3, S, S) with their own values (B, A): what every later change of them needs.

        The last few results are kept, keyed by the faces' pixels and values:
        moving a slider on an open photo runs no network, only a weighted sum.
        """
        x = self.fit(x).to(self.device)
        y = torch.as_tensor(np.asarray(y_source, np.float32)).to(self.device)
        key = hashlib.blake2b(x.cpu().numpy().tobytes() + y.cpu().numpy().tobytes(), digest_size=16).digest()
        with self._lock:
            if key in self._prepared:
                self._prepared.move_to_end(key)
                return self._prepared[key]
        if self.kind not in ENCODER_DECODERS:  # a residual editor: change fields, one per attribute
            faces = PreparedFaces(x, y, fields=self.modules["editor"](x, y))
        else:
            code, offset = self.encode(x, y), None
            if self.pivot:  # the drawing fitted closer: the change lands on the photo's own features
                from facegen.pipelines.inversion import fit_offset

                code, offset = fit_offset(self.modules[KINDS[self.kind].sampler], x, y.float(), code)
            faces = PreparedFaces(x, y, code=code, base=self.decode(code, y, offset), offset=offset)
        with self._lock:
            self._prepared[key] = faces
            while len(self._prepared) > PREPARED_KEPT:
                self._prepared.popitem(last=False)
        return faces

    def forget(self) -> None:
        """Drop the prepared faces kept for the next edit (a benchmark that times the first edit calls this)."""
        with self._lock:
            self._prepared.clear()

    @torch.no_grad()
    def change(self, faces: PreparedFaces, y_target: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The change (B, 3, S, S) that takes the faces to `y_target` (B, A); exactly 0 where nothing moves."""
        from facegen.models.residual import apply_fields

        y_target = torch.as_tensor(np.asarray(y_target, np.float32)).to(self.device)
        if faces.fields is not None:
            change = apply_fields(faces.fields, faces.y, y_target)
        elif self.redraw:  # the decode, as a change of the face
            change = self.decode(faces.code, y_target, faces.offset) - faces.x
        else:
            change = self.decode(faces.code, y_target, faces.offset) - faces.base
        if not self.redraw:
            moved = (y_target != faces.y).any(dim=1)  # (B,)
            change = change * moved[:, None, None, None]
        return change.cpu()

    @torch.no_grad()
    def apply(self, x: torch.Tensor, y_source: torch.Tensor | np.ndarray,
              y_target: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Faces x (n, 3, S, S) with own values y_source (n, A) edited to y_target, at the model's size, in batches:
        the edited faces (n, 3, S, S) in [-1, 1] (with `redraw`, the decodes) and the change that made them."""
        x = self.fit(x).cpu()
        y_source = torch.as_tensor(np.asarray(y_source, np.float32))
        y_target = torch.as_tensor(np.asarray(y_target, np.float32))
        parts = []
        for i in range(0, len(x), self.batch_size):
            faces = self.prepare(x[i:i + self.batch_size], y_source[i:i + self.batch_size])
            target = y_target[i:i + self.batch_size]
            parts.append(self.decode(faces.code, target, faces.offset).cpu() if self.redraw else
                         self.change(faces, target))
        if self.redraw:  # the decodes themselves
            x_out = torch.cat(parts)
            return x_out, x_out - x
        change = torch.cat(parts)
        return (x + change).clamp(-1, 1), change

    def fit(self, x: torch.Tensor) -> torch.Tensor:
        """A tensor batch at the model's size (centre square, then an antialiased resize)."""
        import torch.nn.functional as F

        assert x.ndim == 4 and x.shape[1] == 3, f"expected images (B, 3, H, W) in [-1, 1], got {tuple(x.shape)}"
        side = min(x.shape[-2:])
        top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
        x = x[..., top:top + side, left:left + side]
        if side != self.size:
            x = F.interpolate(x.float(), size=(self.size, self.size), mode="bicubic", antialias=True,
                              align_corners=False).clamp(-1, 1)
        return x.float()

    # ------------------------------------------------------------------ photos

    def open(self, images: ImageLike | Sequence[ImageLike]) -> list[Image.Image]:
        """Photos (paths or PIL images, any size and mode) -> upright RGB images at their own size."""
        from facegen.data import load_photo
        from facegen.data.images import to_rgb

        items = [images] if isinstance(images, (str, os.PathLike, Image.Image)) else list(images)
        if not items:
            raise FacegenError("no photos to edit")
        return [to_rgb(load_photo(item)) for item in items]  # a photo under 16 px a side is refused in one line

    def load(self, images: ImageLike | Sequence[ImageLike] | torch.Tensor) -> torch.Tensor:
        """Photos or a tensor -> x (n, 3, S, S) in [-1, 1]: the centre square, resized like the training cache."""
        from facegen.data import square_resize, to_tensor

        if isinstance(images, torch.Tensor):
            return self.fit(images if images.ndim == 4 else images[None])
        return to_tensor(np.stack([square_resize(image, self.size) for image in self.open(images)]))

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
        """Edit every photo the same way. Without request and flip each photo comes back as it was
        (with `redraw`: the model's reconstruction)."""
        from facegen.data import to_pil
        from facegen.pipelines.change import apply_change

        parsed, flips = self.parse(request, flip, extrapolate)
        photos = None if isinstance(images, torch.Tensor) else self.open(images)
        x = self.load(images if photos is None else photos)
        n, names = x.shape[0], self.attribute_names
        if source_attributes is not None:
            source = np.asarray(source_attributes, dtype=np.float32).reshape(n, len(names))
            sources = ["given"] * n
        elif (not parsed and not flips and not self.redraw) or (
                self.redraw and not KINDS[self.kind].encoder_takes_y and not flips and set(parsed) == set(names)):
            # Nothing asked: the photo comes back as it was. A redrawing fader told every value: its encoder
            # does not take the photo's own.
            source, sources = np.zeros((n, len(names)), np.float32), ["not needed"] * n
        else:
            source, sources = self.photo_attributes(images, x)  # paths as given: a CelebA file's own labels
        target = self.targets(source, parsed, flips)
        x_out, change = self.apply(x, source, target)
        if photos is None or self.redraw:
            edited = to_pil(x_out)
        else:
            edited = [Image.fromarray(apply_change(np.asarray(photo), delta)) if delta.any() else photo
                      for photo, delta in zip(photos, change)]
        return EditOutput(images=edited, source_attributes=source, target_attributes=target, x=x_out,
                          change=change, attribute_names=names, sources=sources)

    def sweep(self, image: ImageLike | torch.Tensor, attributes: str | Sequence[str], steps: int = 8,
              low: float = 0.0, high: float = 1.0, *, source_attributes: np.ndarray | None = None,
              extrapolate: bool = False, tile_max: int = SWEEP_TILE_MAX) -> Image.Image:
        """The paper's figure: one face, the photo then `steps` edits from `low` to `high`, one row per attribute.

        Tiles are the photo's centre square at its own resolution (at most
        `tile_max` px), or the model's size for a tensor or a redrawing model.
        """
        from facegen.data import make_grid, to_tensor
        from facegen.pipelines.change import apply_change

        listed = [attributes] if isinstance(attributes, str) else list(attributes)
        resolved = [resolve_name(a, self.attribute_names) for a in listed]
        if not resolved:
            raise FacegenError("name at least one attribute to sweep, e.g. --attr male")
        if not 2 <= steps <= 64:
            raise FacegenError(f"--steps must be between 2 and 64, got {steps}")
        bound_low, bound_high = EXTRAPOLATE_RANGE if extrapolate else (0.0, 1.0)
        if not (bound_low <= low <= bound_high and bound_low <= high <= bound_high):
            advice = "even with --extrapolate" if extrapolate else "use --extrapolate to go beyond [0, 1]"
            raise FacegenError(f"sweep range {low:g}..{high:g} is outside [{bound_low:g}, {bound_high:g}]; {advice}")
        photo = None if isinstance(image, torch.Tensor) else self.open(image)[0]  # read once
        x = self.load(image if photo is None else [photo])[:1]
        if source_attributes is not None:
            source = np.asarray(source_attributes, np.float32).reshape(1, -1)
        else:
            source, _ = self.photo_attributes(image, x)
        tile = None
        if photo is not None and not self.redraw:
            from facegen.data import square_resize

            tile = square_resize(photo, min(min(photo.size), tile_max))  # (T, T, 3) uint8
        faces = self.prepare(x, source)
        values = np.linspace(low, high, steps, dtype=np.float32)
        rows = []
        for name, flipped in resolved:
            target = np.repeat(source, steps, axis=0)
            target[:, self.attribute_names.index(name)] = 1.0 - values if flipped else values
            many = PreparedFaces(**{k: (v.expand(steps, *v.shape[1:]) if v is not None else None)
                                    for k, v in vars(faces).items()})
            change = self.change(many, target)
            if tile is None:
                rows += [x, (x + change).clamp(-1, 1)]
            else:
                edited = np.stack([apply_change(tile, delta) for delta in change])
                rows += [to_tensor(tile[None]), to_tensor(edited)]
        return make_grid(torch.cat(rows), nrow=steps + 1)

