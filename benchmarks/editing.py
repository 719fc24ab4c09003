"""Edit speed of a model on this CPU: one photo end to end (decode, crop, encode, decode, PNG), and a batch.

    python benchmarks/editing.py --model fader        # writes benchmarks/results/editing-fader.json
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CPU_PEAK_GFLOPS, count_flops, time_call, write_result  # noqa: E402

from facegen.pipelines.edit import EditPipeline  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "facegen" / "samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="fader")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peak-gflops", type=float, default=CPU_PEAK_GFLOPS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = EditPipeline.from_pretrained(args.model)
    photo = sorted(SAMPLES.glob("*.jpg"))[0]
    source, _ = pipe.photo_attributes(photo)  # the classifier's read of the photo, done once
    names = pipe.attribute_names
    request = {names[0]: 1.0 - float(source[0, 0] > 0.5)}

    def one_photo():
        out = pipe.edit(photo, request, source_attributes=source)
        out.images[0].save(io.BytesIO(), format="PNG")

    x = pipe.load([photo] * args.batch)
    y = torch.from_numpy(source).repeat(args.batch, 1)
    flops = count_flops(lambda: pipe.decode(pipe.encode(x[:1], y[:1]), y[:1]))
    one = time_call(one_photo, repeats=30, warmup=3)
    batch = time_call(lambda: pipe.decode(pipe.encode(x, y), y), repeats=5)
    images_per_second = args.batch / batch["median_s"]
    write_result(f"editing-{Path(str(args.model)).name}", {
        "model": str(pipe.pretrained.path),
        "gflops_per_edit": flops / 1e9, "latency_one_photo_ms": one["median_s"] * 1000,
        "batch": args.batch, "edits_per_second": images_per_second,
        "fraction_of_peak": flops * images_per_second / 1e9 / args.peak_gflops,
    })


if __name__ == "__main__":
    main()
