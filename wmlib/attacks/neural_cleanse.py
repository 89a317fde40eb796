"""Neural Cleanse (Wang et al., S&P 2019) as a thief's attack: reverse-engineer, for every class, the
smallest mask and pattern that send the thief's clean images to that class; flag the classes whose
mask is an outlier by the anomaly index; unlearn the flagged triggers by fine-tuning on the thief's
images stamped with them, keeping their true labels.

Reverse engineering (§4, Eq. 3) follows the authors' code, ``bolunwang/backdoor``: the class
``Visualizer`` of ``visualizer.py`` run with the settings of ``gtsrb_visualize_example.py``, the
script behind the paper's numbers. A mask ``m`` (one channel, H x W) and a pattern ``Δ`` (C x H x W)
are kept in [0, 1] through ``tanh`` (``tanh(·) / (2 - ε) + 0.5``, ε = ``K.epsilon()`` = 1e-7) from a
uniform random start; a stamped image is ``(1 - m) · x + m · Δ`` on the raw pixel scale; the loss is
``CE(f(x'), t) + λ · |m|₁``, minimised with Adam (``LR = 0.1``; ``beta_1=0.5, beta_2=0.9`` in
``Visualizer.__init__``) over mini-batches of ``BATCH_SIZE = 32``. Its unit of time is a *schedule
epoch*: ``MINI_BATCH = NB_SAMPLE // BATCH_SIZE`` = 1000 // 32 = 31 optimiser steps drawn from a
shuffled stream over the images (Keras' ``ImageDataGenerator.flow``: reshuffled at every pass, the
last batch of a pass short), ``STEPS = 1000`` schedule epochs per class. At the end of each schedule
epoch, with ``success`` the share of the epoch's stamped images sent to ``t`` and ``reg`` its mean
``|m|₁`` (:class:`CostSchedule`, ``Visualizer.visualize``):

* the mask is kept when ``success >= ATTACK_SUCC_THRESHOLD`` (0.99) and ``reg`` is below the best so far;
* early stop (``EARLY_STOP_THRESHOLD = 1.0``, ``EARLY_STOP_PATIENCE = 5 * PATIENCE`` = 25): once a mask
  was kept, an epoch whose best ``reg`` is not below ``1.0 x`` the best before it counts towards a
  stall, any other resets it; the search stops after 25 stalled epochs once λ has moved both ways;
* λ (``RESET_COST_TO_ZERO = True``) starts at 0 and is set to ``INIT_COST = 1e-3`` after ``PATIENCE = 5``
  consecutive epochs at the threshold (resetting the up/down counters and flags); then it is
  multiplied by ``COST_MULTIPLIER = 2`` after 5 consecutive epochs at the threshold and divided by
  ``2 ** 1.5`` (``cost_multiplier_down = cost_multiplier ** 1.5``) after 5 below it.

``visualizer.py``'s own defaults differ (``PATIENCE = 10``, ``COST_MULTIPLIER = 1.5,`` -- a one-element
tuple, which ``** 1.5`` refuses, so every caller passes its own --, ``EARLY_STOP_THRESHOLD = 0.99``,
``EARLY_STOP_PATIENCE = 2 * PATIENCE``): the example script's values are the ones used here. What we
do differently: the images are the first ``nc_samples`` of the thief's own (the authors use GTSRB's
whole test set: the thief has no other clean data), and the number of schedule epochs is a knob
(``nc_schedule_epochs``: the authors' 1,000 in ``full``, fewer where a profile must fit 2 CPU cores);
a schedule epoch is ``nc_samples // 32`` steps, the authors' ``NB_SAMPLE // BATCH_SIZE`` for the
thief's sample (31 at the 1,000 images of ``default``).
Each :class:`Trigger` keeps its λ, success and mask norm per schedule epoch (the authors' ``logs``).

Detection (``mad_outlier_detection.py``): the anomaly index of a class is ``|n - median| / (1.4826 ·
MAD)`` of the masks' L1 norms; a class is flagged when its norm is below the median and its index
above 2. The authors' detection reads the masks the reverse engineering saved, and a mask that never
reached the threshold is no trigger (the authors' code then saves the last mask, and nothing later
tells them apart): here such a class is reported (``unreached``) and left out of the median, the MAD
and the flags; with fewer than :data:`MIN_REACHED` converged masks no class can be an outlier, and
the report says detection was not possible ("no detection") rather than "nothing flagged".

Unlearning (§6.2): the model is fine-tuned for one epoch on clean data, 20 % of it stamped with the
reversed trigger and its true label kept. Here a ``share`` of every fine-tuning batch of the thief's
images is stamped with a flagged class's reversed trigger (drawn per image), for ``nc_unlearn_epochs``
epochs (1, the paper's) with the thief's fine-tuning recipe otherwise. With no class flagged the
thief has nothing to unlearn and serves the model as it is; the report's ``outcome`` says which of
"unlearned", "nothing flagged" and "no detection" happened. What the owner reads off the report with
its key (was the key's target class flagged?) is :meth:`NeuralCleanse.owner_report`, outside the
thief's view.

Neural Cleanse's triggers serve two more attacks of the reference toolkit: ``nc-pruning`` (the channels
a flagged class's trigger drives most pruned, then fine-tuned) and ``neural-laundering`` (Aiken et al.,
"Neural network laundering", Computers & Security 2021): the units whose mean output the smallest
reversed trigger raises beyond a threshold are reset to zero, then the model is fine-tuned with the
trigger unlearnt.

Libraries considered: the Adversarial Robustness Toolbox's ``NeuralCleanse`` takes Keras classifiers
only; TrojanZoo's (``trojanvision.defenses.NeuralCleanse``) and BackdoorBench's (``defense/nc.py``)
run on their own model, dataset and trainer classes and are not packaged for this environment's
torch. Written here against the authors' code; unlearning goes through the book's training loop.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .. import rules
from ..data import Split
from ..keys import Key
from ..models import neuron_layers
from ..train import (TrainConfig, cache_dir, config_hash, evaluate, fit_cached, model_digest, save_atomic,
                     tensor_digest, to_float)
from ..verify import Oracle
from .base import Attack, NotApplicable, Suspect, Threat, register
from .extraction import stolen_labels
from .fine_pruning import channel_activations, last_conv, mask_channels
from .model import make_permanent, mixed_batches

MINI_BATCH = 1000 // 32  # the authors' NB_SAMPLE // BATCH_SIZE: optimiser steps per schedule epoch
MIN_REACHED = 3  # with 2 norms both anomaly indices are 1 / 1.4826: no outlier is possible below 3
OUTCOMES = ("unlearned", "nothing flagged", "no detection")
_EPS = 1e-7  # Keras' K.epsilon(), which the authors' tanh parametrisation divides by (2 - ε) with


@dataclass
class CostSchedule:
    """The authors' control of λ (``Visualizer.visualize``; see the module docstring): ``cost`` is
    the λ in force; :meth:`update` takes one schedule epoch's attack success. ``up_flag`` and
    ``down_flag`` say whether λ has been raised and lowered since it was set (early stop needs both)."""
    init_cost: float = 1e-3
    threshold: float = 0.99
    patience: int = 5
    up: float = 2.0
    down: float = 2.0 ** 1.5
    cost: float = field(default=0.0, init=False)  # RESET_COST_TO_ZERO
    up_flag: bool = field(default=False, init=False)
    down_flag: bool = field(default=False, init=False)
    _set_n: int = field(default=0, init=False, repr=False)  # consecutive successes at λ = 0
    _up_n: int = field(default=0, init=False, repr=False)
    _down_n: int = field(default=0, init=False, repr=False)

    def update(self, success: float) -> None:
        ok = success >= self.threshold
        if self.cost == 0 and ok:  # λ is set once the attack succeeds without it for `patience` epochs
            self._set_n += 1
            if self._set_n >= self.patience:
                self.cost, self._up_n, self._down_n, self.up_flag, self.down_flag = self.init_cost, 0, 0, False, False
        else:
            self._set_n = 0
        self._up_n, self._down_n = (self._up_n + 1, 0) if ok else (0, self._down_n + 1)
        if self._up_n >= self.patience:
            self._up_n, self.cost, self.up_flag = 0, self.cost * self.up, True
        elif self._down_n >= self.patience:
            self._down_n, self.cost, self.down_flag = 0, self.cost / self.down, True


@dataclass
class Trigger:
    """One class's reversed trigger: ``mask`` (1 x H x W) and ``pattern`` (C x H x W), both in [0, 1],
    and per schedule epoch the λ in force (``costs``), the attack success and the mean mask norm."""
    target: int
    mask: torch.Tensor
    pattern: torch.Tensor
    success: float        # the attack success of the schedule epoch that ended with the kept mask
    reached: bool         # whether the kept mask reached the success threshold (False: the last mask)
    costs: list[float] = field(default_factory=list)
    successes: list[float] = field(default_factory=list)
    epoch_norms: list[float] = field(default_factory=list)

    @property
    def norm(self) -> float:
        return float(self.mask.abs().sum())

    def stamp(self, x: torch.Tensor) -> torch.Tensor:
        """Float images ``x`` in [0, 1] with the trigger blended in."""
        m, p = self.mask.to(x.device), self.pattern.to(x.device)
        return (1 - m) * x + m * p


def _stream(n: int, batch_size: int, g: torch.Generator) -> Iterator[torch.Tensor]:
    """Indices of mini-batches over ``n`` images, reshuffled at every pass, the last of a pass short
    (as Keras' ``ImageDataGenerator.flow`` yields them)."""
    while True:
        perm = torch.randperm(n, generator=g)
        yield from perm.split(batch_size)


def _atanh_init(shape: tuple, g: torch.Generator) -> torch.Tensor:
    """A uniform random start in [0, 1) in the tanh space (``arctanh((v - 0.5) · (2 - ε))``)."""
    v = torch.rand(shape, generator=g, dtype=torch.float64)
    return torch.atanh((v - 0.5) * (2 - _EPS)).float()


def reverse_trigger(model: nn.Module, images: torch.Tensor, target: int, *, epochs: int = 1000,
                    mini_batch: int = MINI_BATCH, batch_size: int = 32, lr: float = 0.1, init_cost: float = 1e-3,
                    threshold: float = 0.99, patience: int = 5, up: float = 2.0, down: float = 2.0 ** 1.5,
                    early_stop: int = 25, early_stop_threshold: float = 1.0, seed: int = 0) -> Trigger:
    """The smallest mask and pattern that send ``images`` to class ``target``: ``epochs`` schedule
    epochs of ``mini_batch`` Adam steps each, λ by :class:`CostSchedule` (see the module docstring)."""
    if epochs < 1 or mini_batch < 1:
        raise ValueError(f"epochs and mini_batch must be at least 1, got {epochs} and {mini_batch}")
    device = next(model.parameters()).device
    model = copy.deepcopy(model).eval().requires_grad_(False)
    x_all = to_float(images.to(device))
    n, (c, h, w) = len(x_all), x_all.shape[1:]
    g = torch.Generator().manual_seed(seed)
    mask_t = _atanh_init((1, 1, h, w), g).to(device).requires_grad_(True)
    pat_t = _atanh_init((1, c, h, w), g).to(device).requires_grad_(True)
    opt = torch.optim.Adam([mask_t, pat_t], lr=lr, betas=(0.5, 0.9))
    sched = CostSchedule(init_cost, threshold, patience, up, down)
    batches = _stream(n, batch_size, g)
    y = torch.full((batch_size,), target, device=device)

    def current() -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tanh(mask_t) / (2 - _EPS) + 0.5, torch.tanh(pat_t) / (2 - _EPS) + 0.5

    best_reg, best, best_success = float("inf"), None, 0.0
    stall, stall_best = 0, float("inf")
    costs, successes, epoch_norms = [], [], []
    for _ in range(epochs):
        cost, hits, total, reg = sched.cost, 0, 0, 0.0
        for _ in range(mini_batch):
            xb = x_all[next(batches).to(device)]
            m, p = current()
            logits = model((1 - m) * xb + m * p)
            l1 = m.abs().sum()  # the authors' loss_reg: sum |m|
            loss = nn.functional.cross_entropy(logits, y[:len(xb)]) + cost * l1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            hits += int((logits.argmax(1) == target).sum())
            total += len(xb)
            reg += float(l1.detach())
        success, reg = hits / total, reg / mini_batch
        costs.append(cost)
        successes.append(success)
        epoch_norms.append(reg)
        if success >= threshold and reg < best_reg:  # the mask as the epoch leaves it, judged by the epoch's mean norm
            with torch.no_grad():
                m, p = current()
            best_reg, best, best_success = reg, (m[0].detach().cpu().clone(), p[0].detach().cpu().clone()), success
        if best_reg < float("inf"):  # a stall counts only once a mask was kept
            stall = stall + 1 if best_reg >= early_stop_threshold * stall_best else 0
        stall_best = min(stall_best, best_reg)
        if sched.up_flag and sched.down_flag and stall >= early_stop:
            break
        sched.update(success)
    log = dict(costs=costs, successes=successes, epoch_norms=epoch_norms)
    if best is None:  # never reached the threshold: the last mask, marked as such
        with torch.no_grad():
            m, p = current()
        return Trigger(target, m[0].detach().cpu(), p[0].detach().cpu(), success, False, **log)
    return Trigger(target, best[0], best[1], best_success, True, **log)


def _reached(norms: np.ndarray, reached) -> np.ndarray:
    ok = np.ones(len(norms), dtype=bool) if reached is None else np.asarray(reached, dtype=bool)
    if ok.shape != norms.shape:
        raise ValueError(f"give one reached flag per norm: {len(ok)} flags for {len(norms)} norms")
    return ok


def anomaly_index(norms, reached=None) -> np.ndarray:
    """Each norm's distance from the median in units of the consistent MAD (1.4826 x the median
    absolute deviation), as the authors' ``mad_outlier_detection.py`` computes it, over the masks that
    ``reached`` the success threshold only (all when None); NaN for the others."""
    norms = np.asarray(norms, dtype=float)
    ok = _reached(norms, reached)
    out = np.full_like(norms, np.nan)
    if not ok.any():
        return out
    med = np.median(norms[ok])
    mad = 1.4826 * np.median(np.abs(norms[ok] - med))
    out[ok] = np.abs(norms[ok] - med) / mad if mad > 0 else 0.0
    return out


def flagged(norms, cutoff: float = 2.0, reached=None) -> list[int]:
    """The classes whose converged mask (all when ``reached`` is None) has a norm below the median of
    the converged ones and an anomaly index above ``cutoff`` (none below :data:`MIN_REACHED` masks)."""
    norms = np.asarray(norms, dtype=float)
    ok = _reached(norms, reached)
    if not ok.any():
        return []
    idx = anomaly_index(norms, ok)
    return [int(i) for i in np.flatnonzero(ok & (norms < np.median(norms[ok])) & (idx > cutoff))]


def unlearn(model: nn.Module, thief: Split, triggers: list[Trigger], cfg: TrainConfig, share: float = 0.2,
            tag: str = "neural-cleanse", epochs: int = 1) -> nn.Module:
    """A copy of ``model`` fine-tuned for ``epochs`` (the paper's §6.2: 1) on ``thief`` by ``cfg``'s
    recipe, with the first ``share`` of every batch stamped with one of ``triggers`` (drawn at random
    per image), true labels kept."""
    masks = torch.stack([t.mask for t in triggers])
    patterns = torch.stack([t.pattern for t in triggers])

    def stamp(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pick = torch.randint(0, len(triggers), (len(x),), device=x.device)
        mk, pt = masks.to(x.device)[pick], patterns.to(x.device)[pick]
        return (1 - mk) * x + mk * pt

    hook = mixed_batches(stamp, share)
    model = copy.deepcopy(model)
    fit_cached(model, thief, dataclasses.replace(cfg, epochs=epochs), tag=tag, batch_hook=hook,
               device=next(model.parameters()).device,
               describe={"batch_hook": "the first share of each batch stamped with a random reversed trigger, true "
                                       "labels kept", "share": share, "triggers": tensor_digest(masks, patterns)})
    return model


def reversed_triggers(model: nn.Module, images: torch.Tensor, num_classes: int, epochs: int, seed: int,
                      **reverse_kw) -> list[Trigger]:
    """A trigger reversed for every class (:func:`reverse_trigger`, class ``t`` seeded ``seed + t``).
    Cached (``$WMLIB_CACHE/neural-cleanse``) under the model's weights, the images and every setting:
    the unlearning, pruning and laundering attacks reverse the same triggers of the same model, and
    the reversal is most of their cost."""
    key = config_hash({"model": model_digest(model), "images": tensor_digest(images), "classes": num_classes,
                       "epochs": epochs, "seed": seed, **reverse_kw})
    path = cache_dir() / "neural-cleanse" / f"triggers-{key}.pt"
    if path.exists():
        try:
            return [Trigger(**t) for t in torch.load(path, weights_only=True)]
        except Exception:  # noqa: BLE001 - a truncated file: reverse again and overwrite it
            pass
    triggers = [reverse_trigger(model, images, t, epochs=epochs, seed=seed + t, **reverse_kw) for t in range(num_classes)]
    save_atomic([dataclasses.asdict(t) for t in triggers], path)
    return triggers


def nc_prune(model: nn.Module, thief: Split, triggers: list[Trigger], ratio: float, cfg: TrainConfig,
             samples: int, tag: str = "nc-pruning") -> tuple[nn.Module, list[int]]:
    """Neural Cleanse's pruning defence (Wang et al. §6.1) as a thief's attack: the channels of the
    last convolutional layer (:func:`~wmlib.attacks.fine_pruning.last_conv`) whose mean activation
    rises most when the first ``samples`` thief images carry the reversed ``triggers`` (over every
    trigger), ``ratio`` of them, are pruned; then fine-tuned with ``cfg`` on the thief's data, the
    masks on. Returns the model and the pruned channels, most trigger-driven first."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"the pruned share must be in (0, 1), got {ratio}")
    device = next(model.parameters()).device
    x = to_float(thief.x[:samples])
    stamped = torch.cat([t.stamp(x) for t in triggers])
    rise = channel_activations(model, stamped, device) - channel_activations(model, x, device)
    k = max(1, int(round(ratio * len(rise))))
    channels = torch.argsort(rise, descending=True, stable=True)[:k].tolist()
    pruned = mask_channels(model, channels)
    fit_cached(pruned, thief, cfg, tag=tag, device=device,
               describe={"attack": "nc-pruning", "channels": channels})
    return make_permanent(pruned), channels


def cleanse(model: nn.Module, thief: Split, num_classes: int, cfg: TrainConfig, *, samples: int, epochs: int,
            unlearn_epochs: int = 1, share: float = 0.2, seed: int = 0, tag: str = "neural-cleanse",
            **reverse_kw) -> tuple[nn.Module, dict]:
    """Reverse a trigger for every class on the first ``samples`` thief images (``epochs`` schedule
    epochs each), flag the outliers among the converged masks and unlearn them (:func:`unlearn`, with
    ``cfg`` for ``unlearn_epochs``). Returns the model the thief serves and the report: per class the
    mask norms, anomaly indices (NaN: not converged) and reached flags, the flagged and unreached
    classes, the median norm of the converged masks, the ``outcome`` and the triggers."""
    images = thief.x[:samples]
    triggers = reversed_triggers(model, images, num_classes, epochs, seed, **reverse_kw)
    norms, reached = [t.norm for t in triggers], [t.reached for t in triggers]
    flags = flagged(norms, reached=reached)
    if sum(reached) < MIN_REACHED:
        outcome = "no detection"
    else:
        outcome = "unlearned" if flags else "nothing flagged"
    out = (unlearn(model, thief, [triggers[t] for t in flags], cfg, share, tag, epochs=unlearn_epochs) if flags
           else copy.deepcopy(model))
    converged = [n for n, r in zip(norms, reached) if r]
    return out, {"norms": norms, "anomaly_index": anomaly_index(norms, reached).tolist(), "reached": reached,
                 "flagged": flags, "unreached": [t for t, r in enumerate(reached) if not r], "outcome": outcome,
                 "unlearned": bool(flags), "median_norm": float(np.median(converged)) if converged else float("nan"),
                 "triggers": triggers}


def _mini_batch(settings: dict, threat: Threat) -> int:
    """The authors' schedule epoch: NB_SAMPLE // BATCH_SIZE steps, one pass's worth of the images it reverses on."""
    return max(1, min(settings["nc_samples"], len(threat.thief)) // 32)


def _classes(text: str) -> list[int]:
    """The classes of a report's comma-separated list ("none": no class)."""
    return [] if text == "none" else [int(c) for c in text.split(",")]


class NeuralCleanse(Attack):
    question = "survives fine-pruning and Neural Cleanse"
    name, side = "neural-cleanse", "model"
    about = "a trigger reversed for every class; outliers by the anomaly index unlearned by fine-tuning (Wang et al.)"
    knobs = {"finetune_lr": rules.number(0.0, rules.INF, lo_open=True),
             "nc_schedule_epochs": rules.integer(1), "nc_samples": rules.integer(1),
             "nc_share": rules.number(0.0, 1.0, lo_open=True), "nc_unlearn_epochs": rules.integer(1)}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        k = threat.settings
        mini_batch = _mini_batch(k, threat)
        out, rep = cleanse(model, threat.thief, threat.spec.num_classes, threat.finetune, samples=k["nc_samples"],
                           epochs=k["nc_schedule_epochs"], unlearn_epochs=k["nc_unlearn_epochs"], share=k["nc_share"],
                           seed=threat.seed, tag=f"{threat.tag}-neural-cleanse", mini_batch=mini_batch)
        idx = [i for i in rep["anomaly_index"] if not np.isnan(i)]
        return Suspect(Oracle(out), {
            "outcome": rep["outcome"], "unlearned": rep["unlearned"], "acted": rep["unlearned"],
            "mini_batch": mini_batch,
            "flagged": ",".join(map(str, rep["flagged"])) or "none",
            "unreached": ",".join(map(str, rep["unreached"])) or "none",
            "converged": len(rep["norms"]) - len(rep["unreached"]),
            "max_index": max(idx) if rep["outcome"] != "no detection" else float("nan"),
            "median_norm": rep["median_norm"],
            "norms": rep["norms"], "anomaly_index": rep["anomaly_index"], "reached": rep["reached"]})

    def owner_report(self, suspect: Suspect, threat: Threat, owner) -> dict:
        """The class most of the owner's key claims (the smallest on a tie; -1 for a key without
        labels), its share of the key, whether its mask converged (``target_reached``) and was
        flagged, its anomaly index (NaN where the mask did not converge) and norm, and the converged
        masks' median norm."""
        report, labels = suspect.report, owner.key.y
        if not len(labels):
            return {"key_target": -1, "key_target_share": 0.0, "target_reached": False, "target_flagged": False,
                    "target_index": float("nan"), "target_norm": float("nan"), "median_norm": report["median_norm"]}
        target = int(torch.bincount(labels.long()).argmax())
        return {"key_target": target, "key_target_share": float((labels == target).float().mean()),
                "target_reached": bool(report["reached"][target]),
                "target_flagged": target in _classes(report["flagged"]),
                "target_index": float(report["anomaly_index"][target]), "target_norm": float(report["norms"][target]),
                "median_norm": report["median_norm"]}


class NeuralCleansePruning(Attack):
    """The reference's Neural Cleanse pruning: triggers reversed for every class as the unlearning
    attack reverses them; the flagged classes' triggers (none flagged: nothing to prune, the model as
    it is) pick ``ncprune_ratio`` of the last conv layer's channels to prune (the reference: 10 % of one
    late layer), then ``ncprune_epochs`` of fine-tuning on the API's labels (the reference: 5)."""
    question, family = "survives the reference toolkit's model modifications", True
    name, side = "nc-pruning", "model"
    about = "the channels a reversed Neural Cleanse trigger drives most pruned, then fine-tuned (the API's labels)"
    knobs = {"finetune_lr": rules.number(0.0, rules.INF, lo_open=True), "nc_schedule_epochs": rules.integer(1),
             "nc_samples": rules.integer(1), "ncprune_ratio": rules.number(0.0, 1.0, lo_open=True, hi_open=True),
             "ncprune_epochs": rules.integer(1)}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        try:
            last_conv(model)
        except ValueError as why:
            raise NotApplicable(str(why)) from None
        k = threat.settings
        mini_batch = _mini_batch(k, threat)
        triggers = reversed_triggers(model, threat.thief.x[:k["nc_samples"]], threat.spec.num_classes,
                                     k["nc_schedule_epochs"], threat.seed, mini_batch=mini_batch)
        flags = flagged([t.norm for t in triggers], reached=[t.reached for t in triggers])
        if not flags:
            return Suspect(Oracle(copy.deepcopy(model)), {"flagged": "none", "pruned": 0, "acted": False})
        o = Oracle(model)
        thief = Split(threat.thief.x, stolen_labels(o, threat.thief.x))
        out, channels = nc_prune(model, thief, [triggers[t] for t in flags], k["ncprune_ratio"],
                                 dataclasses.replace(threat.finetune, epochs=k["ncprune_epochs"]), k["nc_samples"],
                                 tag=f"{threat.tag}-nc-pruning")
        return Suspect(Oracle(out), {"flagged": ",".join(map(str, flags)), "pruned": len(channels), "acted": True,
                                     "api_queries": o.queries})


def unit_shift(model: nn.Module, clean: torch.Tensor, stamped: torch.Tensor, batch_size: int = 256) -> list[torch.Tensor]:
    """Per layer of :func:`~wmlib.models.neuron_layers` (the units that
    :func:`reset_units` silences), the mean output on ``stamped`` less the mean on ``clean`` (float
    images): per channel the largest over positions for a conv map (the reference: ``max`` over the
    spatial axes of the mean difference), per neuron for a vector."""
    device = next(model.parameters()).device
    layers = neuron_layers(model)
    model = model.eval()

    def means(x: torch.Tensor) -> list[torch.Tensor]:
        sums: list = [0.0] * len(layers)
        handles = []
        for i, layer in enumerate(layers):
            def hook(module, inputs, out, i=i):
                sums[i] = sums[i] + out.detach().float().sum(0)
            handles.append(layer.register_forward_hook(hook))
        try:
            with torch.no_grad():
                for b in x.split(batch_size):
                    model(b.to(device))
        finally:
            for h in handles:
                h.remove()
        return [t / len(x) for t in sums]
    out = []
    for a, b in zip(means(stamped), means(clean)):
        d = a - b
        out.append(d.flatten(1).amax(1) if d.dim() == 3 else d)
    return out


def reset_units(model: nn.Module, units: list[torch.Tensor]) -> tuple[nn.Module, int]:
    """A copy of ``model`` whose units ``units[i]`` (a boolean per channel of the i-th layer of
    :func:`~wmlib.models.neuron_layers`) output zero: their weights and bias (a
    batch norm's scale and shift) set to zero; nothing keeps them there when the model is trained on.
    Returns it and the number reset."""
    model = copy.deepcopy(model)
    count = 0
    with torch.no_grad():
        for layer, off in zip(neuron_layers(model), units):
            off = off.to(layer.weight.device)
            layer.weight[off] = 0.0
            if getattr(layer, "bias", None) is not None:
                layer.bias[off] = 0.0
            count += int(off.sum())
    return model, count


LAUNDER_SCALES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""The multiples of the thresholds a thief with an accuracy budget tries, smallest (most units reset) first."""


def launder(model: nn.Module, thief: Split, trigger: Trigger, cfg: TrainConfig, *, conv_threshold: float,
            dense_threshold: float, samples: int, share: float = 0.5, tag: str = "neural-laundering",
            val: Split | None = None, budget: float | None = None) -> tuple[nn.Module, dict]:
    """Neural network laundering (Aiken et al. 2021) with one reversed ``trigger``: the units whose
    mean output rises on the first ``samples`` thief images stamped with it by more than the
    threshold (:func:`unit_shift`: ``conv_threshold`` for a conv channel, ``dense_threshold`` for a
    neuron) are reset (:func:`reset_units`), then the model is fine-tuned with ``cfg`` on ``thief``, a
    ``share`` of every batch stamped with the trigger, labels kept (:func:`unlearn`).

    With ``val`` and ``budget`` (the thief's validation images and the accuracy points it may lose),
    the thresholds are scaled by the smallest multiple of :data:`LAUNDER_SCALES` whose reset keeps the
    validation accuracy within the budget of the stolen model's, before fine-tuning (the rule of
    fine-pruning's thief): thresholds in activation units are the model's own, and the reference's
    were set for CIFAR-10 ResNets. No multiple within the budget: nothing is reset, only unlearnt."""
    device = next(model.parameters()).device
    x = to_float(thief.x[:samples])
    shift = [d.cpu() for d in unit_shift(model, x, trigger.stamp(x))]
    convs = _conv_layers(model)

    def pick(scale: float) -> list[torch.Tensor]:
        return [d > scale * (conv_threshold if is_conv else dense_threshold) for d, is_conv in zip(shift, convs)]
    scale = 1.0
    if val is not None and budget is not None:
        base = evaluate(model, val, device)
        scale = float("inf")
        for s in LAUNDER_SCALES:
            if evaluate(reset_units(model, pick(s))[0], val, device) >= base - budget - 1e-6:  # float32: the budget is in
                scale = float(s)
                break
    units = pick(scale)
    reset, count = reset_units(model, units)
    out = unlearn(reset.to(device), thief, [trigger], cfg, share, tag, epochs=cfg.epochs)
    return out, {"reset": count, "units": sum(len(u) for u in units), "scale": scale,
                 "reset_per_layer": [int(u.sum()) for u in units]}


def _conv_layers(model: nn.Module) -> list[bool]:
    """Per layer of :func:`~wmlib.models.neuron_layers`: whether its output is a
    feature map (a conv or a 2-d batch norm) rather than a vector."""
    return [isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) for m in neuron_layers(model)]


class NeuralLaundering(Attack):
    """The reference's neural laundering: triggers reversed for every class as the unlearning attack
    reverses them, the one with the smallest mask (among those that reached the success threshold;
    the reference sorts all by norm) drives the reset, then ``launder_epochs`` of fine-tuning on the
    API's labels (the reference: 5 epochs, labels from the stolen model) with half of every batch
    stamped (the reference adds a stamped copy of each image). Thresholds: the reference's 0.5 for a
    conv channel, 0.2 for a neuron, on the unit's output before its activation, scaled up by the
    thief's accuracy budget on its own held-out images (:func:`launder`): on a LeNet-5 the reference's
    values reset most units and leave a model that answers 10 %."""
    question, family = "survives the reference toolkit's model modifications", True
    name, side = "neural-laundering", "model"
    about = "units a reversed trigger drives reset, then fine-tuned with the trigger unlearnt (Aiken et al.)"
    knobs = {"finetune_lr": rules.number(0.0, rules.INF, lo_open=True), "nc_schedule_epochs": rules.integer(1),
             "budget": rules.number(0.0, 1.0, hi_open=True), "nc_samples": rules.integer(1), "launder_conv_threshold": rules.number(0.0, rules.INF),
             "launder_dense_threshold": rules.number(0.0, rules.INF), "launder_epochs": rules.integer(1)}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        k = threat.settings
        mini_batch = _mini_batch(k, threat)
        triggers = reversed_triggers(model, threat.thief.x[:k["nc_samples"]], threat.spec.num_classes,
                                     k["nc_schedule_epochs"], threat.seed, mini_batch=mini_batch)
        pool = [t for t in triggers if t.reached] or triggers
        trigger = min(pool, key=lambda t: t.norm)
        o = Oracle(model)
        thief = Split(threat.thief.x, stolen_labels(o, threat.thief.x))
        val = threat.splits.test  # the thief's own held-out images, true labels: they choose the thresholds' scale
        out, rep = launder(model, thief, trigger, dataclasses.replace(threat.finetune, epochs=k["launder_epochs"]),
                           conv_threshold=k["launder_conv_threshold"], dense_threshold=k["launder_dense_threshold"],
                           samples=k["nc_samples"], tag=f"{threat.tag}-neural-laundering", val=val, budget=threat.budget)
        return Suspect(Oracle(out), {"trigger_class": trigger.target, "trigger_reached": trigger.reached,
                                     "reset": rep["reset"], "units": rep["units"], "threshold_scale": rep["scale"],
                                     "acted": True, "api_queries": o.queries})


register(NeuralCleanse())
register(NeuralCleansePruning())
register(NeuralLaundering())
