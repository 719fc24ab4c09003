"""Data: CelebA and custom labelled folders, image helpers, the preprocessed cache.

(Skipped as a doctest: it needs the CelebA sample on disk; tests/test_data_cache.py runs the same on fixtures.)

    >>> from facegen.data import open_dataset, prepare_cache, open_cache   # doctest: +SKIP
    >>> cache = open_cache(prepare_cache(open_dataset("celeba-9k"), size=64, out="cache/c64").path)  # doctest: +SKIP
    >>> x = to_tensor(cache.images[cache.indices("train")[:16]])   # (16, 3, 64, 64) in [-1, 1]  # doctest: +SKIP

Nothing here imports torch at import time (the tensor helpers do it when
called), so `facegen prepare` and its worker processes start fast.
"""

from facegen.data.cache import (ImageCache, PrepareResult, is_cache, open_cache, prepare_cache,
                                resolve_training_data)
from facegen.data.celeba import LAYOUTS, Dataset, open_dataset
from facegen.data.images import (center_square, load_image, load_photo, make_grid, prepare_image, square_resize,
                                 to_image, to_pil, to_tensor, to_uint8)
from facegen.data.info import format_info, open_any
from facegen.data.tables import SPLITS

__all__ = [
    "LAYOUTS", "SPLITS", "Dataset", "ImageCache", "PrepareResult", "center_square", "format_info", "is_cache",
    "load_image", "load_photo", "make_grid", "open_any", "open_cache", "open_dataset", "prepare_cache", "prepare_image",
    "resolve_training_data", "square_resize", "to_image", "to_pil", "to_tensor", "to_uint8",
]
