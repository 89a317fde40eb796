"""Fine-pruning (Liu, Dolan-Gavitt & Garg, RAID 2018): a backdoor lives in neurons that clean data
leaves dormant. The thief runs its clean images through the stolen model, ranks the channels of the
last convolutional layer by their mean absolute activation, prunes them dormant first while its own
validation accuracy stays within its budget, then fine-tunes the pruned model on its data.

Which layer, which activation (:func:`last_conv`). The layer is the model's last ``nn.Conv2d`` in
module order, as TrojanZoo's ``FinePruning`` picks it (BackdoorBox's ``Pruning`` takes a named
layer). The rule is *rank what you mask*: a channel is ranked by the mean absolute value, over the
thief's images and positions, of exactly the unit that pruning it silences, so that "dormant" means
"removing it changes little" and a pruned channel's ranked activation is exactly zero afterwards.
Pruning removes what the last conv owns: its filter and bias and the scale and shift of the batch
norm applied to its output, so the channel's output after that batch norm is exactly zero. Hence

* conv → [``BatchNorm2d``] → ``ReLU`` in an ``nn.Sequential``: the ReLU's output (non-negative, so
  its mean absolute value is its mean), the activation the rest of the network reads;
* a ResNet :class:`~wmlib.models.BasicBlock`: ``bn2``'s output, the residual branch's contribution
  to ``relu(bn2(conv2(h)) + shortcut(x))``. Not the block's output: the skip path is not the conv's
  and survives pruning, so a channel that the branch holds below zero (dormant at the block output)
  is switched *on* by pruning it, as the skip path then passes through the ReLU unopposed; the
  block output ranks a unit that pruning does not silence. Signed, ``bn2``'s mean would call a
  strongly negative channel dormant; its absolute value ranks the channel by how much it moves the
  sum.

TrojanZoo instead ranks the final feature map (its ``get_final_fm``, pooled: in a ResNet the last
block's output) and masks the conv's weight only, which in a ResNet leaves ``bn2``'s shift (a
trainable constant in the residual sum) and the skip path, so the unit it ranks is not the unit it
silences. We rank and silence the branch: the issue that asked for this fix allowed the ranked unit
to be "its BN, or the block output", and only the BN's output is one that pruning the conv silences.
The masks are ``torch.nn.utils.prune.custom_from_mask``: attached while fine-tuning, so the masked
weights stay zero, and folded in afterwards. An architecture with neither structure
(PreActResNet-18, whose last conv feeds the residual sum with no batch norm or ReLU of its own)
raises ValueError, and the attack answers :class:`~.base.NotApplicable`.

The stopping rule is the thief's accuracy budget, absolute, in accuracy points (the paper stops at
a fixed drop in clean accuracy; TrojanZoo at a 20-point drop): dormant channels are pruned while
the thief's validation accuracy stays at least ``base - budget``, ``base`` being the unpruned
model's accuracy on the same split. The choice sees the thief's own validation split only.

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
from ..models import BasicBlock
from ..train import TrainConfig, evaluate, fit_cached, predict_proba
from ..verify import Oracle
from .base import Attack, NotApplicable, Suspect, Threat, register
from .model import make_permanent


def last_conv(model: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d | None, nn.Module]:
    """``(conv, bn, act)``: the last ``nn.Conv2d`` of ``model`` (module order), the batch norm applied
    to its output (or None) and the module whose output is its channels' ranked activation, the unit
    that :func:`mask_channels` silences. Two structures of :mod:`wmlib.models`, by rule:

    * conv → [``BatchNorm2d``] → ``ReLU`` / ``ReLU6`` in one ``nn.Sequential`` (LeNets, C&W, VGG,
      the SVHN net, MobileNetV2's last 1x1 conv): ``act`` is the ReLU;
    * a conv inside a :class:`~wmlib.models.BasicBlock` (ResNet-18/20/32/34; its shortcut's
      projection included): the block's ``conv2`` and ``bn2`` (its forward applies ``bn2`` to
      ``conv2``'s output), and ``act`` is ``bn2`` too: the residual branch, before the skip path
      is added (the block's output is not silenced by pruning, see the module docstring).

    Anything else raises ValueError rather than prune the wrong thing."""
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolutional layer to fine-prune")
    name, conv = convs[-1]
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    if blocks and any(m is conv for m in blocks[-1].modules()):
        return blocks[-1].conv2, blocks[-1].bn2, blocks[-1].bn2
    parent = model.get_submodule(name.rpartition(".")[0])
    if isinstance(parent, nn.Sequential):
        after = list(parent)[list(parent).index(conv) + 1:]
        bn = after.pop(0) if after and isinstance(after[0], nn.BatchNorm2d) else None
        if after and isinstance(after[0], (nn.ReLU, nn.ReLU6)):
            return conv, bn, after[0]
    raise ValueError(f"cannot fine-prune {type(model).__name__}: its last conv layer {name!r} is neither followed by "
                     f"[a BatchNorm2d and] a ReLU in an nn.Sequential nor in a ResNet BasicBlock "
                     f"(it sits in a {type(parent).__name__})")


def channel_activations(model: nn.Module, x: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """The mean absolute activation of each channel of the last convolutional layer over ``x`` (images
    and positions): the output of its ``act`` (:func:`last_conv`), the unit that
    :func:`mask_channels` sets to zero. After the ReLU in an ``nn.Sequential`` (non-negative: its
    mean); ``bn2``'s output in a residual block, the branch's contribution to the residual sum."""
    act = last_conv(model)[2]
    total, count = 0.0, 0

    def hook(module, inputs, out):
        nonlocal total, count
        total = total + out.detach().float().abs().sum(dim=(0, 2, 3)).cpu()
        count += out.shape[0] * out.shape[2] * out.shape[3]

    handle = act.register_forward_hook(hook)
    try:
        predict_proba(model, x, device)
    finally:
        handle.remove()
    return total / count


def mask_channels(model: nn.Module, channels) -> nn.Module:
    """A copy of ``model`` whose last convolutional layer (:func:`last_conv`) has ``channels`` pruned:
    the conv's filters and bias and its batch norm's scale and shift masked to zero, so that those
    channels' output after the batch norm is exactly zero. The masks stay attached, so the masked
    weights stay zero while fine-tuning whatever the optimiser does."""
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
    """Liu et al.'s defence as a thief's attack. The thief's data is split: its first ``val_fraction``
    validates, the rest trains. Channels of the last convolutional layer are ranked by the mean
    absolute activation of the unit that pruning silences, on the training part (dormant first,
    :func:`channel_activations`), and pruned in that order, in steps of ``max(1, channels // 64)``,
    while the validation accuracy stays at least ``base - budget`` (``base``: the unpruned model's
    validation accuracy; ``budget`` in accuracy points, 0.05 = five points), at most ``max_share`` of
    the channels and never all. The pruned model is then fine-tuned on the training part with the
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
        if acc < base - budget - 1e-6:  # float32 accuracies: a drop of exactly the budget is within it
            break
        pruned, tuned, acc_pruned = k, candidate, acc
    fit_cached(tuned, tr, replace(cfg, keep_best=True), tag=tag, monitor={"val": val}, device=device)
    make_permanent(tuned)
    return tuned, {"channels": len(order), "pruned": pruned, "pruned_share": pruned / len(order),
                   "val_acc_before": base, "val_acc_pruned": acc_pruned, "order": order[:pruned]}


class FinePruning(Attack):
    question = "survives fine-pruning and Neural Cleanse"
    name, side = "fine-pruning", "model"
    about = ("the last conv layer's dormant channels pruned while the thief's validation accuracy stays within the "
             "budget (accuracy points), then fine-tuned (Liu et al.)")
    knobs = {"budget": rules.number(0.0, 1.0, hi_open=True), "finetune_epochs": rules.integer(1),
             "finetune_lr": rules.number(0.0, rules.INF, lo_open=True),
             "fineprune_max": rules.number(0.0, 1.0, lo_open=True)}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        try:
            last_conv(model)
        except ValueError as why:  # an architecture it cannot prune: the matrix shows why
            raise NotApplicable(str(why)) from None
        tuned, report = fine_prune(model, threat.thief, threat.finetune, threat.budget,
                                   max_share=threat.settings["fineprune_max"], tag=f"{threat.tag}-fine-pruning")
        report.pop("order")
        return Suspect(Oracle(tuned), report)


register(FinePruning())
