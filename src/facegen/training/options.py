"""One flow for settings: validate the user's choices into one options dict for `training_loop`.

Resuming takes the run's saved options and lets only the settings that do
not change the model (steps, devices, precision, ...) be given again.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from facegen.attributes import parse_attribute_list
from facegen.errors import FacegenError
from facegen.kinds import KINDS
from facegen.training.defaults import DEFAULTS
from facegen.files import refusal, writable_folder
from facegen.validation import check_method_options, check_size

# Settings a resumed run may change without changing what it trains.
RESUMABLE = ("steps", "accelerator", "devices", "num_nodes", "strategy", "precision", "threads", "progress",
             "max_seconds", "log_every", "sample_every", "checkpoint_every")
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")
# Fabric strategies the loop supports: one process per device, launched before the loop runs, full replicas
# (rank 0 alone saves them). ddp_spawn/ddp_fork would need the loop inside fabric.launch(fn); FSDP and DeepSpeed
# shard the state, so saving it would take every process.
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true")


def parse_settings(pairs: list[str] | None, method_cls) -> dict:
    """`--set key=value` pairs, checked against the recipe's keyword arguments; values parsed as JSON when they can be."""
    allowed = {name for name, p in inspect.signature(method_cls.__init__).parameters.items()
               if p.kind == p.KEYWORD_ONLY and name not in ("attribute_names", "size", "prior", "batch_size", "total_steps")}
    settings = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in allowed:
            raise FacegenError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(allowed))}")
        try:
            settings[key] = json.loads(text)
        except json.JSONDecodeError:
            settings[key] = text
    return check_method_options(method_cls, settings)  # lr_g=abc or g_channels=10**7: refused here, in one line


def build_options(*, model: str, given: dict, settings: list[str] | None = None) -> dict:
    """The full, validated options of a new or resumed run. `given` holds only what the user set."""
    from facegen.training.checkpoint import load_checkpoint
    from facegen.training.loop import method_class

    method_cls = method_class(model)
    resume = given.get("resume")
    if resume:
        checkpoint = load_checkpoint(resume)
        options = dict(checkpoint["options"])
        if checkpoint["method"] != model:
            raise FacegenError(f"{resume} is a {checkpoint['method']} run; resume it with `facegen train {checkpoint['method']}`")
        fixed = sorted(k for k in given if k not in RESUMABLE + ("resume", "run_dir") and given[k] is not None)
        fixed = [("init-from" if k == "init_from" else k) for k in fixed]
        if fixed or settings:
            raise FacegenError(f"a resumed run keeps its settings; only {', '.join(RESUMABLE)} may change "
                               f"(you gave {', '.join(fixed or ['--set'])})")
        if any(given.get(k) is not None for k in ("devices", "num_nodes")) and given.get("strategy") is None:
            options["strategy"] = "auto"  # chosen anew for the new device count: DDP for several, none for one
        options |= {k: v for k, v in given.items() if k in RESUMABLE and v is not None}
        options["resume"] = checkpoint["path"]  # previous.pt when last.pt was damaged: the loop reads the same file
        options["run_dir"] = str(given.get("run_dir") or Path(resume if Path(resume).is_dir() else Path(resume).parent.parent))
        if checkpoint["step"] >= options["steps"]:
            raise FacegenError(f"{resume} already finished {checkpoint['step']} steps; pass a larger --steps to go on")
        return _check_devices(options)

    options = DEFAULTS | {k: v for k, v in given.items() if v is not None}
    options["model"] = model
    if options["init_from"]:  # fail before the run folder exists, not after the data is read
        from facegen.training.loop import init_source

        kind, path = init_source(options["init_from"])
        if kind != model:
            raise FacegenError(f"--init-from {options['init_from']} is a {kind} model, not {model}")
        options["init_from"] = path
    for required in ("data", "run_dir"):
        if not options.get(required):
            raise FacegenError(f"--{'out' if required == 'run_dir' else required} is required for a new run")
    if given.get("size") is None:  # a cache knows its size
        from facegen.data import is_cache, open_cache

        if is_cache(options["data"]):
            options["size"] = open_cache(options["data"]).size
    run_dir = Path(options["run_dir"])
    try:
        taken = run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir()))
    except OSError as error:  # a name too long, a folder we may not list
        raise refusal(run_dir, error, "use") from None
    if taken:
        raise FacegenError(f"{run_dir} already exists and is not empty; choose another --out, or --resume {run_dir}")
    check_size("--size", options["size"])
    for name in ("steps", "batch_size", "log_every", "sample_every", "checkpoint_every"):
        if int(options[name]) < 1:
            raise FacegenError(f"--{name.replace('_', '-')} must be at least 1, got {options[name]}")
    options["attributes"] = _attributes(model, options.get("attributes"), options["data"])
    options["method_options"] = parse_settings(settings, method_cls) | options.get("method_options", {})
    _check_settings(method_cls, options)
    options = _check_devices(options)
    writable_folder(run_dir, "--out", keep=False)  # a name too long or a folder the system refuses: now, not after the data is read
    return options


def _check_settings(method_cls, options: dict) -> None:
    """Build the recipe once with a stand-in prior, so a bad --set value stops here, before the run folder exists."""
    import numpy as np

    from facegen.attributes import AttributePrior
    from facegen.training.method import build_method

    names = options["attributes"]
    prior = AttributePrior(np.zeros((1, len(names))), np.ones(1), names)
    try:
        build_method(method_cls, attribute_names=names, size=int(options["size"]), prior=prior,
                     batch_size=int(options["batch_size"]), steps=int(options["steps"]),
                     method_options=options["method_options"])
    except (TypeError, ValueError) as error:
        raise FacegenError(f"--set: {' '.join(str(error).split())}") from None


def _check_devices(options: dict) -> dict:
    """Validate the device settings (new and resumed runs); --devices "4" becomes 4.

    >>> _check_devices({"devices": "2", "num_nodes": 1, "strategy": "ddp", "precision": "32-true",
    ...                 "accelerator": "cpu", "batch_size": 64})["devices"]
    2
    """
    devices = str(options["devices"]).strip()
    indices = [part.strip() for part in devices.strip("[]").split(",") if part.strip()]  # "0,1,3" -> GPUs 0, 1, 3
    if devices.lstrip("-").isdigit():
        options["devices"] = devices = int(devices)
    elif devices != "auto" and not all(index.isdigit() for index in indices):
        raise FacegenError(f"--devices must be a number, a list of device indices like 0,1,3, or auto; got {devices}")
    if int(options["num_nodes"]) < 1 or devices == 0:
        raise FacegenError("--devices and --num-nodes must be at least 1 (--devices -1 or auto: all of the node's)")
    if options["strategy"] not in STRATEGIES:
        raise FacegenError(f"--strategy {options['strategy']} is not supported; use ddp (or auto), one process per "
                           "device, started by --devices N, torchrun, fabric run or srun (see docs/scaling.md)")
    if str(options["precision"]) not in PRECISIONS:
        raise FacegenError(f"--precision must be one of {', '.join(PRECISIONS)}, got {options['precision']}")
    check_precision(options["precision"], cpu=options["accelerator"] == "cpu")
    count = devices if isinstance(devices, int) and devices > 0 else None
    if isinstance(devices, str) and devices != "auto":
        count = len(indices)
    if count:
        check_batch_split(int(options["batch_size"]), count * int(options["num_nodes"]), " (--devices x --num-nodes)")
    return options


def check_precision(precision: str, *, cpu: bool) -> None:
    """16-bit floats need a GPU (on a CPU, Fabric would quietly switch to bf16 instead)."""
    if str(precision).startswith("16") and cpu:
        raise FacegenError(f"--precision {precision} needs a GPU; on CPU use 32-true or bf16-mixed "
                           "(the faster one on CPUs with AMX)")


def native_cpu_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AVX512-BF16, AMX, or AVX-512 oneDNN kernels); on others
    (AVX2 only, e.g. the AMD EPYCs of ../shared/MEASURED.md) bf16 is emulated, several times slower than fp32."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def precision_note(precision: str, *, cpu: bool) -> str | None:
    """One line to print before a CPU run whose precision will be slower than 32-true, else None."""
    if cpu and str(precision).startswith("bf16") and not native_cpu_bf16():
        return (f"--precision {precision}: this CPU has no native bfloat16 (AVX512-BF16 or AMX), so it is emulated "
                "and several times slower than 32-true")
    return None


def check_batch_split(batch_size: int, processes: int, why: str = "") -> None:
    """Every process takes an equal share of each global batch.

    >>> check_batch_split(64, 3)
    Traceback (most recent call last):
    ...
    facegen.errors.FacegenError: --batch-size 64 does not split evenly over 3 processes; use a multiple of 3
    """
    if batch_size % processes:
        raise FacegenError(f"--batch-size {batch_size} does not split evenly over {processes} processes{why}; "
                           f"use a multiple of {processes}")


def _attributes(model: str, text, data: str) -> list[str]:
    """Canonical attribute names, checked against the data's own names (so custom labels work)."""
    from facegen.data import is_cache, open_cache, open_dataset

    names = open_cache(data).attribute_names if is_cache(data) else open_dataset(data).attribute_names
    if KINDS[model].can_classify and not text:  # a classifier learns every attribute the data has
        return list(names)
    if not text:
        raise FacegenError("--attrs is required: the attributes to condition on, e.g. --attrs young,male,blond (or all)")
    return parse_attribute_list(text, names)
