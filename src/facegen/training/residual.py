"""Training recipe of the residual editor: distil the conditional GAN's attribute changes into change fields.

    facegen train residual --data cache/celeba9k-64 --attrs all-of-the-teacher --steps 3000 --out runs/residual

Each step draws noise z and takes each training face's real label row y as
the source attributes (real combinations of attributes, not independent
coin flips). One attribute per face is chosen uniformly and set to 0 or 1
with even odds in the source and to the other value in the target (both
directions of every attribute, glasses put on as often as taken off); with
probability `second_flip` a second attribute flips too. The teacher, a
frozen cGAN generator, draws both faces:

    x_source = G(z, y),  x_target = G(z, y')

and the editor, shown x_source and y, must predict the change:
sum_a (y'_a - y_a) F_a(x_source, y) ~ x_target - x_source (L1, at full and
at half resolution). The teacher's own texture noise differs between the
two draws and cannot be predicted, so the editor learns the located,
systematic part of the change, which is the part worth applying to a photo.

Some changes are one of several looks the face alone cannot tell apart
(which glasses, which beard, which smile): a plain regression gives their
blurred average, a weak smudge. With `style_dim` > 0 a style encoder, shown
the answer, passes a few numbers on to the editor, as a conditional VAE's
latent (KL to N(0, I), weight `kl_weight`, its first `kl_free` nats free
so that the code is used at all); at inference the code is the prior's
mean, 0, one typical look drawn crisply.

The training images of the cache are used only for their label rows and the
sample grids (which show real held-out faces edited, to watch how the
distilled change carries over to photos).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facegen.models.residual import ResidualEditor, apply_fields
from facegen.training.method import FixedBatch, Method, flipped, make_ema, update_ema

GRID_ATTRIBUTES = ("Male", "Blond_Hair", "Smiling", "Eyeglasses", "Young")  # the sample grid's rows, when present


class ResidualMethod(Method):
    def __init__(self, *, attribute_names, size, prior,
                 teacher: str = "cgan",      # The cGAN whose changes are distilled: a shipped name or a model folder.
                 channels: int = 32,         # Width at full resolution (x2 each level down).
                 max_channels: int = 256,    # Width cap (reached at 8x8 for 64 px).
                 blocks: int = 2,            # Residual blocks at 8x8.
                 lr: float = 5e-4,           # Adam learning rate.
                 second_flip: float = 0.3,   # Probability that a second attribute changes in the same step.
                 input_noise: float = 0.02,  # Std of Gaussian noise on the teacher's faces (they are smoother than photos).
                 ema_beta: float = 0.998,    # Per-step decay of the exported weights' moving average.
                 style_dim: int = 0,         # Numbers of the style code (which glasses, which beard); 0: none.
                 kl_weight: float = 2e-3,    # Weight of the style code's KL divergence from N(0, I), per face.
                 kl_free: float = 4.0,       # Nats of KL per face that cost nothing ("free bits": the code gets used).
                 batch_size: int = 64):      # Unused here; every method receives it.
        super().__init__(attribute_names=attribute_names, size=size, prior=prior)
        if not 0.0 <= second_flip <= 1.0:
            raise ValueError(f"second_flip must be in [0, 1], got {second_flip}")
        if not 0.0 <= ema_beta < 1.0:
            raise ValueError(f"ema_beta must be in [0, 1), got {ema_beta}")
        if input_noise < 0:
            raise ValueError(f"input_noise must be at least 0, got {input_noise}")
        if not 0 <= style_dim <= 256 or kl_weight < 0 or kl_free < 0:
            raise ValueError(f"style_dim must be in [0, 256], kl_weight and kl_free at least 0, got {style_dim}, "
                             f"{kl_weight}, {kl_free}")
        self.kwargs = {"n_attributes": self.n_attributes, "size": size, "channels": channels,
                       "max_channels": max_channels, "blocks": blocks, "style_dim": style_dim}
        self.style_dim, self.kl_weight, self.kl_free = style_dim, kl_weight, kl_free
        self.teacher_name, self.lr, self.second_flip = teacher, lr, second_flip
        self.input_noise, self.ema_beta = input_noise, ema_beta

    def configure(self, fabric) -> None:
        self.teacher = load_teacher(self.teacher_name, self.attribute_names, self.size).to(fabric.device)
        with fabric.init_module():
            editor = ResidualEditor(**self.kwargs)
            styles = StyleEncoder(size=self.size, style_dim=self.style_dim) if self.style_dim else None
        adam = lambda module: torch.optim.Adam(module.parameters(), lr=self.lr, betas=(0.9, 0.99))  # noqa: E731
        self.editor, self.optimizer = fabric.setup(editor, adam(editor))
        self.styles, self.styles_optimizer = fabric.setup(styles, adam(styles)) if styles is not None else (None, None)
        self.ema = make_ema(self.editor)
        self.fabric = fabric

    @torch.no_grad()
    def pairs(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Label rows y (B, A) -> the teacher's (x_source, x_target) and (y_source, y_target)."""
        batch, device = y.shape[0], y.device
        rows = torch.arange(batch, device=device)
        y_source = y.clone()
        first = torch.randint(0, self.n_attributes, (batch,), device=device)
        value = (torch.rand(batch, device=device) < 0.5).float()
        y_source[rows, first] = 1.0 - value
        y_target = y_source.clone()
        y_target[rows, first] = value
        # A second change, on another attribute, in the direction away from the face's own value.
        second = (first + torch.randint(1, max(self.n_attributes, 2), (batch,), device=device)) % self.n_attributes
        both = torch.rand(batch, device=device) < self.second_flip
        if self.n_attributes > 1:
            y_target[rows[both], second[both]] = 1.0 - y_source[rows[both], second[both]]
        z = torch.randn(batch, self.teacher.z_dim, device=device)
        x = self.teacher(torch.cat([z, z]), torch.cat([y_source, y_target]))  # (2B, 3, S, S)
        x_source, x_target = x.chunk(2)
        return x_source, x_target, y_source, y_target

    def training_step(self, x, y, step):
        x_source, x_target, y_source, y_target = self.pairs(y)
        shown = x_source + self.input_noise * torch.randn_like(x_source)
        wanted = x_target - x_source
        style, kl = None, torch.zeros((), device=x_source.device)
        if self.styles is not None:  # a conditional VAE's latent: which of the possible looks this change took
            mu, log_var = self.styles(torch.cat([x_source, wanted], dim=1))  # (B, style_dim) each
            style = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
            kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(dim=1).mean()
        change = apply_fields(self.editor(shown, y_source, style), y_source, y_target)  # (B, 3, S, S)
        loss_full = F.l1_loss(change, wanted)
        loss_half = F.l1_loss(F.avg_pool2d(change, 2), F.avg_pool2d(wanted, 2))
        loss = loss_full + loss_half + self.kl_weight * torch.clamp(kl, min=self.kl_free)  # free bits
        optimizers = [self.optimizer] + ([self.styles_optimizer] if self.styles is not None else [])
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        self.fabric.backward(loss)
        for optimizer in optimizers:
            optimizer.step()
        update_ema(self.ema, self.editor, min(self.ema_beta, (step + 1) / (step + 10)))  # short memory at first
        return {"loss": loss.detach(), "l1": loss_full.detach(), "l1_half": loss_half.detach(),
                "wanted": wanted.abs().mean(), "kl": kl.detach()}

    @torch.no_grad()
    def sample_grid(self, fixed: FixedBatch):
        """Eight held-out photos, then each flipped in turn for the grid attributes this model has."""
        x, y = fixed.x[:8].to(self.fabric.device), fixed.y[:8].to(self.fabric.device)
        fields = self.ema(x, y)
        rows = [x]
        for name in [n for n in GRID_ATTRIBUTES if n in self.attribute_names] or self.attribute_names[:4]:
            target = flipped(y, self.attribute_names.index(name))
            rows.append((x + apply_fields(fields, y, target)).clamp(-1, 1))
        return torch.cat(rows).cpu(), x.shape[0]

    def export(self):
        return {"editor": (dict(self.kwargs), self.ema)}

    def trainables(self):
        return {"editor": self.editor, "ema": self.ema} | ({"styles": self.styles} if self.styles is not None else {})

    def optimizers(self):
        return {"editor": self.optimizer} | ({"styles": self.styles_optimizer} if self.styles is not None else {})


class StyleEncoder(torch.nn.Module):
    """Training only: (x_source, the teacher's change) (B, 6, S, S) -> the style code's mean and log-variance.

    It sees the answer, so what it may pass on is squeezed by the KL term:
    only what the face alone cannot tell (which of the possible looks).
    """

    def __init__(self, *, size: int, style_dim: int, channels: int = 32):
        super().__init__()
        layers, width, side = [], 6, size
        while side > 4:
            out = min(channels * 2 ** len(layers), 256)
            layers += [torch.nn.Conv2d(width, out, 4, 2, 1), torch.nn.LeakyReLU(0.2)]
            width, side = out, side // 2
        self.trunk = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(width * side * side, 2 * style_dim)

    def forward(self, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.head(self.trunk(pair).flatten(1)).chunk(2, dim=1)
        return mu, log_var.clamp(-10.0, 10.0)


def load_teacher(name_or_path: str, attribute_names: list[str], size: int) -> torch.nn.Module:
    """The frozen cGAN generator, folded for speed; it must know exactly these attributes, in this order, at this size."""
    from facegen.errors import FacegenError
    from facegen.models.cgan import FoldedGenerator, Generator
    from facegen.pretrained import load_pretrained

    pretrained = load_pretrained(name_or_path)
    if pretrained.kind != "cgan":
        raise FacegenError(f"the teacher {name_or_path} is a {pretrained.kind} model; distil from a cgan")
    if pretrained.attribute_names != list(attribute_names) or pretrained.size != size:
        raise FacegenError(f"the teacher {name_or_path} makes {pretrained.size}px faces with attributes "
                           f"{','.join(pretrained.attribute_names)}; train with --attrs "
                           f"{','.join(pretrained.attribute_names)} on a {pretrained.size}px cache")
    generator = pretrained.modules["generator"].eval()
    teacher = FoldedGenerator(generator) if isinstance(generator, Generator) else generator
    return teacher.requires_grad_(False)
