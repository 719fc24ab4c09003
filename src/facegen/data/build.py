"""The low-level steps of building a cache: fingerprint, parallel decode, the .npy file.

Kept apart from `facegen.data.cache` so that `prepare`'s worker processes
import only this module, numpy and Pillow (never torch).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from facegen.data.images import prepare_image
from facegen.errors import FacegenError

CHUNK_IMAGES = 64  # images per worker task: big enough to hide pickling, small for a smooth progress bar
_NPY_MAGIC = b"\x93NUMPY\x01\x00"
_NPY_ALIGN = 64


def fingerprint(*, root: Path, layout: str, image_dir: Path, files: list[str], label_files: list[Path],
                size: int, version: int) -> str:
    """sha256 of everything the cache's contents depend on (paths, label files, file sizes and times)."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": version, "size": size, "root": str(root), "layout": layout,
                              "image_dir": str(image_dir)}).encode())
    for label_file in label_files:
        digest.update(hashlib.sha256(label_file.read_bytes()).digest())
    for name in files:
        stat = os.stat(image_dir / name)
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def decode_chunk(task: tuple[str, list[str], int]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Worker: decode one chunk -> (uint8 (k, S, S, 3) of the readable ones, [(index in chunk, reason)])."""
    image_dir, names, size = task
    images, failures = [], []
    for i, name in enumerate(names):
        path = os.path.join(image_dir, name)
        try:
            images.append(prepare_image(path, size))
        except FacegenError as error:
            failures.append((i, str(error).removeprefix(f"{path}: ")))
    pixels = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return pixels, failures


def decode_all(image_dir: Path, files: list[str], size: int, workers: int) \
        -> Iterator[tuple[int, np.ndarray, list[tuple[int, str]]]]:
    """Yield (first row, images, failures) chunk by chunk, in row order, decoded by `workers` processes."""
    starts = range(0, len(files), CHUNK_IMAGES)
    tasks = [(str(image_dir), files[start:start + CHUNK_IMAGES], size) for start in starts]
    if workers <= 1 or len(tasks) <= 2:
        for start, task in zip(starts, tasks):
            yield (start, *decode_chunk(task))
        return
    # spawn, not fork: the parent may hold torch's thread pools, which a forked child can deadlock on.
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_ignore_interrupts) as pool:
        for start, result in zip(starts, pool.imap(decode_chunk, tasks)):
            yield (start, *result)


def _ignore_interrupts() -> None:
    """Ctrl-C is the parent's to handle (it stops the pool); workers would only print tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def npy_header(shape: tuple[int, ...], length: int | None = None) -> bytes:
    """A version-1.0 .npy header for uint8 `shape`, space-padded to `length` bytes (default: aligned to 64).

    Writing the header first for the most rows and rewriting it at the same
    length once the readable count is known lets images stream straight to
    disk without a second copy.

    >>> len(npy_header((9000, 64, 64, 3)))
    128
    """
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    if length is None:
        length = -(-(len(_NPY_MAGIC) + 2 + len(text) + 1) // _NPY_ALIGN) * _NPY_ALIGN
    padding = length - len(_NPY_MAGIC) - 2 - len(text) - 1
    if padding < 0:
        raise ValueError(f"header for {shape} does not fit in {length} bytes")
    body = (text + " " * padding + "\n").encode("latin1")
    return _NPY_MAGIC + len(body).to_bytes(2, "little") + body


def default_workers() -> int:
    """Processes to decode with: every core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
