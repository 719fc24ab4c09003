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
      checkpoints/previous.pt the one before it, resumed from when last.pt is damaged
      model/                  the exported inference model (config.json + model.safetensors)

On several devices or machines (docs/scaling.md) every process runs this same
function: `--devices N --strategy ddp` starts the other processes itself;
under `torchrun`, `fabric run` or SLURM's `srun` they already exist. Each
process reads its own share of every global batch from the cache, gradients
are averaged by DDP, and only rank 0 writes into the run folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from facegen.attributes import AttributePrior
from facegen.errors import FacegenError
from facegen.files import append_line, guarded_write, refusal, writable_folder
from facegen.training.checkpoint import load_checkpoint, save_checkpoint, tidy_run_folder
from facegen.training.defaults import DEFAULTS as D
from facegen.training.method import Batches, FixedBatch, build_method, step_seed, unwrap

# Losses above this are treated as divergence, as are NaN and inf.
EXPLODED_LOSS = 1e4


def method_class(model: str):
    """The training recipe of a model kind (its row of `facegen.kinds`)."""
    from facegen.kinds import kind

    return kind(model).method_class()


def training_loop(
    *,
    run_dir: str,                    # Output folder of this run (created; must be empty unless resuming).
    model: str,                      # Model kind: a name in facegen.kinds.KINDS.
    data: str,                       # A cache folder (facegen prepare) or a data set folder.
    attributes: list[str],           # Attribute names to condition on (canonical names of the data).
    size: int = D["size"],           # Image side in pixels.
    steps: int = D["steps"],         # Total optimisation steps.
    batch_size: int = D["batch_size"],  # Images per step, summed over all processes.
    seed: int = D["seed"],           # Seed of data order, noise and initialisation.
    method_options: dict | None = None,  # Keyword arguments of the model's recipe (see its class).
    log_every: int = D["log_every"],  # Steps between log lines / stats.jsonl rows.
    sample_every: int = D["sample_every"],  # Steps between sample grids.
    checkpoint_every: int = D["checkpoint_every"],  # Steps between checkpoints (and model exports).
    resume: str | None = D["resume"],  # A checkpoint or run folder to continue from.
    init_from: str | None = D["init_from"],  # A new run's starting weights: another run's folder or checkpoint,
                                             # or an exported model (a shipped name or a model folder).
    accelerator: str = D["accelerator"],  # Fabric accelerator: 'cpu', 'cuda', 'auto'.
    devices: int | str = D["devices"],  # Devices per node.
    num_nodes: int = D["num_nodes"],  # Machines.
    strategy: str = D["strategy"],   # Fabric strategy: 'auto', 'ddp', 'ddp_spawn', ...
    precision: str = D["precision"],  # Fabric precision: '32-true', 'bf16-mixed', '16-mixed'.
    threads: int | None = D["threads"],  # CPU threads per process (default: torch's choice).
    progress: bool = D["progress"],  # Show a progress bar.
    max_seconds: float | None = D["max_seconds"],  # Stop (with a checkpoint) after this much wall time.
) -> Path | None:
    """Train; returns the run folder on rank 0 and None on the other processes."""
    from facegen.data import is_cache, resolve_training_data, to_tensor
    from facegen.training.options import check_batch_split
    from facegen.pretrained import save_pretrained

    run_dir = Path(run_dir)
    if threads:  # the environment variable reaches the processes that Fabric starts, before they load torch
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
    options = {k: v for k, v in locals().items() if k in _OPTION_NAMES}
    options["run_dir"] = str(run_dir)
    options |= fabric_settings(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                                precision=precision)
    fabric = _start_fabric(run_dir, **{k: options[k] for k in _FABRIC_SETTINGS})
    rank, world = fabric.global_rank, fabric.world_size
    check_batch_split(batch_size, world)  # again, now that the launcher's process count is known

    # A data set folder is cached once, by rank 0, before the others open it. A cache is opened by all at once, so a
    # mistake (the wrong --size, say) stops every process with its one-line message instead of leaving them waiting.
    with contextlib.nullcontext() if is_cache(data) else fabric.rank_zero_first():
        cache = resolve_training_data(data, size=size, progress=progress and rank == 0)
    columns = [cache.attribute_names.index(name) for name in attributes]
    labels = np.ascontiguousarray(cache.labels[:, columns])  # (N, A) uint8
    train_index, valid_index = cache.indices("train"), cache.indices("valid")
    if len(valid_index) == 0:
        valid_index = train_index[-256:]
    prior = AttributePrior.from_labels(labels[train_index], attributes)
    if len(train_index) < batch_size:
        raise FacegenError(f"--batch-size {batch_size} is more than the {len(train_index)} training images of "
                           f"{cache.path}; use at most {len(train_index)}")
    method = build_method(method_class(model), attribute_names=attributes, size=size, prior=prior,
                          batch_size=batch_size, steps=steps, method_options=method_options)
    batches = Batches(cache.images, labels, train_index, batch_size=batch_size, seed=seed, rank=rank, world_size=world,
                      weights=method.real_weights(labels[train_index]))
    fixed_index = valid_index[:64]
    fixed = FixedBatch(x=to_tensor(cache.images[fixed_index]), y=torch.from_numpy(labels[fixed_index].astype(np.float32)),
                       seed=seed)

    torch.manual_seed(seed)  # the same initial weights on every process
    method.configure(fabric)

    start_step, stats = 0, {"seconds": 0.0}
    if resume:  # every process loads the same file, whatever the device count that wrote it
        checkpoint = load_checkpoint(resume)
        if checkpoint["method"] != model:
            raise FacegenError(f"{resume} is a {checkpoint['method']} checkpoint, not {model}")
        try:
            method.load_state_dict(checkpoint["state"])
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as error:
            detail = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise FacegenError(f"{resume} does not fit the model its own options describe ({detail[:160]}); "
                               "it is damaged, or was written by another version of facegen") from None
        start_step, stats = checkpoint["step"], checkpoint["stats"]
    elif init_from:  # the weights (EMA copies included) of another run; this run's own fresh optimizers
        _load_weights(method, model, _init_checkpoint(method, init_from), init_from)
    # Test hook (tests/test_distributed.py): FACEGEN_DEBUG_WEIGHT_HASHES=DIR makes each process log its weights' hash.
    hash_dir = os.environ.get("FACEGEN_DEBUG_WEIGHT_HASHES")
    if hash_dir:
        _record_weight_hash(hash_dir, rank, start_step, method)
    if rank == 0:
        tidy_run_folder(run_dir, start_step)  # a killed run's temporaries, and log rows that will be replayed
        writable_folder(run_dir / "samples", "--out")
        guarded_write(run_dir / "training_options.json", lambda tmp: tmp.write_text(json.dumps(options, indent=2) + "\n"))

    def export() -> None:
        info = {"steps": step, "kimg": step * batch_size / 1000, "seconds": round(stats["seconds"], 1),
                "data": str(cache.path), "batch_size": batch_size, "seed": seed, "method_options": method_options or {}}
        save_pretrained(run_dir / "model", model=model, preset=(method_options or {}).get("preset", "default"),
                        size=size, attribute_names=attributes, modules=method.export(), prior=prior, info=info,
                        training_modules=method.export_training())

    def snapshot() -> None:
        """Checkpoint, export and (for the classifier) validate; rank 0 writes, everyone waits."""
        nonlocal saved_step
        if rank == 0:
            try:
                save_checkpoint(run_dir / "checkpoints" / "last.pt", method=model, step=step, options=options,
                                state=method.state_dict(), stats=stats)
                export()
            except OSError as error:  # a full disk, a folder taken away: the previous checkpoint still stands
                raise refusal(run_dir / "checkpoints", error) from None
        saved_step = step
        fabric.barrier()

    bar = _progress_bar(start_step, steps, enabled=progress and rank == 0)
    log = _open_log(run_dir / "log.txt") if rank == 0 else None
    saved_step = start_step if resume else None  # the step of the newest checkpoint on disk, if any
    step, window_start, window_images, valid, extra = start_step, time.perf_counter(), 0, None, {}
    deadline = time.monotonic() + max_seconds if max_seconds else None
    try:
        while step < steps:
            # Noise, dropout and augmentation of this step; they differ between processes, or every process
            # would draw the same fakes for its share of the batch.
            torch.manual_seed(step_seed(seed, step, rank))
            x, y = batches(step)
            tic = time.perf_counter()
            losses = method.training_step(fabric.to_device(x), fabric.to_device(y), step)
            stats["seconds"] += time.perf_counter() - tic
            values, stop = _agree(fabric, losses, stop=deadline is not None and time.monotonic() > deadline)
            if hash_dir:
                _record_weight_hash(hash_dir, rank, step + 1, method)
            bad = [k for k, v in values.items() if not math.isfinite(v) or abs(v) > EXPLODED_LOSS]
            if bad:
                where = (f"the last good checkpoint is {run_dir / 'checkpoints' / 'last.pt'} (step {saved_step}); "
                         "resume from it with a lower learning rate" if saved_step is not None else
                         "no checkpoint was written yet; start a new run with a lower learning rate")
                raise FacegenError(f"training diverged at step {step}: {bad[0]} = {values[bad[0]]:.4g}; {where}")
            step += 1
            window_images += batch_size
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in list(values.items())[:4]}, refresh=False)
            if step % log_every == 0 or step == steps:
                elapsed = time.perf_counter() - window_start
                row = {"step": step, "kimg": round(step * batch_size / 1000, 3), "seconds": round(stats["seconds"], 2),
                       "images_per_second": round(window_images / max(elapsed, 1e-9), 2), **values}
                if rank == 0 and (step % sample_every == 0 or step == steps) and method.validates:
                    if valid is None:  # held-out images, decoded once (and as many training ones, if asked for)
                        held_out = valid_index[:1000]
                        valid = (to_tensor(cache.images[held_out]), torch.from_numpy(labels[held_out].astype(np.float32)))
                        seen = train_index[:len(held_out)]
                        extra = {"training": (to_tensor(cache.images[seen]), torch.from_numpy(
                            labels[seen].astype(np.float32)))} if getattr(method, "compares_training", False) else {}
                    row |= {f"val/{k}": v for k, v in method.validate(*valid, **extra).items()}
                if rank == 0:
                    fabric.log_dict({k: v for k, v in row.items() if k != "step"}, step=step)
                    append_line(run_dir / "stats.jsonl", json.dumps(row))
                    try:
                        log.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in row.items()) + "\n")
                        log.flush()
                    except OSError as error:
                        raise refusal(run_dir / "log.txt", error) from None
                window_start, window_images = time.perf_counter(), 0
            if step % sample_every == 0 or step == steps:
                _save_samples(method, fixed, run_dir / "samples" / f"step-{step:06d}.png", rank)
            if step % checkpoint_every == 0 or step == steps:
                snapshot()
            if stop:
                if step % checkpoint_every:
                    snapshot()
                break
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    return run_dir if rank == 0 else None


_FABRIC_SETTINGS = ("accelerator", "devices", "num_nodes", "strategy", "precision")
# What training_options.json records: every argument but the run folder (added last) and the progress bar.
_OPTION_NAMES = tuple(name for name in inspect.signature(training_loop).parameters if name not in ("run_dir", "progress"))


def names_model(source: str) -> bool:
    """Does --init-from name an exported model (what `resolve_model_path` finds: a shipped name, a model folder, or
    a run folder that holds only its exported model) rather than a run's checkpoint? Anything else that does not
    exist is refused in one line."""
    from facegen.pretrained import CONFIG_NAME, SHIPPED_DIR, resolve_model_path

    path = Path(source)
    if path.is_file() or (path / "checkpoints").is_dir():
        return False
    try:
        resolve_model_path(source)
        return True
    except FacegenError:
        if path.exists():  # a folder, but neither a run nor a model: load_checkpoint says so
            return False
    shipped = sorted(p.parent.name for p in SHIPPED_DIR.glob(f"*/{CONFIG_NAME}"))
    raise FacegenError(f"no checkpoint or model at {source}: give a run folder, its checkpoints/last.pt, a model "
                       f"folder or a shipped model ({', '.join(shipped) or 'none installed'})")


def init_source(source: str) -> tuple[str, str]:
    """--init-from's model kind and the path to record (a run's checkpoint file, or the model as given); a source
    that is neither a run nor a model is refused in one line."""
    if not names_model(source):
        checkpoint = load_checkpoint(source)
        return checkpoint["method"], checkpoint["path"]
    from facegen.pretrained import load_pretrained

    return load_pretrained(source).kind, source


def _init_checkpoint(method, source: str) -> dict:
    """What --init-from names, as a checkpoint's method and module weights: a run folder or resume file as it is;
    an exported model (a shipped name such as `cgan`, or a folder with config.json) through the recipe's
    `from_export`, so that the shipped weights can be trained on (modules the export lacks, such as a GAN's
    discriminator, start fresh where the recipe allows)."""
    if not names_model(source):
        return load_checkpoint(source)
    from facegen.pretrained import load_pretrained, load_training_modules

    pretrained = load_pretrained(source)
    exported = {name: module.state_dict() for name, module in pretrained.modules.items()}
    exported |= load_training_modules(source)  # a critic kept beside the model: the game goes on against it
    return {"method": pretrained.kind, "state": {"modules": method.from_export(exported)}}


def _load_weights(method, model: str, checkpoint: dict, source: str) -> None:
    """Put a checkpoint's module weights into a freshly configured method, keeping its new optimizers."""
    state = method.state_dict()  # the fresh optimizers' states, loaded back unchanged
    theirs = checkpoint["state"]["modules"]
    if hasattr(method, "grown"):  # a recipe that may add layers to what it starts from (a cGAN's refine blocks)
        theirs = method.grown(theirs)
    fresh = set(getattr(method, "fresh_modules", ()))  # modules this recipe may start anew (a new critic)
    missing = sorted(set(state["modules"]) - set(theirs) - fresh)
    if checkpoint["method"] != model or missing:
        raise FacegenError(f"--init-from {source} does not hold a {model} model's modules "
                           f"({', '.join(missing) or checkpoint['method']})")
    state["modules"] = {name: theirs.get(name, mine) for name, mine in state["modules"].items()}
    try:
        method.load_state_dict(state)
    except RuntimeError as error:  # a size or width that differs: name the first mismatch
        detail = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line or "Missing" in line),
                      str(error).splitlines()[0])
        raise FacegenError(f"--init-from {source} does not fit this model: {detail[:200]}") from None


def fabric_settings(**settings) -> dict:
    """The Fabric settings of this run. Under `fabric run` its flags (LT_* variables) fill what facegen was not told."""
    if os.environ.get("LT_CLI_USED") != "1":
        return settings
    for name, value in settings.items():
        launcher = os.environ.get(f"LT_{name.upper()}")
        if launcher is None or str(value) == launcher:
            continue
        if str(value) != str(D[name]):
            raise FacegenError(f"--{name.replace('_', '-')} {value} contradicts `fabric run --{name.replace('_', '-')} "
                               f"{launcher}`; give it only once")
        settings[name] = int(launcher) if launcher.isdigit() else launcher
    return settings


def _start_fabric(run_dir: Path, *, accelerator, devices, num_nodes, strategy, precision):
    """Fabric, with its processes started and joined (unless a launcher started them); its refusals as FacegenErrors."""
    from lightning.fabric import Fabric
    from lightning.fabric.loggers import TensorBoardLogger

    from facegen.training.options import check_precision, precision_note

    cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()
                                   and not torch.backends.mps.is_available())
    check_precision(precision, cpu=cpu)  # again, now that "auto" has found (or not) a GPU
    try:
        fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                        precision=precision,
                        loggers=TensorBoardLogger(root_dir=str(run_dir), name="tensorboard", version=""))
        if os.environ.get("LT_CLI_USED") != "1":  # `fabric run` started the processes and forbids launch()
            fabric.launch()
    except (ValueError, RuntimeError) as error:  # unknown devices, a torchrun/SLURM size that differs, ...
        message = " ".join(str(error).split())
        raise FacegenError(f"cannot start training on --accelerator {accelerator} --devices {devices} --num-nodes "
                           f"{num_nodes} --strategy {strategy} --precision {precision}: {message}") from None
    started = _launcher_world_size()
    if started > 1 and fabric.world_size != started:  # else each process would train alone, into the same folder
        raise FacegenError(f"the launcher started {started} processes but facegen was told --devices {devices} "
                           f"--num-nodes {num_nodes}; give the devices per node and the nodes the launcher has")
    note = precision_note(precision, cpu=cpu)
    if note and fabric.global_rank == 0:  # said once, not by every process
        print(f"facegen: {note}", file=sys.stderr)
    return fabric


def _launcher_world_size() -> int:
    """How many processes torchrun, `fabric run` or SLURM started (1 when none did)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if TorchElasticEnvironment.detect():
        return int(os.environ["WORLD_SIZE"])
    if SLURMEnvironment.detect():
        return int(os.environ["SLURM_NTASKS"])
    return 1


def _agree(fabric, losses: dict, *, stop: bool) -> tuple[dict[str, float], bool]:
    """Losses averaged over the processes, and whether any of them wants to stop, in one small all-reduce.

    The logs then describe the whole global batch, and every process stops at
    the same step, on divergence or at --max-minutes, instead of the others
    waiting forever for one that left.
    """
    flat = torch.stack([torch.as_tensor(v, device=fabric.device).float().reshape(()) for v in losses.values()]
                       + [torch.tensor(float(stop), device=fabric.device)])  # (n_losses + 1,)
    if fabric.world_size > 1:
        flat = fabric.all_reduce(flat, reduce_op="mean")
    *values, stop_share = flat.tolist()
    return dict(zip(losses, values)), stop_share > 0


def _record_weight_hash(folder: str, rank: int, step: int, method) -> None:
    """Append "step hash" of this process's parameters to FOLDER/rank<r>.txt (the test of identical DDP replicas).

    Parameters only: buffers (BatchNorm statistics, spectral-norm vectors)
    differ between processes until DDP copies rank 0's at the next forward.
    """
    digest = hashlib.blake2b(digest_size=16)
    for name, module in sorted(method.trainables().items()):
        for key, parameter in unwrap(module).named_parameters():
            digest.update(f"{name}.{key}".encode())
            digest.update(parameter.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / f"rank{rank}.txt", "a") as handle:
        handle.write(f"{step} {digest.hexdigest()}\n")


def _open_log(path: Path):
    try:
        return open(path, "a", encoding="utf-8")
    except OSError as error:
        raise refusal(path, error) from None


def _save_samples(method, fixed: FixedBatch, path: Path, rank: int) -> None:
    if rank != 0:
        return
    from facegen.data import make_grid

    images, columns = method.sample_grid(fixed)
    tmp = path.with_suffix(".tmp.png")
    try:
        make_grid(images, nrow=columns).save(tmp)
        os.replace(tmp, path)
    except OSError as error:  # the disk filled or the folder went away mid-run
        raise refusal(path, error) from None


def _progress_bar(start: int, total: int, *, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, smoothing=0.05)
