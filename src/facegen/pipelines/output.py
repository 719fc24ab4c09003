"""Checks on where results go, done before any work so a bad path fails in a second, not after a minute."""

from __future__ import annotations

import os
from pathlib import Path

from facegen.data.images import WRITABLE_SUFFIXES
from facegen.errors import FacegenError
from facegen.files import check_name, refusal, writable_folder


def check_writable(output: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
                   *, inputs: list[Path] | None = None) -> None:
    """An output file's folder must exist and be writable and its suffix an image type; an output folder
    is created if needed. No output may be one of the inputs (a user's photo is never overwritten)."""
    try:
        _check_writable(output, out_dir, inputs)
    except OSError as error:  # a path too long for the system, a loop of links, ...
        raise refusal(error.filename or output or out_dir, error) from None


def _check_writable(output, out_dir, inputs) -> None:
    protected = {p.resolve() for p in inputs or []}
    if output is not None:
        path = Path(output)
        if path.suffix.lower() not in WRITABLE_SUFFIXES:
            raise FacegenError(f"output {path} must end in one of {', '.join(WRITABLE_SUFFIXES)}")
        check_name(path)
        if path.is_dir():
            raise FacegenError(f"output {path} is a folder; give a file name, or use --out-dir")
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise FacegenError(f"cannot write {path}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise FacegenError(f"cannot write {path}: permission denied")
        if path.resolve() in protected:
            raise FacegenError(f"output {path} is also an input; refusing to overwrite your photo")
    if out_dir is not None:
        folder = writable_folder(out_dir, "--out-dir")
        if folder.resolve() in {p.parent for p in protected}:
            raise FacegenError(f"--out-dir {folder} holds the input photos; choose another folder so none is overwritten")

