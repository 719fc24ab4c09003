"""What a `Dataset` and an `ImageCache` share: labelled rows in three splits.

When a data set ships no split (celeba-9k, most custom folders), the
validation split is derived from each file's name alone:

    valid  if  crc32(file name, UTF-8) % 10 == 0   (about 10 %)
    train  otherwise; the test split stays empty

so a file keeps its split when others are added or removed, and copies of
CelebA at different resolutions (celeba-9k, celeba-fullres-100) agree:

    >>> derived_split(["000001.jpg", "000002.jpg", "000004.jpg"]).tolist()
    [0, 0, 1]
"""

from __future__ import annotations

import difflib
import zlib
from collections.abc import Iterable, Sequence

import numpy as np

from facegen.data.tables import SPLITS
from facegen.errors import FacegenError

DERIVED_SPLIT_RULE = "derived: valid if crc32(file name) % 10 == 0 (about 10%), else train; no test rows"


def derived_split(files: Iterable[str]) -> np.ndarray:
    """The split codes (N,) uint8 of the rule above."""
    return np.array([1 if zlib.crc32(name.encode("utf-8")) % 10 == 0 else 0 for name in files], np.uint8)


def split_code(split_name: str) -> int:
    """"train" -> 0, "valid" -> 1, "test" -> 2, or a `FacegenError`."""
    if split_name not in SPLITS:
        raise FacegenError(f"unknown split {split_name!r}; choose one of {', '.join(SPLITS)}")
    return SPLITS.index(split_name)


def find_attributes(attribute_names: Sequence[str], wanted: Iterable[str]) -> list[int]:
    """Column index of each wanted attribute (exact name, else case-insensitive), or a `FacegenError`.

    >>> find_attributes(["Male", "Young"], ["young", "Male"])
    [1, 0]
    """
    lowered = {name.lower(): i for i, name in enumerate(attribute_names)}
    columns = []
    for name in wanted:
        if name in attribute_names:
            columns.append(list(attribute_names).index(name))
        elif name.lower() in lowered:
            columns.append(lowered[name.lower()])
        else:
            close = difflib.get_close_matches(name, attribute_names, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(attribute_names)}"
            raise FacegenError(f"unknown attribute {name!r} in this data set; {hint}")
    return columns


class LabelledRows:
    """Methods over `files`, `labels` (N, A) uint8, `split` (N,) uint8 and `attribute_names`."""

    files: list[str]
    labels: np.ndarray
    split: np.ndarray
    attribute_names: list[str]

    def __len__(self) -> int:
        return len(self.files)

    def indices(self, split_name: str) -> np.ndarray:
        """Row indices (int64, ascending) of one split: "train", "valid" or "test"."""
        return np.flatnonzero(self.split == split_code(split_name)).astype(np.int64)

    def split_counts(self) -> dict[str, int]:
        """Rows per split, e.g. {"train": 8103, "valid": 897, "test": 0}."""
        counts = np.bincount(np.asarray(self.split, np.int64), minlength=len(SPLITS))
        return {name: int(counts[i]) for i, name in enumerate(SPLITS)}

    def attribute_columns(self, names: Iterable[str]) -> list[int]:
        """Label columns of the named attributes; unknown names are a `FacegenError`."""
        return find_attributes(self.attribute_names, names)

    def frequencies(self) -> np.ndarray:
        """Fraction of rows with each attribute, (A,) float64."""
        if len(self.labels) == 0:
            return np.zeros(len(self.attribute_names))
        return np.asarray(self.labels, np.float64).mean(axis=0)
