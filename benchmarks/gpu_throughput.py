"""Training throughput of every model on one GPU, and the share of the chip's bf16 peak that it reaches.

    python benchmarks/gpu_throughput.py                     # GPU: each model at 64 and 128 px, bf16-mixed, ~6 min
    python benchmarks/gpu_throughput.py --smoke             # CPU: 16 px, tiny widths, fp32; checks the script
    python benchmarks/gpu_throughput.py --models cgan --sizes 128 --batch 256     # one configuration

On the lent GPU machine (its python3 holds torch, lightning, tensorboard, safetensors; no install needed), as one
`run` call with timeout_s=600, then copy the JSON to benchmarks/results/ and its figures into docs/scaling.md:

    PYTHONPATH=src PYTHONUNBUFFERED=1 timeout 560 python3 benchmarks/gpu_throughput.py \
        --out $OUT/gpu-throughput.json --budget-seconds 400

For each model and image size it measures, at the recipes' default settings:

- step_images_per_second: `Method.training_step` alone, on a batch already on the
  device: what the model's passes can do (also at --big-batch, to show how much
  of the chip a batch of 64 leaves idle);
- loop_images_per_second: the real `training_loop` on a synthetic memory-mapped
  cache (random pixels: speed does not depend on what they show), i.e. with the
  per-step host-to-device copy, the per-step loss sync and the logging: what
  `facegen train` gives;
- gflops_per_image: one training step (every forward and backward pass of every
  module) as torch's FlopCounterMode counts it, divided by the batch;
- fraction_of_peak: achieved FLOP/s over the chip's dense bf16 peak from its spec
  sheet, and over a bf16 matrix product measured here (what is reachable).

Results are written after every configuration, so a run cut short keeps what it
measured; --budget-seconds skips what would not fit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CPU_PEAK_GFLOPS, RESULTS, count_flops, machine  # noqa: E402

from facegen.attributes import CELEBA_ATTRIBUTES, AttributePrior  # noqa: E402
from facegen.training.loop import method_class, training_loop  # noqa: E402

# Dense bf16 tensor-core peaks from the vendors' spec sheets (TFLOP/s, without sparsity), by device name.
SPEC_BF16_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10": 125.0}
# The 12 attributes the shipped conditional models use; the classifier predicts all 40.
ATTRIBUTES = ["Young", "Male", "Attractive", "Blond_Hair", "Black_Hair", "Brown_Hair", "Smiling", "Eyeglasses",
              "Bangs", "No_Beard", "Heavy_Makeup", "Wearing_Lipstick"]
# Widths for --smoke, small enough that a CPU step takes milliseconds.
SMOKE_OPTIONS = {"cgan": {"g_channels": 32, "d_channels": 32}, "classifier": {"channels": 8},
                 "fader": {"channels": 8, "latent_channels": 8, "d_channels": 8},
                 "cvae": {"z_dim": 8, "channels": 16, "d_channels": 16}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="cgan,fader,cvae,classifier")
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--batch", type=int, default=64, help="the loop's default global batch")
    parser.add_argument("--big-batch", type=int, default=256, help="a second step-only batch (0: none)")
    parser.add_argument("--precision", help="default: bf16-mixed on a GPU, 32-true on CPU")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per measurement")
    parser.add_argument("--budget-seconds", type=float, default=420.0, help="skip configurations past this")
    parser.add_argument("--no-loop", action="store_true", help="step-only measurements")
    parser.add_argument("--threads", type=int, help="CPU threads")
    parser.add_argument("--smoke", action="store_true", help="CPU, 16 px, tiny widths, 1 s per measurement")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/gpu-throughput-<device>.json)")
    args = parser.parse_args()
    if args.smoke:
        args.accelerator, args.sizes, args.seconds, args.big_batch, args.batch = "cpu", "16", 1.0, 0, 8
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.accelerator in ("cuda", "gpu") or (args.accelerator == "auto" and torch.cuda.is_available())
    args.accelerator = "cuda" if cuda else "cpu"
    precision = args.precision or ("bf16-mixed" if cuda else "32-true")
    device_name = torch.cuda.get_device_name(0) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    out = Path(args.out) if args.out else RESULTS / f"gpu-throughput-{'cuda' if cuda else 'cpu'}.json"
    models = [m for m in args.models.split(",") if _exists(m)]

    started = time.monotonic()
    peak = _peaks(cuda, device_name, precision)
    import lightning

    report = {"benchmark": "gpu_throughput", "machine": machine() | {"lightning": lightning.__version__,
                                                                     "cuda": torch.version.cuda},
              "device": device_name, "precision": precision,
              "batch": args.batch, "smoke": args.smoke, "peak": peak, "results": []}
    print(f"{device_name}, {precision}: spec peak {peak['spec_tflops']} TFLOP/s, "
          f"measured matmul {peak['measured_matmul_tflops']:.4g} TFLOP/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="facegen-bench-") as scratch:
        for size in [int(s) for s in args.sizes.split(",")]:
            cache = _synthetic_cache(Path(scratch) / f"cache-{size}", size=size, count=max(2048, 8 * args.batch))
            for model in models:
                if time.monotonic() - started > args.budget_seconds:
                    report["results"].append({"model": model, "size": size, "skipped": "over --budget-seconds"})
                    continue
                options = SMOKE_OPTIONS[model] if args.smoke else {}
                row = _measure(model, size, options, cache, Path(scratch) / f"run-{model}-{size}", args, precision,
                               peak)
                report["results"].append(row)
                print(json.dumps(row), flush=True)
                _write(out, report)
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    _write(out, report)
    print(f"wrote {out}")


def _exists(model: str) -> bool:
    try:
        method_class(model)
        return True
    except ImportError:
        return False


def _peaks(cuda: bool, device_name: str, precision: str) -> dict:
    """The spec-sheet dense peak of this precision (None where unknown) and a measured large matrix product."""
    if cuda:
        spec = next((tflops for name, tflops in SPEC_BF16_TFLOPS.items() if name in device_name), None)
        n, dtype = 8192, torch.bfloat16
    else:
        spec, n, dtype = CPU_PEAK_GFLOPS / 1000, 2048, torch.float32  # fp32: bf16 is emulated on these CPUs
    device = "cuda" if cuda else "cpu"
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    _sync(cuda)
    repeats, tic = (20 if cuda else 3), time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(cuda)
    measured = 2 * n**3 * repeats / (time.perf_counter() - tic) / 1e12
    return {"spec_tflops": spec, "spec_note": "dense bf16 tensor cores" if cuda else "MEASURED.md fp32 matmul",
            "measured_matmul_tflops": measured, "matmul": f"{n}x{n}x{n} {str(dtype).removeprefix('torch.')}"}


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def _synthetic_cache(path: Path, *, size: int, count: int) -> Path:
    """A facegen cache of random pixels and labels, written the way `prepare_cache` lays one out."""
    from facegen.data.cache import FORMAT, MANIFEST, VERSION

    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = np.lib.format.open_memmap(path / "images.npy", mode="w+", dtype=np.uint8, shape=(count, size, size, 3))
    for start in range(0, count, 256):
        images[start:start + 256] = rng.integers(0, 256, images[start:start + 256].shape, dtype=np.uint8)
    images.flush()
    np.save(path / "labels.npy", rng.integers(0, 2, (count, len(CELEBA_ATTRIBUTES)), dtype=np.uint8))
    split = np.zeros(count, np.uint8)
    split[-256:] = 1  # a validation split, as the loop's sample grids want
    np.save(path / "split.npy", split)
    (path / "files.txt").write_text("".join(f"{i:06d}.png\n" for i in range(count)))
    manifest = {"format": FORMAT, "version": VERSION, "source": "synthetic", "layout": "synthetic", "size": size,
                "count": count, "split_counts": {"train": count - 256, "valid": 256, "test": 0},
                "split_source": "synthetic", "attribute_names": list(CELEBA_ATTRIBUTES), "rows_listed": count,
                "missing": [], "skipped": []}
    (path / MANIFEST).write_text(json.dumps(manifest))
    return path


def _measure(model, size, options, cache: Path, run_dir: Path, args, precision: str, peak: dict) -> dict:
    from lightning.fabric import Fabric

    names = list(CELEBA_ATTRIBUTES) if model == "classifier" else ATTRIBUTES
    row = {"model": model, "size": size, "batch": args.batch, "method_options": options}
    fabric = Fabric(accelerator=args.accelerator, devices=1, precision=precision)
    cuda = fabric.device.type == "cuda"

    def step_rate(batch: int) -> tuple[float, int, int]:
        """images/s of training_step alone, FLOPs of one step, parameters."""
        labels = np.random.default_rng(0).integers(0, 2, (4 * batch, len(names)), dtype=np.uint8)
        extra = {"total_steps": 10**6} if model == "classifier" else {}
        method = method_class(model)(attribute_names=names, size=size, prior=AttributePrior.from_labels(labels, names),
                                     batch_size=batch, **extra, **options)
        torch.manual_seed(0)
        method.configure(fabric)
        x = (torch.rand(batch, 3, size, size) * 2 - 1).to(fabric.device)
        y = torch.from_numpy(labels[:batch].astype(np.float32)).to(fabric.device)
        for step in range(3):  # warm-up: cuDNN's algorithm search, allocator growth
            method.training_step(x, y, step)
        flops = count_flops(method.training_step, x, y, 3)
        _sync(cuda)
        steps, tic = 0, time.perf_counter()
        while steps < 5 or time.perf_counter() - tic < args.seconds:
            method.training_step(x, y, 4 + steps)
            steps += 1
            if steps % 10 == 0:
                _sync(cuda)  # keep the host from queueing minutes of work
        _sync(cuda)
        rate = steps * batch / (time.perf_counter() - tic)
        parameters = sum(p.numel() for m in method.trainables().values() for p in m.parameters())
        del method
        if cuda:
            torch.cuda.empty_cache()
        return rate, flops, parameters

    def shares(kind: str, images_per_second: float, flops_per_image: float) -> dict:
        achieved = flops_per_image * images_per_second / 1e12  # TFLOP/s
        spec = ({f"{kind}_fraction_of_spec_peak": round(achieved / peak["spec_tflops"], 4)}
                if peak["spec_tflops"] else {})
        return {f"{kind}_images_per_second": round(images_per_second, 1),
                f"{kind}_achieved_gflops": round(achieved * 1000, 2),
                **spec, f"{kind}_fraction_of_measured_matmul": round(achieved / peak["measured_matmul_tflops"], 4)}

    rate, flops, parameters = step_rate(args.batch)
    row |= {"parameters_m": round(parameters / 1e6, 2), "gflops_per_image": round(flops / args.batch / 1e9, 3)}
    row |= shares("step", rate, flops / args.batch)
    if not args.no_loop:
        loop = _loop_rate(model, size, options, cache, run_dir, args, precision, names, rate)
        row |= shares("loop", loop, flops / args.batch) if loop else {"loop_images_per_second": None}
    if args.big_batch:
        big_rate, big_flops, _ = step_rate(args.big_batch)
        row |= {"big_batch": args.big_batch} | shares("step_big_batch", big_rate, big_flops / args.big_batch)
    return row


def _loop_rate(model, size, options, cache, run_dir, args, precision, names, step_rate) -> float | None:
    """Median images/s of the real training loop's log windows, the first (warm-up) window left out."""
    steps_per_second = step_rate / args.batch
    log_every = max(2, int(steps_per_second * args.seconds / 4))
    training_loop(run_dir=str(run_dir), model=model, data=str(cache), attributes=names, size=size, steps=10**7,
                  batch_size=args.batch, method_options=options, log_every=log_every, sample_every=10**9,
                  checkpoint_every=10**9, accelerator=args.accelerator, devices=1, precision=precision,
                  progress=False, max_seconds=args.seconds + 3 * log_every / steps_per_second)
    rows = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    rates = [r["images_per_second"] for r in rows[1:]]
    return round(statistics.median(rates), 1) if rates else None


def _write(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
