"""`facegen evaluate`: measure any model the same way, against held-out real faces.

    facegen evaluate --model cgan --data cache/celeba9k-64 --out runs/eval
    facegen evaluate --model fader --data cache/celeba9k-64 --n-edit 500

What is measured depends on what the model can do:
- generators (cgan, cvae): attribute control (per attribute, n faces asked for
  1 and n for 0, the rest drawn from the label prior), FID and KID against the
  held-out split, diversity (mean pairwise Inception-feature distance);
- editors (residual, fader, cvae): edit success per attribute (flip it; the
  classifier must agree), how much the other attributes stay put, and
  identity (dlib, where installed), all at the model's size; with `redraw`
  (the fader's and cVAE's own decodes) also reconstruction PSNR/SSIM.
  `benchmarks/edit_photos.py` measures edits at the photos' own resolution;
- always: the judge's (the classifier's) own accuracy on the same held-out
  faces, because a measurement cannot be more accurate than what measures it.

This is the application that loads the model, the judge and the data and
hands them to the measures in `facegen.metrics`; `registry.py` says which
metric names apply to which kind. Each number is a JSON line in `<out>/metrics.jsonl` (metric, value, model,
data, n_samples, seconds, timestamp) and a row of the terminal table.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from facegen.errors import FacegenError
from facegen.evaluation.registry import select_metrics
from facegen.evaluation.report import MetricRecord, append_jsonl
from facegen.files import refusal, writable_folder
from facegen.metrics.judge import Judge
from facegen.validation import MAX_SEED, check_int

def held_out(cache, attribute_names: list[str], n: int | None = None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The first n held-out (validation, then test) images: x (n, 3, S, S), y (n, A) for the names, uint8 pixels."""
    from facegen.data import to_tensor

    index = np.concatenate([cache.indices("valid"), cache.indices("test")])
    if len(index) == 0:
        raise FacegenError(f"{cache.path} has no validation or test images to measure against")
    index = index[:n] if n else index
    columns = [cache.attribute_names.index(name) for name in attribute_names]
    pixels = np.asarray(cache.images[index])
    return to_tensor(pixels), torch.from_numpy(cache.labels[index][:, columns].astype(np.float32)), pixels


def evaluate(*, model: str, data: str, out: str | Path, classifier: str | None = None, n_fid: int = 2000,
             n_per_value: int = 200, n_edit: int = 500, n_identity: int = 100, seed: int = 0,
             metrics: tuple[str, ...] | None = None, decision: str = "plain", redraw: bool = False,
             label: str | None = None, progress: bool = True) -> list[dict]:
    """Run every protocol the model supports; returns the records (also appended to out/metrics.jsonl)."""
    from facegen.data import open_cache
    from facegen.metrics import protocols
    from facegen.pretrained import load_pretrained

    for name, value, low in (("--n-fid", n_fid, 2), ("--n-per-value", n_per_value, 1), ("--n-edit", n_edit, 1),
                             ("--n-identity", n_identity, 0)):
        check_int(name, value, low, 10**7)
    check_int("--seed", seed, 0, MAX_SEED)
    cache = open_cache(data)
    pretrained = load_pretrained(model)
    wanted = {m.name for m in select_metrics(metrics, pretrained.kind)}  # unknown or impossible: refused here
    names = pretrained.attribute_names
    missing = [name for name in names if name not in cache.attribute_names]
    if missing:
        raise FacegenError(f"{cache.path} has no labels for {', '.join(missing[:5])} of the model's attributes; "
                           "evaluate against a cache of the data the model was trained on")
    if cache.size != pretrained.size:
        raise FacegenError(f"{model} makes {pretrained.size}px faces but {cache.path} holds {cache.size}px images; "
                           f"evaluate against a cache of the model's size (facegen prepare --size {pretrained.size})")
    judge = Judge(classifier, decision=decision)
    label = label or str(model)
    out = writable_folder(out, "--out")
    records: list[dict] = []

    def record(metric: str, value: float, n: int, seconds: float, **extra) -> None:
        row = MetricRecord(metric=metric, value=float(value), model=label, data=str(cache.path), n_samples=n,
                           seconds=round(seconds, 2), extra=extra).to_dict()
        try:
            records.append(append_jsonl(out / "metrics.jsonl", row))
        except OSError as error:
            raise refusal(out / "metrics.jsonl", error, "append to") from None

    x_real, y_real, pixels_real = held_out(cache, names)
    judged_names = [n for n in names if n in judge.names]
    tic = time.perf_counter()
    judge_rows = protocols.classifier_recalls(judge, judge.names, x_real,
                                              y_real[:, [names.index(n) for n in judged_names]], judged_names)
    judge_accuracy = {name: row["accuracy"] for name, row in judge_rows.items()}
    for name, row in judge_rows.items():
        record(f"classifier_accuracy/{name}", row["accuracy"], len(x_real), time.perf_counter() - tic, judge=decision,
               **{k: v for k, v in row.items() if k != "accuracy"})

    if "control" in wanted:
        from facegen.pipelines.generate import GenerationPipeline

        pipe = GenerationPipeline(pretrained)
        tic = time.perf_counter()
        control = protocols.attribute_control(pipe.sample, pretrained.prior, judged_names, judge, judge.names,
                                              n_per_value=n_per_value, seed=seed)
        seconds = time.perf_counter() - tic
        for name, row in control.items():
            record(f"control/{name}", row["accuracy"], row["n"], seconds, classifier_accuracy=judge_accuracy[name],
                   classifier_balanced_accuracy=judge_rows[name]["balanced_accuracy"], judge=decision,
                   **{k: v for k, v in row.items() if k not in ("accuracy", "n")})

    if "fid" in wanted:
        _realism(pretrained, pixels_real, cache, n_fid, seed, record, progress)

    if "edit" in wanted:
        from facegen.pipelines.edit import EditPipeline

        editor = EditPipeline(pretrained, redraw=redraw)
        x, y = x_real[:n_edit], y_real[:n_edit]

        def edit_fn(x_batch, y_source, y_target):
            return editor.apply(x_batch, y_source, y_target)[0]

        if redraw:  # a change applied to the photo gives the photo back exactly: nothing to measure
            tic = time.perf_counter()
            quality = protocols.reconstruction_quality(edit_fn, x, y)
            seconds = time.perf_counter() - tic
            record("reconstruction/psnr_db", quality["psnr_mean"], quality["n"], seconds, std=quality["psnr_std"])
            record("reconstruction/ssim", quality["ssim_mean"], quality["n"], seconds, std=quality["ssim_std"])
        tic = time.perf_counter()
        edits = protocols.edit_success(edit_fn, x, y, names, judge, judge.names, edit_names=judged_names,
                                       identity_limit=n_identity)
        seconds = time.perf_counter() - tic
        for name, row in edits.items():
            record(f"edit/{name}", row["success"], row["n"], seconds, classifier_accuracy=judge_accuracy[name],
                   classifier_balanced_accuracy=judge_rows[name]["balanced_accuracy"], judge=decision,
                   **{k: v for k, v in row.items() if k not in ("success", "n")})
    return records


def _realism(pretrained, pixels_real: np.ndarray, cache, n_fid: int, seed: int, record, progress: bool) -> None:
    """FID, KID and diversity of n_fid generated faces (attributes drawn from the prior) vs the held-out split."""
    from facegen.metrics.fid import InceptionFeatures, fid_from_features, kid_from_features, real_features
    from facegen.metrics.protocols import diversity
    from facegen.pipelines.generate import GenerationPipeline

    pipe = GenerationPipeline(pretrained)
    extractor = InceptionFeatures()
    tic = time.perf_counter()
    feats_real = real_features(pixels_real, Path(cache.path) / "inception-valid.npz", extractor=extractor,
                               progress=progress)
    generator = torch.Generator().manual_seed(seed)
    y = torch.from_numpy(pretrained.prior.sample({}, n_fid, np.random.default_rng(seed)))
    x_fake = pipe.sample(y, generator)
    if x_fake.shape[-1] != pixels_real.shape[1]:
        raise FacegenError(f"the model makes {x_fake.shape[-1]}px faces but {cache.path} holds "
                           f"{pixels_real.shape[1]}px images; evaluate against a cache of the model's size")
    feats_fake = extractor.features(x_fake, progress=progress)
    seconds = time.perf_counter() - tic
    kid_mean, kid_std = kid_from_features(feats_real, feats_fake)
    n = len(feats_fake)
    record("fid", fid_from_features(feats_real, feats_fake), n, seconds, n_real=len(feats_real))
    record("kid", kid_mean, n, seconds, std=kid_std, n_real=len(feats_real))
    record("diversity/inception", diversity(feats_fake[:1000]), min(n, 1000), seconds,
           real=diversity(feats_real[:1000]))
