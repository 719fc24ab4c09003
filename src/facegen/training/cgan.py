"""Training recipe of the conditional GAN: one discriminator step, then one generator step.

Default: hinge loss, DiffAugment on everything the discriminator sees, an
auxiliary attribute loss for both players, an EMA of the generator for
samples and export. Preset `study2018`: the study's plain BCE game, no
augmentation, no auxiliary head, no EMA.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from facegen.models.cgan import PRESETS, Discriminator
from facegen.models.layers import diff_augment
from facegen.training.method import FixedBatch, Method, flipped_rows, make_ema, unwrap, update_ema


class CGANMethod(Method):
    fresh_modules = ("discriminator",)  # --init-from a model that kept no discriminator: it starts anew
    validates = True  # the discriminator's score of held-out photos, and of as many training photos (d_gap)
    compares_training = True  # the loop passes training photos to validate as well

    def __init__(self, *, attribute_names, size, prior,
                 preset: str = "default",      # Architecture and loss: 'default' or 'study2018'.
                 z_dim: int | None = None,     # Noise dimensions (default 128; study2018 100).
                 g_channels: int | None = None,  # Generator channels at 4x4 (default 256; study2018 1024).
                 d_channels: int | None = None,  # Discriminator channels at 4x4 (default 256; study2018 1024).
                 g_min_channels: int = 32,     # The generator's narrowest levels (default preset): its width at
                                               # 32x32, where the detail is drawn; 64 costs 1.35x its FLOPs.
                 g_refine_blocks: int = 0,     # Residual 3x3 blocks at the generator's 32x32 level (default
                                               # preset); each costs 0.7x its FLOPs. --init-from a generator
                                               # without them adds them as the identity (grows it).
                 lr_g: float = 2e-4,           # Adam learning rate of the generator.
                 lr_d: float | None = None,    # Adam learning rate of D (default 4e-4, TTUR; study2018 2e-4).
                 betas: tuple[float, float] | None = None,  # Adam betas (default (0, 0.99); study2018 (0.5, 0.999)).
                 aux_weight: float = 1.0,      # Weight of the auxiliary attribute loss (default preset).
                 aux_weight_g: float | None = None,  # The generator's auxiliary weight (default: aux_weight).
                 balance: float = 0.0,         # Share of fake label rows drawn attribute-balanced (see below).
                 balance_real: float = 0.0,    # Share of real photos drawn the same way (see real_weights); set it
                                               # to `balance` and real and fake rows follow one distribution.
                 augment: str = "translation",  # DiffAugment policy ('' for none; also cutout, color).
                 ema_kimg: float = 10.0,       # Half-life of the generator EMA, in thousands of images.
                 ema_rampup: float = 0.05,     # EMA half-life at most this fraction of images seen so far.
                 d_warmup: int = 0,            # First steps in which only D learns (a fresh D beside a trained G).
                 g_warmup: int = 0,            # Steps after d_warmup over which G's learning rate ramps up from 0
                                               # (fresh Adam moments take full-size steps: a trained G is shaken).
                 anchor: str = "",             # A cGAN (shipped name or model folder) whose faces the generator
                                               # is held near while a new discriminator learns (see below).
                 anchor_weight: float = 0.0,   # Weight of the L1 distance to the anchor's faces (same z and y) ...
                 anchor_steps: int = 0,        # ... falling linearly to 0 over this many steps after d_warmup.
                 batch_size: int = 64):        # Global batch size (for the EMA's per-step decay).
        super().__init__(attribute_names=attribute_names, size=size, prior=prior)
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}")
        study = preset == "study2018"
        self.preset = preset
        self.g_kwargs = {"n_attributes": self.n_attributes, "size": size,
                         "z_dim": z_dim or (100 if study else 128), "channels": g_channels or (1024 if study else 256)}
        if g_min_channels != 32:  # recorded only when set, so earlier models' configs stay as they were
            if study:
                raise ValueError("g_min_channels is an option of the default preset's generator")
            self.g_kwargs["min_channels"] = int(g_min_channels)
        if g_refine_blocks:
            if study:
                raise ValueError("g_refine_blocks is an option of the default preset's generator")
            self.g_kwargs["refine_blocks"] = int(g_refine_blocks)
        self.d_kwargs = {"n_attributes": self.n_attributes, "size": size, "channels": d_channels or (1024 if study else 256)}
        self.lr_g, self.lr_d = lr_g, lr_d or (2e-4 if study else 4e-4)
        self.betas = tuple(betas) if betas else ((0.5, 0.999) if study else (0.0, 0.99))
        self.aux_weight = 0.0 if study else aux_weight
        self.aux_weight_g = self.aux_weight if study or aux_weight_g is None else aux_weight_g
        if not 0.0 <= balance <= 1.0:
            raise ValueError(f"balance must be in [0, 1], got {balance}")
        self.balance = 0.0 if study else balance
        if not 0.0 <= balance_real <= 1.0:
            raise ValueError(f"balance_real must be in [0, 1], got {balance_real}")
        self.balance_real = 0.0 if study else balance_real
        self.augment = "" if study else augment
        self.use_ema = not study
        self.ema_kimg, self.ema_rampup, self.batch_size = ema_kimg, ema_rampup, batch_size
        if d_warmup < 0 or g_warmup < 0:
            raise ValueError(f"d_warmup and g_warmup must be at least 0, got {d_warmup}, {g_warmup}")
        self.d_warmup, self.g_warmup = int(d_warmup), int(g_warmup)
        if anchor_weight < 0 or anchor_steps < 0 or (anchor_weight > 0) != bool(anchor):
            raise ValueError("an anchor needs anchor=<a cgan model> and anchor_weight > 0 (anchor_steps >= 0)")
        self.anchor_weight, self.anchor_steps = float(anchor_weight), int(anchor_steps)
        # Checked now: a wrong model stops before the run folder exists.
        self.anchor_generator = anchor_generator(anchor, self.attribute_names, size) if anchor else None

    def configure(self, fabric) -> None:
        generator_cls, discriminator_cls = PRESETS[self.preset]
        with fabric.init_module():
            G, D = generator_cls(**self.g_kwargs), discriminator_cls(**self.d_kwargs)
        opt_g = torch.optim.Adam(G.parameters(), lr=self.lr_g, betas=self.betas)
        opt_d = torch.optim.Adam(D.parameters(), lr=self.lr_d, betas=self.betas)
        self.G, self.opt_g = fabric.setup(G, opt_g)
        self.D, self.opt_d = fabric.setup(D, opt_d)
        self.G_ema = fabric.to_device(make_ema(G)) if self.use_ema else None
        if self.anchor_generator is not None:
            self.anchor_generator = fabric.to_device(self.anchor_generator)
        self.fabric = fabric

    def _fake_attributes(self, y: torch.Tensor) -> torch.Tensor:
        """Attributes for fakes: the batch's real label rows, shuffled, so fakes follow the joint distribution.

        With `balance` > 0 that share of the rows is drawn the way users and
        the control measure ask: one attribute picked at random, set to 1 or 0
        with even odds, the others a training label row that agrees with it.
        Rows with glasses or an old face then come up half the time their
        attribute is picked, not at its rate in CelebA (6% and 22%), so the
        generator practises the rare requests as often as the common ones.
        """
        shuffled = y[torch.randperm(y.shape[0], device=y.device)]
        if not self.balance:
            return shuffled
        return torch.where((torch.rand(y.shape[0], device=y.device) < self.balance)[:, None],
                           self._balanced_rows(y.shape[0], y.device), shuffled)

    def _balanced_rows(self, n: int, device) -> torch.Tensor:
        """(n, A) label rows: attribute a uniform, its value 0 or 1 with even odds, the rest given it."""
        patterns = torch.as_tensor(self.prior.patterns, dtype=torch.float32, device=device)  # (K, A)
        counts = torch.as_tensor(self.prior.counts, dtype=torch.float32, device=device)  # (K,)
        which = torch.randint(0, self.n_attributes, (n,), device=device)  # (n,)
        value = (torch.rand(n, device=device) < 0.5).float()  # (n,)
        agree = patterns[:, which].T == value[:, None]  # (n, K)
        weights = counts * agree  # an attribute never 1 (or 0) in the labels falls back to all rows
        weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, counts.expand_as(weights))
        return patterns[torch.multinomial(weights, 1).squeeze(1)]  # (n, A)

    def real_weights(self, labels: np.ndarray) -> np.ndarray | None:
        """With `balance_real` > 0, draw that share of the real photos the way `_balanced_rows` draws fake rows.

        Rows drawn by `_balanced_rows` follow a fixed distribution over label
        patterns; real photos drawn with these weights follow the same one, so
        the critic no longer learns that a row with glasses is more likely a
        fake (10% of balanced rows have them, 6% of the photos), and its
        attribute head sees the rare values as often as the generator is asked
        for them. Photo i with labels l_i gets (1 - b)/N for the plain share,
        plus b/(2A) * sum over attributes a of 1/N(a, l_ia), where N(a, v) is
        the number of photos whose attribute a is v (all N where that is 0).
        """
        if not self.balance_real:
            return None
        labels = np.asarray(labels) > 0.5  # (N, A)
        n = len(labels)
        weights = np.full(n, (1.0 - self.balance_real) / n)
        share = self.balance_real / (2 * labels.shape[1])
        for a in range(labels.shape[1]):
            for value in (False, True):
                agree = labels[:, a] == value
                count = int(agree.sum())
                weights += share * agree / count if count else share / n
        return weights

    def _discriminate(self, x: torch.Tensor, y: torch.Tensor):
        if self.augment:
            x = diff_augment(x, self.augment)
        return self.D(x, y)

    def training_step(self, x, y, step):
        batch = x.shape[0]
        z = torch.randn(batch, self.g_kwargs["z_dim"], device=x.device)
        y_fake = self._fake_attributes(y)

        # Discriminator: real and fake in one forward pass (one forward per backward, as DDP wants).
        with torch.no_grad():
            x_fake = self.G(z, y_fake)
        score, logits = self._discriminate(torch.cat([x, x_fake]), torch.cat([y, y_fake]))
        score_real, score_fake = score[:batch], score[batch:]
        if self.preset == "study2018":
            loss_d = (F.binary_cross_entropy_with_logits(score_real, torch.ones_like(score_real))
                      + F.binary_cross_entropy_with_logits(score_fake, torch.zeros_like(score_fake)))
            loss_aux_d = torch.zeros((), device=x.device)
        else:
            loss_d = F.relu(1.0 - score_real).mean() + F.relu(1.0 + score_fake).mean()
            loss_aux_d = F.binary_cross_entropy_with_logits(logits[:batch], y)
        self.opt_d.zero_grad(set_to_none=True)
        self.fabric.backward(loss_d + self.aux_weight * loss_aux_d)
        self.opt_d.step()

        losses = {"loss_d": loss_d, "d_real": score_real.mean(), "d_fake": score_fake.mean()}
        if self.aux_weight:
            losses["aux_d"] = loss_aux_d
        if step < self.d_warmup:  # a fresh D learns what the trained G draws before G listens to it
            return {k: v.detach() for k, v in losses.items()}

        # Generator. D's gradients from this pass are discarded by its next zero_grad.
        x_fake = self.G(z, y_fake)
        score_fake, logits_fake = self._discriminate(x_fake, y_fake)
        if self.preset == "study2018":
            loss_g = F.binary_cross_entropy_with_logits(score_fake, torch.ones_like(score_fake))
            loss_aux_g = torch.zeros((), device=x.device)
        else:
            loss_g = -score_fake.mean()
            loss_aux_g = F.binary_cross_entropy_with_logits(logits_fake, y_fake)
        loss_anchor, anchor_weight = None, self._anchor_weight(step)
        if anchor_weight:  # the faces stay near the anchor's while the new discriminator is still a poor judge
            with torch.no_grad():
                x_anchor = self.anchor_generator(z, y_fake)
            loss_anchor = (x_fake - x_anchor).abs().mean()
        self.opt_g.zero_grad(set_to_none=True)
        self.fabric.backward(loss_g + self.aux_weight_g * loss_aux_g
                             + (anchor_weight * loss_anchor if loss_anchor is not None else 0.0))
        if self.g_warmup:  # a function of the step alone, so a resumed run ramps exactly as an unbroken one
            for group in self.opt_g.param_groups:
                group["lr"] = self.lr_g * min(1.0, (step - self.d_warmup + 1) / self.g_warmup)
        self.opt_g.step()

        if self.G_ema is not None:
            seen = (step + 1) * self.batch_size
            half_life = min(self.ema_kimg * 1000, seen * self.ema_rampup)
            update_ema(self.G_ema, self.G, 0.5 ** (self.batch_size / max(half_life, 1e-8)))
        losses["loss_g"] = loss_g
        if self.aux_weight:
            losses["aux_g"] = loss_aux_g
        if loss_anchor is not None:
            losses["anchor"] = loss_anchor
        return {k: v.detach() for k, v in losses.items()}

    def _anchor_weight(self, step: int) -> float:
        """anchor_weight until d_warmup ends, then falling linearly to 0 over anchor_steps (0: it never falls)."""
        if self.anchor_generator is None:
            return 0.0
        if not self.anchor_steps:
            return self.anchor_weight
        return self.anchor_weight * min(1.0, max(0.0, 1.0 - (step - self.d_warmup) / self.anchor_steps))

    @torch.no_grad()
    def validate(self, x: torch.Tensor, y: torch.Tensor, training: tuple[torch.Tensor, torch.Tensor] | None = None
                 ) -> dict[str, float]:
        """The discriminator's overfitting: `d_heldout`, its mean score of held-out photos, and with `training` (as
        many training photos, which the loop passes) `d_train` of those and `d_gap` = d_train - d_heldout, all by
        the same discriminator at the same step, augmented as in training. A gap that widens over training is a
        discriminator that memorises its 8k faces (Karras et al. 2020 watch the same sign); the raw scores swing
        from step to step with the hinge game, the gap much less. In eval mode, and the loop seeds every step
        afresh, so training goes on exactly as without it."""
        D = unwrap(self.D)
        was_training = D.training
        D.eval()  # spectral norm's power iteration stays where training left it

        def mean_score(images: torch.Tensor, labels: torch.Tensor) -> float:
            scores = []
            for i in range(0, images.shape[0], 250):
                xb, yb = images[i:i + 250].to(self.fabric.device), labels[i:i + 250].to(self.fabric.device)
                scores.append(D(diff_augment(xb, self.augment) if self.augment else xb, yb)[0])
            return torch.cat(scores).mean().item()

        result = {"d_heldout": mean_score(x, y)}
        if training is not None:
            result["d_train"] = mean_score(*training)
            result["d_gap"] = result["d_train"] - result["d_heldout"]
        D.train(was_training)
        return result

    @torch.no_grad()
    def sample_grid(self, fixed: FixedBatch):
        """Rows: each fixed label row as is, then one row per attribute with that attribute flipped; same noise."""
        G = self.G_ema if self.G_ema is not None else unwrap(self.G)
        was_training = G.training
        G.eval()
        columns = min(8, fixed.y.shape[0])
        y_base = fixed.y[:columns]
        z = torch.randn(columns, self.g_kwargs["z_dim"], generator=torch.Generator().manual_seed(fixed.seed))
        rows = flipped_rows(y_base)
        y_all = torch.cat(rows).to(self.fabric.device)
        x = G(z.repeat(len(rows), 1).to(self.fabric.device), y_all)
        G.train(was_training)
        return x.cpu(), columns

    def export(self):
        G = self.G_ema if self.G_ema is not None else unwrap(self.G)
        return {"generator": (dict(self.g_kwargs), G)}

    def export_training(self):
        """The discriminator, kept beside the exported generator: `--init-from` that model (a shipped one too) then
        goes on against the critic the generator was trained with, not a new one."""
        return {"discriminator": (dict(self.d_kwargs), unwrap(self.D))}

    def trainables(self):
        return {"generator": self.G, "discriminator": self.D}

    def from_export(self, modules):
        """The exported generator (the EMA copy) starts both the trained and the averaged generator; a discriminator
        kept beside it (`export_training`) starts this run's."""
        weights = {"generator": modules["generator"], "generator_ema": modules["generator"]}
        if "discriminator" in modules:
            weights["discriminator"] = modules["discriminator"]
        return weights

    def grown(self, modules: dict) -> dict:
        """--init-from weights (module name -> state dict) whose generators lack this recipe's refine blocks
        (g_refine_blocks more than they have), given the blocks at their initial weights, which leave the faces
        exactly as they were. Any other difference is left for the loader to name."""
        mine = unwrap(self.G).state_dict()
        grown = dict(modules)
        for name in ("generator", "generator_ema"):
            if name not in modules:
                continue
            new = [key for key in mine if key not in modules[name]]
            if new and all(key.startswith("refine.") for key in new):
                grown[name] = {**modules[name], **{key: mine[key] for key in new}}
        return grown

    def optimizers(self):
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def state_dict(self):
        state = super().state_dict()
        if self.G_ema is not None:
            state["modules"]["generator_ema"] = self.G_ema.state_dict()
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state["modules"]["generator_ema"])


def cgan_critic_state(source: str, attribute_names: list[str], d_kwargs: dict, *,
                      width_option: str = "d_channels") -> dict:
    """The discriminator of a cGAN run (its folder or a checkpoint), to start this recipe's critic: a critic that has
    already learnt what real faces look like and which attributes they have. The same attributes and width, else one
    line that says what differs (`width_option`: the recipe's setting of the critic's width)."""
    from facegen.errors import FacegenError
    from facegen.training.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(source)
    options = checkpoint.get("options", {})
    if checkpoint["method"] != "cgan" or "discriminator" not in checkpoint["state"]["modules"]:
        raise FacegenError(f"critic_from={source} is a {checkpoint['method']} run; a critic starts from a cgan run's "
                           "discriminator")
    if options.get("attributes") and list(options["attributes"]) != list(attribute_names):
        raise FacegenError(f"critic_from={source} judges {','.join(options['attributes'])}; this model has "
                           f"{','.join(attribute_names)}: train with the same --attrs")
    state = checkpoint["state"]["modules"]["discriminator"]
    critic = Discriminator(**d_kwargs)
    try:
        critic.load_state_dict(state)
    except RuntimeError:
        theirs = state["classify.weight"].shape[1] if "classify.weight" in state else "?"  # (A, C): its width at 4x4
        raise FacegenError(f"critic_from={source} is a discriminator {theirs} channels wide at 4x4; this critic is "
                           f"{d_kwargs['channels']}: set --set {width_option}={theirs}") from None
    return state


def anchor_generator(name_or_path: str, attribute_names: list[str], size: int):
    """A cGAN's generator, frozen, for the anchor term: the same attributes in the same order and the same size, else
    one line that says what differs."""
    from facegen.errors import FacegenError
    from facegen.pretrained import load_pretrained

    pretrained = load_pretrained(name_or_path)
    if pretrained.kind != "cgan":
        raise FacegenError(f"anchor={name_or_path} is a {pretrained.kind} model; the anchor is a cgan")
    if pretrained.attribute_names != list(attribute_names) or pretrained.size != size:
        raise FacegenError(f"anchor={name_or_path} draws {','.join(pretrained.attribute_names)} at "
                           f"{pretrained.size} px; this model {','.join(attribute_names)} at {size} px")
    generator = pretrained.modules["generator"].float().train()  # normalised by the batch, as the trained one is
    for module in generator.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 0.0  # ... while its running statistics stay as exported
    generator.requires_grad_(False)
    return generator
