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

Distillation alone gives faint changes: L1 learns the median of the looks a
change can take. With `critic_weight` or `attribute_weight` > 0 the editor
also learns on the cache's real photos, as SaGAN and AttGAN train their
editors: each photo x with its real labels y gets one attribute flipped
(y'), and x + change must

- look real to a critic (hinge loss, `critic_weight`), and
- show the flipped attribute to the critic's own attribute head, which
  learns from the real photos' labels only (`attribute_weight`; only the
  flipped columns count, so the editor is not asked to change what it was
  not asked to change),

(`critic_attributes` limits the real photos' flips to some attributes: the
rest learn from the teacher alone), while an L1 price on the change
(`sparsity_weight`, dearer towards the square's edges with `sparsity_edge`)
keeps the rest of the photo where it was.
The critic is the conditional GAN's discriminator shape (spectral norm,
projection, attribute head) with DiffAugment, trained from scratch, or
started from a cGAN run's discriminator (`critic_from`: real faces and
their attributes already learnt over that run); for its first
`critic_warmup` steps only it learns, so that its attribute head knows
something (or, started from a cGAN's, learns what edited photos look like)
before the editor listens to it. `critic_norm="r1"` swaps it for
plain convolutions with an R1 penalty, so its attribute head learns at a
classifier's pace. The judge that scores edits (the shipped classifier) is
never used here. (A frozen second classifier as the attribute term was tried
too and removed: its edits fooled the judge as well as itself with coloured
blotches.) None of these has yet beaten plain distillation in the pictures
on our CPU budget; what was tried and what it did is in docs/notes/editing.md.

Without a critic the cache's images are used only for their label rows and
the sample grids (real held-out faces edited, to watch how the change
carries over to photos).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from facegen.models.cgan import Discriminator
from facegen.models.layers import centered, channel_widths, diff_augment
from facegen.models.residual import ResidualEditor, apply_fields
from facegen.training.cgan import cgan_critic_state
from facegen.training.method import FixedBatch, Method, flipped, make_ema, update_ema

GRID_ATTRIBUTES = ("Male", "Blond_Hair", "Smiling", "Eyeglasses", "Young")  # the sample grid's rows, when present


class ResidualMethod(Method):
    fresh_modules = ("critic", "pairs_critic")  # --init-from a distilled run: the critics start anew

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
                 distil_weight: float = 1.0,  # Weight of the teacher's L1 (0: train on real photos only).
                 critic_weight: float = 0.0,  # Weight of the critic's realness score of edited real photos.
                 attribute_weight: float = 0.0,  # Weight of the critic's attribute head on the flipped attributes.
                 sparsity_weight: float = 0.0,  # Weight of the mean |change| (keep the rest as it was): on the
                                                # real photos with a critic, on the teacher's faces without one.
                 sparsity_edge: float = 0.0,  # The |change| price grows to 1 + this at the square's side midpoints
                                              # (radially, r^2): the face sits in the middle, the background outside.
                 critic_warmup: int = 0,     # First steps in which only the critic learns from the real photos.
                 lr_critic: float = 4e-4,    # Adam learning rate of the critic.
                 critic_channels: int = 256,  # Critic width at 4x4.
                 critic_norm: str = "spectral",  # 'spectral': the cGAN's discriminator (spectral norm on every
                                             # layer); 'r1': plain convolutions kept in check by an R1 penalty,
                                             # so that the attribute head can learn at a classifier's pace.
                 r1_weight: float = 1.0,     # R1 penalty weight (critic_norm='r1'): |d score / d real photo|^2 / 2.
                 critic_attributes: str = "",  # Comma-separated attributes whose flips the critic judges on real
                                               # photos ('' for all); the others learn from the teacher only.
                 critic_from: str = "",      # A cGAN run (folder or checkpoint) whose discriminator starts the
                                             # critic (spectral; its attribute head has already learnt); '' fresh.
                 pair_weight: float = 0.0,   # Weight of the pair critic's score of (face, face + change) on the
                                             # teacher's faces: pix2pix's answer to the blur of plain L1.
                 batch_size: int = 64):      # Unused here; every method receives it.
        super().__init__(attribute_names=attribute_names, size=size, prior=prior)
        if not 0.0 <= second_flip <= 1.0:
            raise ValueError(f"second_flip must be in [0, 1], got {second_flip}")
        if not 0.0 <= ema_beta < 1.0:
            raise ValueError(f"ema_beta must be in [0, 1), got {ema_beta}")
        if input_noise < 0:
            raise ValueError(f"input_noise must be at least 0, got {input_noise}")
        weights = {"distil_weight": distil_weight, "critic_weight": critic_weight, "pair_weight": pair_weight,
                   "attribute_weight": attribute_weight, "sparsity_weight": sparsity_weight,
                   "sparsity_edge": sparsity_edge,
                   "critic_warmup": critic_warmup, "lr_critic": lr_critic, "critic_channels": critic_channels}
        if any(value < 0 for value in weights.values()) or lr_critic <= 0 or critic_channels < 1:
            raise ValueError(f"{', '.join(weights)} must be at least 0, lr_critic and critic_channels above 0, "
                             f"got {weights}")
        if distil_weight == 0 and (critic_weight == 0 and attribute_weight == 0 or pair_weight > 0):
            raise ValueError("with distil_weight=0 the editor needs critic_weight or attribute_weight above 0, "
                             "and pair_weight needs the teacher's pairs (distil_weight above 0)")
        self.pair_weight = pair_weight
        self.distil_weight, self.critic_weight, self.attribute_weight = distil_weight, critic_weight, attribute_weight
        self.sparsity_weight, self.critic_warmup, self.lr_critic = sparsity_weight, int(critic_warmup), lr_critic
        side = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2.0 - 1.0  # pixel centres in (-1, 1)
        self.sparsity_map = 1.0 + sparsity_edge * (side[None, :] ** 2 + side[:, None] ** 2)  # (S, S)
        self.use_critic = critic_weight > 0 or attribute_weight > 0
        if critic_norm not in ("spectral", "r1") or r1_weight < 0:
            raise ValueError(f"critic_norm must be 'spectral' or 'r1' and r1_weight at least 0, got {critic_norm!r}, "
                             f"{r1_weight}")
        self.critic_norm, self.r1_weight = critic_norm, r1_weight
        self.critic_kwargs = {"n_attributes": self.n_attributes, "size": size, "channels": critic_channels}
        wanted = [name.strip() for name in critic_attributes.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in self.attribute_names]
        if unknown:
            raise ValueError(f"critic_attributes names {', '.join(unknown)}, which this editor does not have "
                             f"({', '.join(self.attribute_names)})")
        self.critic_columns = torch.tensor(sorted({self.attribute_names.index(name) for name in wanted})
                                           or list(range(self.n_attributes)), dtype=torch.long)
        if critic_from and (not self.use_critic or critic_norm != "spectral"):
            raise ValueError("critic_from needs the critic (critic_weight or attribute_weight above 0) and "
                             "critic_norm='spectral', the cGAN discriminator's shape")
        self.critic_start = (cgan_critic_state(critic_from, self.attribute_names, self.critic_kwargs,
                                               width_option="critic_channels") if critic_from else None)
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
        self.critic, self.critic_optimizer = None, None
        if self.use_critic:
            with fabric.init_module():
                critic = Discriminator(**self.critic_kwargs) if self.critic_norm == "spectral" else \
                    PlainCritic(**self.critic_kwargs)
            if self.critic_start is not None:  # (a resumed run's weights replace these later)
                critic.load_state_dict(self.critic_start)
            self.critic, self.critic_optimizer = fabric.setup(
                critic, torch.optim.Adam(critic.parameters(), lr=self.lr_critic, betas=(0.0, 0.99)))
        self.pairs_critic, self.pairs_optimizer = None, None
        if self.pair_weight > 0:
            with fabric.init_module():
                pairs_critic = PairCritic(n_attributes=self.n_attributes, size=self.size,
                                          channels=self.critic_kwargs["channels"])
            self.pairs_critic, self.pairs_optimizer = fabric.setup(
                pairs_critic, torch.optim.Adam(pairs_critic.parameters(), lr=self.lr_critic, betas=(0.0, 0.99)))
        self.sparsity_map = self.sparsity_map.to(fabric.device)
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
        self._flip_second(y_source, y_target, first)
        z = torch.randn(batch, self.teacher.z_dim, device=device)
        x = self.teacher(torch.cat([z, z]), torch.cat([y_source, y_target]))  # (2B, 3, S, S)
        x_source, x_target = x.chunk(2)
        return x_source, x_target, y_source, y_target

    def real_edits(self, y: torch.Tensor) -> torch.Tensor:
        """Real label rows y (B, A) -> targets y' with one of `critic_attributes` flipped (a second of them with
        `second_flip`)."""
        batch, device = y.shape[0], y.device
        rows = torch.arange(batch, device=device)
        target = y.clone()
        columns = self.critic_columns.to(device)
        pick = torch.randint(0, len(columns), (batch,), device=device)
        first = columns[pick]
        target[rows, first] = 1.0 - y[rows, first].round()
        self._flip_second(y, target, pick, columns)
        return target

    def _flip_second(self, source: torch.Tensor, target: torch.Tensor, pick: torch.Tensor,
                     columns: torch.Tensor | None = None) -> None:
        """With probability `second_flip`, also move another of `columns` (default: every attribute) than the
        first one flipped, `columns[pick]`, away from its value in source (B, A), in target (B, A), in place."""
        batch, device = source.shape[0], source.device
        rows = torch.arange(batch, device=device)
        count = self.n_attributes if columns is None else len(columns)
        second = (pick + torch.randint(1, max(count, 2), (batch,), device=device)) % count
        if columns is not None:
            second = columns[second]
        both = torch.rand(batch, device=device) < self.second_flip
        if count > 1:
            target[rows[both], second[both]] = 1.0 - source[rows[both], second[both]].round()

    def _criticise(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.critic(diff_augment(x, "translation"), y)

    def _judge_pairs(self, before: torch.Tensor, after: torch.Tensor, y_before: torch.Tensor,
                     y_after: torch.Tensor) -> torch.Tensor:
        pair = diff_augment(torch.cat([before, after], dim=1), "translation")  # both faces shifted alike
        return self.pairs_critic(pair, y_before, y_after)

    def training_step(self, x, y, step):
        losses: dict[str, torch.Tensor] = {}
        device = y.device
        zero = torch.zeros((), device=device)
        listening = self.use_critic and step >= self.critic_warmup  # the editor learns from the critic
        real_y = y.round()
        real_to = self.real_edits(real_y) if self.use_critic else None
        shown, y_from, y_to, n_teacher = [], [], [], 0
        style, kl, loss = None, zero, zero
        if self.distil_weight > 0:
            x_source, x_target, y_source, y_target = self.pairs(y)
            wanted, n_teacher = x_target - x_source, x_source.shape[0]
            shown, y_from, y_to = [x_source + self.input_noise * torch.randn_like(x_source)], [y_source], [y_target]
            if self.styles is not None:  # a conditional VAE's latent: which of the possible looks this change took
                mu, log_var = self.styles(torch.cat([x_source, wanted], dim=1))  # (B, style_dim) each
                style = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
                kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(dim=1).mean()
                loss = self.kl_weight * torch.clamp(kl, min=self.kl_free)  # free bits
        if listening:  # real photos, with one of their attributes flipped
            shown, y_from, y_to = shown + [x], y_from + [real_y], y_to + [real_to]
            if style is not None:  # real photos take the prior's mean, as at inference
                style = torch.cat([style, torch.zeros(x.shape[0], self.style_dim, device=device)])

        edited = None
        if shown:  # the editor's step
            y_from_all, y_to_all = torch.cat(y_from), torch.cat(y_to)
            change = apply_fields(self.editor(torch.cat(shown), y_from_all, style), y_from_all, y_to_all)
            if n_teacher:
                loss_full = F.l1_loss(change[:n_teacher], wanted)
                loss_half = F.l1_loss(F.avg_pool2d(change[:n_teacher], 2), F.avg_pool2d(wanted, 2))
                loss = loss + self.distil_weight * (loss_full + loss_half)
                losses |= {"l1": loss_full.detach(), "l1_half": loss_half.detach(), "wanted": wanted.abs().mean(),
                           "kl": kl.detach()}
                if self.pairs_critic is not None:  # does (face, face + change) look like one of the teacher's pairs?
                    drawn = (x_source + change[:n_teacher]).clamp(-1, 1)
                    loss_pair = -self._judge_pairs(x_source, drawn, y_source, y_target).mean()
                    loss = loss + self.pair_weight * loss_pair
                    losses["pair"] = loss_pair.detach()
                if self.sparsity_weight > 0 and not self.use_critic:  # no real photos: the price on the teacher's faces
                    loss_sparsity = (change[:n_teacher].abs() * self.sparsity_map).mean()
                    loss = loss + self.sparsity_weight * loss_sparsity
                    losses["change"] = loss_sparsity.detach()
            if listening:
                real_change = change[n_teacher:]  # (B, 3, S, S)
                edited = (x + real_change).clamp(-1, 1)
                score_fake, logits_fake = self._criticise(edited, real_to)
                moved = (real_to != real_y).float()  # (B, A): only the flipped attributes are asked for
                bce = F.binary_cross_entropy_with_logits(logits_fake, real_to, reduction="none")
                loss_attribute = (bce * moved).sum() / moved.sum().clamp(min=1.0)
                loss_realness = -score_fake.mean()
                loss_sparsity = (real_change.abs() * self.sparsity_map).mean()
                loss = (loss + self.critic_weight * loss_realness + self.attribute_weight * loss_attribute
                        + self.sparsity_weight * loss_sparsity)
                losses |= {"realness": loss_realness.detach(), "attribute": loss_attribute.detach(),
                           "change": loss_sparsity.detach()}
            optimizers = [self.optimizer] + ([self.styles_optimizer] if self.styles is not None else [])
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            self.fabric.backward(loss)
            for optimizer in optimizers:
                optimizer.step()
            update_ema(self.ema, self.editor, min(self.ema_beta, (step + 1) / (step + 10)))  # short memory at first
            losses["loss"] = loss.detach()

        if self.pairs_critic is not None:  # the pair critic's step: the teacher's pairs against the editor's
            score = self._judge_pairs(torch.cat([x_source, x_source]), torch.cat([x_target, drawn.detach()]),
                                      torch.cat([y_source, y_source]), torch.cat([y_target, y_target]))
            score_real, score_fake = score.chunk(2)
            loss_pairs = F.relu(1.0 - score_real).mean() + F.relu(1.0 + score_fake).mean()
            self.pairs_optimizer.zero_grad(set_to_none=True)
            self.fabric.backward(loss_pairs)
            self.pairs_optimizer.step()
            losses |= {"pairs": loss_pairs.detach(), "pairs_teacher": score_real.mean().detach(),
                       "pairs_editor": score_fake.mean().detach()}

        if self.use_critic:  # the critic's step: real photos against edited ones, and the real photos' labels
            if edited is None:
                with torch.no_grad():
                    edited = (x + apply_fields(self.editor(x, real_y), real_y, real_to)).clamp(-1, 1)
            both = torch.cat([x, edited.detach()])
            penalised = self.critic_norm == "r1" and self.r1_weight > 0
            if penalised:
                both.requires_grad_(True)
            score, logits = self._criticise(both, torch.cat([real_y, real_to]))
            score_real, score_fake = score.chunk(2)
            loss_critic = F.relu(1.0 - score_real).mean() + F.relu(1.0 + score_fake).mean()
            loss_labels = F.binary_cross_entropy_with_logits(logits[:x.shape[0]], real_y)
            if penalised:  # R1 (Mescheder et al. 2018): a flat score around the real photos
                grad, = torch.autograd.grad(score_real.sum(), both, create_graph=True)
                loss_r1 = 0.5 * grad[:x.shape[0]].pow(2).sum(dim=(1, 2, 3)).mean()
                loss_critic = loss_critic + self.r1_weight * loss_r1
                losses["r1"] = loss_r1.detach()
            self.critic_optimizer.zero_grad(set_to_none=True)  # also drops what the editor's step left in it
            self.fabric.backward(loss_critic + loss_labels)
            self.critic_optimizer.step()
            losses |= {"critic": loss_critic.detach(), "critic_labels": loss_labels.detach(),
                       "critic_real": score_real.mean().detach(), "critic_edited": score_fake.mean().detach()}
        return losses

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

    def from_export(self, modules):
        """The exported editor (the EMA copy) starts both the trained and the averaged editor."""
        return {"editor": modules["editor"], "ema": modules["editor"]}

    def trainables(self):
        return ({"editor": self.editor, "ema": self.ema} | ({"styles": self.styles} if self.styles is not None else {})
                | ({"critic": self.critic} if self.critic is not None else {})
                | ({"pairs_critic": self.pairs_critic} if self.pairs_critic is not None else {}))

    def optimizers(self):
        return ({"editor": self.optimizer} | ({"styles": self.styles_optimizer} if self.styles is not None else {})
                | ({"critic": self.critic_optimizer} if self.critic is not None else {})
                | ({"pairs_critic": self.pairs_optimizer} if self.pairs_critic is not None else {}))


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


def _strided_trunk(in_channels: int, size: int, channels: int, wrap=lambda layer: layer):
    """4x4 strided convolutions from `size` down to 4x4, widths doubling up to `channels` (e.g. 32, 64, 128, 256
    at 64 px, never under 16), each wrapped by `wrap` (spectral norm, say); returns the trunk and its width."""
    layers, width = [], in_channels
    for out in channel_widths(size, channels, 16)[::-1][1:]:
        layers += [wrap(torch.nn.Conv2d(width, out, 4, 2, 1)), torch.nn.LeakyReLU(0.2)]
        width = out
    return torch.nn.Sequential(*layers), width


class PlainCritic(torch.nn.Module):
    """Training only: x (B, 3, S, S), y (B, A) -> (realness score (B,), attribute logits (B, A)), the cGAN
    discriminator's shape without spectral norm (an R1 penalty keeps it smooth instead), so its attribute head,
    which shares the trunk that tells edits from photos, learns at a classifier's pace."""

    def __init__(self, *, n_attributes: int, size: int, channels: int = 256):
        super().__init__()
        self.features, width = _strided_trunk(3, size, channels)  # (B, C, 4, 4)
        self.score = torch.nn.Linear(width * 16, 1)
        self.embed = torch.nn.Linear(n_attributes, width * 16, bias=False)
        self.classify = torch.nn.Linear(width * 16, n_attributes)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x).flatten(1)  # (B, 16C)
        score = self.score(h).squeeze(1) + (self.embed(centered(y)) * h).sum(dim=1) / math.sqrt(h.shape[1])
        return score, self.classify(h)


class PairCritic(torch.nn.Module):
    """Training only: a face and its edit (B, 6, S, S) with both attribute rows -> a score: one of the teacher's
    own pairs (high) or the editor's (low)?

    Spectral norm on every layer; the attribute rows enter by projection, so
    the score also asks whether the change is the one that was asked for.
    """

    def __init__(self, *, n_attributes: int, size: int, channels: int = 256):
        super().__init__()
        from torch.nn.utils.parametrizations import spectral_norm

        self.features, width = _strided_trunk(6, size, channels, spectral_norm)  # (B, C, 4, 4)
        self.score = spectral_norm(torch.nn.Linear(width, 1))
        self.embed = spectral_norm(torch.nn.Linear(2 * n_attributes, width, bias=False))

    def forward(self, pair: torch.Tensor, y_before: torch.Tensor, y_after: torch.Tensor) -> torch.Tensor:
        h = self.features(pair).sum(dim=(2, 3))  # (B, C)
        condition = torch.cat([centered(y_before), centered(y_after) - centered(y_before)], dim=1)  # (B, 2A)
        return self.score(h).squeeze(1) + (self.embed(condition) * h).sum(dim=1)


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
