"""Resume state: one versioned dict of tensors and plain values, written atomically.

    checkpoints/last.pt   {"version": 1, "method": "cgan", "step": 1500, "options": {...},
                           "state": {"modules": {...}, "optimizers": {...}, ...}, "stats": {...}}

Loaded with `torch.load(..., weights_only=True)`: a resume file can hold no code.
A crash while writing leaves the previous checkpoint in place.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from facegen.errors import FacegenError
from facegen.files import atomic_write

CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, *, method: str, step: int, options: dict, state: dict, stats: dict) -> Path:
    """Write the full training state to `path` via a temporary file and an atomic rename."""
    path = Path(path)
    payload = {"version": CHECKPOINT_VERSION, "method": method, "step": step, "options": options,
               "state": state, "stats": stats}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Read a resume file written by `save_checkpoint`; anything else is a one-line FacegenError."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise FacegenError(f"no checkpoint at {path}: give a run folder or its checkpoints/last.pt")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        first = (str(error).strip().splitlines() or ["unreadable"])[0]
        raise FacegenError(f"{path} is not a facegen checkpoint ({first[:200]})") from None
    if not isinstance(payload, dict) or payload.get("version") != CHECKPOINT_VERSION or "state" not in payload:
        raise FacegenError(f"{path} is not a facegen checkpoint (version {CHECKPOINT_VERSION} expected)")
    return payload
