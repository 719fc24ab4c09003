"""The judge: the attribute classifier as the protocols use it, probabilities (B, 40) for images in [-1, 1].

Every control and edit number is the judge's verdict, so each is reported
beside the judge's own accuracy on real held-out faces
(`protocols.classifier_recalls`): a measurement cannot be more accurate
than what measures it.

Two decisions:

- "plain" (the default): the classifier's own probabilities, decided at 0.5,
  as attribute-editing papers judge. It has learnt CelebA's priors, so it
  under-calls rare attributes (old, glasses) even on real faces.
- "balanced": each logit shifted by its attribute's log-odds in the training
  labels (logit adjustment, Menon et al. 2021), the Bayes decision for a set
  with as many 1s as 0s, which is what the protocols show it. Not the
  default: on generated and edited faces it also reads artefacts as the rare
  attribute. docs/notes/classifier.md has the measurements behind both.
"""

from __future__ import annotations

from pathlib import Path

import torch

from facegen.errors import FacegenError

DECISIONS = ("plain", "balanced")


class Judge:
    """An attribute classifier (a shipped name or a model folder) and how it decides; `judge(x)` -> (B, 40)."""

    def __init__(self, name_or_path: str | Path | None = None, *, decision: str = "plain"):
        from facegen.kinds import DEFAULT_MODELS, KINDS
        from facegen.pretrained import load_pretrained

        if decision not in DECISIONS:
            raise FacegenError(f"the judge's decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
        name_or_path = name_or_path or DEFAULT_MODELS["classify"]  # the shipped classifier
        self.pretrained = load_pretrained(name_or_path)
        if not KINDS[self.pretrained.kind].can_classify:
            raise FacegenError(f"{name_or_path} is a {self.pretrained.kind} model, not an attribute classifier")
        self.network = self.pretrained.modules["classifier"]
        self.names = self.pretrained.attribute_names
        self.decision = decision
        self.offset = torch.zeros(len(self.names))  # (40,) subtracted from the logits
        if decision == "balanced":
            rates = self.pretrained.prior.marginals()
            rate = torch.tensor([rates[name] for name in self.names]).clamp(1e-3, 1 - 1e-3)
            self.offset = torch.log(rate / (1 - rate))

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network(x)  # (B, 40)
        return torch.sigmoid(logits - self.offset.to(logits.device, logits.dtype))
