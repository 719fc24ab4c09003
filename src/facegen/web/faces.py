"""What the Generate tab computes, without gradio: faces from slider values and a zip to download.

Kept apart from the user interface so it can be tested and timed on its own:

    >>> import torch
    >>> from facegen.web.faces import slider_vector
    >>> slider_vector(["Young", "Male"], {"Male": 1.0, "Young": 0.25, "Smiling": 1.0})
    tensor([[0.2500, 1.0000]])
"""

from __future__ import annotations

import io
import atexit
import itertools
import json
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from PIL import Image

from facegen.data import make_grid, to_uint8
from facegen.errors import FacegenError
from facegen.validation import MAX_SEED

MAX_FACES = 16  # one slider move redraws all of them; more would no longer feel instant
PNG_LEVEL = 1  # zlib level of served PNGs: 64 px faces, on loopback; speed matters, a few KB do not


def slider_vector(attribute_names: Sequence[str], values: Mapping[str, float]) -> torch.Tensor:
    """(1, A) attributes in the model's order from slider values by name; a missing one is 0.5."""
    row = [float(values.get(name, 0.5)) for name in attribute_names]
    return torch.tensor([row], dtype=torch.float32)  # (1, A)


def generate_faces(pipe, values: Mapping[str, float], *, seed: int, count: int,
                   temperature: float | None = None) -> torch.Tensor:
    """`count` faces (count, 3, S, S) in [-1, 1], all with the same attributes; the same seed gives the same faces.

    The noise comes from a fresh generator seeded with `seed`, so moving one
    slider changes that attribute on the very same faces. `temperature` is the
    noise's spread (None: the model's own; lower gives more typical faces).
    """
    if not 1 <= count <= MAX_FACES:
        raise FacegenError(f"the number of faces must be between 1 and {MAX_FACES}, got {count}")
    seed = whole_number(seed, "the seed", 0, MAX_SEED)
    y = slider_vector(pipe.attribute_names, values).expand(count, -1)  # (count, A)
    return pipe.sample(y, torch.Generator().manual_seed(int(seed)), temperature=temperature)


def whole_number(value: object, what: str, low: int, high: int) -> int:
    """A number from the page (or an API caller) as an int in [low, high], else a one-line FacegenError:
    a 22-digit seed used to overflow torch and leave a traceback in the server log.

    >>> whole_number(7.0, "the seed", 0, 10)
    7
    """
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if number is None and not isinstance(value, bool):
        try:
            as_float = float(value)  # type: ignore[arg-type]
            number = int(as_float) if as_float.is_integer() else None  # nan, inf and 1.5 are not
        except (TypeError, ValueError, OverflowError):
            number = None
    if number is None or not low <= number <= high:
        raise FacegenError(f"{what} must be a whole number between {low} and {high}, got {str(value)[:40]}")
    return number


def grid_columns(count: int) -> int:
    """Faces per row: 4 for up to 8 faces (two tidy rows), 8 beyond."""
    return 4 if count <= 8 else 8


def face_grid(x: torch.Tensor) -> Image.Image:
    """The faces (N, 3, S, S) as one picture, in rows of `grid_columns(N)`."""
    return make_grid(x, nrow=grid_columns(len(x)))


class OutputFolder:
    """A private temporary folder for the pictures and zips the app serves.

    Each redraw writes into a new numbered slot; only the newest `keep`
    slots are kept (Gradio copies what it serves into its own cache, so a
    slot only has to outlive one request). Pictures are written here as
    fast-compressed PNGs rather than handed to Gradio as PIL images, which
    it would encode twice (once to hash, once to save).
    """

    def __init__(self, keep: int = 256):
        self.path = Path(tempfile.mkdtemp(prefix="facegen-web-"))
        # Removed when the process ends normally, or on SIGTERM (`serve` turns it into a normal end).
        atexit.register(shutil.rmtree, self.path, ignore_errors=True)
        self.keep = keep
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def new_slot(self) -> Path:
        with self._lock:
            number = next(self._counter)
            old = self.path / f"{number - self.keep:06d}"
            if number >= self.keep and old.is_dir():
                for file in old.iterdir():
                    file.unlink(missing_ok=True)
                old.rmdir()
        slot = self.path / f"{number:06d}"  # a folder each, so files keep plain names for the user
        slot.mkdir()
        return slot

    def write_png(self, image: Image.Image, name: str = "face.png", slot: Path | None = None) -> Path:
        target = (slot or self.new_slot()) / name
        image.save(target, format="PNG", compress_level=PNG_LEVEL)
        return target

    def write_photo(self, image: Image.Image, name: str, slot: Path | None = None) -> Path:
        """A whole photo to show and download: a JPEG at quality 95 (what `facegen edit -o out.jpg` writes)
        when `name` ends in .jpg or .jpeg, else a fast-compressed PNG."""
        slot = slot or self.new_slot()
        if Path(name).suffix.lower() not in (".jpg", ".jpeg"):
            return self.write_png(image, Path(name).with_suffix(".png").name, slot)
        image.save(slot / name, format="JPEG", quality=95)
        return slot / name

    def write_faces(self, x: torch.Tensor, *, model: str, seed: int, values: Mapping[str, float],
                    slot: Path | None = None, temperature: float | None = None) -> Path:
        """A zip of one PNG per face plus attributes.json (model, seed, temperature if given, values): what the
        user sees, to keep."""
        target = (slot or self.new_slot()) / f"facegen-seed{int(seed)}.zip"
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
            for index, pixels in enumerate(to_uint8(x)):
                image = io.BytesIO()
                Image.fromarray(pixels).save(image, format="PNG", compress_level=PNG_LEVEL)
                archive.writestr(f"face-{index:02d}.png", image.getvalue())
            archive.writestr("attributes.json", json.dumps(
                {"model": model, "seed": int(seed), "count": len(x),
                 **({"temperature": round(float(temperature), 4)} if temperature is not None else {}),
                 "attributes": {name: round(float(v), 4) for name, v in values.items()}}, indent=1) + "\n")
        return target
