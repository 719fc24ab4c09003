"""Evaluation protocols, written against small callables so any model can be measured.

The judge is an attribute classifier (metrics/judge.py): `classifier_fn(x) -> probs`
(B, A_cls) for images x (B, 3, H, W) in [-1, 1], with `classifier_names`
naming its columns (the 40 CelebA attributes). Model attributes are matched
to classifier columns by name. Report `classifier_accuracy` on real images
beside every number the judge produces: a protocol cannot be more accurate
than its judge.

    control = attribute_control(sample_fn, prior, ["Smiling", "Male"], classifier_fn, CELEBA_ATTRIBUTES)
    edits = edit_success(edit_fn, x_val, y_val, model_names, classifier_fn, CELEBA_ATTRIBUTES)
    quality = reconstruction_quality(edit_fn, x_val, y_val)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np
import torch

from facegen.errors import FacegenError
from facegen.metrics.reconstruction import psnr, ssim

ClassifierFn = Callable[[torch.Tensor], torch.Tensor]  # x (B, 3, H, W) in [-1, 1] -> probs (B, A_cls)
SampleFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # y (B, A), generator -> x (B, 3, H, W)
EditFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # x, y_src, y_target -> x_edited


class PriorLike(Protocol):
    """What the protocols need of `facegen.attributes.AttributePrior`."""

    names: Sequence[str]

    def sample(self, request: Mapping[str, float], n: int, rng: np.random.Generator) -> np.ndarray: ...


def classifier_columns(names: Sequence[str], classifier_names: Sequence[str]) -> list[int]:
    """The classifier column of each model attribute name, matched exactly.

    >>> classifier_columns(["Smiling", "Male"], ["Male", "Young", "Smiling"])
    [2, 0]
    """
    index = {name: i for i, name in enumerate(classifier_names)}
    missing = [name for name in names if name not in index]
    if missing:
        raise FacegenError(f"the classifier has no attribute {', '.join(missing)}; "
                           f"it knows {', '.join(classifier_names)}")
    return [index[name] for name in names]


@torch.no_grad()
def _classify(classifier_fn: ClassifierFn, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Classifier probabilities (N, A_cls) of x (N, 3, H, W), batch by batch, on the CPU."""
    probs = [classifier_fn(x[start:start + batch_size]).detach().float().cpu() for start in range(0, len(x), batch_size)]
    return torch.cat(probs) if probs else torch.zeros(0, 0)


@torch.no_grad()
def _edit(edit_fn: EditFn, x: torch.Tensor, y_src: torch.Tensor, y_target: torch.Tensor,
          batch_size: int) -> torch.Tensor:
    """edit_fn over (N, ...) inputs, batch by batch: x_edited (N, 3, H, W)."""
    parts = [edit_fn(x[i:i + batch_size], y_src[i:i + batch_size], y_target[i:i + batch_size]).detach().cpu()
             for i in range(0, len(x), batch_size)]
    return torch.cat(parts)


def _check_images_and_labels(x: torch.Tensor, y: torch.Tensor, names: Sequence[str]) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"x must be images (N, 3, H, W), got {tuple(x.shape)}")
    if y.ndim != 2 or y.shape != (len(x), len(names)):
        raise ValueError(f"y must be (N, A) = ({len(x)}, {len(names)}) for {len(names)} attribute names, "
                         f"got {tuple(y.shape)}")


def control_requests(prior: PriorLike, name: str, value: int, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Generator]:
    """The (n, A) attribute rows that `attribute_control` asks for `name` = value, and the generator its faces are
    drawn with: its own streams from (seed, the attribute's column, value), so that anyone can redraw those faces."""
    prior_names = list(prior.names)
    column = prior_names.index(name)
    rng = np.random.default_rng([seed, column, value])
    generator = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    y = np.asarray(prior.sample({name: float(value)}, n, rng), dtype=np.float32)  # (n, A)
    if y.shape != (n, len(prior_names)):
        raise ValueError(f"prior.sample returned {y.shape}, expected ({n}, {len(prior_names)})")
    y[:, column] = value  # the protocol's request, whatever the prior did with it
    return torch.from_numpy(y), generator


def attribute_control(sample_fn: SampleFn, prior: PriorLike, attributes: Sequence[str],
                      classifier_fn: ClassifierFn, classifier_names: Sequence[str], *,
                      n_per_value: int = 200, batch_size: int = 100, seed: int = 0) -> dict[str, dict]:
    """Does a generator obey a requested attribute? Per attribute: n faces asked for a=1, n for a=0.

    The other attributes of each face come from `prior.sample({a: v}, n, rng)`,
    so they follow the training data's correlations. Per attribute it returns
    `accuracy` (mean over all 2n faces of [prob > 0.5] == requested value),
    `accuracy_at_1` / `accuracy_at_0` (the same over the faces asked for 1 / 0),
    `mean_prob_at_1` / `mean_prob_at_0` (mean classifier probability) and `n`.
    Each attribute gets its own random streams from (seed, attribute), so its
    numbers do not depend on which other attributes are measured.
    """
    prior_names = list(prior.names)
    unknown = [name for name in attributes if name not in prior_names]
    if unknown:
        raise FacegenError(f"the model has no attribute {', '.join(unknown)}; it knows {', '.join(prior_names)}")
    columns = classifier_columns(attributes, classifier_names)
    results: dict[str, dict] = {}
    for name, column in zip(attributes, columns):
        per_value = {}
        for value in (1, 0):
            y, generator = control_requests(prior, name, value, n_per_value, seed)
            probs = []
            with torch.no_grad():
                for start in range(0, n_per_value, batch_size):
                    x = sample_fn(y[start:start + batch_size], generator)  # (B, 3, H, W)
                    probs.append(_classify(classifier_fn, x, batch_size)[:, column])
            per_value[value] = torch.cat(probs)  # (n,)
        hits_1 = (per_value[1] > 0.5).float()
        hits_0 = (per_value[0] <= 0.5).float()
        results[name] = {
            "accuracy": float(torch.cat([hits_1, hits_0]).mean()),
            "accuracy_at_1": float(hits_1.mean()),
            "accuracy_at_0": float(hits_0.mean()),
            "mean_prob_at_1": float(per_value[1].mean()),
            "mean_prob_at_0": float(per_value[0].mean()),
            "n": 2 * n_per_value,
        }
    return results


def edit_success(edit_fn: EditFn, x: torch.Tensor, y: torch.Tensor, attributes: Sequence[str],
                 classifier_fn: ClassifierFn, classifier_names: Sequence[str], *,
                 batch_size: int = 100, edit_names: Sequence[str] | None = None,
                 identity: bool = True, identity_limit: int | None = None) -> dict[str, dict]:
    """Does an editor flip the attribute it is asked to, and only that one?

    `attributes` names the columns of y (the model's attributes). For each
    edited attribute a (all of them unless `edit_names` picks some), y' is y
    with a flipped (1 - round(y_a)) and x_edited = edit_fn(x, y, y'). Per
    attribute:
    - `success`: fraction of images whose classifier decision on a (prob > 0.5)
      equals y'_a; `success_to_1` / `success_to_0` split it by edit direction
      (NaN when no image went that way), with `n_to_1`, `n_to_0`;
    - `others_unchanged`: over the images and the other model attributes the
      classifier knows, the fraction whose decision is the same on x_edited as
      on the reconstruction edit_fn(x, y, y) (NaN when there are none), so the
      editor's own blur is not counted against it;
    - `identity_distance` / `identity_same_fraction`: mean dlib distance
      between x and x_edited and the fraction under 0.6, when `identity` is
      asked for and `identity_available()`; else absent. Measured on the
      first `identity_limit` images (dlib costs ~0.1 s a face on a CPU), with
      `identity_distance_reconstruction`, the same distance for the
      unedited reconstruction: how much of the change is the autoencoder's.
    """
    _check_images_and_labels(x, y, attributes)
    edit_names = list(attributes) if edit_names is None else list(edit_names)
    unknown = [name for name in edit_names if name not in attributes]
    if unknown:
        raise FacegenError(f"cannot edit {', '.join(unknown)}: the model's attributes are {', '.join(attributes)}")
    edit_columns = classifier_columns(edit_names, classifier_names)  # fail before any work
    known = [name for name in attributes if name in classifier_names]  # the judge knows only these
    known_columns = classifier_columns(known, classifier_names)
    y = y.float()

    x_reconstructed = _edit(edit_fn, x, y, y, batch_size)  # (N, 3, H, W)
    decided_reconstructed = _classify(classifier_fn, x_reconstructed, batch_size)[:, known_columns] > 0.5  # (N, K)

    embedder = None
    if identity and identity_limit != 0:  # --n-identity 0: no identity rows (a mean of nothing is no number)
        from facegen.metrics.identity import IdentityEmbedder, identity_available, same_person_fraction

        if identity_available():
            embedder = IdentityEmbedder()
            n_id = len(x) if identity_limit is None else min(identity_limit, len(x))
            descriptors_original = embedder.embed(x[:n_id])  # (n_id, 128)
            reconstruction_distance = float(np.linalg.norm(embedder.embed(x_reconstructed[:n_id])
                                                           - descriptors_original, axis=1).mean())

    results: dict[str, dict] = {}
    for name, cls_column in zip(edit_names, edit_columns):
        model_column = list(attributes).index(name)
        y_target = y.clone()
        y_target[:, model_column] = 1 - y[:, model_column].round()
        x_edited = _edit(edit_fn, x, y, y_target, batch_size)
        probs = _classify(classifier_fn, x_edited, batch_size)  # (N, A_cls)
        wanted = y_target[:, model_column] > 0.5  # (N,)
        hits = (probs[:, cls_column] > 0.5) == wanted
        others = [i for i, other in enumerate(known) if other != name]
        unchanged = (probs[:, known_columns] > 0.5)[:, others] == decided_reconstructed[:, others]  # (N, K - 1)
        row = {
            "success": float(hits.float().mean()),
            "success_to_1": float(hits[wanted].float().mean()) if wanted.any() else float("nan"),
            "success_to_0": float(hits[~wanted].float().mean()) if (~wanted).any() else float("nan"),
            "n_to_1": int(wanted.sum()),
            "n_to_0": int((~wanted).sum()),
            "others_unchanged": float(unchanged.float().mean()) if others else float("nan"),
            "n": len(x),
        }
        if embedder is not None:
            distances = np.linalg.norm(embedder.embed(x_edited[:n_id]) - descriptors_original, axis=1)  # (n_id,)
            row["identity_distance"] = float(distances.mean())
            row["identity_same_fraction"] = same_person_fraction(distances)
            row["identity_distance_reconstruction"] = reconstruction_distance
            row["identity_n"] = n_id
        results[name] = row
    return results


def reconstruction_quality(edit_fn: EditFn, x: torch.Tensor, y: torch.Tensor,
                           batch_size: int = 100) -> dict[str, float]:
    """PSNR (dB) and SSIM of edit_fn(x, y, y) against x: mean and std over images.

    An identical reconstruction has an infinite PSNR, which makes the mean
    infinite too; no model gets there.
    """
    x_reconstructed = _edit(edit_fn, x, y.float(), y.float(), batch_size)
    psnr_db, ssim_values = psnr(x_reconstructed, x.cpu()), ssim(x_reconstructed, x.cpu())  # (N,), (N,)
    return {
        "psnr_mean": float(psnr_db.mean()),
        "psnr_std": float(psnr_db.std()) if len(x) > 1 else 0.0,
        "ssim_mean": float(ssim_values.mean()),
        "ssim_std": float(ssim_values.std()) if len(x) > 1 else 0.0,
        "n": len(x),
    }


def diversity(samples: torch.Tensor | np.ndarray) -> float:
    """Mean euclidean distance over all pairs of rows of `samples`, each flattened.

    The space is the caller's choice and belongs in the report: facegen
    passes Inception features (`InceptionFeatures().features(x)`, (N, 2048)),
    where distance tracks what a viewer sees better than pixels do; raw
    images (N, 3, H, W) give pixel-space diversity. A collapsed generator
    scores near 0.

    >>> diversity(np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]]))  # pairs: 5, 0, 5
    3.3333333333333335
    """
    rows = torch.as_tensor(np.asarray(samples) if not isinstance(samples, torch.Tensor) else samples.detach())
    rows = rows.reshape(len(rows), -1).double().cpu()  # (N, D)
    if len(rows) < 2:
        raise FacegenError(f"diversity needs at least 2 samples, got {len(rows)}")
    distances = torch.cdist(rows, rows)  # (N, N), zero diagonal
    n = len(rows)
    return float(distances.sum() / (n * (n - 1)))


def classifier_accuracy(classifier_fn: ClassifierFn, classifier_names: Sequence[str], x: torch.Tensor,
                        y_true: torch.Tensor, names: Sequence[str], *, batch_size: int = 100) -> dict[str, float]:
    """The judge's own accuracy per attribute: [prob > 0.5] == [y_true > 0.5] on real images.

    y_true (N, len(names)) holds the labels of x, columns ordered like `names`.
    """
    rows = classifier_recalls(classifier_fn, classifier_names, x, y_true, names, batch_size=batch_size)
    return {name: row["accuracy"] for name, row in rows.items()}


def classifier_recalls(classifier_fn: ClassifierFn, classifier_names: Sequence[str], x: torch.Tensor,
                       y_true: torch.Tensor, names: Sequence[str], *, batch_size: int = 100) -> dict[str, dict]:
    """Per attribute: `accuracy`, `recall_at_1` / `recall_at_0` (of the real faces with it / without it, the
    share the judge gets right) and `balanced_accuracy`, their mean: the judge's own score on a set with as
    many faces at 1 as at 0, which is what the control and edit protocols show it. NaN where a class is absent.
    """
    _check_images_and_labels(x, y_true, names)
    columns = classifier_columns(names, classifier_names)
    decided = _classify(classifier_fn, x, batch_size)[:, columns] > 0.5  # (N, len(names))
    truth = y_true.float().cpu() > 0.5  # (N, len(names))
    rows = {}
    for i, name in enumerate(names):
        right = decided[:, i] == truth[:, i]
        at_1 = float(right[truth[:, i]].float().mean()) if truth[:, i].any() else float("nan")
        at_0 = float(right[~truth[:, i]].float().mean()) if (~truth[:, i]).any() else float("nan")
        rows[name] = {"accuracy": float(right.float().mean()), "recall_at_1": at_1, "recall_at_0": at_0,
                      "balanced_accuracy": (at_1 + at_0) / 2}
    return rows
