"""Shared helpers of the benchmark scripts: FLOP counting, timing, JSON output.

The machine's ceiling is the fp32 matrix-multiply rate measured in
../shared/MEASURED.md (176 GFLOP/s on 2 cores); `fraction_of_peak` divides a
measured rate by it (or by --peak-gflops on another machine).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

CPU_PEAK_GFLOPS = 176.0  # fp32 2048x2048 matmul, 2 threads, this kind of machine (MEASURED.md)
RESULTS = Path(__file__).resolve().parent / "results"


def count_flops(fn, *args, **kwargs) -> int:
    """FLOPs of one call (multiply-add = 2 FLOPs), as torch's FlopCounterMode counts them."""
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def time_call(fn, *, repeats: int = 5, warmup: int = 1) -> dict:
    """Median and spread of wall time of fn() in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def time_interleaved(fns: dict, *, repeats: int = 5, warmup: int = 1, calls: int = 1) -> dict:
    """Wall time per call of each fn() in seconds, the fns taking turns round after round so that
    a busy machine slows them alike; `speedup` is the first fn's time over each one's, the median
    of the per-round ratios (trust it on a loaded machine, where absolute times are not)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            tic = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - tic) / calls)
    first = times[next(iter(fns))]
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "repeats": repeats,
                   "calls": calls, "speedup": statistics.median(a / b for a, b in zip(first, t))}
            for name, t in times.items()}


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    return path
