"""Metric records, one JSON object a line, and a plain fixed-width table for the terminal.

Every number facegen measures is appended to a `metric-<name>.jsonl` style
file with what produced it, so a result can be traced and compared later:

    append_jsonl(run_dir / "metrics.jsonl",
                 MetricRecord("fid", 41.2, model="cgan", data="celeba-9k/val", n_samples=1000, seconds=130.0))
    print(format_table(read_jsonl(run_dir / "metrics.jsonl"), ["model", "metric", "value", "n_samples"]))
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


@dataclasses.dataclass
class MetricRecord:
    """One measured number and its provenance; `extra` holds anything else (e.g. the judge's accuracy)."""

    metric: str  # e.g. "fid", "kid", "attribute_accuracy/Smiling"
    value: float
    model: str = ""  # which model or checkpoint was measured
    data: str = ""  # which data it was measured on
    n_samples: int = 0  # images the number rests on
    seconds: float = 0.0  # wall time the measurement took
    timestamp: str = ""  # ISO 8601 UTC; filled in when left empty
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The flat dict that is written: the named fields first, then `extra`'s keys."""
        row = {field.name: getattr(self, field.name) for field in dataclasses.fields(self) if field.name != "extra"}
        clashes = set(self.extra) & set(row)
        if clashes:
            raise ValueError(f"extra fields {sorted(clashes)} clash with MetricRecord's own fields")
        return {**row, **self.extra}


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    """JSON-safe values: numpy scalars and arrays to Python, NaN and inf to None (strict JSON has neither)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def append_jsonl(path: str | Path, record: MetricRecord | Mapping[str, Any]) -> dict[str, Any]:
    """Append one record as one line of JSON to `path` (parents created); returns the dict written.

    A plain dict needs at least `metric` and `value`; a missing `timestamp`
    is filled in. Non-finite floats (an infinite PSNR) are written as null.
    """
    row = record.to_dict() if isinstance(record, MetricRecord) else dict(record)
    missing = {"metric", "value"} - set(row)
    if missing:
        raise ValueError(f"a metric record needs the fields {sorted(missing)}")
    if not row.get("timestamp"):
        row["timestamp"] = _utc_now()
    row = _plain(row)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(row, allow_nan=False, ensure_ascii=False)
    with open(path, "a", encoding="utf-8") as handle:  # one write a line: appends from two processes do not interleave
        handle.write(line + "\n")
    return row


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All records of a .jsonl file, in order; blank lines are skipped."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _cell(value: Any, float_format: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return format(float(value), float_format)
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *,
                 headers: Sequence[str] | None = None, float_format: str = ".4g") -> str:
    """A fixed-width text table of `rows` (dicts) showing `columns`; numbers right-aligned.

    A missing or None value shows as "-"; floats use `float_format`.

    >>> print(format_table([{"model": "cgan", "fid": 41.234}, {"model": "fader", "fid": 8.0}], ["model", "fid"]))
    model    fid
    -----  -----
    cgan   41.23
    fader      8
    """
    headers = list(headers) if headers is not None else list(columns)
    if len(headers) != len(columns):
        raise ValueError(f"{len(headers)} headers for {len(columns)} columns")
    cells = [[_cell(row.get(column), float_format) for column in columns] for row in rows]
    numeric = [
        all(isinstance(row.get(column), (int, float, np.number)) and not isinstance(row.get(column), bool)
            for row in rows if row.get(column) is not None)
        for column in columns
    ]
    widths = [max([len(header)] + [len(line[i]) for line in cells]) for i, header in enumerate(headers)]

    def render(line: Sequence[str]) -> str:
        parts = [text.rjust(width) if is_number else text.ljust(width)
                 for text, width, is_number in zip(line, widths, numeric)]
        return "  ".join(parts).rstrip()

    lines = [render(headers), render(["-" * width for width in widths])]
    lines += [render(line) for line in cells]
    return "\n".join(lines)
