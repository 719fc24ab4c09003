"""scripts/judge_doubts.py shows the very faces the control protocol judged, so what it shows can check a number."""

import importlib.util
from pathlib import Path

import numpy as np
import torch

from facegen.metrics.judge import Judge
from facegen.metrics.protocols import attribute_control
from facegen.pipelines.generate import GenerationPipeline
from facegen.pretrained import load_pretrained

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "judge_doubts.py"


def _script():
    spec = importlib.util.spec_from_file_location("judge_doubts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_doubted_faces_are_the_control_protocols_own():
    doubts = _script()
    pretrained = load_pretrained("cgan")
    judge = Judge("classifier")
    control = attribute_control(GenerationPipeline(pretrained).sample, pretrained.prior, ["Eyeglasses"], judge,
                                judge.names, n_per_value=200)["Eyeglasses"]
    for value in (1, 0):
        faces, probs, hit_rate = doubts.doubted_faces("cgan", "Eyeglasses", value, show=10)
        assert hit_rate == control[f"accuracy_at_{value}"]  # same faces, same judge, same decision
        assert faces.shape == (10, 64, 64, 3) and faces.dtype == np.uint8
        assert list(probs) == sorted(probs, reverse=not value)  # least convinced first
        # The faces drawn are the ones those probabilities belong to.
        x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1
        again = judge(x)[:, judge.names.index("Eyeglasses")].numpy()
        assert np.allclose(again, probs, atol=0.05)  # up to the faces' rounding to 8 bits

