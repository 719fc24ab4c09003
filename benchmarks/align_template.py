"""Measure where CelebA's aligned crops put dlib's five landmarks: the template `facegen.align` aligns to.

    python benchmarks/align_template.py                  # prints the template, writes results/align-template.json
    python benchmarks/align_template.py --write          # ... and rewrites the constants in facegen/align/template.py

It runs `facegen.align.detect_faces` (HOG detector, 5-point predictor) on
every full-size 178x218 image of celeba-fullres-100 and on `--count-9k`
images of celeba-9k (89x109, upscaled x2 with Lanczos to the 178x218 frame;
its first 100 rows are the same faces as fullres-100 and are skipped), keeps
the largest face of each, and takes the median of each coordinate. The
same 100 faces at both resolutions tell how much the x2 upscale moves the
points (reported as `upscale_bias_px`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from facegen.align import detect_faces
from facegen.align import template as template_module
from facegen.data import load_image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def landmarks_of(paths: list[Path], upscale: int) -> tuple[np.ndarray, list[str]]:
    """(N, 5, 2) landmarks in the 178x218 frame of the largest face in each image, and the names without a face."""
    points, missed = [], []
    for path in paths:
        image = load_image(path)
        if upscale != 1:
            image = image.resize((image.width * upscale, image.height * upscale), Image.Resampling.LANCZOS)
        if image.size != (178, 218):
            raise SystemExit(f"{path}: {image.size}, expected 178x218 after x{upscale}")
        faces = detect_faces(image)
        if not faces:
            missed.append(path.name)
            continue
        points.append(max(faces, key=lambda face: face.width).landmarks)
    return np.array(points).reshape(-1, 5, 2), missed


def robust_spread(points: np.ndarray) -> np.ndarray:
    """Median absolute deviation x 1.4826 over axis 0: a std that ignores the odd wrong detection."""
    return 1.4826 * np.median(np.abs(points - np.median(points, axis=0)), axis=0)


def write_constants(template: np.ndarray, spread: np.ndarray, faces: int, source: str) -> None:
    def rows(array: np.ndarray) -> str:
        return "\n".join(f"    [{x:.2f}, {y:.2f}]," for x, y in array)

    wrapped = "\n".join(f"    {part!r}" for part in re.findall(r".{1,100}(?:\s|$)", source))
    block = (f"TEMPLATE_FACES = {faces}\nTEMPLATE_SOURCE = (\n{wrapped}\n)\n"
             f"TEMPLATE_CELEBA = np.array([\n{rows(template)}\n])  # (5, 2) (x, y) px in the 178 x 218 CelebA "
             f"frame, dlib's 5-point order\n"
             f"TEMPLATE_SPREAD = np.array([\n{rows(spread)}\n])  # (5, 2) median absolute deviation x 1.4826 "
             f"(a robust std) of each coordinate, px\n")
    path = Path(template_module.__file__)
    text = path.read_text()
    pattern = re.compile(r"(# --- derived by benchmarks/align_template.py[^\n]*\n).*?(# --- end of derived block)",
                         re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{path}: markers of the derived block not found")
    path.write_text(pattern.sub(lambda m: m.group(1) + block + m.group(2), text))
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--count-9k", type=int, default=1000, help="celeba-9k images to add (rows 101 on)")
    parser.add_argument("--write", action="store_true", help="rewrite the constants in facegen/align/template.py")
    args = parser.parse_args()

    fullres = sorted((args.data / "celeba-fullres-100" / "img_align_celeba").glob("*.jpg"))
    half = sorted((args.data / "celeba-9k" / "img_align_celeba").glob("*.jpg"))
    if not fullres:
        raise SystemExit(f"no images under {args.data / 'celeba-fullres-100'}")
    tic = time.perf_counter()
    full_points, full_missed = landmarks_of(fullres, 1)
    seconds_per_image = (time.perf_counter() - tic) / len(fullres)
    same_names = {path.name for path in fullres}
    twin_points, _ = landmarks_of([p for p in half if p.name in same_names], 2)
    extra = [p for p in half if p.name not in same_names][:args.count_9k]
    extra_points, extra_missed = landmarks_of(extra, 2)

    points = np.concatenate([full_points, extra_points])  # (N, 5, 2)
    template = np.median(points, axis=0)
    spread = robust_spread(points)
    source = (f"median over {len(points)} img_align_celeba faces: {len(full_points)} of celeba-fullres-100 "
              f"(178x218) and {len(extra_points)} of celeba-9k rows 101+ (89x109 upscaled x2)")
    payload = {
        "faces": len(points), "source": source,
        "template_celeba_xy": template.round(2).tolist(),
        "template_square_256_xy": template_module.celeba_to_square(template, 256).round(2).tolist(),
        "robust_std_px": spread.round(2).tolist(),
        "median_fullres_only_xy": np.median(full_points, axis=0).round(2).tolist(),
        "upscale_bias_px": (np.median(twin_points, axis=0) - np.median(full_points, axis=0)).round(2).tolist(),
        "no_face": {"fullres": full_missed, "celeba_9k": len(extra_missed)},
        "detect_and_landmarks_seconds_per_178x218_image": round(seconds_per_image, 4),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "align-template.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    if args.write:
        write_constants(template, spread, len(points), source)


if __name__ == "__main__":
    sys.exit(main())
