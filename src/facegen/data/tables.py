"""Parse the label files of CelebA and of custom folders, strictly.

Three formats, each read into one `Table` (file names in row order, labels
uint8 `(N, A)` in {0, 1}, and a split when the file carries one):

- CelebA's `list_attr_celeba.txt`: line 1 the row count, line 2 the attribute
  names, then a file name and one value per attribute (1 or -1), separated by
  any run of spaces;
- a CSV (Kaggle's `list_attr_celeba.csv`, or a custom folder's): a header with
  a file column (`filename`, `file_name`, `file`, `image`, `image_id` or
  `path`), optionally `split` (train/valid/test), and one column per attribute
  with values 0/1 or -1/1 (`1.0`, `+1`, `0.0`, `-1.0` also accepted);
- CelebA's `list_eval_partition.txt` / `.csv`: a file name and 0, 1 or 2.

Every malformed input is a `FacegenError` naming the file, the line and, for
a value, the column:

    >>> parse_value("1.7", Path("labels.csv"), 3, "Smiling")
    Traceback (most recent call last):
    ...
    facegen.errors.FacegenError: labels.csv, line 3, column 'Smiling': value '1.7' is not 0/1 or -1/1
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegen.errors import FacegenError

SPLITS = ("train", "valid", "test")
SPLIT_CODES = {"train": 0, "valid": 1, "test": 2, "val": 1, "validation": 1, "0": 0, "1": 1, "2": 2}
VALUES = {"1": 1, "+1": 1, "1.0": 1, "+1.0": 1, "0": 0, "0.0": 0, "-0": 0, "-1": 0, "-1.0": 0}
FILE_COLUMNS = ("filename", "file_name", "file", "image", "image_id", "path")
SPLIT_COLUMN = "split"


@dataclass
class Table:
    """The rows of one label file."""

    path: Path
    attribute_names: list[str]
    files: list[str]
    labels: np.ndarray  # (N, A) uint8 in {0, 1}
    split: np.ndarray | None = None  # (N,) uint8 codes 0/1/2, when the file has a split column


def parse_value(token: str, path: Path, line: int, column: str) -> int:
    """One label cell -> 0 or 1, or a `FacegenError` naming where it is."""
    try:
        return VALUES[token]
    except KeyError:
        raise FacegenError(f"{path}, line {line}, column {column!r}: value {token!r} "
                           f"is not 0/1 or -1/1") from None


def read_official_attributes(path: Path) -> Table:
    """CelebA's `list_attr_celeba.txt` (count line, names line, rows)."""
    lines = _read_lines(path)
    if len(lines) < 2:
        raise FacegenError(f"{path}: too short for CelebA's attribute format (a count line, a names line, rows)")
    try:
        declared = int(lines[0].strip())
    except ValueError:
        raise FacegenError(f"{path}, line 1: expected the row count, found {lines[0].strip()[:40]!r}") from None
    names = lines[1].split()
    _check_names(names, path, 2)
    width = len(names) + 1
    files, rows = [], []
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != width:
            raise FacegenError(f"{path}, line {number}: expected {width} fields (a file name and {len(names)} "
                               f"values), found {len(parts)}")
        try:
            rows.append([VALUES[token] for token in parts[1:]])
        except KeyError:
            for name, token in zip(names, parts[1:]):
                parse_value(token, path, number, name)
        files.append(parts[0])
    if declared != len(files):
        raise FacegenError(f"{path}: line 1 says {declared} rows but the file has {len(files)}; "
                           f"fix the count or restore the missing rows")
    _check_unique(files, path, first_row_line=3)
    return Table(path, names, files, _labels(rows, len(names)))


def read_csv_attributes(path: Path) -> Table:
    """A CSV of a file column, optionally `split`, and one column per attribute."""
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        header = [cell.strip() for cell in next(reader, [])]
        lowered = [cell.lower() for cell in header]
        file_column = find_file_column(header)
        if file_column is None:
            raise FacegenError(f"{path}: no file column in the header; name one of {', '.join(FILE_COLUMNS)}")
        split_column = lowered.index(SPLIT_COLUMN) if SPLIT_COLUMN in lowered else None
        columns = [i for i in range(len(header)) if i not in (file_column, split_column)]
        names = [header[i] for i in columns]
        _check_names(names, path, 1)
        files, rows, splits = [], [], []
        for number, cells in enumerate(reader, start=2):
            if not cells or all(not cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                raise FacegenError(f"{path}, line {number}: expected {len(header)} comma-separated fields "
                                   f"like the header, found {len(cells)}")
            row = []
            for i in columns:
                token = cells[i].strip()
                value = VALUES.get(token)
                row.append(parse_value(token, path, number, header[i]) if value is None else value)
            rows.append(row)
            files.append(_clean_file_name(cells[file_column], path, number))
            if split_column is not None:
                splits.append(_parse_split(cells[split_column], path, number))
    if not files:
        raise FacegenError(f"{path}: a header but no rows")
    _check_unique(files, path, first_row_line=2)
    split = np.array(splits, np.uint8) if split_column is not None else None
    return Table(path, names, files, _labels(rows, len(names)), split)


def find_file_column(header: Iterable[str]) -> int | None:
    """Index of the file-name column in a CSV header, or None."""
    lowered = [cell.strip().lower() for cell in header]
    for name in FILE_COLUMNS:
        if name in lowered:
            return lowered.index(name)
    return None


def read_partition(path: Path) -> dict[str, int]:
    """CelebA's `list_eval_partition.txt` (`NAME CODE`) or `.csv` (`image_id,partition`) -> name: 0/1/2."""
    partition: dict[str, int] = {}
    is_csv = path.suffix.lower() == ".csv"
    for number, line in enumerate(_read_lines(path), start=1):
        parts = [part.strip() for part in line.split(",")] if is_csv else line.split()
        if not any(parts) or (is_csv and number == 1 and find_file_column(parts) is not None):
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise FacegenError(f"{path}, line {number}: expected a file name and 0, 1 or 2 "
                               f"(train, valid, test), found {line.strip()[:60]!r}")
        partition[parts[0]] = int(parts[1])
    if not partition:
        raise FacegenError(f"{path}: no rows")
    return partition


# --------------------------------------------------------------------------- helpers


def _read_lines(path: Path) -> list[str]:
    with _open_text(path) as handle:
        return handle.read().splitlines()


def _open_text(path: Path):
    try:
        # utf-8-sig drops the byte-order mark that spreadsheet programs put first.
        return open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise FacegenError(f"{path}: no such file") from None
    except OSError as error:
        raise FacegenError(f"{path}: cannot read ({error.strerror or error})") from None


def _check_names(names: list[str], path: Path, line: int) -> None:
    if not names:
        raise FacegenError(f"{path}, line {line}: no attribute names")
    seen: set[str] = set()
    for name in names:
        if not name:
            raise FacegenError(f"{path}, line {line}: an attribute column has no name")
        if name in seen:
            raise FacegenError(f"{path}, line {line}: attribute {name!r} appears twice")
        seen.add(name)


def _check_unique(files: list[str], path: Path, first_row_line: int) -> None:
    if len(set(files)) == len(files):
        return
    seen: dict[str, int] = {}
    for offset, name in enumerate(files):
        if name in seen:
            raise FacegenError(f"{path}: {name!r} has two rows (row {seen[name] + 1} and row {offset + 1}); "
                               f"keep one")
        seen[name] = offset


def _clean_file_name(cell: str, path: Path, line: int) -> str:
    name = cell.strip().replace("\\", "/")
    if not name:
        raise FacegenError(f"{path}, line {line}: empty file name")
    if "\n" in name or "\r" in name:
        raise FacegenError(f"{path}, line {line}: file name {name!r} has a line break")
    if name.startswith("/") or ".." in name.split("/"):
        raise FacegenError(f"{path}, line {line}: file name {name!r} must be relative to the image folder")
    return name


def _parse_split(cell: str, path: Path, line: int) -> int:
    code = SPLIT_CODES.get(cell.strip().lower())
    if code is None:
        raise FacegenError(f"{path}, line {line}, column 'split': {cell.strip()!r} is not train, valid or test")
    return code


def _labels(rows: list[list[int]], width: int) -> np.ndarray:
    if not rows:
        return np.zeros((0, width), np.uint8)
    return np.array(rows, dtype=np.uint8)  # (N, A)
