"""Fine-pruning (Liu, Dolan-Gavitt & Garg, RAID 2018): a backdoor lives in neurons that clean data
leaves dormant. The thief runs its clean images through the stolen model, ranks the channels of the
last convolutional layer by their mean activation, prunes them dormant first while its own held-out
accuracy stays within its budget, then fine-tunes the pruned model on its data.

Pruning masks a channel's filter and bias (and the batch norm that follows it, if any) with
``torch.nn.utils.prune.custom_from_mask``, so the masks stay on while fine-tuning and are folded in
afterwards. The layer is the model's last ``nn.Conv2d`` in module order, as TrojanZoo's
``FinePruning`` picks it (BackdoorBox's ``Pruning`` takes a named layer); its activation is the
output of the ReLU that follows it, or the positive part of its output where none follows in the
same ``nn.Sequential`` (a residual block's skip path then still carries the channel). The stopping
rule is the thief's accuracy budget (the paper stops at a fixed drop in clean accuracy; TrojanZoo at
a 20-point drop): the largest number of dormant channels whose pruning keeps the thief's validation
accuracy at least ``(1 - budget)`` of the unpruned model's.

Libraries considered: TrojanZoo and BackdoorBox implement fine-pruning on their own model and trainer
classes (TrojanZoo's ``_train``, BackdoorBox's ``FineTuning``) and are not packaged for this
environment's torch; the channel ranking is a forward hook and the masks are ``torch.nn.utils.prune``.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn
from torch.nn.utils import prune

from .. import rules
from ..data import Split
from ..train import TrainConfig, evaluate, fit_cached, predict_proba
from ..verify import Oracle
from .base import Attack, Suspect, Threat, register
from .model import make_permanent


def last_conv(model: nn.Module) -> tuple[nn.Conv2d, nn.Module | None, nn.Module | None]:
    """The last ``nn.Conv2d`` of ``model`` (module order), the batch norm right after it in the same
    ``nn.Sequential`` (or None) and the ReLU that follows them there (or None)."""
    convs = [(parent, name) for parent in model.modules() for name, m in parent.named_children()
             if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolutional layer to fine-prune")
    parent, name = convs[-1]
    conv = getattr(parent, name)
    bn = relu = None
    if isinstance(parent, nn.Sequential):
        after = list(parent.children())
        i = after.index(conv) + 1
        if i < len(after) and isinstance(after[i], nn.BatchNorm2d):
            bn, i = after[i], i + 1
        if i < len(after) and isinstance(after[i], nn.ReLU):
            relu = after[i]
    return conv, bn, relu


def channel_activations(model: nn.Module, x: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """The mean activation of each channel of the last convolutional layer over ``x`` (images and
    positions), measured after its ReLU (:func:`last_conv`)."""
    conv, bn, relu = last_conv(model)
    site = relu or bn or conv
    total, count = None, 0

    def hook(module, inputs, out):
        nonlocal total, count
        a = out.detach().float().clamp_min(0)  # after a ReLU: unchanged
        s = a.sum(dim=(0, 2, 3)).cpu()
        total = s if total is None else total + s
        count += a.shape[0] * a.shape[2] * a.shape[3]

    handle = site.register_forward_hook(hook)
    try:
        predict_proba(model, x, device)
    finally:
        handle.remove()
    return total / count


def mask_channels(model: nn.Module, channels) -> nn.Module:
    """A copy of ``model`` whose last convolutional layer has ``channels`` pruned: filter, bias and
    the following batch norm's scale and shift masked to zero (the masks stay attached)."""
    model = copy.deepcopy(model)
    conv, bn, _ = last_conv(model)
    keep = torch.ones(conv.out_channels, dtype=torch.bool)
    keep[list(channels)] = False
    for module in (conv, bn):
        if module is None:
            continue
        for pname in ("weight", "bias"):
            p = getattr(module, pname, None)
            if p is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            prune.custom_from_mask(module, pname, keep.to(p.device).view(shape).expand_as(p).to(p.dtype))
    return model


def fine_prune(model: nn.Module, thief: Split, cfg: TrainConfig, budget: float, val_fraction: float = 0.3,
               max_share: float = 1.0, tag: str = "fine-pruning") -> tuple[nn.Module, dict]:
    """Liu et al.'s defence as a thief's attack: rank the last convolutional layer's channels by mean
    activation on the thief's images (dormant first), prune the most that keep its validation
    accuracy (``val_fraction`` of its data) within ``budget`` of the unpruned model's (at most
    ``max_share`` of the channels, and never all), then fine-tune on the rest of its data with the
    masks on, keeping the best validation epoch. Returns the model and what was pruned."""
    if not 0.0 <= budget < 1.0:
        raise ValueError(f"budget must be in [0, 1), got {budget}")
    if not 0.0 < max_share <= 1.0:
        raise ValueError(f"max_share must be in (0, 1], got {max_share}")
    device = next(model.parameters()).device
    n_val = int(round(val_fraction * len(thief)))
    val, tr = thief.subset(slice(0, n_val)), thief.subset(slice(n_val, None))
    order = channel_activations(model, tr.x, device).argsort(stable=True).tolist()  # dormant first
    base = evaluate(model, val, device)
    cap = min(len(order) - 1, int(max_share * len(order)))
    step = max(1, len(order) // 64)
    pruned, tuned, acc_pruned = 0, mask_channels(model, []), base  # no channel pruned: the model as it is
    for k in range(step, cap + 1, step):
        candidate = mask_channels(model, order[:k])
        acc = evaluate(candidate, val, device)
        if acc < (1.0 - budget) * base:
            break
        pruned, tuned, acc_pruned = k, candidate, acc
    fit_cached(tuned, tr, replace(cfg, keep_best=True), tag=tag, monitor={"val": val}, device=device)
    make_permanent(tuned)
    return tuned, {"channels": len(order), "pruned": pruned, "pruned_share": pruned / len(order),
                   "val_acc_before": base, "val_acc_pruned": acc_pruned, "order": order[:pruned]}


class FinePruning(Attack):
    name, side = "fine-pruning", "model"
    about = "the last conv layer's dormant channels pruned within the accuracy budget, then fine-tuned (Liu et al.)"
    knobs = {"budget": rules.number(0.0, 1.0, hi_open=True), "finetune_epochs": rules.integer(1),
             "finetune_lr": rules.number(0.0, rules.INF, lo_open=True),
             "fineprune_max": rules.number(0.0, 1.0, lo_open=True)}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        tuned, report = fine_prune(model, threat.thief, threat.finetune, threat.budget,
                                   max_share=threat.settings["fineprune_max"], tag=f"{threat.tag}-fine-pruning")
        report.pop("order")
        return Suspect(Oracle(tuned), report)


register(FinePruning())
