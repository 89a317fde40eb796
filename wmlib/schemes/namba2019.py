"""Namba & Sakuma, "Robust Watermarking of Neural Network with Exponential Weighting", AsiaCCS 2019.

(The key type ``label-change`` is our ablation: the proposal's keys embedded the same way but with
EW off, which the paper does not report.)

* :class:`Namba2019` — the proposal: label-change keys (§5.1) embedded with exponential weighting
  (§5.2, Eq. 11-13): train normally, then switch every conv / linear layer to EW and retrain on
  ``X ∪ K`` with ``key_per_batch`` key samples in every minibatch (Table 5: 4 per 100).
* :class:`FineTuneKeys` — the two baselines that embed a few keys by fine-tuning a trained model
  (§3.1, §6.1.2): adversarial frontier stitching (``afs``, Le Merrer et al.) and DeepSigns-style
  random-noise keys (``ds``, Rouhani et al.).

Exponential weighting is a weight *parametrization* (``torch.nn.utils.parametrize``): the layer
computes with ``EW(θ, T)`` while the optimiser updates ``θ``. After embedding, the transform is folded
into the weights (:func:`fold_exponential_weighting`), which leaves the model's function unchanged:
the model a thief receives is an ordinary network whose weights are ``EW(θ, T)``. EW is *not*
switched off at inference: the trained function is the one computed with ``EW(θ)``, and evaluating
with the raw ``θ`` would be a different (and untrained) function.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from .. import rules
from ..data import Splits
from ..keys import Key, fgsm_frontier, label_change, uniform_noise
from ..models import weight_layers
from ..train import History, TrainConfig, train_classifier
from .base import Generation, Retrains, Scheme, Watermarked, embed_by_finetuning, watermark
from .catalogue import register, register_knobs


class ExponentialWeighting(nn.Module):
    """Eq. 11: ``θ_i · exp(|θ_i| T) / max_j exp(|θ_j| T)``, computed as ``θ_i · exp(T (|θ_i| - max|θ|))``
    so that large ``T |θ|`` cannot overflow."""

    def __init__(self, T: float):
        super().__init__()
        self.T = T

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        a = w.abs()
        return w * torch.exp(self.T * (a - a.max()))


def apply_exponential_weighting(model: nn.Module, T: float = 2.0) -> nn.Module:
    """Register EW on the weight of every conv / linear layer (Eq. 12), in place."""
    for m in weight_layers(model):
        if parametrize.is_parametrized(m, "weight"):
            raise ValueError("the model already has a weight parametrization")
        parametrize.register_parametrization(m, "weight", ExponentialWeighting(T))
    return model


def fold_exponential_weighting(model: nn.Module) -> nn.Module:
    """Replace each EW-parametrized weight by ``EW(θ)`` itself (same function, plain layers), in place."""
    for m in weight_layers(model):
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return model


class _Retrains(Retrains):
    """Namba & Sakuma's retrained keys, verified by their rule."""
    paper_rule = "§3: watermark accuracy above τ_acc, 'a threshold parameter close to 1'"
    accuracy_threshold = True


@dataclass
class Namba2019(_Retrains):
    n_keys: int = 30           # §6.1.2: 30 randomly chosen training samples
    T: float | None = 2.0      # §6.1.2: T = 2.0 for all datasets; None: no EW (our ablation)
    key_per_batch: int = 4     # Table 5: key minibatch 4 (with minibatch 100)
    retrain_epochs: int = 5    # retraining the clean model (the paper gives no length; our choice)
    retrain_lr: float = 0.01

    name = "namba2019"

    def key_generation(self) -> Generation:
        return Generation("the owner's training images", True, "keys.label_change: a seeded choice of unmodified owner "
                          "images, each with a seeded label shift")

    def make_key(self, splits: Splits, seed: int = 0, clean: nn.Module | None = None) -> tuple[Key, Key]:
        """§5.1: unmodified owner training images with a changed label; ``new`` is the same from
        the test set (never embedded: a watermarked model should not answer it)."""
        k = splits.spec.num_classes
        key, idx = label_change(splits.owner, self.n_keys, k, seed)
        key.meta.update({**asdict(self), "scheme": self.name, "owner_indices": idx.tolist(), "part": "trained"})
        new, _ = label_change(splits.test, self.n_keys, k, seed + 1)
        new.meta.update({"scheme": self.name, "part": "new"})
        return key, new

    def train(self, model: nn.Module, splits: Splits, key: Key, cfg: TrainConfig, **fit_kw) -> History:
        """§5.2 steps (2)-(3): ``model`` is already trained on X; switch on EW, retrain on X ∪ K,
        then fold EW into the weights."""
        transform = None if self.T is None else (lambda m: apply_exponential_weighting(m, self.T))
        hist = embed_by_finetuning(model, splits, key, cfg, self.key_per_batch, weight_transform=transform, **fit_kw)
        fold_exponential_weighting(model)
        return hist


FINETUNE_KINDS = ("afs", "ds")


@dataclass
class FineTuneKeys(_Retrains):
    """Baselines embedded by fine-tuning with few keys (§3.1 (4)-(5), 30 keys each)."""
    kind: str = "afs"
    n_keys: int = 30
    eps: float = 0.1           # FGSM step for AFS keys (on the [0, 1] scale)
    key_per_batch: int = 4
    retrain_epochs: int = 5
    retrain_lr: float = 0.01

    name = "finetune-keys"

    def __post_init__(self):
        if self.kind not in FINETUNE_KINDS:
            raise ValueError(f"unknown fine-tuned key kind {self.kind!r}; choose one of: {', '.join(FINETUNE_KINDS)}")

    def key_generation(self) -> Generation:
        if self.kind == "ds":
            return Generation("nothing but the image shape and the number of classes", True,
                              "keys.uniform_noise: uniform noise images and random labels drawn from the seed alone")
        return Generation("the owner's trained clean model, and its data", False,
                          "keys.fgsm_frontier: FGSM examples of the owner's clean model that it misclassifies - adversarial "
                          "examples, the very kind of key Liu et al. forge; re-derivable only if the judge also gets the "
                          "committed clean model (make_key(clean=...)), and bit-exactly only where FGSM runs deterministically")

    def make_key(self, splits: Splits, seed: int = 0, clean: nn.Module | None = None) -> tuple[Key, Key]:
        """AFS keys need the trained ``clean`` model whose adversarial examples they are."""
        s = splits.spec
        if self.kind == "ds":
            key = uniform_noise(self.n_keys, (s.channels, s.image_size, s.image_size), s.num_classes, seed)
            new = uniform_noise(self.n_keys, (s.channels, s.image_size, s.image_size), s.num_classes, seed + 1)
        else:
            if clean is None:
                raise ValueError("AFS keys are adversarial examples of a trained model: pass clean=")
            key = fgsm_frontier(clean, splits.owner, self.n_keys, self.eps, seed)
            new = fgsm_frontier(clean, splits.test, self.n_keys, self.eps, seed + 1)
        for k, part in ((key, "trained"), (new, "new")):
            k.meta.update({**asdict(self), "scheme": self.name, "part": part})  # every field: the cache key
        return key, new

    def train(self, model: nn.Module, splits: Splits, key: Key, cfg: TrainConfig, **fit_kw) -> History:
        """Retrain the trained ``model`` on X ∪ K (key samples mixed into every minibatch)."""
        return embed_by_finetuning(model, splits, key, cfg, self.key_per_batch, **fit_kw)


# §3.1's key types: Zhang et al.'s content variants, unrelated and noise, AFS, DS and the proposal
CONTENT_VARIANTS = {
    "test-gray": dict(logo="TEST", color=(128,)), "test-blue": dict(logo="TEST", color=(0, 0, 255)),
    "symbol": dict(logo="star", color=(128,)), "heart-gray": dict(logo="heart", color=(128,)),
    "heart-red": dict(logo="heart", color=(255, 0, 0)),
}
KEY_KINDS = (*CONTENT_VARIANTS, "unrelated", "noise", "afs", "ds", "proposal", "label-change")


def check_kinds(kinds: list[str], spec) -> None:
    """Coloured logos need an RGB task (Namba §6.1.2 skip them on MNIST)."""
    rgb = [kind for kind in kinds if len(CONTENT_VARIANTS.get(kind, {}).get("color", ())) == 3]
    if rgb and spec.channels != 3:
        raise ValueError(f"knob 'kinds': {', '.join(rgb)} are coloured logos and need an RGB dataset (Namba §6.1.2 "
                         f"skip them on MNIST); {spec.name} is grey")


def key_scheme(kind: str, knobs: dict, channels: int) -> Scheme:
    """The Scheme that makes and embeds one of Namba & Sakuma's nine key types (§3.1, §6.1.2).
    Zhang et al.'s keys relabel every non-target class to ``target`` (Table 6 sizes)."""
    from .zhang2018 import Zhang2018

    if kind not in KEY_KINDS:
        raise ValueError(f"unknown key kind {kind!r}; choose one of: {', '.join(KEY_KINDS)}")
    z = dict(target=knobs["target"], key_fraction=knobs["key_fraction"], source=None)
    if kind in CONTENT_VARIANTS:
        variant = CONTENT_VARIANTS[kind]
        if len(variant["color"]) == 3 and channels != 3:
            raise ValueError(f"{kind!r} is a coloured logo: it needs an RGB dataset (Namba §6.1.2 skip it on MNIST)")
        return Zhang2018(kind="content", **z, **variant)
    if kind == "unrelated":
        return Zhang2018(kind="unrelated", target=knobs["target"], unrelated_dataset=knobs["unrelated_dataset"],
                         unrelated_class=knobs["unrelated_class"])
    if kind == "noise":
        return Zhang2018(kind="noise", noise_std=knobs["noise_std"], **z)
    retrain = dict(key_per_batch=knobs["key_per_batch"], retrain_epochs=knobs["retrain_epochs"],
                   retrain_lr=knobs["retrain_lr"])
    if kind in FINETUNE_KINDS:
        return FineTuneKeys(kind=kind, n_keys=knobs["n_keys"], eps=knobs["afs_eps"], **retrain)
    # "label-change": the proposal's keys embedded without EW, to isolate what EW contributes
    return Namba2019(n_keys=knobs["n_keys"], T=knobs["T"] if kind == "proposal" else None, **retrain)


@dataclass
class KeyTypeModels:
    """The owner's side of one Namba run: the clean model, then one watermarked model per key type."""
    clean: nn.Module
    marked: dict[str, Watermarked]

    @property
    def schemes(self) -> dict[str, Scheme]:
        return {k: w.scheme for k, w in self.marked.items()}

    @property
    def keys(self) -> dict[str, Key]:
        """The embedded keys."""
        return {k: w.key for k, w in self.marked.items()}

    @property
    def held_out(self) -> dict[str, Key]:
        """The same kind of key from held-out data, never embedded."""
        return {k: w.held_out for k, w in self.marked.items()}

    @property
    def models(self) -> dict[str, nn.Module]:
        return {k: w.model for k, w in self.marked.items()}


def embed_key_types(knobs: dict, splits: Splits, device: torch.device | None = None, tag: str = "namba2019",
                    progress: bool = True) -> KeyTypeModels:
    """Train (or load) the clean model and one watermarked model per key type in ``knobs['kinds']``:
    Zhang et al.'s keys by training from scratch on X ∪ K, AFS, DS and the proposal by retraining
    the clean model (``retrain_epochs`` at ``retrain_lr``) with ``key_per_batch`` keys in every batch."""
    tcfg = TrainConfig.from_knobs(knobs)
    monitor = {"val": splits.test}
    clean = train_classifier(f"{tag}-clean", knobs["model"], splits, tcfg, monitor=monitor, device=device,
                             progress=progress)[:2]
    marked = {k: watermark(key_scheme(k, knobs, splits.spec.channels), f"{tag}-{k}", knobs["model"], splits, tcfg,
                           knobs["seed"], clean=clean, monitor=monitor, device=device, progress=progress)[0]
              for k in knobs["kinds"]}
    return KeyTypeModels(clean[0], marked)


def embedding_remedy(knobs: dict, prefix: str = "") -> str:
    """What to raise when a key type does not embed (for :meth:`wmlib.zoo.Zoo.gate`); ``prefix``
    names an ablation's own knobs (e.g. ``digits_``)."""
    return (f"raise -p {prefix}epochs (now {knobs['epochs']}) for Zhang et al.'s keys, -p {prefix}retrain_epochs (now "
            f"{knobs['retrain_epochs']}) or -p key_per_batch (now {knobs['key_per_batch']}) for AFS, DS and the "
            f"proposal; each key sample is seen about retrain_epochs x key_per_batch x (owner images / batch_size) "
            f"/ n_keys times")


# --------------------------------------------------------------------------- the catalogue's entries

register("namba-proposal", lambda s: Namba2019(**s))
register("namba-afs", lambda s: FineTuneKeys(kind="afs", **s))
register("namba-ds", lambda s: FineTuneKeys(kind="ds", **s))


def _check_knobs(knobs: dict, spec, own: bool) -> None:
    if own:  # the chapter's key kinds (Zhang et al.'s chapter has kinds of its own)
        check_kinds(knobs["kinds"], spec)


_POSITIVE = rules.number(0.0, rules.INF, lo_open=True)
register_knobs("namba2019", {
    "kinds": rules.list_of(rules.choice(KEY_KINDS)), "n_keys": rules.integer(1), "T": rules.number(0.0, rules.INF, lo_open=True, none=True),
    "afs_eps": rules.number(0.0, 1.0, lo_open=True), "retrain_epochs": rules.integer(1), "retrain_lr": _POSITIVE,
    "ae_sweep": rules.list_of(rules.integer(1)), "detection_samples": rules.integer(1), "auc_sizes": rules.list_of(rules.integer(1)),
    "auc_repeats": rules.integer(1)}, _check_knobs)
