"""Writing files so that a crash never leaves half of one where a whole one is expected,
and so that a path the system refuses is one line for the user, never a traceback."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from facegen.errors import FacegenError

JPEG_QUALITY = 95
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}


def atomic_write(target: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp_path)` on a temporary sibling of `target`, then rename it into place.

    The rename is atomic on POSIX: readers see the old file or the new one, never a partial one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name is bounded, so any target name the system allows has a temporary that it allows too.
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:100]}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(tmp))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; these are ordinary, shareable files
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def refusal(path: str | os.PathLike, error: OSError, verb: str = "write") -> FacegenError:
    """An OSError of the system as the user's one line: the path, and the reason in words."""
    reason = error.strerror or type(error).__name__
    if error.errno == errno.ENAMETOOLONG:
        reason = "the file or folder name is longer than the system allows; choose a shorter one"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = f"{reason}; choose a folder you can write to"
    elif error.errno == errno.ENOSPC:
        reason = "no space left on the device"
    return FacegenError(f"cannot {verb} {path}: {reason}")


def guarded_write(target: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """`atomic_write`, with anything the system refuses (a name too long, a folder it will not let us
    write, a full disk) raised as a one-line FacegenError. An existing file is replaced only by a whole one."""
    try:
        return atomic_write(target, write)
    except OSError as error:
        raise refusal(target, error) from None


def save_image(image, target: str | os.PathLike) -> Path:
    """Save a PIL image in the format its suffix names (JPEG at quality 95), guarded and atomic."""
    target = Path(target)
    form = _FORMATS.get(target.suffix.lower(), "PNG")
    extra = {"quality": JPEG_QUALITY} if form == "JPEG" else {}
    return guarded_write(target, lambda tmp: image.save(tmp, format=form, **extra))


def writable_folder(folder: str | os.PathLike, what: str = "output folder", *, keep: bool = True) -> Path:
    """Create `folder` if needed and prove that a file can be written in it, before any slow work.
    With `keep=False` the folders this made are removed again (a check that leaves nothing behind)."""
    folder = Path(folder)
    try:
        made = [p for p in (folder, *folder.parents) if not p.exists()]
        _make_writable(folder, what)
        for path in made if not keep else []:  # deepest first
            path.rmdir()
    except OSError as error:
        raise refusal(folder, error, "write into") from None
    return folder


def _make_writable(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise FacegenError(f"{what} {folder} is a file; give a folder")
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".facegen-probe.", suffix=".tmp")
        os.close(handle)
        os.unlink(probe)
    except FileExistsError:
        raise FacegenError(f"{what} {folder} is a file (or lies inside one); give a folder") from None


def check_name(path: str | os.PathLike, *, reserve: int = 0) -> None:
    """A file name the system can hold (255 bytes on most), with `reserve` bytes to spare for a temporary
    sibling's longer name; refused before any work rather than after it."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        limit = os.pathconf(folder if folder.is_dir() else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    size = len(os.fsencode(path.name))
    if size + reserve > limit:
        raise FacegenError(f"cannot write {path.name[:40]}...: the name is {size} bytes; the system allows "
                           f"{limit}{f' (less {reserve} for a temporary copy beside it)' if reserve else ''}; "
                           "choose a shorter name")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line (a log row), guarded."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line.rstrip("\n") + "\n")
    except OSError as error:
        raise refusal(path, error, "append to") from None
