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
* ``anp``, Adversarial Neuron Pruning (Wu & Wang, NeurIPS 2021): a backdoor's neurons are those whose
  small perturbation breaks the model. Every neuron gets a mask ``m`` in [0, 1] (start 1) and, while
  perturbed, its output's scale is multiplied by ``m + δ`` and its shift by ``1 + ξ``, with
  ``|δ|, |ξ| <= ε``. Each iteration, on a batch of the thief's images: δ and ξ drawn uniform in
  [-ε, ε], one signed gradient step of size ε that raises the loss (the authors' ``sign_grad``,
  clipped back to ε), then one step on the masks of ``α · CE(unperturbed) + (1 - α) · CE(perturbed)``
  (SGD, momentum 0.9), masks clipped to [0, 1]. Afterwards the neurons whose mask fell below
  ``anp_threshold`` are pruned (their scale set to zero, their shift kept, as the authors prune a
  batch norm's weight); nothing is fine-tuned. The authors' code (``csdongxian/ANP_backdoor``,
  ``optimize_mask_cifar.py``, ``prune_neuron_cifar.py``) and BackdoorBench's defaults: ε 0.4, one
  perturbation step, α 0.2, mask learning rate 0.2, 2,000 iterations of batch 128 on 1 % of the
  training set (500 CIFAR-10 images), pruned below 0.2; the model runs in training mode while the
  masks are learnt (batch statistics in its batch norms, on a copy: the pruned model keeps its own).
  A neuron is a batch norm's channel where the model has batch norm (the authors perturb those);
  a model without (the LeNets) has no such layer, and there a neuron is an output channel of each
  conv and linear layer but the classifier, its scale the layer's weights and its shift the bias:
  the same arithmetic one layer earlier.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from .. import rules
from ..models import BasicBlock, neuron_layers
from ..train import fit_cached, to_float
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
    question, family = "survives the backdoor defences", True
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


def _width(layer: nn.Module) -> int:
    for attr in ("num_features", "out_channels", "out_features"):
        if hasattr(layer, attr):
            return int(getattr(layer, attr))
    raise ValueError(f"{type(layer).__name__} has no output channels to mask")


class NeuronPerturbation:
    """Masks and bounded perturbations on the neurons of :func:`neuron_layers`, by forward hooks: a
    neuron's output ``y = s·z + b`` (``b`` the layer's bias or shift, ``s·z`` the rest) becomes
    ``(m + δ)·(y - b) + (1 + ξ)·b`` while ``perturbed``, ``m·(y - b) + b`` otherwise. ``masks``,
    ``deltas`` (δ) and ``xis`` (ξ) are leaf tensors, one per layer."""

    def __init__(self, model: nn.Module, device: torch.device):
        self.layers = neuron_layers(model)
        self.masks = [torch.ones(_width(m), device=device, requires_grad=True) for m in self.layers]
        self.deltas = [torch.zeros(_width(m), device=device, requires_grad=True) for m in self.layers]
        self.xis = [torch.zeros(_width(m), device=device, requires_grad=True) for m in self.layers]
        self.perturbed = False
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.layers)]

    def _hook(self, i: int):
        def hook(module, inputs, out):
            view = (1, -1) + (1,) * (out.dim() - 2)
            scale = self.masks[i] + self.deltas[i] if self.perturbed else self.masks[i]
            bias = getattr(module, "bias", None)
            if bias is None:
                return scale.view(view) * out
            b = bias.view(view)
            shift = 1 + self.xis[i] if self.perturbed else torch.ones_like(self.xis[i])
            return scale.view(view) * (out - b) + shift.view(view) * b
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def perturb_neurons(net: nn.Module, pert: NeuronPerturbation, x: torch.Tensor, y: torch.Tensor, eps: float,
                    steps: int = 1, generator: torch.Generator | None = None) -> None:
    """The authors' adversarial neuron perturbation, in place: δ and ξ drawn uniform in [-ε, ε], then
    ``steps`` signed ascent steps of size ε / steps on the cross-entropy of ``net`` on float images
    ``x`` with labels ``y``, each clipped back to [-ε, ε]; ``pert.perturbed`` is left on."""
    noise = pert.deltas + pert.xis
    with torch.no_grad():
        for t in noise:
            t.copy_((torch.rand(t.shape, generator=generator) * 2 - 1).mul_(eps))
    pert.perturbed = True
    for _ in range(steps):
        # ascent on the loss (the authors descend on its negative with their sign_grad): δ, ξ += ε / steps · sign(∇ CE)
        grads = torch.autograd.grad(nn.functional.cross_entropy(net(x), y), noise, allow_unused=True)  # ξ: None where no bias
        with torch.no_grad():
            for t, gr in zip(noise, grads):
                if gr is not None:
                    t.add_(gr.sign(), alpha=eps / steps).clamp_(-eps, eps)


def anp_masks(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, eps: float = 0.4, alpha: float = 0.2,
              iterations: int = 2000, lr: float = 0.2, batch_size: int = 128, seed: int = 0) -> list[torch.Tensor]:
    """ANP's neuron masks learnt on ``images`` / ``labels`` (see the module docstring), one tensor in
    [0, 1] per layer of :func:`neuron_layers`. ``model`` is not changed."""
    if not 0.0 <= alpha <= 1.0 or not eps >= 0 or iterations < 1:
        raise ValueError(f"need 0 <= alpha <= 1, eps >= 0 and iterations >= 1; got {alpha}, {eps}, {iterations}")
    device = next(model.parameters()).device
    net = copy.deepcopy(model).train().requires_grad_(False)  # the authors learn masks in training mode, on a copy
    pert = NeuronPerturbation(net, device)
    mask_opt = torch.optim.SGD(pert.masks, lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    x_all, y_all = to_float(images.to(device)), labels.to(device).long()
    ce = nn.functional.cross_entropy
    order = torch.randperm(len(x_all), generator=g)
    pos = 0
    try:
        for _ in range(iterations):
            if pos + batch_size > len(order):  # a new shuffled pass, the last short batch dropped
                order, pos = torch.randperm(len(x_all), generator=g), 0
            idx = order[pos:pos + batch_size].to(device)
            pos += batch_size
            xb, yb = x_all[idx], y_all[idx]
            if eps > 0:
                perturb_neurons(net, pert, xb, yb, eps, generator=g)
                rob = ce(net(xb), yb)
            else:
                rob = torch.zeros((), device=device)
            pert.perturbed = False
            loss = alpha * ce(net(xb), yb) + (1 - alpha) * rob
            mask_opt.zero_grad(set_to_none=True)
            loss.backward()
            mask_opt.step()
            with torch.no_grad():
                for m in pert.masks:
                    m.clamp_(0.0, 1.0)
    finally:
        pert.remove()
    return [m.detach().clone() for m in pert.masks]


def prune_neurons(model: nn.Module, masks: list[torch.Tensor], threshold: float) -> tuple[nn.Module, int]:
    """A copy of ``model`` whose neurons (:func:`neuron_layers`) with a mask below ``threshold`` have
    their scale set to zero (a batch norm's weight, a layer's weights), their shift kept. Returns it
    and the number pruned."""
    model = copy.deepcopy(model)
    pruned = 0
    with torch.no_grad():
        for layer, m in zip(neuron_layers(model), masks):
            off = (m < threshold).to(layer.weight.device)
            layer.weight[off] = 0.0
            pruned += int(off.sum())
    return model, pruned


class AdversarialNeuronPruning(Attack):
    question, family = "survives the backdoor defences", True
    name, side = "anp", "model"
    about = "Adversarial Neuron Pruning: the neurons whose perturbation breaks the model pruned (Wu & Wang)"
    knobs = {"anp_eps": rules.number(0.0, 1.0), "anp_alpha": rules.number(0.0, 1.0),
             "anp_iterations": rules.integer(1), "anp_lr": rules.number(0.0, rules.INF, lo_open=True),
             "anp_samples": rules.integer(1), "anp_threshold": rules.number(0.0, 1.0)}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        k = threat.settings
        thief = threat.thief.subset(slice(0, k["anp_samples"]))
        masks = anp_masks(model, thief.x, thief.y, eps=k["anp_eps"], alpha=k["anp_alpha"],
                          iterations=k["anp_iterations"], lr=k["anp_lr"], seed=threat.seed)
        out, pruned = prune_neurons(model, masks, k["anp_threshold"])
        total = sum(len(m) for m in masks)
        return Suspect(Oracle(out.eval()), {"pruned": pruned, "neurons": total, "acted": pruned > 0,
                                            "thief_images": len(thief)})


register(AdversarialNeuronPruning())
