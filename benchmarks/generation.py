"""Generation speed of a model on this CPU: FLOPs per face, batch throughput, one-face latency.

The pipeline as users run it (`fast`, the default) takes turns with the plain
trained module (`fast=False`), so the speedup between them holds even while
other jobs load the machine; the absolute figures hold only on a quiet one.

    python benchmarks/generation.py --model cgan            # writes benchmarks/results/generation-cgan.json
    python benchmarks/generation.py --model runs/x/model --batch 256 --threads 2
    python benchmarks/generation.py --dtype bfloat16        # the fast path in bf16, on CPUs with native bf16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CPU_PEAK_GFLOPS, count_flops, time_interleaved, write_result  # noqa: E402

from facegen.pipelines.generate import GenerationPipeline  # noqa: E402
from facegen.pretrained import load_pretrained  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cgan")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="rounds of the interleaved timing")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="of the fast path; the plain module stays float32")
    parser.add_argument("--peak-gflops", type=float, default=CPU_PEAK_GFLOPS, help="fp32 matmul rate")
    parser.add_argument("--name", help="result file name (default generation-<model>)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pretrained = load_pretrained(args.model)
    pipes = {"plain": GenerationPipeline(pretrained, fast=False),
             "fast": GenerationPipeline(pretrained, dtype=getattr(torch, args.dtype))}
    A = len(pretrained.attribute_names)
    y_batch, y_one = torch.rand(args.batch, A), torch.rand(1, A)
    # The model's own work: the fast path's last layer does 6% more multiply-adds, which must not flatter the rate.
    flops = count_flops(pipes["plain"].sample, y_one, torch.Generator().manual_seed(0))
    batch = time_interleaved({name: (lambda p=pipe: p.sample(y_batch, torch.Generator().manual_seed(0)))
                              for name, pipe in pipes.items()}, repeats=args.repeats)
    one = time_interleaved({name: (lambda p=pipe: p.sample(y_one, torch.Generator().manual_seed(0)))
                            for name, pipe in pipes.items()}, repeats=args.repeats, warmup=3, calls=20)
    images_per_second = args.batch / batch["fast"]["median_s"]
    achieved = flops * images_per_second / 1e9
    suffix = "" if args.dtype == "float32" else f"-{args.dtype}"
    write_result(args.name or f"generation-{Path(str(args.model)).name}{suffix}", {
        "model": str(pretrained.path), "kind": pretrained.kind, "size": pretrained.size,
        "network": type(pipes["fast"].network).__name__,  # what `facegen generate` runs
        "dtype": args.dtype,  # bfloat16 work is still divided by the fp32 peak: not a like-for-like fraction
        "gflops_per_image": flops / 1e9, "batch": args.batch, "images_per_second": images_per_second,
        "latency_one_face_ms": one["fast"]["median_s"] * 1000, "achieved_gflops": achieved,
        "fraction_of_peak": achieved / args.peak_gflops, "peak_gflops": args.peak_gflops,
        "plain_images_per_second": args.batch / batch["plain"]["median_s"],  # the trained module as it is
        "plain_latency_one_face_ms": one["plain"]["median_s"] * 1000,
        "speedup_batch": batch["fast"]["speedup"],  # median of per-round ratios, taken in turns
        "speedup_one_face": one["fast"]["speedup"],
    })


if __name__ == "__main__":
    main()
