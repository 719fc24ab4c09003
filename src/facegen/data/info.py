"""`facegen data info`: what a data set or a cache holds, in a few readable lines.

    facegen data info ../shared/data/celeba-9k
    facegen data info cache/celeba9k-64
"""

from __future__ import annotations

import os

import numpy as np

from facegen.data.cache import ImageCache, is_cache, open_cache
from facegen.data.celeba import Dataset, open_dataset

BAR_WIDTH = 20  # characters for 100 %
SHOWN_NAMES = 5  # missing or skipped file names listed before "..."


def open_any(path: str | os.PathLike) -> Dataset | ImageCache:
    """A cache folder -> `open_cache`, anything else -> `open_dataset`."""
    return open_cache(path) if is_cache(path) else open_dataset(path)


def format_info(obj: Dataset | ImageCache) -> str:
    """Layout, image folder, rows per split and every attribute's frequency, in file order."""
    if isinstance(obj, ImageCache):
        lines = _cache_lines(obj)
    else:
        lines = _dataset_lines(obj)
    counts = obj.split_counts()
    lines += [f"{'split':<11}{obj.manifest['split_source'] if isinstance(obj, ImageCache) else obj.split_source}",
              f"{'':<11}" + "   ".join(f"{name} {count:,}" for name, count in counts.items()),
              "", _attribute_table(obj.attribute_names, obj.labels)]
    return "\n".join(lines)


def _dataset_lines(dataset: Dataset) -> list[str]:
    listed = len(dataset) + len(dataset.missing)
    lines = [f"{'data set':<11}{dataset.root}",
             f"{'layout':<11}{dataset.layout}",
             f"{'images':<11}{dataset.image_dir}",
             f"{'labels':<11}{dataset.label_files[0].name}: {listed:,} rows, {len(dataset.attribute_names)} attributes"]
    if dataset.missing:
        lines.append(f"{'missing':<11}{len(dataset.missing):,} rows name an absent image (skipped): "
                     f"{_some(dataset.missing)}")
    if dataset.unlabeled:
        lines.append(f"{'unlabeled':<11}{dataset.unlabeled:,} images in the folder have no row (ignored)")
    return lines


def _cache_lines(cache: ImageCache) -> list[str]:
    manifest = cache.manifest
    megabytes = cache.images.nbytes / 1e6
    lines = [f"{'cache':<11}{cache.path} (facegen cache v{manifest['version']}, {cache.size}x{cache.size}, "
             f"{megabytes:,.1f} MB of images)",
             f"{'source':<11}{manifest['source']} (layout {manifest['layout']})",
             f"{'images':<11}{len(cache):,} of {manifest['rows_listed']:,} labelled rows"]
    if manifest["missing"]:
        lines.append(f"{'missing':<11}{len(manifest['missing']):,} rows named an absent image: "
                     f"{_some(manifest['missing'])}")
    if manifest["skipped"]:
        lines.append(f"{'skipped':<11}{len(manifest['skipped']):,} unreadable images: "
                     f"{_some([name for name, _ in manifest['skipped']])}")
    return lines


def _attribute_table(names: list[str], labels: np.ndarray) -> str:
    """One line per attribute: number, name, % positive, a bar; in file order."""
    positive = labels.sum(axis=0, dtype=np.int64)
    total = max(len(labels), 1)
    width = max(len("attribute"), *(len(name) for name in names))
    lines = [f"  # {'attribute':<{width}}  positive"]
    for number, (name, count) in enumerate(zip(names, positive), start=1):
        share = count / total
        lines.append(f"{number:>3} {name:<{width}}  {100 * share:5.1f}%  {'#' * round(share * BAR_WIDTH)}".rstrip())
    return "\n".join(lines)


def _some(names: list[str]) -> str:
    return ", ".join(names[:SHOWN_NAMES]) + (", ..." if len(names) > SHOWN_NAMES else "")
