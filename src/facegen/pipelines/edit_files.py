"""What `facegen edit` does with files: tell photos from the request, expand folders, choose outputs, edit in batches.

    photos, request = split_tokens(["a.jpg", "faces/", "male=0"])
    photos = expand_photos(photos)
    failures = edit_files(pipe, photos, output_paths(photos, output=None, out_dir="edited"), request)

Every edited photo keeps its size (`EditPipeline.edit`); an unreadable photo
among many is reported and skipped, and no input is ever written over.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from facegen.errors import FacegenError
from facegen.pipelines.edit import EditPipeline


def split_tokens(tokens: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Command-line tokens -> (photo files and folders, request tokens). A token is a photo when it exists
    on disk or ends like an image; everything else (name=value, a bare name, a .yaml request) is the request."""
    from facegen.data.images import IMAGE_SUFFIXES

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
    from facegen.data.images import IMAGE_SUFFIXES

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
    from facegen.data.images import WRITABLE_SUFFIXES as WRITABLE
    from facegen.pipelines.output import check_writable

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

    request, flips = pipe.parse(request, flip, extrapolate)  # a bad request fails before any photo is read
    failures: list[tuple[Path, str]] = []
    counts: dict[str, int] = {}
    for start in range(0, len(photos), pipe.batch_size):
        batch, images, outs = photos[start:start + pipe.batch_size], [], []
        for photo, target in zip(batch, targets[start:start + pipe.batch_size]):
            try:
                images.append(load_photo(photo))
                outs.append((photo, target))
            except FacegenError as error:
                failures.append((photo, str(error)))
                if len(photos) > 1:  # one photo: the caller raises the error itself
                    log(f"skipped {error}")
        if not images:
            continue
        source = None
        if flips or request:  # nothing asked needs no own values: each photo is written as it was
            source, sources = pipe.photo_attributes([p for p, _ in outs], pipe.load(images))
            for where in sources:
                counts[where] = counts.get(where, 0) + 1
        result = pipe.edit(images, request, flip=flips, source_attributes=source, extrapolate=extrapolate)
        for image, change, (photo, target) in zip(result.images, result.change, outs):
            save_photo(image, target, unchanged_from=None if pipe.redraw or change.any() else photo)
    if counts:
        parts = [f"{where} ({n} photo{'s' * (n > 1)})" for where, n in counts.items()]
        log("own attribute values from " + "; ".join(parts))
    return failures


def save_photo(image, target: Path, *, unchanged_from: Path | None = None) -> None:
    """Write an edited photo; an unchanged one in its own format is copied byte for byte (no second JPEG loss)."""
    import shutil

    from facegen.files import guarded_write, save_image

    if unchanged_from is not None and unchanged_from.suffix.lower() == target.suffix.lower():
        guarded_write(target, lambda tmp: shutil.copyfile(unchanged_from, tmp))
        return
    save_image(image, target)
