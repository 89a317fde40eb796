"""Model modification as the reference toolkit runs it (Lukas et al., SoK, S&P 2022): the stolen
model changed and trained on the thief's own images, each with the thief's fine-tuning recipe
(``threat.finetune``: optimiser, learning rate, batch size) and the reference's epochs.

* ``ftll``: only the last layer fine-tuned (true labels; the reference: 5 epochs);
* ``rtll``: the last layer re-initialised and trained alone (the API's labels; 10 epochs);
* ``rtal``: the last layer re-initialised, every layer trained (the API's labels; 5 epochs);
* ``weight-shifting`` (the SoK's own attack): each conv layer's mean filter, times λ, subtracted
  from every filter, plus Gaussian noise of the layer's own spread, then fine-tuning (the API's
  labels; λ 1.5, 10 epochs);
* ``label-smoothing``: fine-tuned on the API's labels smoothed by ε (the reference: ε 0.3, 5
  epochs, its learning rate ×10); PyTorch's ``label_smoothing`` target: ``(1 - ε) onehot + ε / K``.
  The reference's own loss moves the label mass of the top-2..k classes, which a top-1 label has
  none of;
* ``label-noising``: fine-tuned on the API's labels mixed with random label rows,
  ``(1 - ε) onehot + ε u / sum(u)`` with ``u`` uniform per image (the reference's loss; it ships no
  CIFAR-10 setting: ε 0.3 and 5 epochs, as its label smoothing);
* ``weight-quantization``: every parameter tensor rounded to the middles of ``2^bits`` equal bins
  between its minimum and maximum, then one epoch of fine-tuning (the API's labels; 5 bits);
  beside the suite's post-training ``quantize``;
* ``transfer-learning`` (the reference's sense, not Wen et al.'s ``transfer``): no stolen weight; a
  clean network pretrained on public data, head replaced, fine-tuned on the thief's images;
* ``regularization``: fine-tuned with a strong L2 weight decay (0.1) for a few epochs (5), then
  fine-tuned without it (true labels; the reference fine-tunes up to 50 epochs with a patience of
  5, here a fixed number).

"The API's labels" are the stolen model's top-1 answers to the thief's images (the reference's
``true_labels: False``), bought with queries the report counts. Which layer is last: the last
conv / linear layer, linear (:func:`wmlib.models.classifier`), re-initialised with its own ``reset_parameters``
under the thief's seed.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from .. import data as _data
from .. import rules
from ..data import Split
from ..models import classifier
from ..train import TrainConfig, fit_cached, preserved_rng
from ..verify import Oracle
from .base import Attack, Suspect, Threat, register
from .extraction import pretrained_backbone, stolen_labels

_EPOCHS = rules.integer(1)
_POS = rules.number(0.0, rules.INF, lo_open=True)


def reset_last_layer(model: nn.Module, seed: int) -> nn.Module:
    """A copy whose classifier is re-initialised (its ``reset_parameters``, seeded)."""
    model = copy.deepcopy(model)
    with preserved_rng():
        torch.manual_seed(seed)
        classifier(model).reset_parameters()
    return model


def shift_weights(model: nn.Module, lam: float, noise: float, seed: int) -> nn.Module:
    """The SoK's weight shifting: in every conv layer, ``W <- W - lam * mean_f(W) - noise * N(0, std(W))``
    with ``mean_f`` the mean over the output filters (one mean filter, subtracted from each)."""
    if not lam >= 0 or not noise >= 0:
        raise ValueError(f"lambda and the noise scale must be >= 0, got {lam}, {noise}")
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                w = m.weight
                w -= lam * w.mean(0, keepdim=True) + noise * w.std() * torch.randn(w.shape, generator=g).to(w)
    return model


def quantize_bins(model: nn.Module, bits: int) -> nn.Module:
    """A copy with every parameter tensor mapped to the middles of ``2^bits`` equal bins between its
    minimum and maximum (the reference's weight quantization; the ends fall in the end bins)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f"bits must be an integer in 1..16, got {bits!r}")
    model = copy.deepcopy(model)
    n = 2 ** bits
    with torch.no_grad():
        for p in model.parameters():
            lo, hi = p.min(), p.max()
            if hi == lo:
                continue
            width = (hi - lo) / n
            idx = torch.clamp(torch.floor((p - lo) / width), 0, n - 1)
            p.copy_(lo + (idx + 0.5) * width)
    return model


def smoothed(labels: torch.Tensor, classes: int, eps: float) -> torch.Tensor:
    """``(1 - eps) onehot + eps / classes`` rows (PyTorch's ``label_smoothing`` target)."""
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"epsilon must be in [0, 1), got {eps}")
    return (1.0 - eps) * nn.functional.one_hot(labels, classes).float() + eps / classes


def _train(model: nn.Module, data: Split, cfg: TrainConfig, what: dict, only_last: bool = False) -> nn.Module:
    """Fine-tune ``model`` in place (through the model cache; ``what`` names the attack and its
    settings in the cache key, since which layers train is not in the weights)."""
    if only_last:
        keep = set(map(id, classifier(model).parameters()))
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
    try:
        fit_cached(model, data, cfg, tag=f"thief-{what['attack']}", describe=what, device=next(model.parameters()).device)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return model


class _Modification(Attack):
    question, family = "survives the reference toolkit's model modifications", True
    side = "model"

    def _labels(self, model: nn.Module, threat: Threat, stolen: bool) -> tuple[Split, dict]:
        if not stolen:
            return threat.thief, {"thief_images": len(threat.thief)}
        o = Oracle(model)
        y = stolen_labels(o, threat.thief.x)
        return Split(threat.thief.x, y), {"thief_images": len(threat.thief), "api_queries": o.queries}


class LastLayer(_Modification):
    """FTLL / RTLL / RTAL: the classifier fine-tuned or re-initialised; it alone or every layer trained."""

    def __init__(self, name: str, reset: bool, train_all: bool, stolen: bool, about: str):
        self.name, self.reset, self.train_all, self.stolen, self.about = name, reset, train_all, stolen, about
        self.knobs = {f"{name}_epochs": _EPOCHS}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        data, report = self._labels(model, threat, self.stolen)
        m = reset_last_layer(model, threat.seed) if self.reset else copy.deepcopy(model)
        cfg = replace(threat.finetune, epochs=threat.settings[f"{self.name}_epochs"])
        _train(m, data, cfg, {"attack": self.name, "reset": self.reset, "all layers": self.train_all,
                              "labels": "api" if self.stolen else "true"}, only_last=not self.train_all)
        return Suspect(Oracle(m), report)


class WeightShifting(_Modification):
    name, about = "weight-shifting", "each conv layer's mean filter subtracted (x lambda) plus noise, then fine-tuned"
    knobs = {"shift_lambda": rules.number(0.0, rules.INF), "shift_noise": rules.number(0.0, rules.INF),
             "shift_epochs": _EPOCHS}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        k = threat.settings
        data, report = self._labels(model, threat, True)
        m = shift_weights(model, k["shift_lambda"], k["shift_noise"], threat.seed)
        cfg = replace(threat.finetune, epochs=k["shift_epochs"])
        _train(m, data, cfg, {"attack": self.name, "lambda": k["shift_lambda"], "noise": k["shift_noise"]})
        return Suspect(Oracle(m), report)


class LabelSmoothing(_Modification):
    name, about = "label-smoothing", "fine-tuned on the API's labels smoothed by epsilon (learning rate x10)"
    knobs = {"label_smoothing_eps": rules.number(0.0, 1.0, hi_open=True), "label_smoothing_epochs": _EPOCHS}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        k = threat.settings
        data, report = self._labels(model, threat, True)
        soft = Split(data.x, smoothed(data.y, threat.spec.num_classes, k["label_smoothing_eps"]))
        cfg = replace(threat.finetune, epochs=k["label_smoothing_epochs"], lr=10 * threat.finetune.lr)
        m = _train(copy.deepcopy(model), soft, cfg, {"attack": self.name, "eps": k["label_smoothing_eps"]})
        return Suspect(Oracle(m), report)


def noised(labels: torch.Tensor, classes: int, eps: float, seed: int) -> torch.Tensor:
    """``(1 - eps) onehot + eps u / sum(u)`` rows, ``u`` uniform per image (seeded)."""
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {eps}")
    u = torch.rand(len(labels), classes, generator=torch.Generator().manual_seed(seed))
    return (1.0 - eps) * nn.functional.one_hot(labels, classes).float() + eps * u / u.sum(1, keepdim=True)


class LabelNoising(_Modification):
    name, about = "label-noising", "fine-tuned on the API's labels mixed with random label rows"
    knobs = {"label_noise_eps": rules.number(0.0, 1.0), "label_noising_epochs": _EPOCHS}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        k = threat.settings
        data, report = self._labels(model, threat, True)
        soft = Split(data.x, noised(data.y, threat.spec.num_classes, k["label_noise_eps"], threat.seed))
        cfg = replace(threat.finetune, epochs=k["label_noising_epochs"])
        m = _train(copy.deepcopy(model), soft, cfg, {"attack": self.name, "eps": k["label_noise_eps"]})
        return Suspect(Oracle(m), report)


class WeightQuantization(_Modification):
    name, about = "weight-quantization", "every weight rounded to 2^bits levels, then one epoch of fine-tuning"
    knobs = {"wq_bits": rules.integer(1, 16), "wq_epochs": _EPOCHS}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        k = threat.settings
        data, report = self._labels(model, threat, True)
        cfg = replace(threat.finetune, epochs=k["wq_epochs"])
        m = _train(quantize_bins(model, k["wq_bits"]), data, cfg, {"attack": self.name, "bits": k["wq_bits"]})
        return Suspect(Oracle(m), report)


class Regularization(_Modification):
    name, about = "regularization", "fine-tuned under a strong L2 penalty, then without it"
    knobs = {"l2_decay": _POS, "l2_epochs": _EPOCHS, "l2_recovery_epochs": _EPOCHS}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        k = threat.settings
        m = copy.deepcopy(model)
        _train(m, threat.thief, replace(threat.finetune, epochs=k["l2_epochs"], weight_decay=k["l2_decay"]),
               {"attack": self.name, "phase": "decay", "l2": k["l2_decay"]})
        _train(m, threat.thief, replace(threat.finetune, epochs=k["l2_recovery_epochs"]), {"attack": self.name, "phase": "recovery"})
        return Suspect(Oracle(m), {"thief_images": len(threat.thief)})


class TransferLearning(Attack):
    """The reference's transfer learning: no stolen weights at all. A clean network of the stolen
    architecture pretrained on public data (the thieves' half of ``pretrain_dataset``, here, where
    the reference downloads an ImageNet ResNet-34), its last layer replaced, fine-tuned on the
    thief's images with their true labels for ``tl_epochs`` (the reference: 5) with the thief's
    fine-tuning recipe. Removal by not copying: it tests whether the thief needs the model at all
    (its accuracy against the budget), not whether a watermark survives in it."""
    question, family = "survives the reference toolkit's extraction", True
    name, side = "transfer-learning", "model"
    extraction = True
    answers = "none"
    about = "a clean network pretrained on public data, head replaced, fine-tuned on the thief's images (no stolen weights)"
    knobs = {"pretrain_dataset": rules.choice(_data.REGISTRY), "pretrain_epochs": _EPOCHS, "pretrain_lr": _POS,
             "tl_epochs": _EPOCHS}

    def check(self, settings: dict, spec: _data.DatasetSpec) -> None:
        other = _data.spec(settings["pretrain_dataset"])
        if other.source == spec.source:
            raise ValueError(f"pretrain_dataset {settings['pretrain_dataset']!r} is the task's own distribution: the "
                             "backbone is pretrained on other public data")
        if other.num_classes > spec.num_classes:
            raise ValueError(f"pretrain_dataset {settings['pretrain_dataset']!r} has more classes than the task")

    def public_images(self, settings: dict, spec: _data.DatasetSpec) -> list[tuple[str, bool, str]]:
        return [(settings["pretrain_dataset"], True, "thief")]

    def images(self, threat: Threat) -> torch.Tensor:
        x, _ = _data.public_share(threat.settings["pretrain_dataset"], True, "thief")
        return _data.to_shape(x, threat.spec.channels, threat.spec.image_size)

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        k, device = threat.settings, next(model.parameters()).device
        self.check(k, threat.spec)
        pre = TrainConfig.from_knobs(k, epochs=k["pretrain_epochs"], lr=k["pretrain_lr"], seed=threat.seed)
        backbone = pretrained_backbone(threat.model_name, threat.spec, k["pretrain_dataset"], pre,
                                       tag=f"{threat.tag}-pretrained", device=device)
        net = reset_last_layer(backbone, threat.seed)
        _train(net, threat.thief, replace(threat.finetune, epochs=k["tl_epochs"]),
               {"attack": self.name, "backbone": k["pretrain_dataset"], "pretrain": pre.cache_fields()})
        return Suspect(Oracle(net.eval()), {"thief_images": len(threat.thief), "pretrained_on": k["pretrain_dataset"]})


MODIFICATIONS = (
    LastLayer("ftll", reset=False, train_all=False, stolen=False, about="only the last layer fine-tuned (true labels)"),
    LastLayer("rtll", reset=True, train_all=False, stolen=True, about="the last layer re-initialised and trained alone "
                                                                      "(the API's labels)"),
    LastLayer("rtal", reset=True, train_all=True, stolen=True, about="the last layer re-initialised, every layer "
                                                                     "trained (the API's labels)"),
    WeightShifting(), LabelSmoothing(), LabelNoising(), WeightQuantization(), Regularization(), TransferLearning(),
)
for _attack in MODIFICATIONS:
    register(_attack)
