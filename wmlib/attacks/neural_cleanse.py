"""Neural Cleanse (Wang et al., S&P 2019) as a thief's attack: reverse-engineer, for every class, the
smallest mask and pattern that send the thief's clean images to that class; flag the classes whose
mask is an outlier by the anomaly index; unlearn the flagged triggers by fine-tuning on the thief's
images stamped with them, keeping their true labels.

Reverse engineering follows the authors' code (``bolunwang/backdoor``, ``visualizer.py``): mask
``m`` (one channel, H x W) and pattern ``Δ`` (C x H x W) kept in [0, 1] through ``tanh``, a stamped
image ``(1 - m) · x + m · Δ`` on the [0, 1] pixel scale, loss ``CE(f(x'), t) + λ · |m|₁`` with Adam
(lr 0.1, betas 0.5 and 0.9), random initialisation, and the λ schedule: λ starts at ``init_cost``,
is multiplied by 2 after ``patience`` epochs whose attack success is at least ``threshold`` and
divided by 2^1.5 after ``patience`` epochs below it; the smallest mask that reached the threshold is
kept, and the search stops early when that norm has stalled for ``early_stop`` epochs after λ has
moved both ways. One epoch is one pass over the thief's images in mini-batches of 32 (BackdoorBench
runs 10 such epochs per class; the authors' code runs 1,000 steps of 1,000 images).

Detection (``mad_outlier_detection.py``): the anomaly index of a class is ``|n - median| / (1.4826 ·
MAD)`` of the masks' L1 norms; a class is flagged when its norm is below the median and its index
above 2. Unlearning (the paper's §6.2): a ``share`` of every fine-tuning batch is stamped with a
flagged class's reversed trigger and keeps its true label. With no class flagged the thief has
nothing to unlearn and serves the model as it is.

Libraries considered: the Adversarial Robustness Toolbox's ``NeuralCleanse`` takes Keras classifiers
only; TrojanZoo's (``trojanvision.defenses.NeuralCleanse``) and BackdoorBench's (``defense/nc.py``)
run on their own model, dataset and trainer classes and are not packaged for this environment's
torch. Written here against the authors' code; unlearning goes through the book's training loop.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import rules
from ..data import Split
from ..train import TrainConfig, fit_cached, preserved_rng, tensor_digest, to_float
from ..verify import Oracle
from .base import Attack, Suspect, Threat, register
from .model import mixed_batches


@dataclass
class Trigger:
    """One class's reversed trigger: ``mask`` (1 x H x W) and ``pattern`` (C x H x W), both in [0, 1]."""
    target: int
    mask: torch.Tensor
    pattern: torch.Tensor
    success: float        # the share of stamped thief images sent to ``target`` by the kept mask
    reached: bool         # whether the kept mask reached the success threshold

    @property
    def norm(self) -> float:
        return float(self.mask.abs().sum())

    def stamp(self, x: torch.Tensor) -> torch.Tensor:
        """Float images ``x`` in [0, 1] with the trigger blended in."""
        m, p = self.mask.to(x.device), self.pattern.to(x.device)
        return (1 - m) * x + m * p


def reverse_trigger(model: nn.Module, images: torch.Tensor, target: int, *, epochs: int = 10, batch_size: int = 32,
                    lr: float = 0.1, init_cost: float = 1e-3, threshold: float = 0.99, patience: int = 5,
                    up: float = 2.0, down: float = 2.0 ** 1.5, early_stop: int = 25, seed: int = 0) -> Trigger:
    """The smallest mask and pattern that send ``images`` to class ``target`` (see the module docstring)."""
    device = next(model.parameters()).device
    model = copy.deepcopy(model).eval().requires_grad_(False)
    x_all = to_float(images.to(device))
    n, (c, h, w) = len(x_all), x_all.shape[1:]
    g = torch.Generator().manual_seed(seed)
    with preserved_rng():
        mask_t = (torch.rand((1, 1, h, w), generator=g) * 2 - 1).to(device).requires_grad_(True)
        pat_t = (torch.rand((1, c, h, w), generator=g) * 2 - 1).to(device).requires_grad_(True)
    opt = torch.optim.Adam([mask_t, pat_t], lr=lr, betas=(0.5, 0.9))
    y = torch.full((batch_size,), target, device=device)
    cost, up_n, down_n, up_flag, down_flag = init_cost, 0, 0, False, False
    best = (float("inf"), None, None, 0.0)
    stall, best_seen = 0, float("inf")
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        hits = total = 0
        for i in range(0, n, batch_size):
            xb = x_all[perm[i:i + batch_size]]
            m, p = torch.tanh(mask_t) / 2 + 0.5, torch.tanh(pat_t) / 2 + 0.5
            logits = model((1 - m) * xb + m * p)
            loss = nn.functional.cross_entropy(logits, y[:len(xb)]) + cost * m.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            hits += int((logits.argmax(1) == target).sum())
            total += len(xb)
        success = hits / total
        with torch.no_grad():
            m, p = torch.tanh(mask_t) / 2 + 0.5, torch.tanh(pat_t) / 2 + 0.5
            norm = float(m.sum())
        if success >= threshold and norm < best[0]:
            best = (norm, m[0].detach().cpu().clone(), p[0].detach().cpu().clone(), success)
        if best[0] < float("inf"):  # early stop once the best norm has stalled and λ has moved both ways
            stall = stall + 1 if best[0] >= best_seen else 0
            best_seen = min(best_seen, best[0])
            if up_flag and down_flag and stall >= early_stop:
                break
        if success >= threshold:
            up_n, down_n = up_n + 1, 0
        else:
            up_n, down_n = 0, down_n + 1
        if up_n >= patience:
            up_n, cost, up_flag = 0, cost * up, True
        elif down_n >= patience:
            down_n, cost, down_flag = 0, cost / down, True
    if best[1] is None:  # never reached the threshold: the last mask, marked as such
        return Trigger(target, m[0].detach().cpu(), p[0].detach().cpu(), success, False)
    return Trigger(target, best[1], best[2], best[3], True)


def anomaly_index(norms) -> np.ndarray:
    """Each norm's distance from the median in units of the consistent MAD (1.4826 x the median
    absolute deviation), as the authors' ``mad_outlier_detection.py`` computes it."""
    norms = np.asarray(norms, dtype=float)
    med = np.median(norms)
    mad = 1.4826 * np.median(np.abs(norms - med))
    return np.abs(norms - med) / mad if mad > 0 else np.zeros_like(norms)


def flagged(norms, cutoff: float = 2.0) -> list[int]:
    """The classes whose mask norm is below the median with an anomaly index above ``cutoff``."""
    norms = np.asarray(norms, dtype=float)
    idx = anomaly_index(norms)
    return [int(i) for i in np.flatnonzero((norms < np.median(norms)) & (idx > cutoff))]


def unlearn(model: nn.Module, thief: Split, triggers: list[Trigger], cfg: TrainConfig, share: float = 0.2,
            tag: str = "neural-cleanse") -> nn.Module:
    """A copy of ``model`` fine-tuned on ``thief`` with the first ``share`` of every batch stamped with
    one of ``triggers`` (drawn at random per image), true labels kept."""
    masks = torch.stack([t.mask for t in triggers])
    patterns = torch.stack([t.pattern for t in triggers])

    def stamp(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pick = torch.randint(0, len(triggers), (len(x),), device=x.device)
        mk, pt = masks.to(x.device)[pick], patterns.to(x.device)[pick]
        return (1 - mk) * x + mk * pt

    hook = mixed_batches(stamp, share)
    model = copy.deepcopy(model)
    fit_cached(model, thief, cfg, tag=tag, batch_hook=hook, device=next(model.parameters()).device,
               describe={"batch_hook": "the first share of each batch stamped with a random reversed trigger, true "
                                       "labels kept", "share": share, "triggers": tensor_digest(masks, patterns)})
    return model


def cleanse(model: nn.Module, thief: Split, num_classes: int, cfg: TrainConfig, *, samples: int, epochs: int,
                   share: float = 0.2, seed: int = 0, tag: str = "neural-cleanse", **reverse_kw) -> tuple[nn.Module, dict]:
    """Reverse a trigger for every class on the first ``samples`` thief images, flag the outliers and
    unlearn them (:func:`unlearn`, with ``cfg``). Returns the model the thief serves and the report."""
    images = thief.x[:samples]
    triggers = [reverse_trigger(model, images, t, epochs=epochs, seed=seed + t, **reverse_kw) for t in range(num_classes)]
    norms = [t.norm for t in triggers]
    flags = flagged(norms)
    out = unlearn(model, thief, [triggers[t] for t in flags], cfg, share, tag) if flags else copy.deepcopy(model)
    return out, {"norms": norms, "anomaly_index": anomaly_index(norms).tolist(), "flagged": flags,
                 "reached": [t.reached for t in triggers], "triggers": triggers}


class NeuralCleanse(Attack):
    name, side = "neural-cleanse", "model"
    about = "a trigger reversed for every class; outliers by the anomaly index unlearned by fine-tuning (Wang et al.)"
    knobs = {"finetune_epochs": rules.integer(1), "finetune_lr": rules.number(0.0, rules.INF, lo_open=True),
             "nc_epochs": rules.integer(1), "nc_samples": rules.integer(1),
             "nc_share": rules.number(0.0, 1.0, lo_open=True)}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        k = threat.settings
        out, rep = cleanse(model, threat.thief, threat.spec.num_classes, threat.finetune,
                                  samples=k["nc_samples"], epochs=k["nc_epochs"], share=k["nc_share"], seed=threat.seed,
                                  tag=f"{threat.tag}-neural-cleanse")
        labels = threat.verify_key.y
        target = int(torch.mode(labels).values) if len(labels) else -1  # the class most of the owner's key claims
        idx = rep["anomaly_index"]
        return Suspect(Oracle(out), {
            "flagged": ",".join(map(str, rep["flagged"])) or "none", "unlearned": bool(rep["flagged"]),
            "key_target": target, "key_target_share": float((labels == target).float().mean()) if len(labels) else 0.0,
            "target_flagged": target in rep["flagged"], "target_index": idx[target] if target >= 0 else float("nan"),
            "max_index": max(idx), "target_norm": rep["norms"][target] if target >= 0 else float("nan"),
            "median_norm": float(np.median(rep["norms"]))})


register(NeuralCleanse())
