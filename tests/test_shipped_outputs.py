"""The shipped models give the same outputs across refactors.

fixtures/shipped_outputs.json holds a fingerprint of each output, recorded
from the code as it was before a structural change (`python
tests/test_shipped_outputs.py` writes them): its shape, dtype and the means of
up to 256 consecutive runs of its values. A refactor that changes no
behaviour leaves every mean within rounding noise; a changed model, pipeline
or preprocessing moves them by far more.

Not bit-exact hashes: the same code gives other low bits on another CPU (the
hashes recorded on a 2-core AMD EPYC with AVX2 differed on an Intel Xeon with
AVX-512 and AMX, from the session-start code as much as from later code,
in every model), so a hash would fail on the machine kind a CI run happens to
get. Torch runs on one thread here, so sums are still added in one order.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent
RECORDED = HERE / "fixtures" / "shipped_outputs.json"
WEIGHTS = HERE.parent / "src" / "facegen" / "weights"
CELEBA_PHOTO = HERE / "fixtures" / "official" / "img_align_celeba" / "000001.jpg"  # its labels give its own values
OTHER_PHOTO = HERE / "fixtures" / "custom" / "a.jpg"  # the shipped classifier reads its own values
EDITORS = ("residual", "fader", "cvae")


RUNS = 256  # values are averaged over this many consecutive runs of the flattened output
TOLERANCE = {"uint8": 0.5, "float": 2e-3}  # largest difference of a run's mean: a pixel level, a probability


def _digest(array) -> dict:
    """The fingerprint of an output: shape, dtype and the means of up to RUNS consecutive runs of its values."""
    array = np.ascontiguousarray(np.asarray(array))
    values = array.astype(np.float64).ravel()
    means = [float(run.mean()) for run in np.array_split(values, min(RUNS, values.size))]
    return {"shape": list(array.shape), "dtype": str(array.dtype), "means": [round(m, 6) for m in means]}


def _differences(now: dict, recorded: dict) -> list[str]:
    """The outputs whose fingerprints differ beyond rounding noise, each with how."""
    problems = []
    for key, want in recorded.items():
        have = now[key]
        if (have["shape"], have["dtype"]) != (want["shape"], want["dtype"]):
            problems.append(f"{key}: {have['dtype']}{have['shape']}, recorded {want['dtype']}{want['shape']}")
            continue
        tolerance = TOLERANCE["uint8" if want["dtype"] == "uint8" else "float"]
        worst = float(np.max(np.abs(np.subtract(have["means"], want["means"])))) if want["means"] else 0.0
        if worst > tolerance:
            problems.append(f"{key}: a run's mean moved by {worst:.4g} (noise is under {tolerance})")
    return problems


def _judge(kind: str):
    try:
        from facegen.metrics.judge import Judge
    except ImportError:  # the name before the judge had one name
        from facegen.metrics.evaluate import Stick as Judge
    return Judge("classifier", judge=kind) if Judge.__name__ == "Stick" else Judge("classifier", decision=kind)  # noqa


def shipped_outputs(kinds=("cgan", "classifier") + EDITORS) -> dict[str, str]:
    """Digests of what each shipped model makes: faces, edited photos (full size and model size), probabilities."""
    from facegen.pipelines import EditPipeline
    from facegen.pipelines.generate import GenerationPipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out: dict[str, str] = {}
        faces = None
        if "cgan" in kinds:
            for fast in (True, False):
                pipe = GenerationPipeline.from_pretrained("cgan", fast=fast)
                made = pipe("young=1 blond=1 male=0", n=4, generator=torch.Generator().manual_seed(0))
                out[f"cgan/generate/fast={fast}/images"] = _digest(np.stack([np.asarray(i) for i in made.images]))
                out[f"cgan/generate/fast={fast}/attributes"] = _digest(made.attributes)
                faces = made.x
        if "cvae" in kinds:
            made = GenerationPipeline.from_pretrained("cvae")("smiling=1", n=4, generator=torch.Generator().manual_seed(1))
            out["cvae/generate/images"] = _digest(np.stack([np.asarray(i) for i in made.images]))
            try:  # N(0, I), as the cVAE sampled before it shipped a fitted prior: the same faces as then
                pipe = GenerationPipeline.from_pretrained("cvae", z_prior="normal")
            except TypeError:  # the code from before the option existed
                pipe = GenerationPipeline.from_pretrained("cvae")
            made = pipe("smiling=1", n=4, generator=torch.Generator().manual_seed(1))
            out["cvae/generate/z_prior=normal/images"] = _digest(np.stack([np.asarray(i) for i in made.images]))
        if "classifier" in kinds and faces is not None:
            for decision in ("plain", "balanced"):
                out[f"classifier/judge/{decision}"] = _digest(_judge(decision)(faces).numpy())
        for kind in EDITORS:
            if kind not in kinds:
                continue
            for redraw in (False, True) if kind != "residual" else (False,):
                pipe = EditPipeline.from_pretrained(kind, redraw=redraw)
                for label, photo in (("celeba", CELEBA_PHOTO), ("other", OTHER_PHOTO)):
                    edited = pipe.edit([photo], "male=1 young=0", flip=["smiling"])
                    key = f"{kind}/edit/redraw={redraw}/{label}"
                    out[f"{key}/image"] = _digest(np.asarray(edited.images[0]))
                    out[f"{key}/x"] = _digest(edited.x.numpy())
                    out[f"{key}/source"] = _digest(edited.source_attributes)
                sweep = pipe.sweep(CELEBA_PHOTO, ["male", "smiling"], steps=3)
                out[f"{kind}/sweep/redraw={redraw}"] = _digest(np.asarray(sweep))
        return out
    finally:
        torch.set_num_threads(threads)


def _installed() -> tuple[str, ...]:
    return tuple(k for k in ("cgan", "classifier") + EDITORS if (WEIGHTS / k / "config.json").is_file())


@pytest.mark.parametrize("kind", ("cgan", "classifier") + EDITORS)
def test_shipped_model_outputs_are_unchanged(kind):
    if not (WEIGHTS / kind / "config.json").is_file():
        pytest.skip(f"no shipped {kind} model in {WEIGHTS} (shipped later)")
    recorded = json.loads(RECORDED.read_text())
    mine = {k: v for k, v in recorded.items() if k.startswith(f"{kind}/")}
    if not mine:
        pytest.skip(f"no outputs of the shipped {kind} were recorded before this code changed")
    needed = (kind,) + (("cgan",) if kind == "classifier" else ())  # the classifier judges the cGAN's faces
    now = shipped_outputs(needed)
    assert not _differences(now, mine), _differences(now, mine)


if __name__ == "__main__":  # record: run from the code whose behaviour is the reference
    sys.path.insert(0, str(HERE))
    RECORDED.write_text(json.dumps(shipped_outputs(_installed()), indent=1, sort_keys=True) + "\n")
    print(f"wrote {RECORDED}")
