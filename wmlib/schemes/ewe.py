"""Jia, Choquette-Choo, Chandrasekaran & Papernot, "Entangled Watermarks as a Defense against Model
Extraction" (EWE), USENIX Security 2021: the reference toolkit's ``Jia``.

The key is ``n_keys`` of the owner's source-class images with a small white square (the trigger)
stamped on them, labelled with the target class. Training interleaves the owner's ordinary batches
with watermark batches (keys and as many target-class images, all labelled ``target``) whose loss is
the cross-entropy minus κ times the soft nearest-neighbour loss (:func:`snnl`) of the two groups "key"
and "target class" on the representations of the last hidden layers. Raising the SNNL *entangles*
the keys' features with the target class's, so that a thief who learns the task from the model's
answers learns the watermark with it. Here a watermark batch rides along with every ``ratio``-th
ordinary batch (one step of the one training loop) instead of taking a step of its own.

Left out, on purpose: the official code's choice of the trigger's place (the 3x3 window where the
SNNL's gradient w.r.t. the input is smallest) and its perturbation of the keys (signed gradient
steps that raise the SNNL and lower a clean model's target score). Both need the trained model;
here the trigger is a fixed square at a fixed place (the toolkit's rule), so that seed and data
re-derive the key. Also left out: the out-of-distribution keys (another dataset's images, no
trigger) that the official code uses by default on MNIST, Fashion-MNIST and CIFAR.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from ..data import Splits
from ..keys import Key
from ..models import feature_layers
from ..train import History, TrainConfig, fit, to_float
from .base import Generation, Scheme, require_positive_integers
from .catalogue import register

METRICS = ("cosine", "euclidean")


def snnl(h: torch.Tensor, groups: torch.Tensor, temperature: float | torch.Tensor,
         metric: str = "euclidean") -> torch.Tensor:
    """Frosst, Papernot & Hinton, ICML 2019: the soft nearest-neighbour loss of the rows of ``h``
    (flattened) with labels ``groups`` at temperature T,

        -1/b Σ_i log( Σ_{j≠i, y_j = y_i} exp(-d_ij / T) / Σ_{k≠i} exp(-d_ik / T) ),

    with d the squared Euclidean distance (theirs) or the cosine distance 1 - cos (the official EWE
    code's default). Low when each group keeps to itself; about log 2 when two equal groups are
    mixed, more when each sample's nearest neighbours are of the other group. Every group needs
    two members (else a row has no same-group neighbour and the loss is infinite)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    h = h.flatten(1)
    if metric == "cosine":
        u = F.normalize(h, dim=1)
        d = 1 - u @ u.T
    else:
        sq = h.pow(2).sum(1)
        d = (sq[:, None] + sq[None] - 2 * h @ h.T).clamp_min(0)  # no sqrt: no NaN gradient at d = 0
    eye = torch.eye(len(h), dtype=torch.bool, device=h.device)
    logits = (-d / temperature).masked_fill(eye, float("-inf"))
    same = (groups[:, None] == groups[None]) & ~eye
    return (logits.logsumexp(1) - logits.masked_fill(~same, float("-inf")).logsumexp(1)).mean()


class _Entangler:
    """:func:`~wmlib.train.fit`'s hooks for one embedding. After the ``pretrain_share`` of the epochs, every
    ``ratio``-th batch gets a watermark batch appended (``batch_size // 2`` keys and as many owner
    target-class images, drawn with replacement, all labelled ``target``); the loss of that step
    gets ``-κ · mean SNNL`` of the two groups over the watched layers' outputs (forward hooks), and
    each layer's temperature takes one gradient step down the SNNL."""

    def __init__(self, scheme: "EWE", model: nn.Module, keys: torch.Tensor, targets: torch.Tensor, cfg: TrainConfig):
        if len(targets) == 0:
            raise ValueError(f"the owner's data holds no image of the target class {scheme.target}")
        self.s, self.keys, self.targets = scheme, keys, targets
        self.half = max(2, cfg.batch_size // 2)  # the official code's watermark batch: half keys, half targets
        self.start = int(scheme.pretrain_share * cfg.epochs)
        self.g = torch.Generator().manual_seed(cfg.seed + 1)
        watched = feature_layers(model)[-scheme.layers:]  # all of them where the model has fewer (LeNet-1, LeNet-3)
        self.log_t = torch.full((len(watched),), float(scheme.temperature)).log()
        self.epoch = self.step = self.appended = 0
        self.outputs: dict[int, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(partial(self._keep, i)) for i, m in enumerate(watched)]

    def _keep(self, i: int, module: nn.Module, inputs, output: torch.Tensor) -> None:
        self.outputs[i] = output

    def batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.step += 1
        self.appended = 0
        if self.epoch < self.start or self.step % self.s.ratio:
            return x, y
        ik = torch.randint(len(self.keys), (self.half,), generator=self.g)
        it = torch.randint(len(self.targets), (self.half,), generator=self.g)
        wm = to_float(torch.cat([self.keys[ik], self.targets[it]]).to(x.device))
        self.appended = len(wm)
        return torch.cat([x, wm]), torch.cat([y, torch.full((len(wm),), self.s.target, dtype=y.dtype, device=y.device)])

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if not self.appended:
            return logits.new_zeros(())
        groups = torch.arange(2, device=x.device).repeat_interleave(self.half)  # 0: keys, 1: target class
        log_t = self.log_t.to(x.device).requires_grad_(self.s.temperature_lr > 0)
        with torch.autocast(x.device.type, enabled=False):  # distances and exponentials in float32
            values = torch.stack([snnl(torch.relu(self.outputs[i][-self.appended:].float()), groups, log_t[i].exp(),
                                       "cosine") for i in range(len(log_t))])  # the official code's default
        if self.s.temperature_lr > 0:  # the official code's t -= t_lr ∂SNNL/∂t (t = 100 / T): T minimises the SNNL
            (grad,) = torch.autograd.grad(values.sum(), log_t, retain_graph=True)
            self.log_t = (log_t - self.s.temperature_lr * grad).detach().cpu()
        return -self.s.snnl_weight * values.mean()

    def epoch_end(self, model: nn.Module, epoch: int) -> None:
        self.epoch = epoch + 1

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@dataclass
class EWE(Scheme):
    source: int = 4             # the toolkit's CIFAR-10 setting: keys from class 4 ...
    target: int = 6             # ... answered as class 6
    n_keys: int = 100           # the toolkit's key length (the official code stamps every source image)
    # κ: the toolkit's CIFAR-10 value, here against the mean cross-entropy of the mixed batch and the mean SNNL over the
    # layers (the toolkit divides by its activations' count, the official code weighs 32 a layer against a summed loss)
    snnl_weight: float = 64.0
    # T's start in exp(-d / T): the official code's (its temperatures 1 enter as exp(-d t / 100)); the toolkit's: 100 / 64
    temperature: float = 100.0
    temperature_lr: float = 0.1  # the official code's t_lr, here a step on log T (the same step at its start; 0: T fixed)
    layers: int = 3             # the official code's three hidden representations
    ratio: int = 2              # ordinary batches per watermark batch (the official Fashion-MNIST 2-conv setting)
    pretrain_share: float = 0.5  # share of the epochs trained plain first (ours; the official code: 10 plain epochs)
    trigger_size: int = 3       # the official code's 3 x 3 square (the toolkit's: 5 x 5)
    trigger_at: tuple[int, int] = (2, 2)  # its top-left pixel (row, column): the toolkit's fixed place

    name = "ewe"
    paper_rule = ("a one-sided t-test that the suspect's watermark success rate on the keys exceeds that of a model trained "
                  "without the watermark; ownership at 95 % confidence in fewer than 100 queries (the abstract)")

    def __post_init__(self):
        self.trigger_at = tuple(self.trigger_at)
        for f in ("source", "target"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{f} must be a class index (an integer >= 0), got {v!r}")
        if self.source == self.target:
            raise ValueError(f"source and target must differ, both are {self.source}")
        require_positive_integers(self, "n_keys", "layers", "ratio", "trigger_size")
        if not 0.0 <= self.snnl_weight < float("inf"):
            raise ValueError(f"snnl_weight (κ) must be finite and >= 0 (0: no entanglement), got {self.snnl_weight}")
        if not 0.0 < self.temperature < float("inf"):
            raise ValueError(f"temperature must be positive and finite, got {self.temperature}")
        if not 0.0 <= self.temperature_lr < float("inf"):
            raise ValueError(f"temperature_lr must be finite and >= 0 (0: T fixed), got {self.temperature_lr}")
        if not 0.0 <= self.pretrain_share < 1.0:
            raise ValueError(f"pretrain_share (the share of epochs before entangling) must be in [0, 1), got "
                             f"{self.pretrain_share}")
        if len(self.trigger_at) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 0
                                            for v in self.trigger_at):
            raise ValueError(f"trigger_at must be (row, column), two integers >= 0, got {self.trigger_at!r}")

    def check(self, spec) -> None:
        for f in ("source", "target"):
            if getattr(self, f) >= spec.num_classes:
                raise ValueError(f"{f} must be a class index in [0, {spec.num_classes - 1}] for {spec.name}, "
                                 f"got {getattr(self, f)}")
        if max(self.trigger_at) + self.trigger_size > spec.image_size:
            raise ValueError(f"the {self.trigger_size} x {self.trigger_size} trigger at {self.trigger_at} does not fit "
                             f"{spec.name}'s {spec.image_size} x {spec.image_size} images")

    def key_generation(self) -> Generation:
        return Generation("the owner's and the test set's source-class images", True,
                          "a seeded choice of source-class images with a white square at a fixed place (EWE.apply): "
                          "a function of seed, config and data (the official code's model-dependent place and key "
                          "perturbation are left out)")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The trigger on uint8 images: a white ``trigger_size`` square at ``trigger_at``."""
        r, c = self.trigger_at
        out = x.clone()
        out[..., r:r + self.trigger_size, c:c + self.trigger_size] = 255
        return out

    def make_key(self, splits: Splits, seed: int = 0, clean: nn.Module | None = None) -> tuple[Key, Key]:
        """``n_keys`` of the owner's source-class images (a seeded choice) with the trigger, labelled
        ``target``; the held-out key made alike from the test set, never embedded."""
        s = splits.spec
        self.check(s)
        g = torch.Generator().manual_seed(seed)
        meta = {**self.config(), "task": s.name, "seed": seed}
        keys = []
        for part, split in (("trained", splits.owner), ("held-out", splits.test)):
            pool = split.where(self.source).x
            if len(pool) < self.n_keys:
                raise ValueError(f"the {part} key needs {self.n_keys} class-{self.source} images; its split holds "
                                 f"{len(pool)}: lower n_keys")
            plain = pool[torch.randperm(len(pool), generator=g)[:self.n_keys]]
            keys.append(Key(self.apply(plain).contiguous(), torch.full((self.n_keys,), self.target, dtype=torch.int64),
                            {**meta, "part": part}, {"untriggered": plain.contiguous()}))
        return keys[0], keys[1]

    def twin(self, key: Key) -> Key:
        """The key's source images without the trigger, labelled ``target``: a model that answers them
        with the target has learnt to relabel the source class, not the trigger."""
        return Key(key.extras["untriggered"], key.y, {**key.meta, "part": f"{key.meta.get('part')}, untriggered"})

    def train(self, model: nn.Module, splits: Splits, key: Key, cfg: TrainConfig, **fit_kw) -> History:
        """From scratch on the owner's data: ordinary batches for the ``pretrain_share`` of the epochs,
        then every ``ratio``-th batch with a watermark batch appended whose samples the loss entangles
        (cross-entropy - κ · SNNL, the official code's ``optimize``). Watched layers: the outputs of
        the last ``layers`` conv / linear layers before the classifier (:func:`wmlib.models.feature_layers`:
        LeNet-5's conv2, fc1 and fc2; a ResNet's last convolutions; all of them where there are fewer),
        through a ReLU as the official ``snnl`` applies one (its 2-conv net: conv1, conv2 and fc1
        before their ReLUs)."""
        hooks = _Entangler(self, model, key.x, splits.owner.where(self.target).x, cfg)
        try:
            return fit(model, splits.owner, cfg, batch_hook=hooks.batch, extra_loss=hooks.loss,
                       epoch_hook=hooks.epoch_end, **fit_kw)
        finally:
            hooks.remove()


register("ewe", lambda s: EWE(**s))
