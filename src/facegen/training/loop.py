"""The one training loop every model shares, on Lightning Fabric.

    facegen train cgan --data cache/celeba9k-64 --attrs young,male,blond --steps 4000 --out runs/cgan

The CLI validates the options, saves them as `training_options.json` in the
run folder and calls `training_loop(**options)`. A run folder holds:

    runs/NAME/
      training_options.json   every setting of the run
      log.txt                 what the console showed, one line per log interval
      stats.jsonl             step, kimg, seconds, images/s and losses, one JSON a line
      tensorboard/            the same scalars for TensorBoard
      samples/step-000500.png fixed-noise, fixed-attribute sample grids
      checkpoints/last.pt     full resume state (atomic; weights_only loadable)
      model/                  the exported inference model (config.json + model.safetensors)
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from facegen.attributes import AttributePrior
from facegen.errors import FacegenError
from facegen.training.checkpoint import load_checkpoint, save_checkpoint
from facegen.training.method import Batches, FixedBatch, step_seed

# Losses above this are treated as divergence, as are NaN and inf.
EXPLODED_LOSS = 1e4


def method_class(model: str):
    """The training recipe of each model kind (an explicit table)."""
    if model == "cgan":
        from facegen.training.cgan import CGANMethod as cls
    elif model == "classifier":
        from facegen.training.classifier import ClassifierMethod as cls
    elif model == "fader":
        from facegen.training.fader import FaderMethod as cls
    elif model == "cvae":
        from facegen.training.cvae import CVAEMethod as cls
    else:
        raise FacegenError(f"unknown model {model!r}; choose cgan, fader, cvae or classifier")
    return cls


def training_loop(
    *,
    run_dir: str,                    # Output folder of this run (created; must be empty unless resuming).
    model: str,                      # Model kind: 'cgan', 'fader', 'cvae' or 'classifier'.
    data: str,                       # A cache folder (facegen prepare) or a data set folder.
    attributes: list[str],           # Attribute names to condition on (canonical names of the data).
    size: int = 64,                  # Image side in pixels.
    steps: int = 5000,               # Total optimisation steps.
    batch_size: int = 64,            # Images per step, summed over all processes.
    seed: int = 0,                   # Seed of data order, noise and initialisation.
    method_options: dict | None = None,  # Keyword arguments of the model's recipe (see its class).
    log_every: int = 50,             # Steps between log lines / stats.jsonl rows.
    sample_every: int = 500,         # Steps between sample grids.
    checkpoint_every: int = 500,     # Steps between checkpoints (and model exports).
    resume: str | None = None,       # A checkpoint or run folder to continue from.
    accelerator: str = "auto",       # Fabric accelerator: 'cpu', 'cuda', 'auto'.
    devices: int | str = 1,          # Devices per node.
    num_nodes: int = 1,              # Machines.
    strategy: str = "auto",          # Fabric strategy: 'auto', 'ddp', 'ddp_spawn', ...
    precision: str = "32-true",      # Fabric precision: '32-true', 'bf16-mixed', '16-mixed'.
    threads: int | None = None,      # CPU threads per process (default: torch's choice).
    progress: bool = True,           # Show a progress bar.
    max_seconds: float | None = None,  # Stop (with a checkpoint) after this much wall time.
) -> Path:
    from lightning.fabric import Fabric
    from lightning.fabric.loggers import TensorBoardLogger

    from facegen.data import resolve_training_data
    from facegen.pretrained import save_pretrained

    run_dir = Path(run_dir)
    if threads:
        torch.set_num_threads(threads)
    options = {k: v for k, v in locals().items() if k in _OPTION_NAMES}
    options["run_dir"] = str(run_dir)

    fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                    precision=precision, loggers=TensorBoardLogger(root_dir=str(run_dir), name="tensorboard", version=""))
    fabric.launch()
    rank, world = fabric.global_rank, fabric.world_size

    cache = resolve_training_data(data, size=size, progress=progress and rank == 0)
    columns = [cache.attribute_names.index(name) for name in attributes]
    labels = np.ascontiguousarray(cache.labels[:, columns])  # (N, A) uint8
    train_index, valid_index = cache.indices("train"), cache.indices("valid")
    if len(valid_index) == 0:
        valid_index = train_index[-256:]
    prior = AttributePrior.from_labels(labels[train_index], attributes)
    batches = Batches(cache.images, labels, train_index, batch_size=batch_size, seed=seed, rank=rank, world_size=world)
    fixed_index = valid_index[:64]
    fixed = FixedBatch(x=_to_float(cache.images[fixed_index]), y=torch.from_numpy(labels[fixed_index].astype(np.float32)),
                       seed=seed)

    extra = {"total_steps": steps} if model == "classifier" else {}
    method = method_class(model)(attribute_names=attributes, size=size, prior=prior, batch_size=batch_size,
                                 **extra, **(method_options or {}))
    torch.manual_seed(seed)  # the same initial weights on every process
    method.configure(fabric)

    start_step, stats = 0, {"seconds": 0.0}
    if resume:
        checkpoint = load_checkpoint(resume)
        if checkpoint["method"] != model:
            raise FacegenError(f"{resume} is a {checkpoint['method']} checkpoint, not {model}")
        method.load_state_dict(checkpoint["state"])
        start_step, stats = checkpoint["step"], checkpoint["stats"]
    if rank == 0:
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
        (run_dir / "training_options.json").write_text(json.dumps(options, indent=2) + "\n")

    def export() -> None:
        info = {"steps": step, "kimg": step * batch_size / 1000, "seconds": round(stats["seconds"], 1),
                "data": str(cache.path), "batch_size": batch_size, "seed": seed, "method_options": method_options or {}}
        save_pretrained(run_dir / "model", model=model, preset=(method_options or {}).get("preset", "default"),
                        size=size, attribute_names=attributes, modules=method.export(), prior=prior, info=info)

    def snapshot() -> None:
        """Checkpoint, export and (for the classifier) validate; rank 0 writes, everyone waits."""
        if rank == 0:
            save_checkpoint(run_dir / "checkpoints" / "last.pt", method=model, step=step, options=options,
                            state=method.state_dict(), stats=stats)
            export()
        fabric.barrier()

    bar = _progress_bar(start_step, steps, enabled=progress and rank == 0)
    log = open(run_dir / "log.txt", "a") if rank == 0 else None
    step, window_start, window_images, valid = start_step, time.perf_counter(), 0, None
    deadline = time.monotonic() + max_seconds if max_seconds else None
    try:
        while step < steps:
            torch.manual_seed(step_seed(seed, step, rank))  # noise, dropout and augmentation of this step
            x, y = batches(step)
            tic = time.perf_counter()
            losses = method.training_step(fabric.to_device(x), fabric.to_device(y), step)
            stats["seconds"] += time.perf_counter() - tic
            values = {k: float(v) for k, v in losses.items()}
            bad = [k for k, v in values.items() if not math.isfinite(v) or abs(v) > EXPLODED_LOSS]
            if bad:
                raise FacegenError(f"training diverged at step {step}: {bad[0]} = {values[bad[0]]:.4g}; "
                                   f"the last good checkpoint is {run_dir / 'checkpoints' / 'last.pt'}; "
                                   "resume from it with a lower learning rate")
            step += 1
            window_images += batch_size
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in list(values.items())[:4]}, refresh=False)
            if step % log_every == 0 or step == steps:
                elapsed = time.perf_counter() - window_start
                row = {"step": step, "kimg": round(step * batch_size / 1000, 3), "seconds": round(stats["seconds"], 2),
                       "images_per_second": round(window_images / max(elapsed, 1e-9), 2), **values}
                if (step % sample_every == 0 or step == steps) and hasattr(method, "validate"):
                    if valid is None:  # held-out images, decoded once
                        held_out = valid_index[:1000]
                        valid = (_to_float(cache.images[held_out]), torch.from_numpy(labels[held_out].astype(np.float32)))
                    row |= {f"val/{k}": v for k, v in method.validate(*valid).items()}
                if rank == 0:
                    fabric.log_dict({k: v for k, v in row.items() if k != "step"}, step=step)
                    with open(run_dir / "stats.jsonl", "a") as handle:
                        handle.write(json.dumps(row) + "\n")
                    log.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()) + "\n")
                    log.flush()
                window_start, window_images = time.perf_counter(), 0
            if step % sample_every == 0 or step == steps:
                _save_samples(method, fixed, run_dir / "samples" / f"step-{step:06d}.png", rank)
            if step % checkpoint_every == 0 or step == steps:
                snapshot()
            if deadline is not None and time.monotonic() > deadline:
                if step % checkpoint_every:
                    snapshot()
                break
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    return run_dir


_OPTION_NAMES = ("model", "data", "attributes", "size", "steps", "batch_size", "seed", "method_options",
                 "log_every", "sample_every", "checkpoint_every", "resume", "accelerator", "devices", "num_nodes",
                 "strategy", "precision", "threads", "max_seconds")


def _to_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)  # (n, 3, S, S)


def _save_samples(method, fixed: FixedBatch, path: Path, rank: int) -> None:
    if rank != 0:
        return
    from facegen.data import make_grid

    images, columns = method.sample_grid(fixed)
    tmp = path.with_suffix(".tmp.png")
    make_grid(images, nrow=columns).save(tmp)
    os.replace(tmp, path)


def _progress_bar(start: int, total: int, *, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, smoothing=0.05)
