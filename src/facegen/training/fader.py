"""Training recipe of Fader Networks: autoencoder step, then latent-discriminator step, then patch-discriminator step.

    facegen train fader --data cache/celeba9k-64 --attrs young,male,smiling --out runs/fader

The autoencoder (encoder + decoder) minimises, per step,

    rec_weight * ||D(E(x), y) - x||^2                    reconstruction (the paper's)
  + lambda_E(step) * BCE(LD(E(x)), 1 - y)                fool the latent discriminator (the paper's)
  + adv_weight * hinge(PD(D(E(x), y')))                  decodes with changed attributes y' look real
  + cls_weight * BCE(PD_attr(D(E(x), y')), y')           ... and show the attributes asked for

lambda_E ramps linearly from 0 to `lambda_latent` over `lambda_ramp_steps`
(the paper: 1e-4 over 500k iterations; we have a few thousand steps, so the
ramp is shorter and the ceiling higher). y' changes ONE random attribute of
each face to its opposite (the edit that is measured and most asked for),
and for a `shuffle_fraction` of the batch takes another face's whole label
row instead (several attributes at once, in combinations that occur).
The patch discriminator's attribute head learns from real photos only, so
it cannot be fooled into accepting the decoder's idea of "blond".

Preset `paper`: the 2017 recipe alone (no patch discriminator terms).

The attribute loss is a mean over A attributes of which one changes, so its
pull on that one is cls_weight / A: too small a cls_weight leaves the
decoder ignoring y (docs/notes/fader.md has the measurements and costs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facegen.metrics.reconstruction import psnr_from_mse
from facegen.models.layers import diff_augment
from facegen.models.fader import Decoder, Encoder, LatentDiscriminator, PatchDiscriminator, shortcut_channels
from facegen.training.method import FixedBatch, Method, flipped_rows, unwrap

PRESETS = ("default", "paper")


class AutoEncoder(nn.Module):
    """Encoder and decoder under one optimizer: x (B, 3, S, S), y (k*B, A) -> z (B, C, 8, 8), x_hat (k*B, 3, S, S).

    One forward decodes the code of each image with k attribute rows (the
    reconstruction and the edits), so the decoder runs once per backward.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)  # (B, C, 8, 8)
        repeats = y.shape[0] // x.shape[0]
        return z, self.decoder(z.repeat(repeats, 1, 1, 1), y)


def lambda_schedule(step: int, *, lambda_latent: float, ramp_steps: int) -> float:
    """The latent adversary's weight at `step`: linear from 0 to `lambda_latent` over `ramp_steps`.

    >>> [lambda_schedule(s, lambda_latent=1e-3, ramp_steps=100) for s in (0, 50, 100, 500)]
    [0.0, 0.0005, 0.001, 0.001]
    """
    if ramp_steps <= 0:
        return lambda_latent
    return lambda_latent * min(step, ramp_steps) / ramp_steps


class FaderMethod(Method):
    fresh_modules = ("latent_discriminator", "patch_discriminator")  # --init-from an exported model: new critics

    validates = True

    def __init__(self, *, attribute_names, size, prior,
                 preset: str = "default",        # 'default' (with patch discriminator) or 'paper' (2017 terms only).
                 channels: int = 32,             # Width of the first encoder layer (doubles per level).
                 upsample: str = "transpose",    # Decoder doubling: 'transpose' (the paper's) or 'nearest' + 3x3 conv.
                 latent_channels: int = 128,     # Channels of the 8x8 latent code.
                 shortcut: int = 0,              # Encoder maps above the latent passed to the decoder (AttGAN's).
                 d_channels: int = 32,           # Width of the first patch-discriminator layer.
                 lr: float = 2e-4,               # Adam learning rate of all modules (the paper's).
                 betas: tuple[float, float] = (0.5, 0.999),  # Adam betas (the paper's beta1 0.5).
                 rec_weight: float = 1.0,        # Weight of the pixel MSE (images in [-1, 1]).
                 lambda_latent: float = 1e-3,    # Final weight of the latent adversary (paper: 1e-4).
                 lambda_ramp_steps: int = 2000,  # Steps over which it ramps up from 0 (paper: 500k).
                 adv_weight: float = 0.05,       # Weight of the patch adversary on edited decodes.
                 cls_weight: float = 0.5,        # Weight of the attribute loss on edited decodes.
                 cls_lr: float = 1e-3,           # Adam learning rate of the patch discriminator's attribute trunk.
                 classifier_pool: int = 2,       # The attribute trunk sees the image average-pooled by this.
                 augment: str = "translation",   # DiffAugment policy for the patch discriminator's inputs ('' none).
                 shuffle_fraction: float = 0.25,  # Share of edits that take another face's label row.
                 batch_size: int = 64):          # Global batch size (unused; the loop passes it to every recipe).
        super().__init__(attribute_names=attribute_names, size=size, prior=prior)
        if preset not in PRESETS:
            raise ValueError(f"unknown fader preset {preset!r}; choose {' or '.join(PRESETS)}")
        self.preset = preset
        shortcut_channels(size, channels, latent_channels, shortcut)  # the modules' own check, before any exist
        self.e_kwargs = {"size": size, "channels": channels, "latent_channels": latent_channels}
        if shortcut:  # (only then, so that configs without it stay as they were)
            self.e_kwargs["shortcut"] = shortcut
        self.d_kwargs = {"n_attributes": self.n_attributes, **self.e_kwargs, "upsample": upsample}
        self.d_channels, self.lr, self.betas = d_channels, lr, tuple(betas)
        self.rec_weight, self.lambda_latent, self.lambda_ramp_steps = rec_weight, lambda_latent, lambda_ramp_steps
        self.use_patch = preset == "default" and (adv_weight > 0 or cls_weight > 0)
        self.adv_weight, self.cls_weight, self.cls_lr = adv_weight, cls_weight, cls_lr
        self.shuffle_fraction = shuffle_fraction
        self.classifier_pool, self.augment = classifier_pool, augment
        self._judge = None  # the shipped attribute classifier, loaded on first validation (monitoring only)

    def configure(self, fabric) -> None:
        with fabric.init_module():
            ae = AutoEncoder(Encoder(**self.e_kwargs), Decoder(**self.d_kwargs))
            latent_d = LatentDiscriminator(n_attributes=self.n_attributes,
                                           latent_channels=self.e_kwargs["latent_channels"])
            patch_d = PatchDiscriminator(n_attributes=self.n_attributes, size=self.size,
                                         channels=self.d_channels, classifier_pool=self.classifier_pool
                                         ) if self.use_patch else None
        adam = lambda module: torch.optim.Adam(module.parameters(), lr=self.lr, betas=self.betas)  # noqa: E731
        self.ae, self.opt_ae = fabric.setup(ae, adam(ae))
        self.latent_d, self.opt_latent = fabric.setup(latent_d, adam(latent_d))
        if patch_d is not None:  # the attribute trunk learns from real photos only, at a classifier's pace
            head = list(patch_d.classify.parameters()) + list(patch_d.head.parameters())
            rest = [p for p in patch_d.parameters() if all(p is not q for q in head)]
            opt_patch = torch.optim.Adam([{"params": rest}, {"params": head, "lr": self.cls_lr}], lr=self.lr,
                                         betas=self.betas)
            self.patch_d, self.opt_patch = fabric.setup(patch_d, opt_patch)
        else:
            self.patch_d, self.opt_patch = None, None
        self.fabric = fabric

    def edit_targets(self, y: torch.Tensor) -> torch.Tensor:
        """y' (B, A): one random attribute of each row flipped; a `shuffle_fraction` of rows replaced by others'."""
        batch = y.shape[0]
        target = y.clone()
        which = torch.randint(0, self.n_attributes, (batch,), device=y.device)
        rows = torch.arange(batch, device=y.device)
        target[rows, which] = 1.0 - target[rows, which].round()
        shuffled = y[torch.randperm(batch, device=y.device)]
        take = (torch.rand(batch, device=y.device) < self.shuffle_fraction)[:, None]
        return torch.where(take, shuffled, target)

    def training_step(self, x, y, step):
        batch = x.shape[0]
        lambda_e = lambda_schedule(step, lambda_latent=self.lambda_latent, ramp_steps=self.lambda_ramp_steps)

        # Autoencoder: reconstruction, latent adversary, and (default preset) the edited decodes.
        y_edit = self.edit_targets(y) if self.use_patch else None
        z, x_hat = self.ae(x, torch.cat([y, y_edit]) if self.use_patch else y)
        x_rec = x_hat[:batch]
        loss_rec = F.mse_loss(x_rec, x)
        z = z[:, :self.e_kwargs["latent_channels"]]  # the latent proper; a shortcut's maps are not asked to hide y
        loss_fool = F.binary_cross_entropy_with_logits(self.latent_d(z), 1.0 - y)
        loss_ae = self.rec_weight * loss_rec + lambda_e * loss_fool
        losses = {"rec": loss_rec, "fool": loss_fool}
        if self.use_patch:
            x_edit = x_hat[batch:]
            score, logits = self.patch_d(diff_augment(x_edit, self.augment))
            loss_adv, loss_cls = -score.mean(), F.binary_cross_entropy_with_logits(logits, y_edit)
            loss_ae = loss_ae + self.adv_weight * loss_adv + self.cls_weight * loss_cls
            losses |= {"adv_g": loss_adv, "cls_g": loss_cls}
        self.opt_ae.zero_grad(set_to_none=True)
        self.fabric.backward(loss_ae)
        self.opt_ae.step()

        # Latent discriminator: predict y from the (fixed) code. Its gradients from the pass above are discarded here.
        loss_latent = F.binary_cross_entropy_with_logits(self.latent_d(z.detach()), y)
        self.opt_latent.zero_grad(set_to_none=True)
        self.fabric.backward(loss_latent)
        self.opt_latent.step()
        losses["latent_d"] = loss_latent

        # Patch discriminator: real photos against this step's edits; attributes learnt from real photos only.
        if self.use_patch:
            score, logits = self.patch_d(diff_augment(torch.cat([x, x_edit.detach()]), self.augment))
            loss_d = F.relu(1.0 - score[:batch]).mean() + F.relu(1.0 + score[batch:]).mean()
            loss_cls_d = F.binary_cross_entropy_with_logits(logits[:batch], y)
            self.opt_patch.zero_grad(set_to_none=True)
            self.fabric.backward(loss_d + loss_cls_d)
            self.opt_patch.step()
            losses |= {"patch_d": loss_d, "cls_d": loss_cls_d}
        losses["psnr"] = psnr_from_mse(loss_rec.detach(), peak=2.0)  # the MSE of [-1, 1] images: PSNR on [0, 1]
        return {k: v.detach() for k, v in losses.items()}

    @torch.no_grad()
    def _decode(self, x: torch.Tensor, ys: list[torch.Tensor]) -> torch.Tensor:
        """Eval-mode decodes of x with each attribute set in `ys`, stacked row by row."""
        ae = unwrap(self.ae)
        was_training = ae.training
        ae.eval()
        z = ae.encoder(x)
        out = torch.cat([ae.decoder(z, y) for y in ys])
        ae.train(was_training)
        return out

    @torch.no_grad()
    def sample_grid(self, fixed: FixedBatch):
        """Columns: fixed validation faces. Rows: original, reconstruction, then each attribute flipped."""
        columns = min(8, fixed.y.shape[0])
        x, y = fixed.x[:columns].to(self.fabric.device), fixed.y[:columns].to(self.fabric.device)
        return torch.cat([x, self._decode(x, flipped_rows(y))]).cpu(), columns

    @torch.no_grad()
    def validate(self, x: torch.Tensor, y: torch.Tensor, count: int = 256) -> dict[str, float]:
        """Reconstruction PSNR (dB, [0, 1] scale) on held-out faces, in eval mode, and edit success by the judge.

        `edit/NAME`: of 128 held-out faces with attribute NAME flipped, the
        share that the shipped attribute classifier reads as flipped (the
        evaluation's measure, here only watched: no gradient reaches it).
        Left out when the classifier is not installed.
        """
        x, y = x[:count].to(self.fabric.device), y[:count].to(self.fabric.device)
        mse = (self._decode(x, [y]) - x).pow(2).flatten(1).mean(1) / 4.0  # (n,) on the [0, 1] scale
        result = {"psnr": psnr_from_mse(mse).mean().item()}
        judge = self._load_judge()
        edit_names = [name for name in self.attribute_names if judge is not None and name in judge.names]
        if edit_names:  # the evaluation's own protocol; the judge runs on the CPU, where it was loaded
            from facegen.metrics.protocols import edit_success

            device = self.fabric.device
            rows = edit_success(lambda xb, _, target: self._decode(xb.to(device), [target.to(device)]),
                                x[:128].cpu(), y[:128].cpu(), self.attribute_names, judge, judge.names,
                                batch_size=128, edit_names=edit_names, identity=False)
            result |= {f"edit/{name}": row["success"] for name, row in rows.items()}
            result["edit"] = sum(row["success"] for row in rows.values()) / len(rows)
        return result

    def _load_judge(self):
        if self._judge is None:
            try:
                from facegen.metrics.judge import Judge

                judge = Judge()  # the shipped classifier
                self._judge = judge if judge.pretrained.config.get("size") == self.size else False
            except Exception:  # noqa: BLE001 - monitoring only; training goes on without it
                self._judge = False
        return self._judge or None

    def export(self):
        ae = unwrap(self.ae)
        return {"encoder": (dict(self.e_kwargs), ae.encoder), "decoder": (dict(self.d_kwargs), ae.decoder)}

    def from_export(self, modules):
        """The exported encoder and decoder are the autoencoder's two halves."""
        return {"autoencoder": {f"{half}.{key}": value for half in ("encoder", "decoder")
                                for key, value in modules[half].items()}}

    def trainables(self):
        modules = {"autoencoder": self.ae, "latent_discriminator": self.latent_d}
        return modules | ({"patch_discriminator": self.patch_d} if self.patch_d is not None else {})

    def optimizers(self):
        optimizers = {"autoencoder": self.opt_ae, "latent_discriminator": self.opt_latent}
        return optimizers | ({"patch_discriminator": self.opt_patch} if self.opt_patch is not None else {})
