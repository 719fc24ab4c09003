"""Edit speed on this CPU, as a user meets it: open a photo, move a slider, edit a folder.

    python benchmarks/editing.py --model residual     # writes benchmarks/results/editing-residual.json

- open: a 1-megapixel photo (a full-size CelebA face enlarged, as a phone
  photo holds one face) read, its face found (dlib HOG), aligned, classified
  and prepared for edits, as the app's Edit tab does on upload;
- slider: one slider moved on that photo: the change for the new value, put
  back into the whole 1-megapixel photo (`edit_and_paste`), as the app does;
- folder: `facegen edit FOLDER --flip smiling --out-dir OUT` on 100 CelebA
  photos, wall time of the whole command in a fresh process (start-up,
  model load and PNG/JPEG writing included).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import count_flops, time_call, write_result  # noqa: E402

from facegen.pipelines.edit import EditPipeline  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FULLRES = REPO.parent / "shared" / "data" / "celeba-fullres-100" / "img_align_celeba"
CELEBA = REPO.parent / "shared" / "data" / "celeba-9k" / "img_align_celeba"


def one_megapixel_photo(folder: Path) -> Path:
    """A full-size CelebA photo enlarged to about 1 MP (904 x 1107), saved as a JPEG."""
    face = Image.open(FULLRES / "000006.jpg").convert("RGB")
    path = folder / "one-megapixel.jpg"
    face.resize((904, 1107), Image.Resampling.LANCZOS).save(path, quality=92)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="residual")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--folder-photos", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from facegen.pipelines.own_photo import edit_and_paste
    from facegen.web.photos import model_input, open_photo, own_attributes

    pipe = EditPipeline.from_pretrained(args.model)
    names = pipe.attribute_names
    work = Path(tempfile.mkdtemp(prefix="facegen-bench-"))
    photo_path = one_megapixel_photo(work)

    state = {}

    def open_it():
        pipe.forget()  # a new photo: nothing prepared yet
        photo = open_photo(photo_path)  # read, find, align
        x = model_input(pipe, photo)
        source, _ = own_attributes(pipe, x, can_classify=True)  # the classifier's reading
        pipe.prepare(x, source)  # the model's work on the face
        state.update(photo=photo, x=x, source=source)

    opened = time_call(open_it, repeats=5, warmup=1)
    photo, x, source = state["photo"], state["x"], state["source"]
    column = names.index("Smiling") if "Smiling" in names else 0
    values = iter([0.25, 0.5, 0.75, 1.0, 0.0] * 100)

    def slide():
        request = {names[column]: next(values)}
        result, _ = edit_and_paste(pipe, photo.image, photo.faces, x, source, request)
        return result

    slider = time_call(slide, repeats=30, warmup=3)
    pipe.forget()
    flops = count_flops(lambda: pipe.apply(x, source, source))
    pipe.apply(x, source, source)  # prepared again: the slider moves below reuse it, as in the app

    folder = work / "photos"
    folder.mkdir()
    for path in sorted(CELEBA.glob("*.jpg"))[:args.folder_photos]:
        (folder / path.name).write_bytes(path.read_bytes())
    tic = time.perf_counter()
    subprocess.run([sys.executable, "-m", "facegen.cli", "edit", str(folder), "--flip", "smiling", "--model",
                    str(args.model), "--out-dir", str(work / "edited")], check=True, capture_output=True)
    folder_seconds = time.perf_counter() - tic
    written = len(list((work / "edited").iterdir()))
    assert written == args.folder_photos, f"{written} of {args.folder_photos} edited photos written"
    write_result(f"editing-{Path(str(args.model)).name}", {
        "model": str(pipe.pretrained.path), "photo_pixels": list(photo.image.size),
        "gflops_per_face": flops / 1e9,
        "open_photo_seconds": opened["median_s"], "slider_move_ms": slider["median_s"] * 1000,
        "slider_move_ms_max": slider["max_s"] * 1000,
        "folder_photos": args.folder_photos, "folder_edit_seconds": round(folder_seconds, 2),
        "threads": args.threads,
        "aims": {"open_photo_seconds": 2.0, "slider_move_ms": 100, "folder_edit_seconds": 60},
    })


if __name__ == "__main__":
    main()
