"""Adversarial training as removal (Madry et al., ICLR 2018): the thief fine-tunes the stolen model
on PGD examples of itself (L∞ ball of radius ε on the [0, 1] pixel scale, ``steps`` steps of size
α, random start), with their true labels, mixed into every batch with clean images (the
Watermark-Robustness-Toolbox appends adversarial examples to the clean data; Madry et al. train on
adversarial examples alone: ``mix = 1``). Madry's MNIST setting is ε 0.3, 40 steps of 0.01; on
Fashion-MNIST ε 0.3 erases most of the task, so the book's default is smaller (see the profile).

The PGD examples come from torchattacks (``torchattacks.PGD``, Madry's attack, run with the model in
eval mode and its mode restored), a well-kept PyTorch library; the Adversarial Robustness Toolbox's
``AdversarialTrainerMadryPGD`` would run its own training loop (and assumes 0-255 pixels by
default), so the fine-tuning itself goes through the book's loop and model cache. GradSigns' FGSM
variant is :func:`wmlib.attacks.model.adversarial_finetune`.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import torchattacks
from torch import nn

from .. import rules
from ..data import Split
from ..train import TrainConfig, fit_cached
from ..verify import Oracle
from .base import Attack, Suspect, Threat, register
from .model import mixed_batches


def pgd_finetune(model: nn.Module, data: Split, cfg: TrainConfig, eps: float, alpha: float, steps: int,
                 mix: float = 0.5, tag: str = "adversarial-training") -> nn.Module:
    """A copy of ``model`` fine-tuned with ``cfg`` on ``data``, the first ``mix`` share of every batch
    replaced by PGD examples (``eps``, ``alpha``, ``steps``, random start) of the model as it is at
    that step, with their true labels."""
    if not 0.0 < eps <= 1.0:
        raise ValueError(f"eps must be in (0, 1] (the [0, 1] pixel scale), got {eps}")
    if not 0.0 < alpha <= eps:
        raise ValueError(f"alpha (the step) must be in (0, eps] = (0, {eps}], got {alpha}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    model = copy.deepcopy(model)
    pgd = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    hook = mixed_batches(lambda m, x, y: pgd(x, y), mix, "mix")
    fit_cached(model, data, cfg, tag=tag, batch_hook=hook, device=next(model.parameters()).device,
               describe={"batch_hook": "torchattacks.PGD examples (random start, eval mode) with their labels replace "
                                       "the first share of each batch", "torchattacks": torchattacks.__version__,
                         "eps": eps, "alpha": alpha, "steps": steps, "mix": mix})
    return model


class AdversarialTraining(Attack):
    question = "survives adversarial training"
    name, side = "adversarial-training", "model"
    about = "fine-tuned on PGD examples of itself mixed with clean images (Madry et al.)"
    knobs = {"finetune_lr": rules.number(0.0, rules.INF, lo_open=True), "advtrain_epochs": rules.integer(1),
             "advtrain_eps": rules.number(0.0, 1.0, lo_open=True), "advtrain_alpha": rules.number(0.0, 1.0, lo_open=True),
             "advtrain_steps": rules.integer(1), "advtrain_mix": rules.number(0.0, 1.0, lo_open=True)}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        k = threat.settings
        cfg = replace(threat.finetune, epochs=k["advtrain_epochs"])
        out = pgd_finetune(model, threat.thief, cfg, k["advtrain_eps"], k["advtrain_alpha"], k["advtrain_steps"],
                           k["advtrain_mix"], tag=f"{threat.tag}-adversarial-training")
        return Suspect(Oracle(out), {"epochs": k["advtrain_epochs"]})


class AdversarialExtraction(Attack):
    """The reference's adversarial model extraction: a fresh model of the stolen architecture trained
    from scratch (the extraction recipe) on the API's top-1 answers to the thief's images, with PGD
    examples of itself mixed into every batch (the adversarial-training knobs; the reference: ε 0.01 to
    0.25, 40 steps of 0.01, 60 epochs on all 50,000 CIFAR-10 images)."""
    question, family = "survives the reference toolkit's extraction", True
    name, side = "adversarial-extraction", "model"
    extraction = True
    answers = "labels"
    about = "a fresh model trained on the API's labels with PGD examples of itself mixed in"
    knobs = {"extract_epochs": rules.integer(1), "extract_lr": rules.number(0.0, rules.INF, lo_open=True),
             **{k: v for k, v in AdversarialTraining.knobs.items() if k.startswith("advtrain_") and k != "advtrain_epochs"}}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        from .extraction import _recipe, fresh_model, stolen_labels

        k, o = threat.settings, Oracle(model)
        y = stolen_labels(o, threat.thief.x)
        cfg = _recipe(threat)
        student = fresh_model(threat.model_name, threat.spec, cfg.seed).to(next(model.parameters()).device)
        out = pgd_finetune(student, Split(threat.thief.x, y), cfg, k["advtrain_eps"], k["advtrain_alpha"], k["advtrain_steps"],
                           k["advtrain_mix"], tag=f"{threat.tag}-adversarial-extraction")
        return Suspect(Oracle(out.eval()), {"api_queries": o.queries, "student": threat.model_name})


register(AdversarialTraining())
register(AdversarialExtraction())
