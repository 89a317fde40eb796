"""Backdoor defences used as removals (BackdoorBench and TrojanZoo run them on backdoored models; a
backdoor-like watermark is one): the thief holds the stolen model and its own clean images.

* ``nad``, Neural Attention Distillation (Li et al., ICLR 2021): a teacher is the stolen model
  fine-tuned on the thief's images (``nad_teacher_epochs``); the stolen model is then trained on
  the same images (``nad_epochs``) with cross-entropy plus ``nad_beta`` times, at each attention
  point, the mean squared difference between the student's and the teacher's attention maps (the
  authors' ``AT`` loss, from Zagoruyko & Komodakis' attention transfer). An attention map is the
  channel sum of ``|activation|^p`` (p = 2), divided by its spatial L2 norm; the points are the activations after the convolutional layers (LeNets, VGG, C&W) or the
  residual blocks' outputs (ResNets), as the authors take their wide ResNet's three groups.
  BackdoorBench's defaults: teacher 10 epochs, student 20, SGD at 0.01 (momentum 0.9), β 500 / 1000
  / 1000 (the authors' CIFAR-10 runs: 5,000), 5 % clean data; here one β for every point (5,000)
  and the thief's own images.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from .. import rules
from ..models import BasicBlock
from ..train import fit_cached
from ..verify import Oracle
from .base import Attack, NotApplicable, Suspect, Threat, register


def attention_points(model: nn.Module) -> list[nn.Module]:
    """Where NAD reads attention: the residual blocks of a ResNet, else the ReLU right after each
    conv layer (module order). Raises ValueError for a model with neither."""
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    if blocks:
        return blocks
    points, after_conv = [], False
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            after_conv = True
        elif after_conv and isinstance(m, (nn.ReLU, nn.ReLU6)):
            points.append(m)
            after_conv = False
    if not points:
        raise ValueError(f"{type(model).__name__}: no residual block and no ReLU after a conv layer to read attention at")
    return points


def attention_map(features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """The authors' attention: ``sum_c |f|^p`` per position, divided by its L2 norm over the positions
    (flattened: one row per image)."""
    a = features.float().abs().pow(p).sum(1).flatten(1)
    return a / (a.norm(dim=1, keepdim=True) + 1e-6)


def _capture(points: list[nn.Module]) -> tuple[list, list]:
    store: list[torch.Tensor] = []

    def hook(module, inputs, out):
        store.append(out)
    return store, [m.register_forward_hook(hook) for m in points]


def nad(model: nn.Module, thief, teacher_cfg, student_cfg, beta: float, p: float = 2.0,
        tag: str = "nad", teacher: nn.Module | None = None) -> nn.Module:
    """Neural Attention Distillation: the teacher fine-tuned with ``teacher_cfg`` on ``thief``, then a
    copy of ``model`` trained with ``student_cfg`` on cross-entropy plus ``beta`` x the sum over
    attention points of the mean squared difference of the attention maps. Both go through the cache.
    ``teacher`` given: that model is the teacher as it is (``teacher_cfg`` unused)."""
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    device = next(model.parameters()).device
    if teacher is None:
        teacher = copy.deepcopy(model)
        fit_cached(teacher, thief, teacher_cfg, tag=f"{tag}-teacher", device=device)
        teacher_id = {"teacher": teacher_cfg.cache_fields()}
    else:
        from ..train import model_digest
        teacher = copy.deepcopy(teacher)
        teacher_id = {"teacher": model_digest(teacher)}
    teacher.eval()
    student = copy.deepcopy(model)
    s_store, s_handles = _capture(attention_points(student))
    t_store, t_handles = _capture(attention_points(teacher))

    def at_loss(m, x, y, logits):
        s_feats = list(s_store)
        s_store.clear()
        with torch.no_grad():
            t_store.clear()
            teacher(x)
            t_feats = list(t_store)
            t_store.clear()
        return beta * sum(nn.functional.mse_loss(attention_map(s, p), attention_map(t, p)) for s, t in zip(s_feats, t_feats))

    def clear(m, x, y):  # drop what the previous forward left (evaluation passes run hooks too)
        s_store.clear()
        return x, y

    try:
        fit_cached(student, thief, student_cfg, tag=tag, extra_loss=at_loss, batch_hook=clear, device=device,
                   describe={"extra_loss": "beta x the sum over attention points of the mean squared difference of the "
                                           "attention maps (NAD's AT loss)", "beta": beta, "p": p,
                             "batch_hook": "clears the captured activations", **teacher_id})
    finally:
        for h in s_handles + t_handles:
            h.remove()
    return student.eval()


class NeuralAttentionDistillation(Attack):
    name, side = "nad", "model"
    about = "Neural Attention Distillation: the model trained to match the attention of itself fine-tuned (Li et al.)"
    knobs = {"nad_teacher_epochs": rules.integer(1), "nad_epochs": rules.integer(1),
             "nad_lr": rules.number(0.0, rules.INF, lo_open=True), "nad_beta": rules.number(0.0, rules.INF)}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        k = threat.settings
        try:
            attention_points(model)
        except ValueError as why:
            raise NotApplicable(str(why)) from None
        # the authors' and BackdoorBench's optimiser: SGD with momentum 0.9 (the thief's batch size)
        sgd = replace(threat.finetune, optimizer="sgd", momentum=0.9, lr=k["nad_lr"])
        teacher_cfg, student_cfg = replace(sgd, epochs=k["nad_teacher_epochs"]), replace(sgd, epochs=k["nad_epochs"])
        out = nad(model, threat.thief, teacher_cfg, student_cfg, k["nad_beta"], tag=f"{threat.tag}-nad")
        return Suspect(Oracle(out), {"thief_images": len(threat.thief)})


register(NeuralAttentionDistillation())
