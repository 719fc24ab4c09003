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
- always: the classifier's own accuracy on the same held-out faces, because a
  measurement cannot be more accurate than its measuring stick.

Each number is a JSON line in `<out>/metrics.jsonl` (metric, value, model,
data, n_samples, seconds, timestamp) and a row of the terminal table.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from facegen.errors import FacegenError
from facegen.files import refusal
from facegen.validation import MAX_SEED, check_int
from facegen.metrics.report import MetricRecord, append_jsonl

from facegen.metrics.registry import select_metrics


JUDGES = ("plain", "balanced")


class Stick:
    """The attribute classifier as the protocols want it: probabilities (B, 40) for x in [-1, 1].

    judge="plain" (the default): the classifier's own probabilities, decided
    at 0.5, as attribute-editing papers judge. It has learnt CelebA's priors
    (78% of faces young, 7% with glasses), so on real held-out faces it calls
    only 51% of the old ones old and finds glasses on 53% of the faces that
    wear them; `classifier_recalls` reports this beside every number.

    judge="balanced": each logit shifted by its attribute's log-odds in the
    training labels (logit adjustment, Menon et al. 2021), the Bayes
    decision for a set with as many 1s as 0s, which is what the protocols
    show it. On real faces it lifts the balanced accuracy over 40 attributes
    from 69.3% to 82.0% (Young 74.5 -> 81.4%, Eyeglasses 76.0 -> 90.2%). Not
    the default: on generated and edited faces it also reads artefacts as
    the rare attribute (a glasses edit that left only dark smudges scores
    p > 0.068, the training rate of glasses: the shipped fader's "add
    glasses" success went from 33% to 91% with no glasses visible).
    """

    def __init__(self, name_or_path: str | Path = "classifier", *, judge: str = "plain"):
        from facegen.pretrained import load_pretrained

        if judge not in JUDGES:
            raise FacegenError(f"judge must be one of {', '.join(JUDGES)}, got {judge!r}")
        self.pretrained = load_pretrained(name_or_path)
        if self.pretrained.kind != "classifier":
            raise FacegenError(f"{name_or_path} is a {self.pretrained.kind} model, not an attribute classifier")
        self.network = self.pretrained.modules["classifier"]
        self.names = self.pretrained.attribute_names
        self.judge = judge
        self.offset = torch.zeros(len(self.names))  # (40,) subtracted from the logits
        if judge == "balanced":
            rates = self.pretrained.prior.marginals()
            rate = torch.tensor([rates[name] for name in self.names]).clamp(1e-3, 1 - 1e-3)
            self.offset = torch.log(rate / (1 - rate))

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network(x)  # (B, 40)
        return torch.sigmoid(logits - self.offset.to(logits.device, logits.dtype))


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


def evaluate(*, model: str, data: str, out: str | Path, classifier: str = "classifier", n_fid: int = 2000,
             n_per_value: int = 200, n_edit: int = 500, n_identity: int = 100, seed: int = 0,
             metrics: tuple[str, ...] | None = None, judge: str = "plain", redraw: bool = False,
             label: str | None = None, progress: bool = True) -> list[dict]:
    """Run every protocol the model supports; returns the records (also appended to out/metrics.jsonl)."""
    from facegen.data import open_cache
    from facegen.metrics import protocols
    from facegen.pretrained import load_pretrained

    from facegen.files import writable_folder

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
    stick = Stick(classifier, judge=judge)
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
    stick_names = [n for n in names if n in stick.names]
    tic = time.perf_counter()
    stick_rows = protocols.classifier_recalls(stick, stick.names, x_real, y_real[:, [names.index(n) for n in stick_names]],
                                              stick_names)
    stick_accuracy = {name: row["accuracy"] for name, row in stick_rows.items()}
    for name, row in stick_rows.items():
        record(f"classifier_accuracy/{name}", row["accuracy"], len(x_real), time.perf_counter() - tic, judge=judge,
               **{k: v for k, v in row.items() if k != "accuracy"})

    if "control" in wanted:
        from facegen.pipelines.generate import GenerationPipeline

        pipe = GenerationPipeline(pretrained)
        tic = time.perf_counter()
        control = protocols.attribute_control(pipe.sample, pretrained.prior, stick_names, stick, stick.names,
                                              n_per_value=n_per_value, seed=seed)
        seconds = time.perf_counter() - tic
        for name, row in control.items():
            record(f"control/{name}", row["accuracy"], row["n"], seconds, classifier_accuracy=stick_accuracy[name],
                   classifier_balanced_accuracy=stick_rows[name]["balanced_accuracy"], judge=judge,
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
        edits = protocols.edit_success(edit_fn, x, y, names, stick, stick.names, edit_names=stick_names,
                                       identity_limit=n_identity)
        seconds = time.perf_counter() - tic
        for name, row in edits.items():
            record(f"edit/{name}", row["success"], row["n"], seconds, classifier_accuracy=stick_accuracy[name],
                   classifier_balanced_accuracy=stick_rows[name]["balanced_accuracy"], judge=judge,
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
