"""The dishonest accuser (Liu et al., *False Claims against Model Ownership Resolution*, USENIX
Security 2024): someone who owns no watermarked model presents targeted, transferable adversarial
examples as its "key". It trains clean surrogate models of its own, crafts the examples on their
ensemble so that they transfer, and claims any suspect that answers them with its chosen labels.

The examples come from torchattacks (momentum iterative FGSM, ``MIFGSM``, and its diverse-input
variant, ``DIFGSM``), run targeted on an :class:`Ensemble` that averages the surrogates' logits
(torchattacks attacks one model; the authors' code sums the surrogates' cross-entropies, which the
mean of logits approximates). Images are on the [0, 1] scale and clipped to it, and the key stores
them rounded to 8 bits, as every key of the book.
"""
from __future__ import annotations

import torch
import torchattacks
from torch import nn
from torch.nn import functional as F

from .keys import Key
from .train import to_float

METHODS = ("mifgsm", "difgsm")
LIU_MODES = ("untargeted", "targeted")


class Ensemble(nn.Module):
    """The mean logits of ``models`` (each in eval mode): one model for an attack library."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.models = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.models]).mean(0)


def random_targets(labels: torch.Tensor, num_classes: int, seed: int = 0) -> torch.Tensor:
    """A seeded target label for every image, never its own ``labels`` entry."""
    g = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, num_classes, (len(labels),), generator=g)
    return (labels.cpu() + shift) % num_classes


def transfer_key(surrogates: list[nn.Module], images: torch.Tensor, targets: torch.Tensor, *, eps: float,
                 steps: int = 10, alpha: float | None = None, method: str = "mifgsm", seed: int = 0) -> Key:
    """Targeted adversarial examples of ``images`` toward ``targets``, crafted on the ensemble of
    ``surrogates`` within an L∞ ball of ``eps`` (``alpha`` per step, by default ``eps / steps`` as
    Dong et al.'s momentum FGSM sets it; Liu et al.'s code takes 100 steps of 0.03) by ``method``: the
    accuser's false key."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    if not 0.0 < eps <= 1.0:
        raise ValueError(f"eps must be in (0, 1] (the [0, 1] pixel scale), got {eps}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if len(images) != len(targets):
        raise ValueError(f"one target per image: {len(images)} images, {len(targets)} targets")
    alpha = eps / steps if alpha is None else alpha
    model = Ensemble(surrogates).eval()
    device = next(model.parameters()).device
    cls = torchattacks.MIFGSM if method == "mifgsm" else torchattacks.DIFGSM
    attack = cls(model, eps=eps, alpha=alpha, steps=steps, **({"decay": 1.0} if method == "difgsm" else {}))
    attack.set_mode_targeted_by_label(quiet=True)
    torch.manual_seed(seed)  # DIFGSM's random resizing and padding
    x = to_float(images.to(device))
    adv = attack(x, targets.to(device))
    u8 = (adv.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return Key(u8, targets.cpu().long(), {"kind": "false-claim", "method": method, "eps": eps, "steps": steps,
                                          "alpha": alpha, "surrogates": len(surrogates), "seed": seed})


class TooFewExamples(ValueError):
    """Fewer candidates passed Liu et al.'s keep/reject filter than the key needs."""


def _ensemble_loss(accuser: nn.Module, references: list[nn.Module], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Liu et al.'s loss per image: the accuser model's cross-entropy plus the references' mean."""
    loss = F.cross_entropy(accuser(x), y, reduction="none")
    if references:
        loss = loss + torch.stack([F.cross_entropy(m(x), y, reduction="none") for m in references]).mean(0)
    return loss


def liu_key(accuser: nn.Module, references: list[nn.Module], images: torch.Tensor, labels: torch.Tensor, *, eps: float,
            keep: int, steps: int = 100, step: float | None = None, mode: str = "untargeted",
            targets: torch.Tensor | None = None, validators: list[nn.Module] = (), seed: int = 0) -> Key:
    """Liu et al.'s false key as their code makes it: iterative FGSM (no momentum) on each candidate
    image within an L∞ ball of ``eps`` on the loss *accuser model's CE + mean CE of the reference
    models*, then keep/reject filtering, ``keep`` examples kept.

    * ``untargeted`` (their attack on trigger-set schemes): the loss on the true ``labels`` is
      *raised*; the claimed label is the accuser model's answer to the example, and the examples
      kept are the ``keep`` with the largest final loss among those the accuser model misreads
      (the code keeps an example whose loss exceeds a fixed threshold, 150 on CIFAR-10, until it has
      50: a threshold for its models, which a rank reproduces on others).
    * ``targeted``: the loss on ``targets`` (never the true class) is *lowered*; the claimed label is
      the target, and the examples kept are the ``keep`` whose target the held-out ``validators``
      (models not in the loss) are surest of, by their mean CE (the code: below 1e-6).

    ``step`` defaults to ``eps / 8``: the code's 0.03 against its ε of 16/255 × the normalised
    image range (about 4 on CIFAR-10). Images are clipped to [0, 1] (the code does not clip) and the
    key stores them rounded to 8 bits, as every key of the book. The selection reads only the
    accuser's own models."""
    if mode not in LIU_MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(LIU_MODES)}")
    if not 0.0 < eps <= 1.0:
        raise ValueError(f"eps must be in (0, 1] (the [0, 1] pixel scale), got {eps}")
    for name, v in (("steps", steps), ("keep", keep)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if keep > len(images):
        raise ValueError(f"keep ({keep}) must not exceed the candidate images ({len(images)})")
    if mode == "targeted":
        if targets is None or not validators:
            raise ValueError("the targeted mode needs targets and at least one held-out validator model")
        if (targets.cpu() == labels.cpu()).any():
            raise ValueError("a target equal to an image's true class is no false label")
    step = eps / 8 if step is None else step
    device = next(accuser.parameters()).device
    for m in (accuser, *references, *validators):
        m.eval()
    x0 = to_float(images.to(device))
    y = (labels if mode == "untargeted" else targets).to(device).long()
    sign = 1.0 if mode == "untargeted" else -1.0
    noise = torch.zeros_like(x0)
    for _ in range(steps):
        # the gradient at the image itself (clipped to [0, 1]): through the clip, a black pixel could never brighten
        x = (x0 + noise).clamp(0, 1).requires_grad_(True)
        (grad,) = torch.autograd.grad(_ensemble_loss(accuser, references, x, y).sum(), x)
        noise = (noise + sign * step * grad.sign()).clamp(-eps, eps)
    u8 = ((x0 + noise).clamp(0, 1).cpu() * 255).round().to(torch.uint8)
    x = to_float(u8.to(device))  # the examples as the key stores them
    with torch.no_grad():
        if mode == "untargeted":
            claimed = accuser(x).argmax(1)
            score = _ensemble_loss(accuser, references, x, y)
            score[claimed == y] = -float("inf")  # an example the accuser model still reads right claims nothing false
            order = score.argsort(descending=True)
        else:
            claimed = y
            score = torch.stack([F.cross_entropy(m(x), y, reduction="none") for m in validators]).mean(0)
            order = score.argsort()
    eligible = int(torch.isfinite(score).sum())
    if eligible < keep:
        raise TooFewExamples(f"only {eligible} of {len(images)} candidates fool the accuser's own model at eps {eps:.4g}: "
                         f"too few to keep {keep} (raise eps or steps, or give more candidates)")
    kept = order[:keep].cpu()
    return Key(u8[kept], claimed.cpu()[kept].long(),
               {"kind": f"false-claim-liu-{mode}", "eps": eps, "steps": steps, "step": step, "candidates": len(images),
                "references": len(references), "validators": len(validators), "seed": seed},
               {"true_labels": labels.cpu()[kept].long(), "candidate index": kept, "selection score": score.cpu()[kept]})
