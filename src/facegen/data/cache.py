"""A preprocessed cache: decode, crop and resize once; training reads only this.

    facegen prepare ../shared/data/celeba-9k --size 64 --out cache/celeba9k-64

A cache is a folder of five files:

    images.npy     (N, S, S, 3) uint8, memory-mapped when read
    labels.npy     (N, A) uint8 in {0, 1}
    split.npy      (N,) uint8: 0 train, 1 valid, 2 test
    files.txt      N file names, relative to the source's image folder
    manifest.json  written last: source, layout, size, counts, attribute names,
                   skipped images and the fingerprint of the input

It is built in a hidden sibling folder and renamed into place only when
complete, so an interrupted run never leaves a folder that looks valid.
Re-running on an unchanged input (same files, sizes, times, label files and
size) does nothing. Images that fail to decode are skipped and listed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facegen import __version__
from facegen.data.build import decode_all, default_workers, fingerprint, npy_header
from facegen.data.celeba import Dataset, open_dataset
from facegen.data.images import MAX_PIXELS
from facegen.data.rows import LabelledRows
from facegen.data.tables import SPLITS
from facegen.errors import FacegenError
from facegen.files import check_name, refusal, writable_folder
from facegen.validation import MAX_SIZE, MIN_SIZE  # the one place image sides are bounded

FORMAT = "facegen-cache"
VERSION = 1  # bump when the files or the decode-crop-resize change; old caches then rebuild
MANIFEST = "manifest.json"
CACHE_FILES = ("images.npy", "labels.npy", "split.npy", "files.txt", MANIFEST)
_BUILDING = ".building"  # marker inside a temporary folder: "a prepare run (pid inside) owns this"


@dataclass
class ImageCache(LabelledRows):
    """An opened cache; `images[i]` is row i's (S, S, 3) uint8 picture, read from disk on access."""

    path: Path
    images: np.ndarray  # (N, S, S, 3) uint8 memmap
    labels: np.ndarray  # (N, A) uint8 in {0, 1}
    split: np.ndarray  # (N,) uint8
    files: list[str]
    attribute_names: list[str]
    size: int
    manifest: dict = field(repr=False)


@dataclass
class PrepareResult:
    """What `prepare_cache` did."""

    path: Path
    manifest: dict = field(repr=False)
    reused: bool
    seconds: float
    images_per_second: float
    skipped: list[tuple[str, str]]  # (file, reason) of images that could not be decoded

    def summary(self) -> str:
        m = self.manifest
        what = f"{m['count']:,} images at {m['size']}x{m['size']}, {len(m['attribute_names'])} attributes " \
               f"({', '.join(f'{k} {v:,}' for k, v in m['split_counts'].items())})"
        if self.reused:
            return f"{self.path} is up to date: {what}; nothing to do (--force rebuilds)"
        lines = [f"wrote {self.path}: {what} in {self.seconds:.1f} s ({self.images_per_second:.0f} images/s)"]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable image(s), listed in {MANIFEST}; "
                         f"first: {self.skipped[0][0]} ({self.skipped[0][1]})")
        if m["missing"]:
            lines.append(f"{len(m['missing'])} labelled row(s) had no image file, listed in {MANIFEST}")
        return "\n".join(lines)


def is_cache(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder with a facegen cache manifest (of any version)."""
    try:
        return json.loads((Path(path) / MANIFEST).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def open_cache(path: str | os.PathLike) -> ImageCache:
    """Open a cache built by `prepare_cache`; anything else is a `FacegenError`."""
    path = Path(path).expanduser()
    if not is_cache(path):
        raise FacegenError(f"{path} is not a facegen cache (no {MANIFEST}); build one with `facegen prepare`")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise FacegenError(f"{path}: damaged cache ({MANIFEST} is not readable JSON: {error}); rebuild it with "
                           "facegen prepare DATA --out PATH --force") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("count"), int) \
            or not isinstance(manifest.get("size"), int) or not isinstance(manifest.get("attribute_names"), list):
        raise FacegenError(f"{path}: damaged cache ({MANIFEST} lacks count, size or attribute_names); rebuild it "
                           "with facegen prepare DATA --out PATH --force")
    redo = f"rebuild it: facegen prepare {manifest.get('source', 'DATA')} --size {manifest.get('size', 64)} " \
           f"--out {path} --force"
    if manifest.get("version") != VERSION:
        raise FacegenError(f"{path} is a version {manifest.get('version')} cache, this facegen reads version "
                           f"{VERSION}; {redo}")
    try:
        images = np.load(path / "images.npy", mmap_mode="r")
        labels = np.load(path / "labels.npy")
        split = np.load(path / "split.npy")
        files = (path / "files.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as error:
        raise FacegenError(f"{path}: damaged cache ({error}); {redo}") from None
    count, size = manifest["count"], manifest["size"]
    names = manifest["attribute_names"]
    if images.shape != (count, size, size, 3) or labels.shape != (count, len(names)) \
            or split.shape != (count,) or len(files) != count:
        raise FacegenError(f"{path}: damaged cache (shapes disagree with {MANIFEST}); {redo}")
    return ImageCache(path=path, images=images, labels=labels, split=split, files=files,
                      attribute_names=list(names), size=size, manifest=manifest)


def prepare_cache(source: str | os.PathLike | Dataset, *, size: int, out: str | os.PathLike,
                  workers: int | None = None, progress: bool = True, force: bool = False) -> PrepareResult:
    """Decode, centre-crop and resize every image of `source` once into the cache folder `out`."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise FacegenError(f"--size {size} is out of range; choose {MIN_SIZE} to {MAX_SIZE} pixels")
    if workers is not None and workers < 1:
        raise FacegenError(f"--workers {workers}: need at least 1")
    out = Path(out).expanduser().absolute()
    if isinstance(source, Dataset):
        dataset = source
    else:
        if is_cache(source):
            raise FacegenError(f"{source} is already a cache; give `prepare` the original images")
        dataset = open_dataset(source)
    _check_out(out)
    input_fingerprint = fingerprint(root=dataset.root, layout=dataset.layout, image_dir=dataset.image_dir,
                                    files=dataset.files, label_files=dataset.label_files, size=size,
                                    version=VERSION)
    if not force and _up_to_date(out, input_fingerprint):
        manifest = json.loads((out / MANIFEST).read_text())
        skipped = [tuple(item) for item in manifest["skipped"]]
        return PrepareResult(out, manifest, reused=True, seconds=0.0, images_per_second=0.0, skipped=skipped)
    _check_disk(out.parent, len(dataset) * size * size * 3)
    temp = _claim_temp(out)
    try:
        manifest = _build(dataset, size, temp, workers or default_workers(), progress, input_fingerprint)
        _swap_into_place(temp, out)
    finally:
        if temp.exists():
            shutil.rmtree(temp)
    return PrepareResult(out, manifest, reused=False, seconds=manifest["seconds"],
                         images_per_second=manifest["images_per_second"],
                         skipped=[tuple(item) for item in manifest["skipped"]])


def default_cache_root() -> Path:
    """`$FACEGEN_CACHE`, else `~/.cache/facegen`."""
    return Path(os.environ.get("FACEGEN_CACHE") or Path.home() / ".cache" / "facegen").expanduser()


def resolve_training_data(path: str | os.PathLike, *, size: int, cache_root: Path | None = None,
                          progress: bool = True) -> ImageCache:
    """A cache -> open it; a data set -> prepare it (once) under `cache_root`, then open that."""
    if is_cache(path):
        cache = open_cache(path)
        if cache.size != size:
            raise FacegenError(f"{path} holds {cache.size}x{cache.size} images, not {size}x{size}; run "
                               f"`facegen prepare {cache.manifest['source']} --size {size} --out DIR` "
                               f"and train on DIR")
        return cache
    dataset = open_dataset(path)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset.root.name).strip("-.") or "data"
    digest = hashlib.sha256(str(dataset.root).encode()).hexdigest()[:8]
    out = Path(cache_root or default_cache_root()) / f"{slug}-{digest}-{size}"
    return open_cache(prepare_cache(dataset, size=size, out=out, progress=progress).path)


# --------------------------------------------------------------------------- building


def _build(dataset: Dataset, size: int, temp: Path, workers: int, progress: bool, input_fingerprint: str) -> dict:
    from tqdm import tqdm

    started = time.perf_counter()
    total = len(dataset)
    keep = np.zeros(total, bool)
    skipped: list[tuple[str, str]] = []
    header_bytes = len(npy_header((total, size, size, 3)))
    with open(temp / "images.npy", "wb") as handle, \
            tqdm(total=total, unit="img", desc=f"prepare {size}px", disable=not progress, smoothing=0.1) as bar:
        handle.write(npy_header((total, size, size, 3)))
        for start, pixels, failures in decode_all(dataset.image_dir, dataset.files, size, workers):
            handle.write(pixels.tobytes())
            failed = {index for index, _ in failures}
            chunk = range(start, min(start + len(pixels) + len(failures), total))
            for offset, row in enumerate(chunk):
                keep[row] = offset not in failed
            skipped += [(dataset.files[start + index], reason) for index, reason in failures]
            bar.update(len(chunk))
        count = int(keep.sum())
        if count == 0:
            raise FacegenError(f"none of the {total:,} images in {dataset.image_dir} could be decoded; first: "
                               f"{skipped[0][0]} ({skipped[0][1]})")
        handle.seek(0)
        handle.write(npy_header((count, size, size, 3), header_bytes))
        handle.truncate(header_bytes + count * size * size * 3)
    seconds = time.perf_counter() - started
    rows = np.flatnonzero(keep)
    labels, split = dataset.labels[rows], dataset.split[rows]
    files = [dataset.files[row] for row in rows]
    np.save(temp / "labels.npy", labels)
    np.save(temp / "split.npy", split)
    (temp / "files.txt").write_text("".join(name + "\n" for name in files), encoding="utf-8")
    counts = np.bincount(split.astype(np.int64), minlength=len(SPLITS))
    manifest = {
        "format": FORMAT, "version": VERSION, "facegen_version": __version__,
        "source": str(dataset.root), "layout": dataset.layout, "image_dir": str(dataset.image_dir),
        "label_files": [str(path) for path in dataset.label_files],
        "size": size, "count": count, "split_counts": dict(zip(SPLITS, map(int, counts))),
        "split_source": dataset.split_source, "attribute_names": dataset.attribute_names,
        "attribute_positive": [int(n) for n in labels.sum(axis=0, dtype=np.int64)],
        "rows_listed": total + len(dataset.missing), "missing": dataset.missing,
        "skipped": [list(item) for item in skipped],
        "preprocess": f"centre square (odd margin to the bottom/right), Pillow Lanczos to {size}x{size}; "
                      f"JPEGs whose shorter side is >= {16 * size} px decode at reduced scale first; "
                      f"images over {MAX_PIXELS / 1e6:.0f} MP skipped",
        "fingerprint": input_fingerprint, "workers": workers, "seconds": round(seconds, 3),
        "images_per_second": round(total / seconds, 1) if seconds > 0 else 0.0,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (temp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    (temp / _BUILDING).unlink()
    return manifest


def _check_out(out: Path) -> None:
    """`out` must be absent, empty, or a facegen cache: a user's other folder is never replaced. Its name must
    leave room for the temporary sibling it is built in, and its parent must take new files."""
    try:
        check_name(out, reserve=len(f"..partial-{2**22}"))
        writable_folder(out.parent, "--out")
        _check_existing(out)
    except OSError as error:
        raise refusal(out, error) from None


def _check_existing(out: Path) -> None:
    if out.is_file():
        raise FacegenError(f"--out {out} is a file; name a folder for the cache")
    if out.is_dir() and not is_cache(out) and any(out.iterdir()):
        raise FacegenError(f"--out {out} exists and is not a facegen cache; choose a new folder "
                           f"(nothing there was changed)")


def _up_to_date(out: Path, input_fingerprint: str) -> bool:
    if not is_cache(out):
        return False
    try:
        cache = open_cache(out)
    except FacegenError:
        return False  # damaged or another version: rebuild
    return cache.manifest.get("fingerprint") == input_fingerprint


def _check_disk(folder: Path, image_bytes: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if image_bytes > free:
        raise FacegenError(f"the cache needs {image_bytes / 1e9:.1f} GB but {folder} has {free / 1e9:.1f} GB "
                           f"free; free some space or choose another --out")


def _claim_temp(out: Path) -> Path:
    """A fresh hidden sibling of `out` to build in, after clearing ones left by killed runs."""
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if (stale / _BUILDING).is_file() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    temp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if temp.exists():
        shutil.rmtree(temp)
    temp.mkdir()
    (temp / _BUILDING).write_text(str(os.getpid()))
    return temp


def _swap_into_place(temp: Path, out: Path) -> None:
    """Rename the finished `temp` to `out`, replacing an older cache (never anything else)."""
    old = None
    if out.exists():
        if is_cache(out):
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        else:
            out.rmdir()  # _check_out allowed only an empty folder; rmdir refuses anything else
    os.replace(temp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
