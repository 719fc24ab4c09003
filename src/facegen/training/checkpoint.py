"""Resume state: one versioned dict of tensors and plain values, written atomically.

    checkpoints/last.pt       {"version": 1, "method": "cgan", "step": 1500, "options": {...},
                               "state": {"modules": {...}, "optimizers": {...}, ...}, "stats": {...}}
    checkpoints/previous.pt   the one before it, kept so that a damaged last.pt does not lose the run

Loaded with `torch.load(..., weights_only=True)`: a resume file can hold no code.
A crash while writing leaves the previous checkpoint in place.
"""

from __future__ import annotations

import os
import pickle
import sys
import warnings
from pathlib import Path

import torch

from facegen.errors import FacegenError
from facegen.files import atomic_write
from facegen.validation import check_checkpoint

CHECKPOINT_VERSION = 1
LAST, PREVIOUS = "last.pt", "previous.pt"


def save_checkpoint(path: str | Path, *, method: str, step: int, options: dict, state: dict, stats: dict) -> Path:
    """Write the full training state to `path` via a temporary file and an atomic rename; the file it
    replaces becomes `previous.pt` beside it once the new one is whole."""
    path = Path(path)
    payload = {"version": CHECKPOINT_VERSION, "method": method, "step": step, "options": options,
               "state": state, "stats": stats}

    def write(tmp: Path) -> None:
        torch.save(payload, tmp)
        if path.is_file():
            _keep_as_previous(path)

    atomic_write(path, write)
    return path


def _keep_as_previous(path: Path) -> None:
    """previous.pt <- the current last.pt, while last.pt stays in place (a hard link, then an atomic rename)."""
    previous, link = path.with_name(PREVIOUS), path.with_name(f".{PREVIOUS}.link.tmp")
    try:
        link.unlink(missing_ok=True)
        os.link(path, link)
        os.replace(link, previous)
    except OSError:  # no hard links on this file system: for a moment only previous.pt exists, and loading copes
        os.replace(path, previous)


def load_checkpoint(path: str | Path, *, report=None) -> dict:
    """Read a resume file written by `save_checkpoint`; anything else is a one-line FacegenError.

    A run folder or its last.pt that is missing or damaged falls back to previous.pt beside it, saying so
    through `report` (a line on stderr by default). The payload's "path" is the file actually read.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / LAST
    previous = path.with_name(PREVIOUS)
    if path.name != LAST or not previous.is_file():
        return _read(path)
    try:
        return _read(path)
    except FacegenError as error:
        payload = _read(previous)
        (report or _stderr)(f"{error}; resuming from the checkpoint before it, {previous} (step {payload['step']})")
        return payload


def _read(path: Path) -> dict:
    if not path.is_file():
        raise FacegenError(f"no checkpoint at {path}: give a run folder or its checkpoints/{LAST}")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's own message advises weights_only=False, which would run whatever code the file holds: never.
        found = next((line.strip() for line in str(error).splitlines() if "Unsupported global" in line), "")
        if not found:  # not a file torch.save wrote: a photo, a bare pickle, a cut-off file
            raise FacegenError(f"{path} is damaged or not a facegen checkpoint (not a file torch.save wrote)") from None
        found = found.replace("WeightsUnpickler error: ", "").split(" was not an allowed")[0]
        raise FacegenError(f"{path} is not a facegen checkpoint: it holds objects other than tensors and plain "
                           f"values ({found[:120]}), and facegen never loads code") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        first = next((line.strip() for line in str(error).splitlines() if line.strip() and "weights_only" not in line),
                     type(error).__name__)
        raise FacegenError(f"{path} is damaged or not a facegen checkpoint ({first[:160]})") from None
    if not isinstance(payload, dict) or payload.get("version") != CHECKPOINT_VERSION or "state" not in payload:
        raise FacegenError(f"{path} is not a facegen checkpoint (version {CHECKPOINT_VERSION} expected)")
    payload = check_checkpoint(payload, str(path))
    payload["path"] = str(path)
    return payload


def _stderr(line: str) -> None:
    print(f"facegen: {line}", file=sys.stderr)


def tidy_run_folder(run_dir: str | Path, step: int) -> None:
    """Before a run goes on from `step`: drop the half-written temporaries of a killed run, and the log rows
    after `step` (they are replayed now, and would otherwise stand in stats.jsonl and log.txt twice)."""
    run_dir = Path(run_dir)
    for pattern in ("checkpoints/.*.tmp", "model/.*.tmp", "samples/*.tmp.png", ".*.tmp"):
        for leftover in run_dir.glob(pattern):
            leftover.unlink(missing_ok=True)
    _keep_rows(run_dir / "stats.jsonl", step, _json_step)
    _keep_rows(run_dir / "log.txt", step, _text_step)


def _json_step(line: str) -> int | None:
    import json

    try:
        row = json.loads(line)
    except ValueError:
        return None  # a row cut short by the kill: dropped below
    return row.get("step") if isinstance(row, dict) and isinstance(row.get("step"), int) else None


def _text_step(line: str) -> int | None:
    head = line.split(" ", 1)[0]
    return int(head[5:]) if head.startswith("step=") and head[5:].isdigit() else None


def _keep_rows(path: Path, step: int, step_of) -> None:
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    kept = [line for line in lines if line.endswith("\n") and (step_of(line) is None or step_of(line) <= step)]
    if kept != lines:
        atomic_write(path, lambda tmp: tmp.write_text("".join(kept), encoding="utf-8"))
