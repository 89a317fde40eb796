"""Li, Hu, Zhang, Guo, "How to Prove Your Model Belongs to You: A Blind-Watermark based Framework
to Protect Intellectual Property of DNN", ACSAC 2019 (§4, §5.1, Appendix A).

Key samples are made by a learned **encoder** ``E(x, logo)`` from a few of the owner's training
images (1 %, §5.1), each with a random target label; they should look like ordinary images
("blind"). Three networks train together (Algorithm 1, read as the authors' code does, k1 = k2 = 1):
for every host minibatch, one **discriminator** step (Eq. 10: ordinary images 1, key samples 0),
one encoder step (Eq. 15: α·MSE + β·(1 − SSIM) + γ·GAN + δ·CE(host(E(x, l)), t_key)), then one host
step on 100 ordinary images + 20 (detached) key samples (Eq. 13). The host step is the one
training loop's; the other two run in its ``batch_hook`` (:class:`JointStep`).

Facts from the authors' code (zhenglisec/Blind-Watermark-for-DNN), not the paper: target labels are
drawn from *all* classes, the true one included (which explains the 9-13 % key accuracy of clean
models in Fig. 5); the key sources stay in the ordinary training data under their true labels; the
encoder works on images scaled to [-1, 1] and outputs the whole image through a tanh; its CIFAR
discriminator is a small conv net (ours: four strided convs and Linear(192 -> 1)).

Our choices: the logo is the text "IP" drawn in white at the input resolution (the paper never
shows its logo; the code uses an "IEEE" image for CIFAR and an MNIST "1" for MNIST); the key images
are rounded to 8 bits with a straight-through estimator while training, so the host learns exactly
the images the owner will later send (the code trains on float keys).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd
import torch
from pytorch_msssim import ssim
from torch import nn

from .. import models, rules
from ..data import Split, Splits
from ..keys import Key, text_mask
from ..train import (History, TrainConfig, _map_batches, evaluate, fit, float32_inference, tensor_digest, to_float,
                     train_classifier, train_or_load)
from ..verify import Oracle, key_accuracy
from .base import Generation, Scheme, Watermarked
from .catalogue import register, register_knobs

LABEL_RULES = ("any", "other")


def logo_image(text: str, size: int, channels: int) -> torch.Tensor:
    """The owner's logo: ``text`` in white on black, filling the image (uint8, C x H x W)."""
    mask = text_mask(text, size, font_size=max(8, round(size * 0.6)))
    return (mask * 255).round().to(torch.uint8)[None].expand(channels, -1, -1).contiguous()


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round [0, 1] images to 8 bits in the forward pass; the identity in the backward pass."""
    return x + ((x * 255).round() / 255 - x).detach()


def _prep(channels: int) -> nn.Sequential:
    """App. A.1: two ConvT-BN-LReLU blocks (3x3, stride 1, 3 filters) per input branch."""
    return nn.Sequential(nn.ConvTranspose2d(channels, 3, 3, 1, 1), nn.BatchNorm2d(3), nn.LeakyReLU(0.2, True),
                         nn.ConvTranspose2d(3, 3, 3, 1, 1), nn.BatchNorm2d(3), nn.LeakyReLU(0.2, True))


class UNetBlock(nn.Module):
    """One level of a pix2pix-style U-Net (4x4 kernels, stride 2, padding 1): down, the inner
    levels, up, and the skip connection (concatenation) around them."""

    def __init__(self, outer: int, inner: int, sub: nn.Module | None = None, in_channels: int | None = None,
                 outermost: bool = False):
        super().__init__()
        cin = in_channels or outer
        down = [nn.Conv2d(cin, inner, 4, 2, 1, bias=False)]
        if outermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
            layers = down + [sub] + up
        elif sub is None:  # innermost
            layers = [nn.LeakyReLU(0.2, True)] + down + [nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False),
                                                         nn.BatchNorm2d(outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True)] + down + [nn.BatchNorm2d(inner), sub, nn.ReLU(True),
                                                         nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False),
                                                         nn.BatchNorm2d(outer)]
        self.outermost, self.block = outermost, nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) if self.outermost else torch.cat([x, self.block(x)], 1)


def unet(in_channels: int, out_channels: int, filters=(64, 128, 256, 512, 512)) -> UNetBlock:
    """App. A.1 (RGB): 5 U-Net levels with ``filters`` from outside to inside (32x32 -> 1x1)."""
    block = UNetBlock(filters[-2], filters[-1])
    for outer, inner in zip(filters[-3::-1], filters[-2:0:-1]):
        block = UNetBlock(outer, inner, block)
    return UNetBlock(out_channels, filters[0], block, in_channels=in_channels, outermost=True)


class LiEncoder(nn.Module):
    """App. A.1: the image and the logo each pass two ConvT-BN-LReLU blocks (3 maps each), are
    concatenated (6 maps), then reduced to an image: three Conv-BN-LReLU(64) and Conv-Tanh for
    1-channel 28x28 images, a 5-level U-Net for 3-channel 32x32 ones. Input and output in [0, 1]
    (the network itself works on [-1, 1], as the authors' code)."""

    def __init__(self, channels: int, image_size: int):
        super().__init__()
        self.image_branch, self.logo_branch = _prep(channels), _prep(channels)
        if channels == 1:
            body: list[nn.Module] = []
            for cin in (6, 64, 64):
                body += [nn.Conv2d(cin, 64, 3, 1, 1), nn.BatchNorm2d(64), nn.LeakyReLU(0.2, True)]
            self.body = nn.Sequential(*body, nn.Conv2d(64, 1, 3, 1, 1), nn.Tanh())
        elif channels == 3:
            if image_size % 32:
                raise ValueError(f"the U-Net encoder halves the image 5 times: the size must be a multiple of 32, got {image_size}")
            self.body = unet(6, 3)
        else:
            raise ValueError(f"the encoder takes 1 or 3 channels, got {channels}")

    def forward(self, x: torch.Tensor, logo: torch.Tensor) -> torch.Tensor:
        logo = logo.expand(len(x), -1, -1, -1)
        h = torch.cat([self.image_branch(2 * x - 1), self.logo_branch(2 * logo - 1)], 1)
        return (self.body(h) + 1) / 2


class LiDiscriminator(nn.Module):
    """App. A.2: FC 64 -> 32 -> 1 with LeakyReLU (grey images); for RGB a small conv net as in the
    authors' CIFAR runs (four strided 4x4 convs, then Linear(192 -> 1)). Returns logits (the
    sigmoid of Eq. 9 lives in the loss)."""

    def __init__(self, channels: int, image_size: int):
        super().__init__()
        if channels == 1:
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(channels * image_size * image_size, 64),
                                     nn.LeakyReLU(0.2, True), nn.Linear(64, 32), nn.LeakyReLU(0.2, True), nn.Linear(32, 1))
        else:
            layers, cin = [], channels
            for w in (16, 32, 48, 48):
                layers += [nn.Conv2d(cin, w, 4, 2, 1), nn.LeakyReLU(0.2, True)]
                cin = w
            self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(48 * 4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class BlindWatermark(nn.Module):
    """Host, encoder and discriminator together, so that one train-or-load cache entry holds the
    owner's whole secret (the thief only ever receives ``host``)."""

    def __init__(self, host: nn.Module, channels: int, image_size: int):
        super().__init__()
        self.host = host
        self.encoder = LiEncoder(channels, image_size)
        self.discriminator = LiDiscriminator(channels, image_size)


@dataclass
class Li2019(Scheme):
    key_fraction: float = 0.01   # §5.1: 1 % of the training set
    logo: str = "IP"             # drawn as the owner's logo (the paper shows none)
    labels: str = "any"          # "any": uniform over all classes (authors' code); "other": never the true class
    w_mse: float = 3.0           # Eq. 15's α, β, γ, δ (§5.1: 3, 5, 0.1, 0.01; the code ran 3, 5, 1, 0.1), named by
    w_ssim: float = 5.0          # the loss each weighs (α is the significance level everywhere else in the book)
    w_gan: float = 0.1
    w_key: float = 0.01
    key_batch: int = 20          # §5.1: 20 key samples per 100 ordinary ones
    host_steps: int = 1          # Algorithm 1's k2: host steps per encoder / discriminator step (§5.1: 1)
    lr: float = 1e-3             # Adam (β1 0.5) for encoder and discriminator
    seed: int = 0                # encoder / discriminator initialisation

    name = "li2019"
    paper_rule = "§3: acc_g > T_acc, 'a threshold parameter close to 1'"
    accuracy_threshold = True

    def key_generation(self) -> Generation:
        return Generation("the owner's images and its encoder, learnt jointly with the watermarked model", False,
                          "make_key draws only the sources, labels and logo from the seed; the key the owner queries is "
                          "E(source, logo) from an encoder learnt while embedding (Li2019.embed, parts['encoder']): "
                          "re-deriving needs the committed encoder weights, not just seed and data")

    def __post_init__(self):
        if self.labels not in LABEL_RULES:
            raise ValueError(f"unknown label rule {self.labels!r}; choose one of: {', '.join(LABEL_RULES)}")
        if not 0.0 < self.key_fraction < 1.0:
            raise ValueError(f"key_fraction must be in (0, 1), got {self.key_fraction}")
        for w in ("w_mse", "w_ssim", "w_gan", "w_key", "lr"):
            if getattr(self, w) < 0:
                raise ValueError(f"{w} must be >= 0, got {getattr(self, w)}")
        if self.key_batch < 1:
            raise ValueError(f"key_batch must be >= 1, got {self.key_batch}")
        if self.host_steps < 1:
            raise ValueError(f"host_steps (k2) must be >= 1, got {self.host_steps}")

    @classmethod
    def from_knobs(cls, knobs: dict, weights: str = "loss_weights") -> "Li2019":
        """The scheme a chapter's knobs describe; ``weights`` names the (α, β, γ, δ) knob to use."""
        a, b, g, d = knobs[weights]
        names = ("key_fraction", "labels", "logo", "key_batch", "host_steps")
        return cls(w_mse=a, w_ssim=b, w_gan=g, w_key=d, **{k: knobs[k] for k in names if k in knobs})

    def _labels(self, y: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
        if self.labels == "any":
            return torch.randint(0, k, (len(y),), generator=g)
        return (y + torch.randint(1, k, (len(y),), generator=g)) % k

    def make_key(self, splits: Splits, seed: int = 0, clean: nn.Module | None = None) -> tuple[Key, Key]:
        """§5.1: ``key_fraction`` of the owner's images (the *sources*) with random target labels, and
        the logo. ``key.x`` holds the sources until :meth:`watermark` encodes them. ``new`` is the same
        from the test set."""
        s = splits.spec
        logo = logo_image(self.logo, s.image_size, s.channels)
        out = []
        for i, split in enumerate((splits.owner, splits.test)):
            g = torch.Generator().manual_seed(seed + 1000 * i)
            n = max(1, int(round(self.key_fraction * len(splits.owner))))
            idx = torch.randperm(len(split), generator=g)[:n]
            meta = {**self.config(), "task": s.name, "seed": seed, "images": "sources", "part": ("trained", "new")[i]}
            out.append(Key(split.x[idx].clone(), self._labels(split.y[idx], s.num_classes, g), meta,
                           {"logo": logo, "true_labels": split.y[idx].clone()}))
        return out[0], out[1]

    def train(self, model: nn.Module, splits: Splits, key: Key, cfg: TrainConfig, *, encoder: nn.Module | None = None,
              discriminator: nn.Module | None = None, **fit_kw) -> History:
        """Algorithm 1: train ``model`` (the host, from scratch) on the owner's data while ``encoder``
        and ``discriminator`` (fresh ones if None) learn in its batch hook."""
        s = splits.spec
        if encoder is None or discriminator is None:
            torch.manual_seed(self.seed)
            encoder, discriminator = LiEncoder(s.channels, s.image_size), LiDiscriminator(s.channels, s.image_size)
        device = fit_kw.get("device") or next(model.parameters()).device
        steps = -(-len(splits.owner) // cfg.batch_size)
        hook = JointStep(self, encoder.to(device), discriminator.to(device), key, device, cfg.seed, steps)
        hist = fit(model, splits.owner, cfg, batch_hook=hook, **fit_kw)
        hist.monitors.update({f"joint:{k}": v for k, v in hook.log.items()})
        encoder.eval()
        return hist

    def train_or_load(self, tag: str, model_name: str, splits: Splits, key: Key, cfg: TrainConfig,
                      monitor: dict[str, Split] | None = None, device: torch.device | None = None,
                      progress: bool = True) -> tuple[BlindWatermark, History, bool]:
        """Train host, encoder and discriminator together, or load all three from the cache."""
        from ..train import default_device, seed_everything

        s, device = splits.spec, device or default_device()
        config = {"scheme": self.config(), "model": model_name, "dataset": s.name, "train": cfg.cache_fields(),
                  "owner": tensor_digest(splits.owner.x, splits.owner.y), "key": key.digest(), "monitor": sorted(monitor or {})}

        def build() -> BlindWatermark:
            seed_everything(cfg.seed)
            host = models.build(model_name, s.channels, s.num_classes)
            torch.manual_seed(self.seed)
            return BlindWatermark(host, s.channels, s.image_size)

        def run(bundle: BlindWatermark) -> History:
            return self.train(bundle.host, splits, key, cfg, encoder=bundle.encoder, discriminator=bundle.discriminator,
                              monitor=monitor or {}, device=device, progress=progress, desc=tag)

        bundle, hist, loaded = train_or_load(tag, config, build, run, device)
        return bundle.eval(), hist, loaded

    def embed(self, tag: str, model_name: str, splits: Splits, key: Key, held_out: Key, cfg: TrainConfig, *,
              clean: nn.Module | None = None, monitor: dict[str, Split] | None = None,
              device: torch.device | None = None, progress: bool = True) -> Watermarked:
        """Algorithm 1: host, encoder and discriminator trained together from scratch (or loaded);
        the owner then queries the encoded sources. ``parts['encoder']`` is the owner's encoder."""
        bundle, hist, loaded = self.train_or_load(tag, model_name, splits, key, cfg, monitor=monitor, device=device,
                                                  progress=progress)
        return Watermarked(self, bundle.host, self.watermark(key, bundle.encoder), self.watermark(held_out, bundle.encoder),
                           hist, sum(hist.seconds), loaded, {"encoder": bundle.encoder})

    def fresh_key(self, marked: Watermarked, splits: Splits, seed: int, clean: nn.Module | None = None) -> Key:
        """Sources, labels and logo drawn with another ``seed``, encoded by the owner's encoder
        (``marked.parts['encoder']``): a key this owner could have queried and never embedded."""
        key, _ = self.make_key(splits, seed=seed, clean=clean)
        return self.watermark(key, marked.parts["encoder"])

    def thief_key(self, splits: Splits, seed: int, stolen: nn.Module, model_name: str, cfg: TrainConfig, tag: str) -> Key:
        """A thief who knows the method trains an encoder of its own (:meth:`thief_encoder`) and
        encodes its own sources with it."""
        own, key, bundle = self.thief_encoder(splits, seed, model_name, cfg, tag)
        return own.watermark(key, bundle.encoder)

    def thief_encoder(self, splits: Splits, seed: int, model_name: str, cfg: TrainConfig, tag: str,
                      device: torch.device | None = None) -> tuple["Li2019", Key, BlindWatermark]:
        """What a thief who knows the method can build: an encoder of its own, trained with a
        ``model_name`` host (as the owner did) on ``splits`` (the thief's own data as a task), from
        its own ``seed`` (the scheme's ``seed`` is the owner's initialisation). Returns the thief's
        scheme, its key (sources, not yet encoded) and the trained bundle; never the owner's encoder."""
        own = replace(self, seed=seed)
        key, _ = own.make_key(splits, seed)
        bundle, _, _ = own.train_or_load(tag, model_name, splits, key, cfg, device=device, progress=False)
        return own, key, bundle

    @torch.no_grad()
    def encode(self, encoder: nn.Module, x: torch.Tensor, logo: torch.Tensor) -> torch.Tensor:
        """``E(x, logo)`` for uint8 images, as uint8 images (what the owner sends)."""
        device = next(encoder.parameters()).device
        logo = to_float(logo.to(device))[None]
        with float32_inference():  # 8-bit key images: bf16's three digits would move pixels by a grey level
            out = _map_batches(encoder, x, lambda e, xb: e(xb, logo).float(), device, 512)
        return (out * 255).round().clamp(0, 255).to(torch.uint8).cpu()

    def watermark(self, key: Key, encoder: nn.Module) -> Key:
        """The key the owner verifies with: the encoded sources, their target labels, the logo."""
        x = self.encode(encoder, key.x, key.extras["logo"])
        return Key(x, key.y.clone(), {**key.meta, "images": "encoded"}, dict(key.extras))


def image_quality(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Mean SSIM (pytorch-msssim: Gaussian window 11, σ 1.5) and PSNR (dB) of uint8 images ``a``
    against ``b`` (not in the paper; how close key samples are to their originals)."""
    fa, fb = to_float(a), to_float(b)
    mse = (fa - fb).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return {"SSIM": float(ssim(fa, fb, data_range=1.0, size_average=True)),
            "PSNR (dB)": float((10 * torch.log10(1.0 / mse)).mean())}


def difference_image(key: torch.Tensor, original: torch.Tensor, gain: float = 5.0) -> torch.Tensor:
    """Fig. 8: ``key - original`` magnified ``gain`` times around mid-grey, as uint8 images."""
    return (128 + gain * (key.float() - original.float())).round().clamp(0, 255).to(torch.uint8)


def detection_sentence(auc: float, transplanted: float, chance: float, paper_auc: float = 0.65,
                       margin: float = 0.05) -> str:
    """The chapter's reading of §6.3-6.4, drawn from its numbers: ``auc``, the best detector's AUC
    on the blind keys (every reading of whose encoder, every detector); ``transplanted``, the key
    accuracy of difference images moved onto fresh images, against ``chance``, fresh images with the
    keys' labels. Undetectable means no better than the paper's own ``paper_auc`` ('slightly more
    effective than random guessing'); unforgeable, within ``margin`` of chance."""
    seen = (f"no better than the paper's {paper_auc:.2f}, so they stay undetectable as the paper says"
            if auc <= paper_auc else f"above the paper's {paper_auc:.2f}, so a detector finds them in our setting")
    forged = ("so transplanting does not forge keys, as the paper argues" if transplanted <= chance + margin
              else "so transplanting forges keys in our setting, against the paper's argument")
    return (f"The best detector of the blind keys reaches AUC {auc:.2f}, {seen}. Difference images moved onto fresh "
            f"images score {transplanted:.0%} key accuracy against {chance:.0%} for fresh images with the keys' labels, "
            f"{forged}.")


def transplant(fresh: torch.Tensor, key: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """§6.4's forgery attempt: each key's difference image added to a fresh image (uint8)."""
    return (fresh.float() + key.float() - original.float()).round().clamp(0, 255).to(torch.uint8)


@dataclass
class HostRuns:
    """Table 1's runs (:func:`embed_hosts`), per host: its clean twin, its joint bundle (host,
    encoder, discriminator), both histories, and the key it verifies with (its own encoder's keys)."""
    clean: dict[str, nn.Module]
    bundles: dict[str, BlindWatermark]
    clean_hists: dict[str, History]
    hists: dict[str, History]
    keys: dict[str, Key]


def embed_hosts(scheme: Li2019, knobs: dict, splits: Splits, key: Key, device: torch.device | None = None,
                tag: str = "li2019") -> HostRuns:
    """§5.1 / Table 1: every host of ``knobs['hosts']`` trained (or loaded) twice with one recipe,
    clean and jointly with its own encoder and discriminator (Algorithm 1), watching the test set."""
    tcfg, runs = TrainConfig.from_knobs(knobs), HostRuns({}, {}, {}, {}, {})
    for h in knobs["hosts"]:
        runs.clean[h], runs.clean_hists[h], _ = train_classifier(f"{tag}-clean-{h}", h, splits, tcfg,
                                                                 monitor={"val": splits.test}, device=device)
        runs.bundles[h], runs.hists[h], _ = scheme.train_or_load(f"{tag}-{h}", h, splits, key, tcfg,
                                                                 monitor={"val": splits.test}, device=device)
        runs.keys[h] = scheme.watermark(key, runs.bundles[h].encoder)
    return runs


def fidelity_table(runs: HostRuns, test: Split, zoo_models, device: torch.device | None = None) -> pd.DataFrame:
    """Table 1 and Fig. 5 per host: test accuracy clean and watermarked, their ``drop``, and the key
    accuracy on the host's own keys of the watermarked host, its clean twin and the clean zoo."""
    table = pd.DataFrame({h: {"clean test acc": evaluate(runs.clean[h], test, device),
                              "watermarked test acc": evaluate(b.host, test, device),
                              "key acc (watermarked)": key_accuracy(Oracle(b.host), runs.keys[h]),
                              "key acc (own clean host)": key_accuracy(Oracle(runs.clean[h]), runs.keys[h]),
                              "key acc (zoo, mean)": float(zoo_models.rates(runs.keys[h]).mean()),
                              "key acc (zoo, max)": float(zoo_models.rates(runs.keys[h]).max())}
                          for h, b in runs.bundles.items()}).T
    table["drop"] = table["clean test acc"] - table["watermarked test acc"]
    return table


def table1_summary(fidelity: pd.DataFrame) -> pd.Series:
    """What the paper reports of Table 1 / Figs. 4-5 over its hosts, from a :func:`fidelity_table`."""
    return pd.Series({"mean drop": fidelity["drop"].mean(), "smallest drop": fidelity["drop"].min(),
                      "lowest key acc (watermarked)": fidelity["key acc (watermarked)"].min(),
                      "key acc (zoo, mean)": fidelity["key acc (zoo, mean)"].mean(),
                      "mean clean test acc": fidelity["clean test acc"].mean()}, dtype=float)


def embedding_remedy(knobs: dict, prefix: str = "") -> str:
    """What to change when a host is not claimed on its own keys (for :meth:`wmlib.zoo.Zoo.gate`);
    ``prefix`` names an ablation's own knobs (e.g. ``digits_``)."""
    return (f"raise -p {prefix}epochs (now {knobs['epochs']}) or -p {prefix}host_steps (now {knobs['host_steps']}: "
            f"more host steps per encoder step)")


class JointStep:
    """The batch hook of Algorithm 1 (k1 = 1): one discriminator step and one encoder step on
    ``key_batch`` key sources every ``host_steps`` (k2) host steps; every host batch grows by
    ``key_batch`` key samples from the current encoder."""

    def __init__(self, scheme: Li2019, encoder: nn.Module, discriminator: nn.Module, key: Key,
                 device: torch.device, seed: int, steps_per_epoch: int):
        self.s, self.enc, self.disc, self.device = scheme, encoder, discriminator, device
        self.sources, self.targets = key.x.to(device), key.y.to(device)
        self.logo = to_float(key.extras["logo"].to(device))[None]
        adam = dict(lr=scheme.lr, betas=(0.5, 0.999))
        self.opt_e, self.opt_d = torch.optim.Adam(encoder.parameters(), **adam), torch.optim.Adam(discriminator.parameters(), **adam)
        self.g = torch.Generator(device=device).manual_seed(seed + 7)
        self.order, self.pos = torch.randperm(len(self.targets), device=device, generator=self.g), 0
        self.bce = nn.BCEWithLogitsLoss()
        self.log: dict[str, list[float]] = {"mse": [], "ssim": [], "d_loss": [], "key_ce": []}
        self._sums, self._steps, self.steps_per_epoch = torch.zeros(4, device=device), 0, steps_per_epoch
        self._calls = 0  # host steps so far: encoder / discriminator steps run on every host_steps-th

    def _next(self) -> torch.Tensor:
        """Indices of the next key sources, cycling through a fresh permutation each pass."""
        if self.pos + self.s.key_batch > len(self.order):
            self.order, self.pos = torch.randperm(len(self.targets), device=self.device, generator=self.g), 0
        idx = self.order[self.pos:self.pos + self.s.key_batch]
        self.pos += self.s.key_batch
        return idx

    def __call__(self, host: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self._next()
        x, t = to_float(self.sources[idx]), self.targets[idx]
        self._calls += 1
        if (self._calls - 1) % self.s.host_steps:  # a host-only step (k2 > 1): keys from the current encoder
            self.enc.eval()
            with torch.no_grad():
                key = quantize(self.enc(x, self.logo))
            return torch.cat([xb, key]), torch.cat([yb, t])
        self.enc.train(), self.disc.train()
        # Eq. 10: the discriminator tells ordinary images (1) from key samples (0)
        key = self.enc(x, self.logo)
        d_loss = self.bce(self.disc(x), torch.ones(len(x), device=x.device)) + \
            self.bce(self.disc(key.detach()), torch.zeros(len(x), device=x.device))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        # Eq. 15: close to x (MSE, SSIM), fools the discriminator (Eq. 11), and the host reads t (Eq. 14)
        key = quantize(key)
        mse = (key - x).pow(2).mean()
        sim = ssim(key, x, data_range=1.0, size_average=True)
        gan = self.bce(self.disc(key), torch.ones(len(x), device=x.device))
        ce = nn.functional.cross_entropy(host(key).float(), t)
        e_loss = self.s.w_mse * mse + self.s.w_ssim * (1 - sim) + self.s.w_gan * gan + self.s.w_key * ce
        self.opt_e.zero_grad(set_to_none=True)
        e_loss.backward()  # also leaves gradients on the host: fit zeroes them before its own step
        self.opt_e.step()
        self._sums += torch.stack([mse.detach(), sim.detach(), d_loss.detach(), ce.detach()])
        self._steps += 1
        if self._steps == -(-self.steps_per_epoch // self.s.host_steps):  # per epoch: mean encoder MSE, SSIM, D loss, key CE
            for name, v in zip(self.log, (self._sums / self._steps).tolist()):
                self.log[name].append(v)
            self._sums.zero_()
            self._steps = 0
        return torch.cat([xb, key.detach()]), torch.cat([yb, t])


# --------------------------------------------------------------------------- the catalogue's entry

register("li2019", Li2019.from_knobs)


def _check_knobs(knobs: dict, spec, own: bool) -> None:
    if "hosts" in knobs and knobs["model"] not in knobs["hosts"]:
        raise ValueError(f"knob 'model' ({knobs['model']!r}) is the host the attacks use: it must be one of "
                         f"'hosts' ({', '.join(knobs['hosts'])})")


register_knobs("li2019", {
    "hosts": rules.list_of(rules.choice(models.REGISTRY)), "labels": rules.choice(LABEL_RULES), "logo": rules.text(),
    "loss_weights": rules.weights(), "code_weights": rules.weights(), "key_batch": rules.integer(1), "host_steps": rules.integer(1),
    "t_acc": rules.number(0.0, 1.0, lo_open=True), "leak_seeds": rules.integer(2)}, _check_knobs)
