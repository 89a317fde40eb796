"""Model extraction: the thief never keeps the stolen weights. It queries the stolen API and trains a
fresh model, from scratch, on the answers.

* **Retraining on stolen labels** (Tramèr et al., USENIX Security 2016): the thief's own images,
  labelled by the API's top-1 answer; the same architecture as the stolen model, or another one
  (the thief does not know the owner's).
* **Distillation** (Hinton et al. 2015): the same on the API's scores, softened with a temperature
  ``T``; the student minimises ``T² · KL(teacher_T ‖ student_T)`` (the Watermark-Robustness-Toolbox
  distils with T = 3 and the soft term alone).
* **Knockoff Nets** (Orekondy et al., CVPR 2019, the random policy): the thief has no task data
  at all and queries the API with another dataset's images, at a stated budget of queries, and
  trains on the API's scores.

Libraries considered: the Adversarial Robustness Toolbox has ``CopycatCNN`` and ``KnockoffNets``,
but they train through ART's own classifier wrappers and loops (one sample at a time in the adaptive
policy, batch size 1 by default), so the thief's model would not go through the book's one training
loop and model cache, and their random policy is a query, a label and a fit, which is what this
module does with ``wmlib.train.fit``. torchattacks, BackdoorBox and TrojanZoo have no extraction.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from .. import data as _data
from .. import models, rules
from ..data import Split
from ..train import TrainConfig, fit_cached, preserved_rng
from ..verify import Oracle
from .base import Attack, Suspect, Threat, register

LABELS = ("top-1", "scores")


class Tempered(nn.Module):
    """``model``'s logits divided by a temperature ``T``: a student trained through it on teacher
    scores softened with the same ``T`` learns the teacher's softened distribution (Hinton et al.)."""

    def __init__(self, model: nn.Module, T: float):
        super().__init__()
        self.model, self.T = model, float(T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.T


def stolen_labels(oracle: Oracle, x: torch.Tensor, labels: str = "top-1", T: float = 1.0) -> torch.Tensor:
    """What the thief keeps of the API's answers to ``x``: the top-1 class (``'top-1'``, int64), or
    the scores softened with temperature ``T`` (``'scores'``: ``softmax(log p / T)``, which is
    ``softmax(z / T)`` of the API's logits ``z``; float rows that sum to 1)."""
    if labels not in LABELS:
        raise ValueError(f"unknown labels {labels!r}; choose one of: {', '.join(LABELS)}")
    if not T > 0:
        raise ValueError(f"the temperature T must be > 0, got {T}")
    p = oracle(x).double()
    if labels == "top-1":
        return p.argmax(1)
    return torch.softmax(p.clamp_min(torch.finfo(torch.float64).tiny).log() / T, dim=1).float()


def fresh_model(model_name: str, spec: _data.DatasetSpec, seed: int) -> nn.Module:
    """A new ``model_name`` for the task, its initial weights from ``seed`` alone (the global random
    state is left as it was): every student a thief trains from scratch starts here."""
    with preserved_rng():
        torch.manual_seed(seed)
        return models.build(model_name, spec.channels, spec.num_classes)


def extract(oracle: Oracle, images: torch.Tensor, model_name: str, spec: _data.DatasetSpec, cfg: TrainConfig, *,
            labels: str = "top-1", T: float = 1.0, tag: str = "extract",
            device: torch.device | None = None) -> tuple[nn.Module, dict]:
    """A fresh ``model_name`` (initialised with ``cfg.seed``) trained from scratch with ``cfg`` on
    ``images`` and the API's answers to them (:func:`stolen_labels`); with scores at ``T`` != 1
    the loss is Hinton's ``T² · CE(student_T, teacher_T)`` (the KL divergence up to the teacher's
    entropy, a constant). Goes through the model cache. Returns the student and what it cost."""
    before = oracle.queries
    y = stolen_labels(oracle, images, labels, T)
    queries = oracle.queries - before
    student = fresh_model(model_name, spec, cfg.seed)
    soft = labels == "scores" and T != 1.0
    net = Tempered(student, T) if soft else student
    fit_kw = {}
    if soft:
        def t_squared(model, x, y, logits):  # the CE term at T is in fit's loss already: add (T² - 1) of it
            return (T * T - 1.0) * nn.functional.cross_entropy(logits.float(), y)
        fit_kw["extra_loss"] = t_squared
    hist = fit_cached(net, Split(images, y), cfg, tag=tag, device=device,
                      describe={"student": model_name, "labels": labels, "temperature": T,
                                **({"extra_loss": "(T^2 - 1) x the soft cross-entropy: the loss is T^2 x CE at T"}
                                   if soft else {})}, **fit_kw)
    student.eval()
    return student, {"api_queries": queries, "student": model_name, "epochs": len(hist.epoch),
                     "final_train_acc": hist.train_acc[-1] if hist.train_acc else float("nan")}


# --------------------------------------------------------------------------- the suite's extraction attacks

_COUNT, _POS = rules.integer(1), rules.number(0.0, rules.INF, lo_open=True)
_RECIPE = {"extract_epochs": _COUNT, "extract_lr": _POS}


def _recipe(threat: Threat) -> TrainConfig:
    """The thief's recipe for a model from scratch: the task's public training recipe (optimiser,
    schedule, batch size) with ``extract_epochs`` at ``extract_lr``, seeded by the cell."""
    k = threat.settings
    return TrainConfig.from_knobs(k, epochs=k["extract_epochs"], lr=k["extract_lr"], seed=threat.seed)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class Retraining(Attack):
    """Tramèr et al.: the thief labels its own images with the API's top-1 answers and trains a model
    from scratch; ``model_knob`` names another architecture (None: the stolen model's)."""
    question = "survives model extraction (retraining, distillation, knockoff)"
    side = "model"
    extraction = True
    answers = "labels"

    def __init__(self, name: str = "retrain-labels", model_knob: str | None = None, about: str = ""):
        self.name, self.model_knob = name, model_knob
        self.about = about or "a fresh model of the same architecture trained on the API's top-1 answers to the thief's images"
        self.knobs = {**_RECIPE, **({model_knob: rules.choice(models.REGISTRY)} if model_knob else {})}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        arch = threat.settings[self.model_knob] if self.model_knob else threat.model_name
        student, report = extract(Oracle(model), threat.thief.x, arch, threat.spec, _recipe(threat), labels="top-1",
                                  tag=f"{threat.tag}-{self.name}", device=_device(model))
        return Suspect(Oracle(student), report)


class Distillation(Attack):
    """Hinton et al.: a fresh student of the stolen architecture trained on the API's scores at temperature T."""
    question = "survives model extraction (retraining, distillation, knockoff)"
    name, side = "distillation", "model"
    extraction = True
    answers = "scores"
    about = "a fresh model trained on the API's scores softened at temperature T (Hinton et al.)"
    knobs = {**_RECIPE, "distill_T": _POS, "distill_lr": _POS}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        # T² · CE at T moves the logits T times as hard as CE at 1: the recipe's rate is its own knob
        cfg = replace(_recipe(threat), lr=threat.settings["distill_lr"])
        student, report = extract(Oracle(model), threat.thief.x, threat.model_name, threat.spec, cfg,
                                  labels="scores", T=threat.settings["distill_T"], tag=f"{threat.tag}-{self.name}",
                                  device=_device(model))
        return Suspect(Oracle(student), report)


def knockoff_queries(dataset: str, budget: int, spec: _data.DatasetSpec, seed: int) -> torch.Tensor:
    """``budget`` images of ``dataset`` (the thieves' half of its training split,
    :func:`wmlib.data.public_share`, a seeded draw without replacement) in the task's shape: the
    thief's out-of-distribution queries, never an image an owner drew keys from."""
    x, _ = _data.public_share(dataset, True, "thief")
    if not 1 <= budget <= len(x):
        raise ValueError(f"knockoff_budget must be in [1, {len(x)}] (the thieves' half of {dataset}'s training images), "
                         f"got {budget}")
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:budget]
    return _data.to_shape(x[idx], spec.channels, spec.image_size)


class Knockoff(Attack):
    """Orekondy et al., the random policy: no task data; ``knockoff_budget`` queries drawn from
    another dataset (``knockoff_dataset``, the thieves' half of it), answered with the API's scores,
    train a fresh model."""
    question = "survives model extraction (retraining, distillation, knockoff)"
    name, side = "knockoff", "model"
    extraction = True
    answers = "scores"
    about = "a fresh model trained on the API's scores for another dataset's images (no task data; a query budget)"
    knobs = {**_RECIPE, "knockoff_dataset": rules.choice(_data.REGISTRY), "knockoff_budget": _COUNT}

    def check(self, settings: dict, spec: _data.DatasetSpec) -> None:
        if _data.spec(settings["knockoff_dataset"]).source == spec.source:
            raise ValueError(f"knockoff_dataset {settings['knockoff_dataset']!r} is the task's own distribution: a "
                             "knockoff queries another dataset (the thief has no task data)")

    def public_images(self, settings: dict, spec: _data.DatasetSpec) -> list[tuple[str, bool, str]]:
        return [(settings["knockoff_dataset"], True, "thief")]

    def images(self, threat: Threat) -> torch.Tensor:
        k = threat.settings
        return knockoff_queries(k["knockoff_dataset"], k["knockoff_budget"], threat.spec, threat.seed)

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        k = threat.settings
        self.check(k, threat.spec)
        student, report = extract(Oracle(model), self.images(threat), threat.model_name, threat.spec, _recipe(threat),
                                  labels="scores", tag=f"{threat.tag}-{self.name}", device=_device(model))
        return Suspect(Oracle(student), {**report, "dataset": k["knockoff_dataset"]})


def averaged_labels(oracle: Oracle, x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """The API's scores for ``x`` averaged over ``n`` augmented queries of each image (random crop
    with 4 pixels of zero padding and a horizontal flip, as the reference's CIFAR-10 loader
    augments): what the reference's averaging retraining labels with (made to remove DAWN, whose
    API flips a keyed share of its answers)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of augmented queries must be a positive integer, got {n!r}")
    from ..train import augment_batch, to_float

    g = torch.Generator().manual_seed(seed)
    xf = to_float(x)
    return torch.stack([oracle(augment_batch(xf, generator=g)) for _ in range(n)]).mean(0)


class SmoothRetraining(Attack):
    """The reference's averaging retraining: a fresh model of the stolen architecture trained on the
    API's scores averaged over ``smooth_queries`` augmented queries of each of the thief's images."""
    question, family = "survives the reference toolkit's extraction", True
    name, side = "smooth-retraining", "model"
    extraction = True
    answers = "scores"
    about = "a fresh model trained on the API's scores averaged over augmented queries of each image"
    knobs = {**_RECIPE, "smooth_queries": _COUNT}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        o = Oracle(model)
        y = averaged_labels(o, threat.thief.x, threat.settings["smooth_queries"], threat.seed)
        cfg = _recipe(threat)
        student = fresh_model(threat.model_name, threat.spec, cfg.seed).to(_device(model))
        fit_cached(student, Split(threat.thief.x, y), cfg, tag=f"{threat.tag}-{self.name}", device=_device(model),
                   describe={"student": threat.model_name, "labels": f"scores averaged over {threat.settings['smooth_queries']} "
                                                                      "augmented queries"})
        student.eval()
        return Suspect(Oracle(student), {"api_queries": o.queries, "student": threat.model_name})


class Ensemble(nn.Module):
    """The members' averaged probabilities, as log-probabilities (a softmax of them gives the average)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x):
        p = torch.stack([m(x).float().softmax(1) for m in self.members]).mean(0)
        return p.clamp_min(torch.finfo(p.dtype).tiny).log()


class EnsembleExtraction(Attack):
    """The reference's ensemble: ``ensemble_size`` fresh models of the stolen architecture, each trained
    on its own disjoint share of the thief's images with the API's top-1 answers; the thief serves
    their averaged probabilities."""
    question, family = "survives the reference toolkit's extraction", True
    name, side = "ensemble-extraction", "model"
    extraction = True
    answers = "labels"
    about = "fresh models on disjoint shares of the thief's images (the API's labels), their average served"
    knobs = {**_RECIPE, "ensemble_size": rules.integer(2)}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        k, o = threat.settings["ensemble_size"], Oracle(model)
        if len(threat.thief) < k:
            raise ValueError(f"ensemble_size {k} is more than the thief's {len(threat.thief)} images")
        order = torch.randperm(len(threat.thief), generator=torch.Generator().manual_seed(threat.seed))
        members = []
        for i, part in enumerate(order.chunk(k)):
            cfg = replace(_recipe(threat), seed=threat.seed + i)
            member, _ = extract(o, threat.thief.x[part], threat.model_name, threat.spec, cfg, labels="top-1",
                                tag=f"{threat.tag}-{self.name}", device=_device(model))
            members.append(member)
        return Suspect(Oracle(Ensemble(members).eval()), {"api_queries": o.queries, "members": k})


def pretrained_backbone(model_name: str, spec: _data.DatasetSpec, dataset: str, cfg: TrainConfig, tag: str = "pretrained",
                        device: torch.device | None = None) -> nn.Module:
    """A clean ``model_name`` trained (from ``cfg.seed``) on the thieves' half of a public
    ``dataset``'s training split, in the task's shape and with its class count: the stand-in for a
    downloaded pretrained network (none can be downloaded here). Cached like every model."""
    from ..train import fit, tensor_digest, train_or_load

    x, y = _data.public_share(dataset, True, "thief")
    if int(y.max()) >= spec.num_classes:
        raise ValueError(f"the pretraining dataset {dataset!r} has more classes than the task's {spec.num_classes}")
    data = Split(_data.to_shape(x, spec.channels, spec.image_size), y)

    def build() -> nn.Module:
        torch.manual_seed(cfg.seed)
        return models.build(model_name, spec.channels, spec.num_classes)

    config = {"model": model_name, "data": tensor_digest(data.x, data.y), "train": cfg.cache_fields(), "dataset": dataset}
    net, _, _ = train_or_load(tag, config, build, lambda m: fit(m, data, cfg, device=device, progress=False), device)
    return net


register(Retraining())
register(Retraining("retrain-other-arch", "extract_other_model",
                    "the same with another architecture (the thief does not know the owner's)"))
register(Distillation())
register(Knockoff())
register(SmoothRetraining())
register(EnsembleExtraction())
