"""Training recipe of the attribute classifier: binary cross-entropy over all attributes.

Translation jitter on top of the loop's left-right flips; AdamW with a
cosine schedule over the run's steps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from facegen.models.classifier import AttributeClassifier
from facegen.models.layers import diff_augment
from facegen.training.method import FixedBatch, Method, unwrap


class ClassifierMethod(Method):
    validates = True

    def __init__(self, *, attribute_names, size, prior,
                 channels: int = 32,         # Width of the first stage (x2, x4, x8 after it).
                 dropout: float = 0.3,       # Dropout before the linear head.
                 lr: float = 2e-3,           # Peak AdamW learning rate.
                 weight_decay: float = 5e-4,  # AdamW weight decay.
                 total_steps: int = 1000,    # For the cosine schedule (the loop passes its own).
                 batch_size: int = 64):      # Unused here; every method receives it.
        super().__init__(attribute_names=attribute_names, size=size, prior=prior)
        self.kwargs = {"n_attributes": self.n_attributes, "size": size, "channels": channels, "dropout": dropout}
        self.lr, self.weight_decay, self.total_steps = lr, weight_decay, total_steps

    def configure(self, fabric) -> None:
        with fabric.init_module():
            model = AttributeClassifier(**self.kwargs)
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.model, self.optimizer = fabric.setup(model, optimizer)
        self.fabric = fabric

    def training_step(self, x, y, step):
        for group in self.optimizer.param_groups:  # cosine decay with a short warm-up
            warmup = min(1.0, (step + 1) / 100)
            group["lr"] = self.lr * warmup * 0.5 * (1 + math.cos(math.pi * min(step / self.total_steps, 1.0)))
        logits = self.model(diff_augment(x, "translation"))
        loss = F.binary_cross_entropy_with_logits(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.fabric.backward(loss)
        self.optimizer.step()
        accuracy = ((logits.detach() > 0) == (y > 0.5)).float().mean()
        return {"loss": loss.detach(), "accuracy": accuracy}

    @torch.no_grad()
    def sample_grid(self, fixed: FixedBatch):
        return fixed.x, min(8, fixed.x.shape[0])

    @torch.no_grad()
    def validate(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> dict[str, float]:
        """Per-attribute accuracy on held-out images (what the loop logs as val/...)."""
        model = unwrap(self.model)
        was_training = model.training
        model.eval()
        correct = torch.zeros(self.n_attributes)
        for start in range(0, x.shape[0], batch_size):
            logits = model(x[start:start + batch_size].to(self.fabric.device)).cpu()
            correct += ((logits > 0) == (y[start:start + batch_size] > 0.5)).float().sum(0)
        model.train(was_training)
        accuracy = correct / max(x.shape[0], 1)
        return {"mean": accuracy.mean().item()} | {n: a.item() for n, a in zip(self.attribute_names, accuracy)}

    def export(self):
        return {"classifier": (dict(self.kwargs), unwrap(self.model))}

    def trainables(self):
        return {"classifier": self.model}

    def optimizers(self):
        return {"classifier": self.optimizer}
