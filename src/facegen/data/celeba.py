"""Find and read CelebA as users hold it, or a custom folder of labelled images.

    facegen data info ../shared/data/celeba-9k

`open_dataset(folder)` recognises, in this order:

- torchvision: `folder/celeba/` holding the official files (the `root` given to
  `torchvision.datasets.CelebA`); also `celeba/` itself;
- official: `img_align_celeba/NNNNNN.jpg`, `list_attr_celeba.txt`, optional
  `list_eval_partition.txt`;
- official-archive: `Img/img_align_celeba/`, `Anno/list_attr_celeba.txt`,
  optional `Eval/list_eval_partition.txt`;
- kaggle: `img_align_celeba/img_align_celeba/`, `list_attr_celeba.csv`,
  optional `list_eval_partition.csv`;
- custom: images plus ONE CSV with a file column and attribute columns (see
  `facegen.data.tables`); file names are relative to the CSV's folder, or to
  the one sub-folder that holds them.

Splits come from the partition file or the CSV's `split` column when there is
one, else from the rule in `facegen.data.rows` (crc32 of the file name).
Rows whose image file is absent are skipped and listed in `Dataset.missing`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np

from facegen.data.images import IMAGE_SUFFIXES
from facegen.data.rows import DERIVED_SPLIT_RULE, LabelledRows, derived_split
from facegen.data.tables import (Table, find_file_column, read_csv_attributes, read_official_attributes,
                                 read_partition)
from facegen.errors import FacegenError

LAYOUTS = ("official", "official-archive", "kaggle", "torchvision", "custom")
_KAGGLE_EXTRAS = ("list_attr_celeba.csv", "list_eval_partition.csv", "list_bbox_celeba.csv",
                  "list_landmarks_align_celeba.csv")
_LOOKED_FOR = ("img_align_celeba/ with list_attr_celeba.txt (official), Img/img_align_celeba/ with "
               "Anno/list_attr_celeba.txt (official archive), img_align_celeba/img_align_celeba/ with "
               "list_attr_celeba.csv (Kaggle), celeba/ holding the official files (torchvision), "
               "or images with one CSV that has a 'filename' column (custom)")


@dataclass
class Dataset(LabelledRows):
    """A labelled image folder: `files[i]` under `image_dir` has `labels[i]` and `split[i]`."""

    root: Path  # the folder the user named, resolved
    layout: str  # one of LAYOUTS
    image_dir: Path
    attribute_names: list[str]
    files: list[str]  # relative to image_dir, in row order, only rows whose image exists
    labels: np.ndarray  # (N, A) uint8 in {0, 1}
    split: np.ndarray  # (N,) uint8: 0 train, 1 valid, 2 test
    split_source: str
    missing: list[str] = field(default_factory=list)  # rows whose image file is absent
    label_files: list[Path] = field(default_factory=list)  # attribute file, then the partition file if any
    unlabeled: int = 0  # images in image_dir that no row names

    def path(self, i: int) -> Path:
        """The image file of row `i`."""
        return self.image_dir / self.files[i]


def open_dataset(path: str | os.PathLike) -> Dataset:
    """Detect the layout of the folder the user named and read its labels and split."""
    root = Path(path).expanduser()
    if not root.exists():
        raise FacegenError(f"{root}: no such folder")
    if not root.is_dir():
        raise FacegenError(f"{root} is a file; name the folder that holds the images and the attribute file")
    root = root.resolve()
    layout, image_dir, attribute_file, partition_file = _detect(root)
    table = read_csv_attributes(attribute_file) if attribute_file.suffix == ".csv" \
        else read_official_attributes(attribute_file)
    if layout == "custom":
        image_dir = _custom_image_dir(root, table.files)
    return _assemble(root, layout, image_dir, table, partition_file)


# --------------------------------------------------------------------------- layout


def _detect(root: Path) -> tuple[str, Path, Path, Path | None]:
    """(layout, image folder, attribute file, partition file or None) of `root`."""
    if (root / "celeba" / "list_attr_celeba.txt").is_file():
        return _official("torchvision", root / "celeba", root / "celeba")
    if (root / "list_attr_celeba.txt").is_file():
        return _official("torchvision" if root.name == "celeba" else "official", root, root)
    if (root / "Anno" / "list_attr_celeba.txt").is_file():
        layout, image_dir, attributes, _ = _official("official-archive", root / "Img", root / "Anno")
        partition = root / "Eval" / "list_eval_partition.txt"
        return layout, image_dir, attributes, partition if partition.is_file() else None
    if (root / "list_attr_celeba.csv").is_file():
        image_dir = _celeba_image_dir(root, root / "list_attr_celeba.csv")
        partition = root / "list_eval_partition.csv"
        return "kaggle", image_dir, root / "list_attr_celeba.csv", partition if partition.is_file() else None
    csv_file = _custom_csv(root)
    if csv_file is not None:
        return "custom", root, csv_file, None
    _explain_missing(root)


def _official(layout: str, image_parent: Path, label_dir: Path) -> tuple[str, Path, Path, Path | None]:
    attributes = label_dir / "list_attr_celeba.txt"
    partition = label_dir / "list_eval_partition.txt"
    return layout, _celeba_image_dir(image_parent, attributes), attributes, partition if partition.is_file() else None


def _celeba_image_dir(parent: Path, attribute_file: Path) -> Path:
    """`parent/img_align_celeba`, or the same name nested once (how Kaggle's zip unpacks)."""
    image_dir = parent / "img_align_celeba"
    if (image_dir / "img_align_celeba").is_dir():
        return image_dir / "img_align_celeba"
    if image_dir.is_dir():
        return image_dir
    raise FacegenError(f"found {attribute_file} but no image folder {image_dir}; unpack img_align_celeba.zip there")


def _custom_csv(root: Path) -> Path | None:
    """The one CSV in `root` with a file column, None if there is none, a `FacegenError` if several."""
    candidates = []
    for csv_file in sorted(root.glob("*.csv")):
        if csv_file.name in _KAGGLE_EXTRAS:
            continue
        try:
            with open(csv_file, encoding="utf-8-sig") as handle:
                header = handle.readline().split(",")
        except (OSError, UnicodeDecodeError):
            continue
        if find_file_column(header) is not None:
            candidates.append(csv_file)
    if len(candidates) > 1:
        names = ", ".join(candidate.name for candidate in candidates)
        raise FacegenError(f"{root}: several label CSVs ({names}); keep one, or move the others out")
    return candidates[0] if candidates else None


def _custom_image_dir(root: Path, files: list[str]) -> Path:
    """The CSV's folder, or the one sub-folder where most of the first listed files are."""
    sample = files[:50]
    best, best_found = root, sum((root / name).is_file() for name in sample)
    if best_found == len(sample):
        return root
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = sum((sub / name).is_file() for name in sample)
        if found > best_found:
            best, best_found = sub, found
    return best


def _explain_missing(root: Path) -> NoReturn:
    """Raise the most helpful `FacegenError` for a folder that matched no layout."""
    if root.name == "img_align_celeba" and any((root.parent / name).is_file() for name in
                                               ("list_attr_celeba.txt", "list_attr_celeba.csv")):
        raise FacegenError(f"{root} is the image folder; name the folder above it, {root.parent}")
    if (root / "manifest.json").is_file() and (root / "images.npy").is_file():
        raise FacegenError(f"{root} is a facegen cache, not a data set; train on it directly, or give "
                           f"`prepare` the original images")
    if (root / "img_align_celeba").is_dir() or (root / "Img").is_dir():
        raise FacegenError(f"{root}: found the images but no attribute file (list_attr_celeba.txt, "
                           f"Anno/list_attr_celeba.txt or list_attr_celeba.csv); CelebA ships it beside the images")
    if any(root.glob("*.csv")):
        raise FacegenError(f"{root}: no CSV here has a file column; name it one of filename, file, image, image_id")
    raise FacegenError(f"{root}: no data set found; looked for {_LOOKED_FOR}")


# --------------------------------------------------------------------------- rows


def _assemble(root: Path, layout: str, image_dir: Path, table: Table, partition_file: Path | None) -> Dataset:
    with os.scandir(image_dir) as entries:
        on_disk = {entry.name for entry in entries if entry.is_file()}  # one listing, not 200k stats
    present = [name in on_disk if "/" not in name else (image_dir / name).is_file() for name in table.files]
    files = [name for name, ok in zip(table.files, present) if ok]
    missing = [name for name, ok in zip(table.files, present) if not ok]
    if not files:
        raise FacegenError(f"none of the {len(table.files)} images listed in {table.path} is in {image_dir} "
                           f"(first: {table.files[0]}); is this the right folder?")
    keep = np.flatnonzero(present)
    labels = table.labels[keep]
    label_files = [table.path]
    if partition_file is not None:
        partition = read_partition(partition_file)
        unlisted = [name for name in files if name not in partition]
        if unlisted:
            raise FacegenError(f"{partition_file} has no row for {unlisted[0]} ({len(unlisted)} images in all); "
                               f"use the partition file that came with these images, or delete it")
        split = np.array([partition[name] for name in files], np.uint8)
        split_source = f"official {partition_file.name}"
        label_files.append(partition_file)
    elif table.split is not None:
        split = table.split[keep]
        split_source = f"'split' column of {table.path.name}"
    else:
        split = derived_split(files)
        split_source = DERIVED_SPLIT_RULE
    return Dataset(root=root, layout=layout, image_dir=image_dir, attribute_names=list(table.attribute_names),
                   files=files, labels=labels, split=split, split_source=split_source, missing=missing,
                   label_files=label_files, unlabeled=_count_unlabeled(on_disk, table.files))


def _count_unlabeled(on_disk: set[str], files: list[str]) -> int:
    """Images in the folder's top level that no row names (reported, never read)."""
    listed = set(files)
    return sum(1 for name in on_disk if name.lower().endswith(IMAGE_SUFFIXES) and name not in listed)
