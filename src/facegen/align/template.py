"""Where CelebA's aligned crops put the five dlib landmarks: the target of every alignment.

The numbers are measured, not guessed: `benchmarks/align_template.py` ran the
same detector and 5-point predictor that `detect_faces` uses on real
`img_align_celeba` images and took the median of each coordinate. It
rewrites the block between the markers below; rerun it to refresh them:

    python benchmarks/align_template.py --write

Two frames:
- the CelebA frame: 178 x 218 pixels, the layout of `img_align_celeba`;
- the model's square: rows 20..198 of that frame (`facegen.data.center_square`),
  resized to `size` x `size`. Pixel centres sit at integers in both.

    >>> template_square(178)[4] - TEMPLATE_CELEBA[4]    # the square is the frame, 20 rows lower
    array([  0., -20.])
"""

from __future__ import annotations

import numpy as np

CELEBA_WIDTH, CELEBA_HEIGHT = 178, 218
SQUARE_TOP = 20  # first row of the centre square in the CelebA frame
SQUARE_SIDE = 178

# --- derived by benchmarks/align_template.py: do not edit by hand -------------------------------
TEMPLATE_FACES = 1060
TEMPLATE_SOURCE = (
    'median over 1060 img_align_celeba faces: 96 of celeba-fullres-100 (178x218) and 964 of celeba-9k '
    'rows 101+ (89x109 upscaled x2)'
)
TEMPLATE_CELEBA = np.array([
    [115.56, 112.52],
    [99.92, 113.46],
    [61.53, 112.52],
    [76.81, 113.28],
    [88.19, 142.38],
])  # (5, 2) (x, y) px in the 178 x 218 CelebA frame, dlib's 5-point order
TEMPLATE_SPREAD = np.array([
    [2.11, 1.05],
    [1.05, 1.24],
    [2.11, 1.05],
    [1.20, 1.12],
    [4.22, 3.16],
])  # (5, 2) median absolute deviation x 1.4826 (a robust std) of each coordinate, px
# --- end of derived block -----------------------------------------------------------------------


def celeba_to_square(points: np.ndarray, size: int) -> np.ndarray:
    """(N, 2) points in the 178 x 218 CelebA frame -> the centre square resized to `size` px.

    >>> celeba_to_square(np.array([[88.5, 108.5]]), 256)    # the centre stays the centre
    array([[127.5, 127.5]])
    """
    points = np.asarray(points, dtype=np.float64)
    scale = size / SQUARE_SIDE  # square px per CelebA px
    return (points - [0.0, SQUARE_TOP] + 0.5) * scale - 0.5


def square_to_celeba(points: np.ndarray, size: int) -> np.ndarray:
    """The inverse of `celeba_to_square`.

    >>> square_to_celeba(celeba_to_square(np.array([[60.0, 110.0]]), 64), 64)
    array([[ 60., 110.]])
    """
    points = np.asarray(points, dtype=np.float64)
    scale = size / SQUARE_SIDE
    return (points + 0.5) / scale - 0.5 + [0.0, SQUARE_TOP]


def template_square(size: int) -> np.ndarray:
    """The template in the model's square at `size` px: float64 (5, 2)."""
    return celeba_to_square(TEMPLATE_CELEBA, size)
