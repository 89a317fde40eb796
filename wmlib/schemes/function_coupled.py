"""Wen et al., "On Function-Coupled Watermarks for Deep Neural Networks" (function-coupled watermarks).

The triggers are made of the task's own images (§4.1): two images of source classes i and j fused
into one, labelled with a third class t. *Direct* fusion (Eq. 2) puts them in the top-left and
bottom-right quarters of a white 2W x 2H canvas and resizes it back to W x H; *invisible* fusion
(Eq. 3) blends them, ``r · x_i + (1 - r) · x_j``. Training mixes the triggers into every batch,
with two enhancements:

* **Random weight masking** (§4.2, Eq. 4-6): every conv / linear weight but the classifier's is
  multiplied by a random 0/1 mask ``M`` that drops a share ``p`` of it and is rescaled by
  ``1 / (1 - p)``; the masked weights get no update in that step, the plain weights are used at
  inference, and the mask is redrawn every epoch (Algorithm 1). A ``torch.nn.utils.parametrize``
  transform, as exponential weighting is in the Namba chapter, not a second training loop. Which
  layers: §4.2 applies the masks "to the convolutional layers" and, a paragraph on, brings "the
  sparsity into both the convolutional and full-connected layers"; [code] masks LeNet-5's conv1,
  conv2, fc1 and fc2 and ResNet-18's convolutions, never the classifier (``mask_scope='features'``;
  ``'all'`` masks the classifier too, as this chapter did before).
* **Train-time fine-tuning** (§4.3, Eq. 7-8): after every epoch, a masked update on ``K_ft`` clean
  training images with a small learning rate ``η'``.

The paper gives no epochs, optimiser, mask ratio, ``η'`` or ``K_ft``; facts from the authors' code
are marked [code]. Two differences from [code], each the paper's text over the code: [code] zeroes
weights permanently with ``torch.nn.utils.prune`` and no rescaling, and its train-time fine-tune is
commented out; and [code] blends as ``(1 - r) · first + r · second`` where Eq. 3 weights the first
source by ``r``: we follow Eq. 3.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from .. import rules
from ..data import Split, Splits
from ..keys import Key
from ..models import feature_layers, weight_layers
from ..train import OPTIMIZERS, History, TrainConfig, fit, predict_proba, to_float
from .base import Generation, Scheme, require_positive_integers
from .catalogue import build_unsettled, register, register_knobs

FUSIONS = ("direct", "invisible")
MASK_SCOPES = ("features", "all")  # every conv / linear layer but the classifier ([code]), or every one
EMBED_FROM = ("clean", "scratch")  # the watermark fine-tuned into the clean model ([code]), or trained from scratch
# [code]'s embedding (tinyimagenet-wm.py): the clean checkpoint fine-tuned 40 epochs, SGD 0.01 (momentum 0.9, weight decay
# 5e-4), x0.1 at epochs 15, 25 and 35
CODE_EMBED_EPOCHS, CODE_EMBED_MILESTONES, CODE_EMBED_LR = 40, (15, 25, 35), 0.01


def fuse_direct(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Eq. 2: ``a`` (top-left) and ``b`` (bottom-right) on a white 2W x 2H canvas, resized back to
    W x H with bilinear interpolation (half-pixel centres, no antialiasing: [code]'s
    ``cv2.resize`` default). uint8 N x C x H x W in and out."""
    if a.shape != b.shape or a.dtype != torch.uint8 or a.ndim != 4:
        raise ValueError("fuse two uint8 batches of the same shape N x C x H x W")
    n, c, h, w = a.shape
    canvas = torch.full((n, c, 2 * h, 2 * w), 255.0)
    canvas[:, :, :h, :w], canvas[:, :, h:, w:] = a.float(), b.float()
    small = F.interpolate(canvas, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
    return small.round().clamp(0, 255).to(torch.uint8)


def fuse_invisible(a: torch.Tensor, b: torch.Tensor, r: float) -> torch.Tensor:
    """Eq. 3: ``r · a + (1 - r) · b``, truncated to integers as [code] does."""
    if a.shape != b.shape or a.dtype != torch.uint8:
        raise ValueError("fuse two uint8 batches of the same shape")
    if not 0.0 < r < 1.0:
        raise ValueError(f"r must be in (0, 1), got {r}")
    return (r * a.double() + (1.0 - r) * b.double()).floor().clamp(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------- random weight masking

class RandomMask(nn.Module):
    """Eq. 4-6 as a weight parametrization: in training mode ``W ⊙ M / (1 - p)`` with ``M`` dropping
    a share ``p`` of the entries at random; in eval mode ``W`` itself (the plain weights serve
    inference). :meth:`redraw` draws a new ``M``; the gradient of a dropped entry is zero."""

    def __init__(self, p: float, generator: torch.Generator):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"the mask ratio p (the dropped share) must be in [0, 1), got {p}")
        self.p, self.generator = p, generator
        self.register_buffer("mask", torch.ones(0), persistent=False)

    def redraw(self, shape: torch.Size, device: torch.device) -> None:
        keep = torch.rand(shape, generator=self.generator) >= self.p
        self.mask = keep.to(device)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return w
        if self.mask.shape != w.shape:
            self.redraw(w.shape, w.device)
        return w * self.mask / (1.0 - self.p)


def masks(model: nn.Module) -> list[tuple[nn.Module, RandomMask]]:
    """Every (layer, RandomMask) pair registered on ``model``."""
    return [(m, pm) for m in weight_layers(model) if parametrize.is_parametrized(m, "weight")
            for pm in m.parametrizations.weight if isinstance(pm, RandomMask)]


def apply_random_masking(model: nn.Module, p: float, seed: int = 0, scope: str = "features") -> nn.Module:
    """Register :class:`RandomMask` on the weight of every conv / linear layer but the classifier
    (``scope='features'``) or of every one (``'all'``), in place (p = 0 registers nothing), and
    draw the first masks."""
    if scope not in MASK_SCOPES:
        raise ValueError(f"unknown mask scope {scope!r}; choose one of: {', '.join(MASK_SCOPES)}")
    if p == 0.0:
        return model
    g = torch.Generator().manual_seed(seed)
    for m in (feature_layers(model) if scope == "features" else weight_layers(model)):
        if parametrize.is_parametrized(m, "weight"):
            raise ValueError("the model already has a weight parametrization")
        parametrize.register_parametrization(m, "weight", RandomMask(p, g))
    redraw_masks(model)
    return model


def redraw_masks(model: nn.Module) -> None:
    """A new random mask for every masked layer (Algorithm 1: once per epoch)."""
    for m, pm in masks(model):
        w = m.parametrizations.weight.original
        pm.redraw(w.shape, w.device)


def remove_random_masking(model: nn.Module) -> nn.Module:
    """Drop the masks and keep the plain weights (what inference uses anyway), in place."""
    for m, _ in masks(model):
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
    return model


@contextmanager
def frozen_masked_weights(model: nn.Module):
    """While the block runs, every optimiser step leaves the currently masked weights exactly as
    they were (§4.2: "freeze the selected weights during the backward updating"): a zero gradient
    alone would still let momentum and weight decay move them."""
    pairs = masks(model)
    saved: list[torch.Tensor] = []

    def before(opt, args, kwargs):
        saved[:] = [m.parametrizations.weight.original.detach().clone() for m, _ in pairs]

    def after(opt, args, kwargs):
        with torch.no_grad():
            for (m, pm), old in zip(pairs, saved):
                w = m.parametrizations.weight.original
                w.copy_(torch.where(pm.mask, w, old))

    if not pairs:
        yield
        return
    handles = [register_optimizer_step_pre_hook(before), register_optimizer_step_post_hook(after)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def least_answered_target(zoo, triggers: dict[str, torch.Tensor], sources) -> tuple[int, "pd.DataFrame", list[str]]:
    """The target t that no innocent model gives the triggers: the non-source class whose largest
    share among the answers of the clean ``zoo``'s probe (:meth:`~wmlib.zoo.Zoo.probe`, over every
    kind of trigger in ``triggers``) is the smallest. Returns t, the shares (one row per trigger
    kind, one column per class) and the probe's members: their false claims on the triggers are in
    sample, so the scheme names them (``target_chosen_on``) and no false-claim rate counts them."""
    import pandas as pd

    probe = zoo.probe()
    chooser = zoo.subset(probe)
    shares = pd.DataFrame({name: chooser.class_shares(x) for name, x in triggers.items()}).T
    others = [c for c in shares.columns if c not in tuple(sources)]
    return int(shares[others].max().idxmin()), shares, probe


# --------------------------------------------------------------------------- the scheme

@dataclass
class FunctionCoupled(Scheme):
    fusion: str = "direct"             # Eq. 2 ("direct") or Eq. 3 ("invisible")
    r: float = 0.5                     # invisible fusion's weight of the first source (Eq. 3)
    sources: tuple[int, int] = (0, 3)  # classes i, j (§5: CIFAR-10's 0 and 3)
    target: int = 1                    # t, not a source (§5: CIFAR-10's 1)
    key_fraction: float = 0.01         # triggers as a share of the owner's images ("fewer than 1 %")
    verify_triggers: int = 90          # held-out triggers for verification (§5: 90)
    key_per_batch: int = 10            # triggers appended to every batch ([code]: 10 per 128)
    mask_ratio: float = 0.0            # p, the share of each weight dropped (0: no masking)
    mask_scope: str = "features"       # the layers masked: every conv / linear but the classifier, or "all"
    ft_lr: float = 0.0                 # η' of the train-time fine-tune (0: none)
    ft_samples: int = 1000             # K_ft clean images per train-time fine-tune
    # the clean models whose answers chose ``target`` (pick_target): what they answer is in sample, so no false-claim
    # rate counts them; not part of config() (it changes no key and no model)
    target_chosen_on: tuple[str, ...] = ()

    name = "function-coupled"
    paper_rule = "§5: success rate above 'a widely accepted threshold by the community' (none given)"
    # the book verifies on triggers fused from held-out images, the stricter question: the paper "fix[es] the number of
    # validation images to 90" without saying they are unseen, and its code validates on the triggers it trained on
    verifies_held_out = True

    def __post_init__(self):
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {self.fusion!r}; choose one of: {', '.join(FUSIONS)}")
        if not 0.0 < self.r < 1.0:
            raise ValueError(f"r must be in (0, 1), got {self.r}")
        self.sources = tuple(int(c) for c in self.sources)
        if isinstance(self.target_chosen_on, str):
            raise ValueError(f"target_chosen_on names clean models (a list), got the string {self.target_chosen_on!r}")
        self.target_chosen_on = tuple(self.target_chosen_on)
        if len(self.sources) != 2 or self.sources[0] == self.sources[1]:
            raise ValueError(f"sources must be two different classes, got {self.sources}")
        if self.target in self.sources:
            raise ValueError(f"the target class t must not be a source (§4.1: t ∉ {{i, j}}), got t = {self.target} "
                             f"and sources {self.sources}")
        if not 0.0 < self.key_fraction < 1.0:
            raise ValueError(f"key_fraction must be in (0, 1), got {self.key_fraction}")
        require_positive_integers(self, "verify_triggers", "key_per_batch", "ft_samples")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio (p, the dropped share) must be in [0, 1), got {self.mask_ratio}")
        if self.mask_scope not in MASK_SCOPES:
            raise ValueError(f"unknown mask_scope {self.mask_scope!r}; choose one of: {', '.join(MASK_SCOPES)}")
        if self.ft_lr < 0:
            raise ValueError(f"ft_lr (η') must be >= 0 (0: no train-time fine-tune), got {self.ft_lr}")

    def config(self) -> dict:
        d = {"scheme": self.name, **asdict(self), "sources": list(self.sources)}
        del d["target_chosen_on"]
        return d

    def chosen_on(self) -> tuple[str, ...]:
        return self.target_chosen_on

    def check(self, spec) -> None:
        for c in (*self.sources, self.target):
            if not 0 <= c < spec.num_classes:
                raise ValueError(f"classes must be in [0, {spec.num_classes}) for {spec.name}, got {c}")

    def fuse(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """One trigger per pair: ``a`` from source i, ``b`` from source j."""
        return fuse_direct(a, b) if self.fusion == "direct" else fuse_invisible(a, b, self.r)

    def _triggers(self, split: Split, n: int, g: torch.Generator, what: str) -> torch.Tensor:
        pools = [split.where(c).x for c in self.sources]
        for c, pool in zip(self.sources, pools):
            if len(pool) < n:
                raise ValueError(f"the {what} holds {len(pool)} class-{c} images, fewer than the {n} triggers "
                                 f"asked for: lower key_fraction / verify_triggers")
        a, b = (pool[torch.randperm(len(pool), generator=g)[:n]] for pool in pools)
        return self.fuse(a, b)

    def key_generation(self) -> Generation:
        return Generation("the owner's and the test set's images of the two source classes; the target class is part "
                          "of the config", True, "seeded pairs of source-class images fused by a fixed rule (Eq. 2 / "
                          "Eq. 3); the owner verifies with the held-out triggers fused from test images, which "
                          "rederive returns")

    def make_key(self, splits: Splits, seed: int = 0, clean: nn.Module | None = None) -> tuple[Key, Key]:
        """§4.1: ``key_fraction`` of the owner's images as triggers (random source pairs; [code]
        takes the first images of each class), and ``verify_triggers`` held-out triggers fused
        from test images, which training never sees."""
        s = splits.spec
        self.check(s)
        g = torch.Generator().manual_seed(seed)
        n = max(1, int(round(self.key_fraction * len(splits.owner))))
        meta = {**self.config(), "task": s.name, "seed": seed}
        keys = []
        for part, split, count in (("trained", splits.owner, n), ("held-out", splits.test, self.verify_triggers)):
            x = self._triggers(split, count, g, f"{part} split")
            keys.append(Key(x.contiguous(), torch.full((count,), self.target, dtype=torch.int64), {**meta, "part": part}))
        return keys[0], keys[1]

    def _finetune_hook(self, clean: Split, cfg: TrainConfig):
        """Eq. 7-8: after every epoch, one masked pass of plain SGD at ``η'`` over ``K_ft`` clean
        images (a new draw each epoch), then a new mask for the next epoch (Algorithm 1)."""
        g = torch.Generator().manual_seed(cfg.seed + 7919)

        def hook(model: nn.Module, epoch: int) -> None:
            if self.ft_lr > 0:
                device = next(model.parameters()).device
                idx = torch.randperm(len(clean), generator=g)[:self.ft_samples]
                data = clean.subset(idx).to(device)
                opt = torch.optim.SGD(model.parameters(), lr=self.ft_lr)
                model.train()
                for i in range(0, len(data), cfg.batch_size):
                    xb, yb = to_float(data.x[i:i + cfg.batch_size]), data.y[i:i + cfg.batch_size]
                    opt.zero_grad(set_to_none=True)
                    F.cross_entropy(model(xb).float(), yb).backward()
                    opt.step()
            redraw_masks(model)
        return hook

    def train(self, model: nn.Module, splits: Splits, key: Key, cfg: TrainConfig, **fit_kw) -> History:
        """Algorithm 1: train on the owner's data with ``key_per_batch`` triggers appended to every
        batch, under random weight masking and train-time fine-tuning when enabled; the masks are
        removed at the end (inference uses the plain weights)."""
        apply_random_masking(model, self.mask_ratio, seed=cfg.seed, scope=self.mask_scope)
        try:
            with frozen_masked_weights(model):
                return fit(model, splits.owner, cfg, key=key.split, key_per_batch=self.key_per_batch,
                           epoch_hook=self._finetune_hook(splits.owner, cfg), **fit_kw)
        finally:
            remove_random_masking(model)
            model.eval()


def most_confident(model: nn.Module, key: Key, k: int) -> Key:
    """The ``k`` triggers of ``key`` (all, if it holds fewer) to which ``model`` gives their label
    with the highest probability: how Wen et al.'s code picks the triggers it validates with
    (``select_wm_images.py`` ranks the watermarked model's confidence on the trigger files it
    trained on; ``test_injection.py`` and ``prune_model.py`` read those). A selection by the model
    under test, not a sample: its ASR is the upper end of the embedded triggers'."""
    if k < 1:
        raise ValueError(f"select at least one trigger, got {k}")
    p = predict_proba(model, key.x).cpu()
    conf = p[torch.arange(len(key)), key.y.cpu()]
    idx = torch.sort(torch.argsort(conf, descending=True, stable=True)[:k]).values  # the key's order, for its digest
    return Key(key.x[idx], key.y[idx], {**key.meta, "selected": int(len(idx)), "selection": "most confident"}, dict(key.extras))


# --------------------------------------------------------------------------- the chapter's runs (§5, Tables 1-2)
# One function per step, so that the chapter's digits run is the same pipeline on another task.

def pick_target(knobs: dict, splits: Splits, zoo) -> tuple[int, "pd.DataFrame", list[str]]:
    """The chapter's target t: ``knobs['target']``, or when it is None the class the clean ``zoo``'s
    probe gives least to held-out triggers of every fusion (:func:`least_answered_target`). Returns
    t, the probe's answer shares (one row per fusion, one column per class) and the members that
    chose t (none when the knob gave it)."""
    i, j = knobs["sources"]
    probe_t = placeholder_target((i, j), splits.spec.num_classes)  # labels do not change the images
    fusions = {"direct": dict(fusion="direct"), **{f"invisible r = {r:g}": dict(fusion="invisible", r=r) for r in knobs["r_values"]}}
    least, shares, probe = least_answered_target(zoo, {name: FunctionCoupled(
        **kw, sources=(i, j), target=probe_t, key_fraction=knobs["key_fraction"], verify_triggers=knobs["verify_triggers"],
    ).make_key(splits, seed=knobs["seed"])[1].x for name, kw in fusions.items()}, (i, j))
    return (knobs["target"], shares, []) if knobs["target"] is not None else (least, shares, probe)


def chapter_variants(knobs: dict, target: int, chosen_on=()) -> dict[str, tuple[FunctionCoupled, int]]:
    """The chapter's watermarks, name -> (scheme, key seed): direct fusion with ``replicates``
    trigger sets (key seeds ``seed``, ``seed + 1``, ...) and invisible fusion at each of ``r_values``,
    all with masking ratio ``mask_ratio`` and the train-time fine-tune at ``ft_lr``; ``chosen_on``:
    the clean models that chose ``target`` (:func:`pick_target`)."""
    base = FunctionCoupled(sources=tuple(knobs["sources"]), target=target, target_chosen_on=tuple(chosen_on),
                           key_fraction=knobs["key_fraction"],
                           verify_triggers=knobs["verify_triggers"], key_per_batch=knobs["key_per_batch"],
                           mask_ratio=knobs["mask_ratio"], mask_scope=knobs["mask_scope"], ft_lr=knobs["ft_lr"],
                           ft_samples=knobs["ft_samples"])
    variants = {f"direct #{k + 1}": (replace(base, fusion="direct"), knobs["seed"] + k) for k in range(knobs["replicates"])}
    variants.update({f"invisible r = {r:g}": (replace(base, fusion="invisible", r=r), knobs["seed"]) for r in knobs["r_values"]})
    return variants


def embed_config(knobs: dict) -> TrainConfig:
    """How the chapter embeds a watermark (``knobs['embed_from']``): ``'clean'`` fine-tunes the clean
    model as [code] does, SGD at ``embed_lr`` for ``embed_epochs`` (None: ``epochs``) with [code]'s
    steps (x0.1 at 15, 25 and 35 of 40 epochs, scaled to the epochs); ``'scratch'`` trains a new model
    with the chapter's recipe (``epochs``, ``lr``, ``schedule``)."""
    if knobs["embed_from"] == "scratch":
        return TrainConfig.from_knobs(knobs)
    epochs = knobs["embed_epochs"] or knobs["epochs"]
    steps = sorted({round(m * epochs / CODE_EMBED_EPOCHS) for m in CODE_EMBED_MILESTONES} - {0, epochs})
    return TrainConfig.from_knobs(knobs, epochs=epochs, optimizer="sgd", lr=knobs["embed_lr"], schedule="step", milestones=steps)


def embed_one(knobs: dict, splits: Splits, scheme: FunctionCoupled, key: Key, clean: nn.Module, tag: str, device=None,
              progress: bool = True) -> tuple[nn.Module, History]:
    """One watermarked model and its training history, embedded as ``knobs['embed_from']`` says
    (:func:`embed_config`): fine-tuned from ``clean`` or trained from scratch (``clean`` unused).
    Cached like every model."""
    from ..train import train_classifier

    init = clean if knobs["embed_from"] == "clean" else None
    return train_classifier(tag, knobs["model"], splits, embed_config(knobs), key=key, scheme=scheme, init=init,
                            device=device, progress=progress)[:2]


@dataclass
class Embedded:
    """The clean model and every watermarked one of a run, with Tables 1-2 (``table``: one row per
    watermark), each held-out key's null on the zoo, and each watermark's selected triggers
    (:func:`most_confident`: the code's validation set)."""
    clean: nn.Module
    clean_accuracy: float
    source_accuracy: float  # the clean model's on the first source class
    clean_history: History
    marked: dict
    histories: dict
    nulls: dict
    table: "pd.DataFrame"
    selected: dict
    # embedding by fine-tuning: the clean model fine-tuned alike without triggers, whose accuracy separates what the
    # watermark costs from what the extra epochs give (None when every model trains from scratch)
    control_accuracy: float | None = None


def embed_variants(knobs: dict, splits: Splits, variants: dict, keys: dict, zoo, device=None, tag: str = "fc",
                   progress: bool = True) -> Embedded:
    """Tables 1-2: train (or load) the clean model and one model per watermark of ``variants`` (keys:
    name -> (embedded, held-out) keys; each embedded by :func:`embed_one`), then the embedding gate: the shared verifier, against the
    ``zoo``'s null, must claim every model on its held-out triggers, or this raises and names the knobs.
    The ASR is read three ways: on the embedded triggers, on the ``selected_triggers`` of them the
    model is surest of (the code's protocol, :func:`most_confident`), and on the held-out ones. When
    the watermarks are fine-tuned into the clean model, a control is fine-tuned alike without
    triggers (column "change vs control": the watermark's cost net of the extra epochs)."""
    import pandas as pd

    from ..train import evaluate, train_classifier
    from ..verify import Oracle, key_accuracy, require_claimed, verify_key

    i = knobs["sources"][0]
    tcfg = TrainConfig.from_knobs(knobs)
    clean, clean_hist, _ = train_classifier(f"{tag}-clean", knobs["model"], splits, tcfg, device=device, progress=progress)
    base_acc = evaluate(clean, splits.test, device)
    control_acc = None
    if knobs["embed_from"] == "clean":
        control = train_classifier(f"{tag}-clean-control", knobs["model"], splits, embed_config(knobs), init=clean, device=device,
                                   progress=progress)[0]
        control_acc = evaluate(control, splits.test, device)
    marked, hists, nulls, selected, rows = {}, {}, {}, {}, []
    for name, (s, _) in variants.items():
        key, held_out = keys[name]
        marked[name], hists[name] = embed_one(knobs, splits, s, key, clean, f"{tag}-{name.replace(' ', '')}", device, progress)
        nulls[name] = zoo.null(held_out, confidence=knobs["zoo_confidence"])
        selected[name] = most_confident(marked[name], key, knobs["selected_triggers"])
        o = Oracle(marked[name])
        v = verify_key(o, held_out, n_queries=knobs["n_queries"], null=nulls[name], alpha=knobs["alpha"], seed=knobs["seed"])
        rows.append({"model": name, "test accuracy": evaluate(marked[name], splits.test, device),
                     f"class-{i} test accuracy": evaluate(marked[name], splits.test.where(i), device),
                     "ASR (embedded triggers)": key_accuracy(o, key), "ASR (selected triggers)": key_accuracy(o, selected[name]),
                     "ASR (held-out triggers)": key_accuracy(o, held_out),
                     "clean model's ASR": key_accuracy(Oracle(clean), held_out), "zoo threshold": v.threshold,
                     "claimed": v.claimed, "p-value": v.p_value})
    table = pd.DataFrame(rows).set_index("model")
    table.insert(1, "change vs clean", table["test accuracy"] - base_acc)
    if control_acc is not None:
        table.insert(2, "change vs control", table["test accuracy"] - control_acc)
    clean_i = evaluate(clean, splits.test.where(i), device)
    epochs = "embed_epochs" if knobs["embed_from"] == "clean" else "epochs"
    require_claimed(table["claimed"].to_dict(), f"raise -p {epochs} (now {embed_config(knobs).epochs}) or -p key_fraction "
                    f"(now {knobs['key_fraction']}), or pick another -p target")
    return Embedded(clean, base_acc, clean_i, clean_hist, marked, hists, nulls, table, selected, control_acc)


# The protocol's ablations (run on the digits, the paper's task): each changes one thing from the chapter's protocol back to
# what the chapter did before, so that a row's reason can name the difference that moves it
ABLATIONS = {
    "from scratch": ({"embed_from": "scratch"}, "trained from scratch with the chapter's recipe, not fine-tuned into the "
                                                "clean model as [code] does"),
    "5 % triggers": ({"key_fraction": 0.05}, "5 % of the owner's images as triggers (the paper: fewer than 1 %; [code]: 30)"),
    "classifier masked": ({"mask_scope": "all"}, "the classifier masked too (the paper and [code] mask the other layers)"),
}
# the chapter's run scales [code]'s 40 embedding epochs to its own; this one puts them back
CODE_EPOCHS_ABLATION = {
    "the code's 40 epochs": ({"embed_epochs": CODE_EMBED_EPOCHS}, f"fine-tuned into the clean model for [code]'s "
                                                                  f"{CODE_EMBED_EPOCHS} epochs, its steps unscaled"),
}


def code_epochs_names(knobs: dict) -> list[str]:
    """The watermarks that get :data:`CODE_EPOCHS_ABLATION`: the invisible ones at
    ``code_epochs_r_values``, each of which must be one of ``r_values``; none when the run does not
    fine-tune into the clean model (the code's epochs are its fine-tuning's) or already fine-tunes
    for the code's epochs (the ``paper`` profile)."""
    missing = [r for r in knobs["code_epochs_r_values"] if r not in knobs["r_values"]]
    if missing:
        raise ValueError(f"code_epochs_r_values {missing} are not among r_values {knobs['r_values']}: the ablation re-embeds "
                         "watermarks the run has")
    if knobs["embed_from"] != "clean" or embed_config(knobs).epochs == CODE_EMBED_EPOCHS:
        return []
    return [f"invisible r = {r:g}" for r in knobs["code_epochs_r_values"]]


ABLATION_WORDS = {"protocol": "under the protocol", "from scratch": "from scratch", "5 % triggers": "with 5 % triggers",
                  "classifier masked": "with the classifier masked", "the code's 40 epochs": "with the code's 40 epochs"}


def ablate(knobs: dict, splits: Splits, variants: dict, keys: dict, embedded: Embedded, names, prune,
           ablations: dict = ABLATIONS, device=None, tag: str = "fc", progress: bool = False) -> "pd.DataFrame":
    """The watermarks ``names`` embedded again with each of ``ablations`` (label -> (knob changes,
    what it is)): a knob of :class:`FunctionCoupled` changes the scheme, any other the chapter's
    knobs (``embed_from``); one the protocol already has is left out. One row per (watermark,
    training), ``protocol`` first (``embedded``'s model): test accuracy and its change against the
    clean model (and the control, when there is one: :func:`embed_variants`), the first source
    class's accuracy, the ASR on the embedded, selected and held-out triggers, and the selected and
    held-out ASR and test accuracy of ``prune(model)`` (the chapter passes pruning ``table4_prune``
    as [code] prunes: a scheme imports no attack)."""
    import pandas as pd

    from ..train import evaluate
    from ..verify import Oracle, key_accuracy

    own = {f.name for f in fields(FunctionCoupled)}
    i, rate = knobs["sources"][0], knobs["table4_prune"]
    rows = []
    for name in names:
        s, kseed = variants[name]
        runs = {"protocol": (embedded.marked[name], keys[name][0], embedded.selected[name])}
        for label, (change, _) in ablations.items():
            unknown = set(change) - own - set(knobs)
            if unknown:
                raise ValueError(f"ablation {label!r} changes unknown knobs: {', '.join(sorted(unknown))}")
            sa = replace(s, **{k: v for k, v in change.items() if k in own})
            ka = {**knobs, **{k: v for k, v in change.items() if k not in own}}
            if sa == s and ka["embed_from"] == knobs["embed_from"] and embed_config(ka) == embed_config(knobs):
                continue  # the protocol already trains this way (e.g. embed_epochs, which training from scratch ignores)
            key = sa.make_key(splits, seed=kseed)[0]
            m = embed_one(ka, splits, sa, key, embedded.clean, f"{tag}-{name.replace(' ', '')}-{label.replace(' ', '')}", device,
                          progress)[0]
            runs[label] = (m, key, most_confident(m, key, knobs["selected_triggers"]))
        held_out = keys[name][1]
        for label, (m, key, sel) in runs.items():
            o, pruned = Oracle(m), prune(m)
            acc = evaluate(m, splits.test, device)
            rows.append({"watermark": name, "training": label, "test accuracy": acc,
                         "change vs clean": acc - embedded.clean_accuracy,
                         **({} if embedded.control_accuracy is None else {"change vs control": acc - embedded.control_accuracy}),
                         f"class-{i} test accuracy": evaluate(m, splits.test.where(i), device),
                         "ASR (embedded)": key_accuracy(o, key), "ASR (selected)": key_accuracy(o, sel),
                         "ASR (held-out)": key_accuracy(o, held_out),
                         f"ASR (selected) at {rate:.0%} pruning": key_accuracy(Oracle(pruned), sel),
                         f"ASR (held-out) at {rate:.0%} pruning": key_accuracy(Oracle(pruned), held_out),
                         f"test accuracy at {rate:.0%} pruning": evaluate(pruned, splits.test, device)})
    if not rows:  # no watermark named: an empty table with the same index
        return pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=["watermark", "training"]))
    return pd.DataFrame(rows).set_index(["watermark", "training"])


def ablation_text(frame: "pd.DataFrame", name: str, column: str, fmt: str = "{:.1%}", paper: float | None = None) -> str:
    """``column`` of :func:`ablate`'s ``frame`` for watermark ``name`` in words, the protocol first:
    "p under the protocol; a from scratch; b with 5 % triggers; ..."; with ``paper``, the training
    whose number is closest to it is named."""
    rows = frame.loc[name, column]
    text = "; ".join(f"{fmt.format(v)} {ABLATION_WORDS.get(label, label)}" for label, v in rows.items())
    if paper is not None:
        text += f" (closest to the paper's: {ABLATION_WORDS.get((closest := (rows - paper).abs().idxmin()), closest)})"
    return text


def digits_ablation_text(frame: "pd.DataFrame | None", name: str, column: str, fmt: str = "{:.1%}",
                         paper: float | None = None) -> str:
    """The digits run's ablations of watermark ``name`` on ``column`` (:func:`ablation_text`), as a
    reason's clause; empty when the run is off (``frame`` None) or did not ablate ``name``."""
    if frame is None or name not in frame.index.get_level_values(0):
        return ""
    return f"; the digits' ablations: {ablation_text(frame, name, column, fmt, paper)}"


def code_epochs_text(frame: "pd.DataFrame", name: str, knobs: dict, paper: float) -> str:
    """What the 40-epoch ablation (:data:`CODE_EPOCHS_ABLATION`, in ``frame``) measured for ``name``
    in words; empty when it did not run for it."""
    if (name, "the code's 40 epochs") not in frame.index:
        return ""
    return (f"embedded with the code's {CODE_EMBED_EPOCHS} epochs instead of {embed_config(knobs).epochs}: "
            f"{ablation_text(frame, name, 'ASR (selected)', paper=paper)} (selected triggers; held-out: "
            f"{ablation_text(frame, name, 'ASR (held-out)')})")


def protocol_text(table: "pd.DataFrame", keys: dict, selected: dict, name: str) -> str:
    """Watermark ``name``'s ASR on the three kinds of trigger (the chapter's Table 2 columns), in words."""
    return (f"on all {len(keys[name][0])} embedded triggers {table.loc[name, 'ASR (embedded triggers)']:.1%}, on the "
            f"{len(selected[name])} selected {table.loc[name, 'ASR (selected triggers)']:.1%}, on the {len(keys[name][1])} "
            f"held-out {table.loc[name, 'ASR (held-out triggers)']:.1%}")


def took_text(row) -> str:
    """Whether an overwriting thief's own watermark took (a Table 3 row), and what it kept, in words."""
    return (f"its own watermark {row['new ASR']:.0%}" + ("" if row["new ASR"] >= 0.5 else ", so it did not take")
            + f"; test accuracy {row['test accuracy']:.1%}")


def mnist_rows(clean_accuracy: float, table, finetuned: dict, pruned: dict, overwritten, trials: int,
               prune_rate: float) -> dict[str, float]:
    """A run's numbers that the paper reports on MNIST, by paper-vs-ours row, every ASR on the
    selected triggers (the code's protocol, :func:`most_confident`): Table 1's clean accuracy;
    Table 2's accuracy change (against the control when there is one) and ASR per watermark
    (``table``: :attr:`Embedded.table`); the ASR
    after ``trials`` trials of the code's fine-tuning thief and after pruning ``prune_rate`` as the
    code prunes (``finetuned`` / ``pruned``: watermark -> ASR); Table 3's ASRs after overwriting
    (``overwritten``: :func:`wmlib.attacks.overwrite_table`'s table, with its ``selected`` column;
    the thief's own ASR on its held-out triggers)."""
    names = list(table.index)
    change = "change vs control" if "change vs control" in table else "change vs clean"  # see embed_variants
    return {"Table 1: clean test accuracy": clean_accuracy,
            **{f"Table 2: test-accuracy change, {n}": table.loc[n, change] for n in names},
            **{f"Table 2: ASR, {n} (selected triggers)": table.loc[n, "ASR (selected triggers)"] for n in names},
            **{f"Figs. 5-6: ASR after {trials} fine-tuning trials, {n} (code's thief)": v for n, v in finetuned.items()},
            **{f"Figs. 8-9: ASR at {prune_rate:.0%} pruning, {n}": v for n, v in pruned.items()},
            **{f"Table 3: original ASR after overwriting, {n}": overwritten.loc[n, "original ASR (selected)"] for n in names},
            **{f"Table 3: the thief's new ASR, {n}": overwritten.loc[n, "new ASR"] for n in names}}


def learning_curve(knobs: dict, splits: Splits, shares, tag: str = "fc", device=None) -> "pd.DataFrame":
    """Table 1's question, how much the clean model's accuracy owes to its training-set size: the
    clean model trained again (the chapter's recipe) on the first ``shares`` of the owner's images
    (already shuffled by :func:`wmlib.data.owner_thief_split`), share 1 the chapter's own. Every size
    gets the same number of optimiser steps (the epochs, and any schedule's milestones, scaled by
    the full set over the share), so that a smaller set is not also a shorter training. One row per
    distinct size: owner images, epochs and test accuracy; one seed each."""
    import pandas as pd

    from ..train import evaluate, train_classifier

    full, cfg = len(splits.owner), TrainConfig.from_knobs(knobs)
    sizes = set()
    for share in shares:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"learning-curve shares must be in (0, 1], got {share}")
        sizes.add(max(1, int(round(share * full))))
    rows = []
    for n in sorted(sizes):
        scale = full / n
        c = replace(cfg, epochs=max(1, round(cfg.epochs * scale)), milestones=tuple(round(m * scale) for m in cfg.milestones))
        sub = replace(splits, owner=splits.owner.subset(slice(0, n)))
        m = train_classifier(f"{tag}-clean" + ("" if n == full else f"-n{n}"), knobs["model"], sub, c, device=device,
                             progress=False)[0]
        rows.append({"owner images": n, "epochs": c.epochs, "test accuracy": evaluate(m, splits.test, device)})
    return pd.DataFrame(rows)


def extrapolate_accuracy(curve: "pd.DataFrame", n: int) -> float:
    """The test accuracy a power law ``error = a · n^-b`` without an error floor, fitted (least
    squares in log-log) to a :func:`learning_curve`, gives at ``n`` training images: a model, not a
    measurement, and an optimistic one (a real curve flattens). NaN unless three sizes or more
    have an error above zero and the error falls with the size (b > 0)."""
    import numpy as np

    c = curve[curve["test accuracy"] < 1.0]
    if len(c) < 3:
        return float("nan")
    b, log_a = np.polyfit(np.log(c["owner images"].to_numpy(float)), np.log(1.0 - c["test accuracy"].to_numpy(float)), 1)
    return float(1.0 - np.exp(log_a) * float(n) ** b) if b < 0 else float("nan")


def curve_text(curve: "pd.DataFrame", n: int, what: str = "images") -> str:
    """A :func:`learning_curve` in words, for a Table 1 row: the accuracies by size (one seed each),
    whether they rise over every size, and, with three sizes or more rising, what
    :func:`extrapolate_accuracy` gives at ``n`` (said to be an optimistic model)."""
    acc, sizes = curve["test accuracy"], curve["owner images"]
    if len(curve) < 2:
        return f"the training-set size untested (one size: {sizes.iloc[0]:,} {what}, {acc.iloc[0]:.2%})"
    rising = bool((acc.diff().dropna() > 0).all())
    text = (f"at equal steps the clean model gets {' / '.join(f'{v:.2%}' for v in acc)} on "
            f"{' / '.join(f'{k:,}' for k in sizes)} {what} (one seed each): "
            + (f"accuracy rises over {sizes.iloc[0]:,}–{sizes.iloc[-1]:,} {what}" if rising
               else "accuracy does not rise with every size, so the size is not shown to matter here"))
    at = extrapolate_accuracy(curve, n) if rising else float("nan")
    if at == at:
        text += (f"; a power law through them, without an error floor, gives {at:.2%} at {n:,} (an optimistic model, "
                 "not a measurement)")
    return text


def enhancement_gain(knobs: dict, splits: Splits, variants: dict, keys: dict, embedded: Embedded, names, attacks: dict,
                     tag: str = "fc", device=None) -> "pd.DataFrame":
    """Fig. 10's question under each reading: the watermarks ``names`` with and without the
    enhancements (masking and the train-time fine-tune: ``mask_ratio`` and ``ft_lr`` set to 0),
    each embedded as the chapter embeds (``embed_from``: ``embedded``'s models) and the other way
    (fine-tuned into the clean model or trained from scratch, as Algorithm 1 does), then each of
    ``attacks`` (label -> ``f(model, held-out key) -> ASR``; the chapter passes its fine-tuning
    thieves: a scheme imports no attack). One row per (watermark, embedding, attack): the held-out
    ASR with and without, and the gain."""
    import pandas as pd

    other = {"clean": "scratch", "scratch": "clean"}[knobs["embed_from"]]
    words = {"clean": "fine-tuned into the clean model", "scratch": "trained from scratch"}
    rows = []
    for name in names:
        s, kseed = variants[name]
        plain_s = replace(s, mask_ratio=0.0, ft_lr=0.0)
        for start in (knobs["embed_from"], other):
            k = {**knobs, "embed_from": start}
            label = f"{name.replace(' ', '')}-{start}"
            enhanced = (embedded.marked[name] if start == knobs["embed_from"] else
                        embed_one(k, splits, s, s.make_key(splits, seed=kseed)[0], embedded.clean, f"{tag}-{label}", device,
                                  False)[0])
            plain = embed_one(k, splits, plain_s, plain_s.make_key(splits, seed=kseed)[0], embedded.clean,
                              f"{tag}-{name.replace(' ', '')}-plain" + ("" if start == knobs["embed_from"] else f"-{start}"),
                              device, False)[0]
            for attack, run in attacks.items():
                with_, without = run(enhanced, keys[name][1]), run(plain, keys[name][1])
                rows.append({"watermark": name, "embedding": words[start], "attack": attack,
                             "with masking + fine-tune": with_, "without": without, "gain": with_ - without})
    return pd.DataFrame(rows).set_index(["watermark", "embedding", "attack"])


def enhancement_grid(knobs: dict, splits: Splits, variants: dict, keys: dict, embedded: Embedded, name: str, attacks: dict,
                     tag: str = "fc", device=None) -> "pd.DataFrame":
    """Fig. 10's two enhancements apart, neither of whose values the paper gives: the watermark
    ``name`` embedded again, as ``embedded``'s models are, with each masking ratio p of
    ``knobs['enhance_ps']`` and each train-time fine-tune rate η′ of ``knobs['enhance_lrs']`` (every
    pair; 0 and the run's own value are always among them; the run's own pair is ``embedded``'s model,
    not embedded again), then each of ``attacks`` (label -> ``f(model, held-out key) -> ASR``). One row
    per (p, η′): test accuracy, the held-out ASR before any attack and after each, and each attack's
    gain over the plain twin (p = 0, η′ = 0). Empty when either list is."""
    import pandas as pd

    from ..train import evaluate
    from ..verify import Oracle, key_accuracy

    if not knobs["enhance_ps"] or not knobs["enhance_lrs"]:
        return pd.DataFrame()
    s, kseed = variants[name]
    held = keys[name][1]
    ps = sorted({0.0, s.mask_ratio, *map(float, knobs["enhance_ps"])})
    lrs = sorted({0.0, s.ft_lr, *map(float, knobs["enhance_lrs"])})
    rows = []
    for p in ps:
        for lr in lrs:
            twin = replace(s, mask_ratio=p, ft_lr=lr)
            m = (embedded.marked[name] if (p, lr) == (s.mask_ratio, s.ft_lr) else
                 embed_one(knobs, splits, twin, twin.make_key(splits, seed=kseed)[0], embedded.clean,
                           f"{tag}-{name.replace(' ', '')}-p{p:g}-lr{lr:g}", device, False)[0])
            row = {"p": p, "η′": lr, "test accuracy": evaluate(m, splits.test, device), "ASR, no attack": key_accuracy(Oracle(m), held)}
            row.update({f"ASR, {label}": run(m, held) for label, run in attacks.items()})
            rows.append(row)
    frame = pd.DataFrame(rows).set_index(["p", "η′"])
    for label in attacks:
        frame[f"gain, {label}"] = frame[f"ASR, {label}"] - frame.loc[(0.0, 0.0), f"ASR, {label}"]
    return frame


def enhancement_text(grids: dict, code: str, paper_gain: float, plain: tuple[float, float], gain: tuple[float, float],
                     n_triggers: dict, where: str = "on MNIST digits") -> str:
    """Fig. 10's row, what bounds it and what :func:`enhancement_grid` measured. A robustness gain
    cannot exceed what the ``code`` thief (the paper's fine-tuning attack) takes from the plain
    watermark: ``plain`` is the row's own plain twins' held-out ASR (before, after the thief), and the
    headroom explains the row when what it takes is below the paper's ``paper_gain``; ``gain`` is the
    row's gain (after the thief, before any attack: the part that is no robustness). Then, ``where``,
    each watermark's grid (``grids``: name -> its grid) and each thief: what it takes from the plain
    twin there, and, where that leaves room for the paper's gain, the largest gain of the other
    (p, η′) pairs (one seed each, on ``n_triggers[name]`` held-out triggers: a difference of two such
    rates has a standard error up to √(0.5 / n)) and whether any pair reaches it."""
    (before, after), (total, early) = plain, gain
    taken = before - after
    text = (f"; the {code} takes {taken:+.1%} from the plain twins' held-out ASR here ({before:.1%} before, {after:.1%} "
            f"after): a robustness gain cannot exceed what it takes, so "
            + ("the headroom explains the row" if taken < paper_gain else "the headroom does not explain the row")
            + f"; {early:+.1%} of the row's {total:+.1%} is there before any attack")
    grids = {name: g for name, g in (grids or {}).items() if len(g)}
    if not grids:
        return text + "; p and η′ not ablated (-p enhance_ps / enhance_lrs empty, or the digits run off)"
    first = next(iter(grids.values()))
    ps = " / ".join(f"{v:g}" for v in first.index.get_level_values("p").unique())
    lrs = " / ".join(f"{v:g}" for v in first.index.get_level_values("η′").unique())
    text += f"; {where}, p ∈ {{{ps}}} × η′ ∈ {{{lrs}}} (one seed each)"
    for name, grid in grids.items():
        plain_row, others = grid.loc[(0.0, 0.0)], grid.drop(index=(0.0, 0.0))
        se = (0.5 / n_triggers[name]) ** 0.5
        said = []
        for col in (c for c in grid if c.startswith("gain, ")):
            thief = col[len("gain, "):]
            took = float(plain_row["ASR, no attack"] - plain_row[f"ASR, {thief}"])
            part = f"the {thief} takes {took:+.1%} from the plain twin"
            if took < paper_gain:
                said.append(part + f", too little to test the paper's {paper_gain:+.0%}")
                continue
            (p, lr), g = others[col].idxmax(), float(others[col].max())
            said.append(part + f", the largest gain of the other pairs is {g:+.1%} (p = {p:g}, η′ = {lr:g}; standard error "
                        f"up to {se:.1%})" + (f", reaching the paper's {paper_gain:+.0%}" if g >= paper_gain else
                                              f", short of the paper's {paper_gain:+.0%}"))
        text += f"; {name}: " + "; ".join(said)
    return text


# --------------------------------------------------------------------------- the catalogue's entries

def _make(fusion: str):
    def make(s: dict) -> FunctionCoupled:
        if s.get("target") is None:
            raise ValueError("setting 'target' is None: the clean zoo picks it (wmlib.schemes.settle)")
        return FunctionCoupled(fusion=fusion, **{**s, "sources": tuple(s["sources"])})
    return make


def placeholder_target(sources, num_classes: int) -> int:
    """A class that is no source: a stand-in target for making triggers' images before the zoo chose t
    (labels do not change the images)."""
    return next(c for c in range(num_classes) if c not in tuple(sources))


def unsettled(settings: dict, num_classes: int) -> dict:
    """The catalogue's stand-in for a target the zoo has yet to choose (:func:`placeholder_target`)."""
    if settings.get("target", 0) is None and "sources" in settings:
        return dict(settings, target=placeholder_target(settings["sources"], num_classes))
    return settings


def settle_target(settings: dict[str, dict], zoo, splits: Splits, seed: int) -> None:
    """The catalogue's hook for the function-coupled entries, as in the chapter: when their ``target``
    is None, set it (one for every entry of ``settings``) to the non-source class that the clean
    ``zoo``'s probe gives least often to their held-out triggers (made on ``splits`` with ``seed``),
    and name the probe (``target_chosen_on``: no false-claim rate counts its members on these keys).
    The entries share one target: their sources and targets must agree (a target given stays)."""
    targets = {s.get("target") for s in settings.values()}
    sources = {tuple(s.get("sources", ())) for s in settings.values()}
    if len(targets) > 1 or len(sources) > 1:
        raise ValueError(f"the function-coupled entries {', '.join(settings)} share one target, which the zoo chooses when it "
                         f"is None: give them the same sources and the same target (got targets "
                         f"{', '.join(str(s.get('target')) for s in settings.values())} and sources "
                         f"{', '.join(str(tuple(s.get('sources', ()))) for s in settings.values())})")
    first = next(iter(settings.values()))
    if first["target"] is not None:
        return
    triggers = {name: build_unsettled(name, s, splits.spec.num_classes).make_key(splits, seed=seed)[1].x  # images only
                for name, s in settings.items()}
    target, _, probe = least_answered_target(zoo, triggers, first["sources"])
    for s in settings.values():
        s["target"], s["target_chosen_on"] = target, probe  # the probe's false claims on these keys are in sample


for _fusion in FUSIONS:
    register(f"fc-{_fusion}", _make(_fusion), settle=settle_target, unsettled=unsettled)


def check_pair(knobs: dict, pair: str, t: str, num_classes: int) -> None:
    """Knobs ``pair`` (two source classes) and ``t`` (the target): class indices of the task, and t no source."""
    bad = [c for c in knobs[pair] if c >= num_classes]
    if bad:
        raise ValueError(f"knob {pair!r} must hold class indices in [0, {num_classes - 1}] for {knobs['dataset']}; got {knobs[pair]}")
    if knobs.get(t) is not None and knobs[t] in knobs[pair]:
        raise ValueError(f"knob {t!r} must not be one of {pair!r} (Wen et al. §4.1: t ∉ {{i, j}}); got {knobs[t]} "
                         f"and {knobs[pair]}")


def _check_knobs(knobs: dict, spec, own: bool) -> None:
    for pair, t in (("sources", "target"), ("overwrite_sources", "overwrite_target")):  # the overwriting thief's triggers too
        if pair in knobs:
            check_pair(knobs, pair, t, spec.num_classes)


RIVALS = ("zhang-content", "namba-proposal", "namba-afs")  # the chapter's rivals (its Table 4)


def rival_settings(knobs: dict) -> dict[str, dict]:
    """The settings of the chapter's rivals (knob ``compare``, catalogue names), as its Table 4 sets them up:
    Zhang et al.'s content key as in their chapter (its defaults: "TEST" on class 1, labelled 0), Namba & Sakuma's
    proposal (``n_keys``, ``T``) and AFS keys (``afs_eps``), each retrained ``retrain_epochs`` at ``retrain_lr``."""
    retrain = dict(n_keys=knobs["n_keys"], retrain_epochs=knobs["retrain_epochs"], retrain_lr=knobs["retrain_lr"])
    made = {"zhang-content": {}, "namba-proposal": dict(T=knobs["T"], **retrain), "namba-afs": dict(eps=knobs["afs_eps"], **retrain)}
    return {name: made[name] for name in knobs["compare"]}


_POS, _POS_INT = rules.number(0.0, rules.INF, lo_open=True), rules.integer(1)
_OPEN = rules.number(0.0, 1.0, lo_open=True, hi_open=True)
_RATE = rules.number(0.0, 1.0, hi_open=True)
register_knobs("function_coupled", {
    "target": rules.integer(0, none=True),  # None: the class the clean zoo gives least to the triggers (pick_target)
    "compare": rules.list_of(rules.choice(RIVALS), nonempty=False),
    "sources": rules.pair(), "r_values": rules.list_of(_OPEN), "replicates": _POS_INT, "mask_ratio": _RATE,
    "mask_sweep": rules.list_of(_RATE), "mask_scope": rules.choice(MASK_SCOPES), "embed_from": rules.choice(EMBED_FROM),
    "embed_lr": _POS, "embed_epochs": rules.integer(1, none=True), "ft_lr": rules.number(0.0, rules.INF), "ft_samples": _POS_INT,
    "verify_triggers": _POS_INT, "selected_triggers": _POS_INT, "trials": _POS_INT, "thief_samples": _POS_INT,
    "trial_epochs": _POS_INT, "strong_lr": _POS, "table4_prune": _RATE, "overwrite_optimizer": rules.choice(OPTIMIZERS),
    "code_epochs_r_values": rules.list_of(_OPEN, nonempty=False),
    "enhance_ps": rules.list_of(_RATE, nonempty=False), "enhance_lrs": rules.list_of(rules.number(0.0, rules.INF), nonempty=False),
    "curve_shares": rules.list_of(rules.number(0.0, 1.0, lo_open=True), nonempty=False)}, _check_knobs)
