"""What every model's training recipe provides to the shared loop, and the data it is fed.

A `Method` owns its modules and optimizers; the loop owns everything else
(Fabric, data order, seeds, logging, checkpoints, samples, divergence checks).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from facegen.attributes import AttributePrior
from facegen.data.images import to_tensor


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """A seed for one step of one process: resuming at step s replays exactly what step s would have drawn."""
    digest = hashlib.blake2b(f"{seed}/{step}/{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class Batches:
    """Deterministic, endless batches from a cache.

    Epoch e visits the training images in a permutation drawn from (seed, e);
    the global batch of step s is the s-th slice of it, and process r takes
    every world_size-th image of that slice. The order depends only on the
    seed and the step, so a run resumed on a different number of devices sees
    the same global batches.

    With `weights` (one per index, any positive scale) there are no epochs:
    the global batch of step s is drawn with replacement from a generator
    seeded by (seed, s), image i with probability proportional to weights[i].
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, *, batch_size: int,
                 seed: int, rank: int = 0, world_size: int = 1, flip: bool = True, weights: np.ndarray | None = None):
        assert batch_size % world_size == 0, f"batch size {batch_size} must divide among {world_size} processes"
        assert len(indices) >= batch_size, f"{len(indices)} training images are fewer than one batch of {batch_size}"
        self.images, self.labels, self.indices = images, labels, np.asarray(indices)
        self.batch_size, self.seed, self.rank, self.world_size, self.flip = batch_size, seed, rank, world_size, flip
        self.steps_per_epoch = len(self.indices) // batch_size
        self._epoch, self._order = -1, self.indices
        self.p = None
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)
            assert weights.shape == self.indices.shape and (weights >= 0).all() and weights.sum() > 0, \
                "weights must be one non-negative number per index, not all 0"
            self.p = weights / weights.sum()

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x (b, 3, S, S) float in [-1, 1] and y (b, A) float in {0, 1} for this process at `step`."""
        if self.p is not None:
            drawn = np.random.default_rng([self.seed, step, 2]).choice(self.indices, self.batch_size, p=self.p)
            chosen = drawn[self.rank::self.world_size]
        else:
            epoch, position = divmod(step, self.steps_per_epoch)
            if epoch != self._epoch:
                self._epoch, self._order = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.indices)
            chosen = self._order[position * self.batch_size:(position + 1) * self.batch_size][self.rank::self.world_size]
        order = np.argsort(chosen)  # read the memory map in file order, then restore the batch order
        pixels = np.empty((len(chosen),) + self.images.shape[1:], dtype=np.uint8)
        pixels[order] = self.images[chosen[order]]
        x = to_tensor(pixels)  # (b, 3, S, S) in [-1, 1]
        if self.flip:  # faces are left-right symmetric, and so are all 40 CelebA attributes
            mirror = torch.from_numpy(np.random.default_rng([self.seed, step, self.rank, 1]).random(len(chosen)) < 0.5)
            x[mirror] = x[mirror].flip(-1)
        y = torch.from_numpy(self.labels[chosen].astype(np.float32))  # (b, A)
        return x, y


@dataclass
class FixedBatch:
    """What the sample grids show at every snapshot: fixed validation faces, labels and noise seeds."""

    x: torch.Tensor  # (n, 3, S, S) validation images
    y: torch.Tensor  # (n, A) their labels
    seed: int


class Method:
    """One model's recipe (a kind's row in `facegen.kinds` names it). Subclasses implement the six methods that
    raise NotImplementedError below; `validate` is an optional hook (set `validates = True`).

    A recipe whose keyword arguments include `total_steps` (a learning-rate schedule over the whole run) is
    given the run's --steps by `build_method`.
    """

    validates = False  # True: the loop calls `validate` on held-out images at every sample interval
    fresh_modules: tuple[str, ...] = ()  # trainables that --init-from may leave at their new weights (a new critic)

    def __init__(self, *, attribute_names: list[str], size: int, prior: AttributePrior):
        self.attribute_names, self.size, self.prior = list(attribute_names), size, prior
        self.n_attributes = len(self.attribute_names)

    def configure(self, fabric) -> None:
        """Build modules and optimizers and hand them to `fabric.setup`."""
        raise NotImplementedError

    def training_step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """One optimisation step on a batch; returns detached scalar losses for logging."""
        raise NotImplementedError

    def sample_grid(self, fixed: FixedBatch) -> tuple[torch.Tensor, int]:
        """Images (N, 3, S, S) in [-1, 1] for the snapshot grid, and its number of columns."""
        raise NotImplementedError

    def export(self) -> dict[str, tuple[dict, nn.Module]]:
        """The inference modules, by name, with their constructor kwargs (what `save_pretrained` takes)."""
        raise NotImplementedError

    def export_training(self) -> dict[str, tuple[dict, nn.Module]]:
        """Modules that inference never uses but a later run needs to go on training the export (a GAN's critic), in
        `export`'s form; they are saved beside the model (`save_pretrained`'s training_modules). Default: none."""
        return {}

    def real_weights(self, labels: np.ndarray) -> np.ndarray | None:
        """How often the loop draws each training image, given their labels (N, A) in {0, 1}: weights (N,) of any
        positive scale, or None (default) for plain epochs, every image once each."""
        return None

    def validate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Held-out measures (logged as val/NAME) of images x (n, 3, S, S) and labels y (n, A); see `validates`."""
        return {}

    # Checkpoint state: modules, optimizers and any extra tensors (an EMA), by name.
    def trainables(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def from_export(self, modules: dict[str, dict]) -> dict[str, dict]:
        """An exported model's weights (module name -> state dict, named as `export` names them) -> the weights of
        this recipe's trainables (named as `state_dict()["modules"]`), for --init-from a model. By default the
        names are the same; a recipe whose export is an EMA copy says where it goes."""
        return dict(modules)

    def state_dict(self) -> dict:
        return {"modules": {k: _unwrap(m).state_dict() for k, m in self.trainables().items()},
                "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()}}

    def load_state_dict(self, state: dict) -> None:
        for name, module in self.trainables().items():
            _unwrap(module).load_state_dict(state["modules"][name])
        for name, optimizer in self.optimizers().items():
            optimizer.load_state_dict(state["optimizers"][name])


def flipped(y: torch.Tensor, column: int) -> torch.Tensor:
    """A copy of attributes y (n, A) with one attribute flipped to the opposite of its rounded value.

    >>> flipped(torch.tensor([[0.2, 1.0]]), 0).tolist()
    [[1.0, 1.0]]
    """
    out = y.clone()
    out[:, column] = 1.0 - out[:, column].round()
    return out


def flipped_rows(y: torch.Tensor) -> list[torch.Tensor]:
    """The sample grids' rows of attributes: y (n, A) as it is, then one copy per attribute with it flipped."""
    return [y] + [flipped(y, a) for a in range(y.shape[1])]


def build_method(method_cls, *, attribute_names: list[str], size: int, prior: AttributePrior, batch_size: int,
                 steps: int, method_options: dict | None = None) -> Method:
    """The recipe of a run; the run's length goes to the recipes that schedule over it (`total_steps`)."""
    extra = {"total_steps": int(steps)} if "total_steps" in inspect.signature(method_cls.__init__).parameters else {}
    return method_cls(attribute_names=attribute_names, size=size, prior=prior, batch_size=batch_size, **extra,
                      **(method_options or {}))


def _unwrap(module: nn.Module) -> nn.Module:
    """The plain module under Fabric's and DDP's wrappers, for state dicts with stable keys."""
    while hasattr(module, "module") and isinstance(module.module, nn.Module):
        module = module.module
    return module


unwrap = _unwrap


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model for parameters; buffers (BatchNorm statistics) are copied."""
    model = _unwrap(model)
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def make_ema(model: nn.Module) -> nn.Module:
    ema = copy.deepcopy(_unwrap(model)).eval()
    ema.requires_grad_(False)
    return ema
