"""Generation speed of a model on this CPU: FLOPs per face, batch throughput, one-face latency.

    python benchmarks/generation.py --model cgan            # writes benchmarks/results/generation-cgan.json
    python benchmarks/generation.py --model runs/x/model --batch 256 --threads 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CPU_PEAK_GFLOPS, count_flops, time_call, write_result  # noqa: E402

from facegen.pipelines.generate import GenerationPipeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cgan")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peak-gflops", type=float, default=CPU_PEAK_GFLOPS)
    parser.add_argument("--name", help="result file name (default generation-<model>)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = GenerationPipeline.from_pretrained(args.model)
    A = len(pipe.attribute_names)
    y_batch = torch.rand(args.batch, A)
    y_one = torch.rand(1, A)
    flops = count_flops(pipe.sample, y_one, torch.Generator().manual_seed(0))
    batch = time_call(lambda: pipe.sample(y_batch, torch.Generator().manual_seed(0)), repeats=5)
    one = time_call(lambda: pipe.sample(y_one, torch.Generator().manual_seed(0)), repeats=30, warmup=3)
    images_per_second = args.batch / batch["median_s"]
    achieved = flops * images_per_second / 1e9
    write_result(args.name or f"generation-{Path(str(args.model)).name}", {
        "model": str(pipe.pretrained.path), "kind": pipe.pretrained.kind, "size": pipe.pretrained.size,
        "gflops_per_image": flops / 1e9, "batch": args.batch, "images_per_second": images_per_second,
        "latency_one_face_ms": one["median_s"] * 1000, "achieved_gflops": achieved,
        "fraction_of_peak": achieved / args.peak_gflops, "peak_gflops": args.peak_gflops,
    })


if __name__ == "__main__":
    main()
