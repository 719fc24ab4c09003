"""The metrics `facegen evaluate` knows: one row each, saying which model kinds it applies to and what it needs.

    >>> [m.name for m in select_metrics(None, "fader")]
    ['accuracy', 'edit']
    >>> select_metrics(["fid"], "fader")
    Traceback (most recent call last):
    ...
    facegen.errors.FacegenError: --metrics fid does not apply to a fader model (fid measures cgan, cvae); for a fader choose from accuracy, edit

Names are checked here, before a model or a cache is read, so a typo or an
impossible combination costs a second and measures nothing by mistake.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from facegen.errors import FacegenError
from facegen.kinds import KINDS, names

GENERATORS, EDITORS = names(can="generate"), names(can="edit")


@dataclass(frozen=True)
class Metric:
    name: str
    kinds: tuple[str, ...]   # model kinds it measures
    needs: str               # what it takes, for --help and refusals
    count: str | None        # the option that sets how many faces it uses


METRICS = {metric.name: metric for metric in (
    Metric("accuracy", tuple(KINDS), "the classifier and the cache's held-out labels", None),
    Metric("control", GENERATORS, "faces generated per attribute value, judged by the classifier", "--n-per-value"),
    Metric("fid", GENERATORS, "generated faces against the held-out split (FID, KID, diversity; scipy)", "--n-fid"),
    Metric("edit", EDITORS, "held-out faces edited (and, with --redraw, reconstructed), judged by the classifier", "--n-edit"),
)}


def select_metrics(names: Sequence[str] | None, kind: str) -> list[Metric]:
    """The metrics asked for (all that apply to `kind` when None), or a one-line refusal of any unknown name
    or any metric the model kind cannot be measured by. The classifier's own accuracy is always among them."""
    applicable = [m for m in METRICS.values() if kind in m.kinds]
    if names is None:
        return applicable
    chosen = [name.strip().lower() for name in names if name and name.strip()]
    if not chosen:
        raise FacegenError(f"--metrics is empty; choose from {', '.join(METRICS)}")
    for name in chosen:
        if name not in METRICS:
            raise FacegenError(f"unknown metric {name!r} in --metrics; choose from {', '.join(METRICS)}")
        if kind not in METRICS[name].kinds:
            raise FacegenError(f"--metrics {name} does not apply to a {kind} model ({name} measures "
                               f"{', '.join(METRICS[name].kinds)}); for a {kind} choose from "
                               f"{', '.join(m.name for m in applicable)}")
    return [METRICS["accuracy"]] + [m for m in applicable if m.name in chosen and m.name != "accuracy"]
