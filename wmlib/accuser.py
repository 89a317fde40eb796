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

from .keys import Key
from .train import to_float

METHODS = ("mifgsm", "difgsm")


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
