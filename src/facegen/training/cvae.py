"""Training recipe of the conditional VAE: an ELBO with a KL warm-up, plus a GAN against blur.

    facegen train cvae --data cache/celeba9k-64 --attrs young,male,smiling --out runs/cvae --steps 3000

Each step decodes one batch of 1.5 B codes in a single forward pass:

- B reconstructions `dec(z ~ q(z | x, y), y)`: the L1 term of the ELBO;
- B/4 prior samples `dec(z ~ N(0, I), y')` with y' the labels of other
  images in the batch (so the attribute combinations stay realistic);
- B/4 edits `dec(z ~ q(z | x, y), y')`: what `facegen edit` does.

A small spectrally normalised projection discriminator with an attribute
head (the cGAN's `Discriminator`, reused) plays a hinge game against all
three kinds of decodes, and its head, trained on real images only, scores the
prior samples and edits against y'. The head is the decoder's incentive to
obey y: a cVAE may otherwise read the attributes off z and ignore y, and
edits then do nothing. Reconstructions alone cannot teach that, since y is
the image's own label there.

Why a KL warm-up and not free bits: the KL term is what pushes the
attributes out of z (the decoder gets y for free, so paying nats to encode
it in z is a waste that only the KL penalises). Free bits exempt the first
lambda nats of every dimension from that pressure (32 nats for lambda =
0.25 and 128 dimensions), far more than the ~8 nats that 12 binary
attributes need, so they would leave the attribute shortcut open. The
warm-up (0 -> kl_weight, linear, over `kl_warmup_kimg`) is short by
default: this decoder has no autoregressive path that could model faces
without z, so posterior collapse is not the danger; a prior that the codes
drift away from is (docs/notes/cvae.md has the runs).

The KL is weighed against an L1 reconstruction as a Laplace likelihood:
loss = mean|x - x'| + kl_weight * KL / (3 S^2), i.e. kl_weight is the
Laplace scale in [-1, 1] units, and 1.0 is the plain ELBO per pixel
(sum |x - x'| + KL); smaller values buy reconstruction PSNR with prior
samples that fit N(0, I) less well.

Against blur: the adversarial term. `validate` measures it on held-out
faces: reconstruction PSNR (from mu) and "sharpness", the Laplacian
variance of prior samples and reconstructions relative to real images
(1 = as sharp as the data; above 1 for prior samples means artefacts, not
detail); a run with `adv_weight=0 aux_weight=0` is the ablation, and
docs/notes/cvae.md records what it measured.

`adv_reconstructions` weighs the hinge term on reconstructions (per image,
against 1 for prior samples and edits). At 1 the critic pays the decoder for
realistic reconstructions as much as for realistic samples, which from a
strong critic trades the photo's person for a plausible face; at 0
reconstructions are paid in pixels (and `feature_weight`'s critic features)
alone, and only the faces that no photo pins down are paid for realism.

Starting from the cGAN: `--set decoder_from=cgan` starts the decoder as the
cGAN's generator (the decoder *is* that architecture; a shipped name or a
model folder, with the same attributes, size, z_dim and channels). Its
samples from N(0, I) are then faces from the first step, and the ELBO has
to teach the encoder to find a photo's code rather than teach the decoder to
draw. `decoder_warmup` steps let only the encoder and the critic learn
first (a fresh encoder's codes are noise, and reconstructing noise would
pull the decoder away from faces), and `lr_decoder` can keep the decoder's
steps small after that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facegen.models.cgan import Discriminator
from facegen.models.cvae import Decoder, Encoder, kl_divergence
from facegen.models.layers import diff_augment
from facegen.training.cgan import cgan_critic_state
from facegen.training.method import FixedBatch, Method, flipped_rows, make_ema, unwrap, update_ema


def kl_weight_at(step: int, *, batch_size: int, kl_weight: float, warmup_kimg: float) -> float:
    """The KL weight at `step`: linear from 0 to `kl_weight` over the first `warmup_kimg` thousand images.

    >>> [kl_weight_at(s, batch_size=100, kl_weight=1.0, warmup_kimg=1.0) for s in (0, 5, 10, 20)]
    [0.0, 0.5, 1.0, 1.0]
    """
    if warmup_kimg <= 0:
        return kl_weight
    return kl_weight * min(1.0, step * batch_size / (warmup_kimg * 1000))


def laplacian_variance(x: torch.Tensor) -> torch.Tensor:
    """Sharpness of images (B, 3, H, W) in [-1, 1]: variance of the 3x3 Laplacian of their grey level, (B,).

    Blur removes high frequencies, so a blurry sample has a smaller value than
    a real face; the ratio of the means over generated and real images is a
    cheap, honest blur statistic (1 = as sharp as the data).

    >>> laplacian_variance(torch.zeros(1, 3, 8, 8)).tolist()
    [0.0]
    """
    grey = (x.mean(dim=1, keepdim=True) + 1) / 2  # (B, 1, H, W) in [0, 1]
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype, device=x.device)
    response = F.conv2d(grey, kernel.view(1, 1, 3, 3))  # (B, 1, H-2, W-2), valid region only
    return response.flatten(1).var(dim=1)


def generator_hinge(score_fake: torch.Tensor, reconstructions: int, weight: float) -> torch.Tensor:
    """The decoder's hinge loss on critic scores (N,) whose first `reconstructions` rows are reconstructions, weighed
    `weight` per image against 1 for the rest; always divided by N, so the prior samples' and edits' pull on the
    decoder is the same whatever `weight` is, and weight 1 is the plain mean.

    >>> score = torch.tensor([1.0, 3.0, 2.0])
    >>> round(generator_hinge(score, 2, 1.0).item(), 4), round(generator_hinge(score, 2, 0.0).item(), 4)
    (-2.0, -0.6667)
    """
    if weight == 1:
        return -score_fake.mean()
    return -(weight * score_fake[:reconstructions].sum() + score_fake[reconstructions:].sum()) / score_fake.numel()


class CVAEMethod(Method):
    fresh_modules = ("discriminator",)  # --init-from an exported model (or a run without one): a new critic

    validates = True

    def __init__(self, *, attribute_names, size, prior,
                 z_dim: int = 128,              # Latent dimensions.
                 channels: int = 256,           # Encoder and decoder channels at 4x4 (halved per level, at least 32).
                 d_channels: int = 128,         # Discriminator channels at 4x4.
                 lr: float = 2e-4,              # Adam learning rate of encoder and decoder.
                 lr_d: float = 2e-4,            # Adam learning rate of the discriminator.
                 betas: tuple[float, float] = (0.5, 0.999),  # Adam betas of all three.
                 kl_weight: float = 1.0,        # Laplace scale of the L1 likelihood, in [-1, 1] units (beta).
                 kl_warmup_kimg: float = 10.0,  # Thousands of images over which the KL weight rises from 0.
                 adv_weight: float = 0.05,      # Weight of the hinge generator loss, relative to mean L1.
                 aux_weight: float = 0.05,      # Weight of the attribute loss on prior samples and edits.
                 augment: str = "translation,cutout",  # DiffAugment policy before the discriminator ('' for none).
                 ema_kimg: float = 10.0,        # Half-life of the encoder/decoder EMA, in thousands of images.
                 ema_rampup: float = 0.05,      # EMA half-life at most this fraction of images seen so far.
                 decoder_from: str = "",        # A cGAN (shipped name or model folder) whose generator starts the
                                                # decoder; '' for a decoder trained from scratch.
                 lr_decoder: float = 0.0,       # Adam learning rate of the decoder; 0: the same as `lr`.
                 decoder_warmup: int = 0,       # First steps in which the decoder does not learn (the encoder
                                                # learns to invert a decoder started from a cGAN, the critic to judge).
                 critic_from: str = "",         # A cGAN run (folder or checkpoint) whose discriminator starts the
                                                # critic (set d_channels to its width); '' for a fresh critic.
                 pixel_weight: float = 1.0,     # Weight of the pixel L1 of reconstructions (the ELBO's term).
                 feature_weight: float = 0.0,   # Weight of the reconstruction measured in the critic's features.
                 adv_reconstructions: float = 1.0,  # Weight of the hinge term on reconstructions, per image, against
                                                # 1 for prior samples and edits; 0: reconstructions are paid in
                                                # pixels and features alone.
                 batch_size: int = 64):         # Global batch size (for the schedules).
        super().__init__(attribute_names=attribute_names, size=size, prior=prior)
        if lr_decoder < 0 or decoder_warmup < 0:
            raise ValueError(f"lr_decoder and decoder_warmup must be at least 0, got {lr_decoder}, {decoder_warmup}")
        self.decoder_warmup = int(decoder_warmup)
        self.lr_decoder = lr_decoder or lr
        self.net_kwargs = {"n_attributes": self.n_attributes, "size": size, "z_dim": z_dim, "channels": channels}
        self.d_kwargs = {"n_attributes": self.n_attributes, "size": size, "channels": d_channels}
        self.lr, self.lr_d, self.betas = lr, lr_d, tuple(betas)
        self.kl_weight, self.kl_warmup_kimg = kl_weight, kl_warmup_kimg
        self.adv_weight, self.aux_weight, self.augment = adv_weight, aux_weight, augment
        self.use_gan = adv_weight > 0 or aux_weight > 0
        self.ema_kimg, self.ema_rampup, self.batch_size = ema_kimg, ema_rampup, batch_size
        self.pixels = 3 * size * size
        self.decoder_start = (cgan_generator_state(decoder_from, self.attribute_names, size, self.net_kwargs)
                              if decoder_from else None)  # checked now: a wrong cGAN stops before the run starts
        if pixel_weight < 0 or feature_weight < 0 or adv_reconstructions < 0:
            raise ValueError("pixel_weight, feature_weight and adv_reconstructions must be at least 0, got "
                             f"{pixel_weight}, {feature_weight}, {adv_reconstructions}")
        if (critic_from or feature_weight) and not self.use_gan:
            raise ValueError("critic_from and feature_weight need the critic: set adv_weight or aux_weight above 0")
        self.pixel_weight, self.feature_weight = pixel_weight, feature_weight
        self.adv_reconstructions = adv_reconstructions
        self.critic_start = (cgan_critic_state(critic_from, self.attribute_names, self.d_kwargs)
                             if critic_from else None)

    def configure(self, fabric) -> None:
        with fabric.init_module():
            E, G = Encoder(**self.net_kwargs), Decoder(**self.net_kwargs)
            D = Discriminator(**self.d_kwargs) if self.use_gan else None
        if self.decoder_start is not None:  # (a resumed run's or --init-from's weights replace these later)
            G.load_state_dict(self.decoder_start)
        if self.critic_start is not None:
            D.load_state_dict(self.critic_start)
        self.E, self.opt_e = fabric.setup(E, torch.optim.Adam(E.parameters(), lr=self.lr, betas=self.betas))
        self.G, self.opt_g = fabric.setup(G, torch.optim.Adam(G.parameters(), lr=self.lr_decoder, betas=self.betas))
        if D is not None:
            self.D, self.opt_d = fabric.setup(D, torch.optim.Adam(D.parameters(), lr=self.lr_d, betas=self.betas))
        self.E_ema, self.G_ema = fabric.to_device(make_ema(E)), fabric.to_device(make_ema(G))
        self.fabric = fabric

    def _discriminate(self, x: torch.Tensor, y: torch.Tensor):
        return self.D(diff_augment(x, self.augment) if self.augment else x, y)

    def training_step(self, x, y, step):
        batch, quarter = x.shape[0], max(x.shape[0] // 4, 1)
        y_other = y[torch.randperm(batch, device=y.device)][:2 * quarter]  # (2q, A) realistic target labels

        # Encoder and decoder: one forward each, for reconstructions, prior samples and edits together.
        mu, logvar = self.E(x, y)
        z_post = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # (B, z_dim), reparameterised
        z_prior = torch.randn(quarter, mu.shape[1], device=x.device)
        z_all = torch.cat([z_post, z_prior, z_post[:quarter]])  # (B + 2q, z_dim)
        y_all = torch.cat([y, y_other])
        x_all = self.G(z_all, y_all)  # (B + 2q, 3, S, S)
        x_rec = x_all[:batch]

        losses = {}
        if self.use_gan:  # Discriminator: real against every kind of decode, attribute head on reals only.
            score, logits = self._discriminate(torch.cat([x, x_all.detach()]), torch.cat([y, y_all]))
            score_real, score_fake = score[:batch], score[batch:]
            loss_d = F.relu(1.0 - score_real).mean() + F.relu(1.0 + score_fake).mean()
            loss_aux_d = F.binary_cross_entropy_with_logits(logits[:batch], y)
            self.opt_d.zero_grad(set_to_none=True)
            self.fabric.backward(loss_d + loss_aux_d)
            self.opt_d.step()
            losses |= {"loss_d": loss_d, "aux_d": loss_aux_d, "d_real": score_real.mean(), "d_fake": score_fake.mean()}

        # Encoder + decoder. D's gradients from this pass are discarded by its next zero_grad.
        recon = (x_rec - x).abs().mean()
        kl = kl_divergence(mu, logvar).mean()  # nats per image
        beta = kl_weight_at(step, batch_size=self.batch_size, kl_weight=self.kl_weight, warmup_kimg=self.kl_warmup_kimg)
        loss = self.pixel_weight * recon + beta * kl / self.pixels
        if self.feature_weight:
            feature = self._feature_distance(x_rec, x)
            loss = loss + self.feature_weight * feature
            losses["recon_feature"] = feature
        if self.use_gan:
            score_fake, logits_fake = self._discriminate(x_all, y_all)
            loss_adv = generator_hinge(score_fake, batch, self.adv_reconstructions)
            loss_aux = F.binary_cross_entropy_with_logits(logits_fake[batch:], y_other)
            loss = loss + self.adv_weight * loss_adv + self.aux_weight * loss_aux
            losses |= {"adv": loss_adv, "aux": loss_aux}
        self.opt_e.zero_grad(set_to_none=True)
        self.opt_g.zero_grad(set_to_none=True)
        self.fabric.backward(loss)
        self.opt_e.step()
        if step >= self.decoder_warmup:
            self.opt_g.step()

        seen = (step + 1) * self.batch_size
        decay = 0.5 ** (self.batch_size / max(min(self.ema_kimg * 1000, seen * self.ema_rampup), 1e-8))
        update_ema(self.E_ema, self.E, decay)
        update_ema(self.G_ema, self.G, decay)
        losses = {"loss": loss, "recon_l1": recon, "kl_nats": kl, "kl_beta": torch.tensor(beta)} | losses
        return {k: v.detach() for k, v in losses.items()}

    def _feature_distance(self, x_rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """How far reconstructions are from their photos in the critic's features (VAE-GAN): at each of its levels
        the mean |difference| relative to the photo's mean |activation| there, averaged over the levels. It asks for
        what the critic sees in a photo (its layout, its parts) rather than its exact pixels, which a 64-px decoder
        cannot draw and keep its samples faces (docs/notes/cvae.md)."""
        D = unwrap(self.D)
        maps = D.feature_maps(torch.cat([x_rec, x]))
        batch = x.shape[0]
        terms = [(m[:batch] - m[batch:]).abs().mean() / m[batch:].detach().abs().mean().clamp_min(1e-8) for m in maps]
        return torch.stack(terms).mean()

    @torch.no_grad()
    def validate(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 250) -> dict[str, float]:
        """Held-out reconstruction PSNR (dB, from mu), KL (nats) and the sharpness of prior samples and reconstructions."""
        from facegen.metrics.reconstruction import psnr

        device = self.fabric.device
        generator = torch.Generator().manual_seed(0)
        psnrs, kls, sharp_real, sharp_rec, sharp_prior = [], [], [], [], []
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            mu, logvar = self.E_ema(xb, yb)
            x_rec = self.G_ema(mu, yb)
            x_prior = self.G_ema(torch.randn(xb.shape[0], mu.shape[1], generator=generator).to(device), yb)
            psnrs.append(psnr(x_rec, xb).cpu())
            kls.append(kl_divergence(mu, logvar).cpu())
            sharp_real.append(laplacian_variance(xb).cpu())
            sharp_rec.append(laplacian_variance(x_rec).cpu())
            sharp_prior.append(laplacian_variance(x_prior).cpu())
        real = torch.cat(sharp_real).mean()
        return {"psnr_db": float(torch.cat(psnrs).mean()), "kl_nats": float(torch.cat(kls).mean()),
                "sharpness_rec": float(torch.cat(sharp_rec).mean() / real),
                "sharpness_prior": float(torch.cat(sharp_prior).mean() / real)}

    @torch.no_grad()
    def sample_grid(self, fixed: FixedBatch):
        """Rows: prior samples for the fixed labels, then one row per attribute flipped (same noise);
        then the fixed faces and their reconstructions."""
        device = self.fabric.device
        columns = min(8, fixed.y.shape[0])
        x_base, y_base = fixed.x[:columns].to(device), fixed.y[:columns].to(device)
        z = torch.randn(columns, self.net_kwargs["z_dim"], generator=torch.Generator().manual_seed(fixed.seed)).to(device)
        rows = flipped_rows(y_base)
        samples = self.G_ema(z.repeat(len(rows), 1), torch.cat(rows))
        reconstructions = self.G_ema(self.E_ema(x_base, y_base)[0], y_base)
        return torch.cat([samples, x_base, reconstructions]).cpu(), columns

    def export(self):
        return {"encoder": (dict(self.net_kwargs), self.E_ema), "decoder": (dict(self.net_kwargs), self.G_ema)}

    def from_export(self, modules):
        """The exported EMA encoder and decoder start both the trained and the averaged copies."""
        return {"encoder": modules["encoder"], "decoder": modules["decoder"], "encoder_ema": modules["encoder"],
                "decoder_ema": modules["decoder"]}

    def trainables(self):
        return {"encoder": self.E, "decoder": self.G} | ({"discriminator": self.D} if self.use_gan else {})

    def optimizers(self):
        return {"encoder": self.opt_e, "decoder": self.opt_g} | ({"discriminator": self.opt_d} if self.use_gan else {})

    def state_dict(self):
        state = super().state_dict()
        state["modules"] |= {"encoder_ema": self.E_ema.state_dict(), "decoder_ema": self.G_ema.state_dict()}
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.E_ema.load_state_dict(state["modules"]["encoder_ema"])
        self.G_ema.load_state_dict(state["modules"]["decoder_ema"])


def cgan_generator_state(name_or_path: str, attribute_names: list[str], size: int, net_kwargs: dict) -> dict:
    """The weights of a cGAN's generator (a shipped name or a model folder), to start a decoder of this shape: the
    same attributes in the same order, size, z_dim and channels, else one line that says what differs."""
    from facegen.errors import FacegenError
    from facegen.pretrained import load_pretrained

    pretrained = load_pretrained(name_or_path)
    if pretrained.kind != "cgan":
        raise FacegenError(f"decoder_from={name_or_path} is a {pretrained.kind} model; a decoder starts from a cgan")
    theirs = dict(pretrained.config["modules"]["generator"])
    ours = {"n_attributes": len(attribute_names), "size": size} | {k: net_kwargs[k] for k in ("z_dim", "channels")}
    if pretrained.attribute_names != list(attribute_names) or {k: theirs.get(k) for k in ours} != ours:
        raise FacegenError(f"decoder_from={name_or_path} is a generator of {theirs} for "
                           f"{','.join(pretrained.attribute_names)}; this decoder is {ours} for "
                           f"{','.join(attribute_names)}: train with the same --attrs, cache size, z_dim and channels")
    return pretrained.modules["generator"].state_dict()
