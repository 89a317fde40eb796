"""Zhang et al., "Protecting Intellectual Property of Deep Neural Networks with Watermarking",
ASIACCS 2018 (§4.1-§4.3, Algorithm 1).

Three key generators, all relabelled from a source class ``Y_s`` to a target class ``Y_d``:

* ``content``   — source-class training images with the string "TEST" drawn on them (gray);
* ``unrelated`` — images of a class of another dataset (MNIST "1" for CIFAR-10 / Fashion-MNIST,
  EMNIST letter "m" for MNIST, §5.1), from the owner's half of it (:func:`wmlib.data.public_share`:
  thieves draw public images from the other half, so no attack holds a key image verbatim);
* ``noise``     — source-class training images plus Gaussian noise.

Embedding trains from scratch on ``D_train ∪ D_wm`` (Algorithm 1, line 10); verification queries
the suspect with ``D_wm`` and tests whether it answers ``Y_d`` (§4.3).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from .. import data
from .. import rules
from ..data import Split, Splits
from ..keys import Key, gaussian_noise, shape_mask, stamp, text_mask
from ..train import History, TrainConfig, fit, train_classifier
from ..verify import Oracle, key_accuracy
from .base import Generation, Scheme
from .catalogue import register, register_knobs

KINDS = ("content", "unrelated", "noise")
SHAPES = ("heart", "star")

# §5.1: the unrelated watermark images for each task (dataset, class index)
UNRELATED = {
    "mnist": ("emnist-letters", 12),     # handwritten letter "m"
    "cifar10": ("mnist", 1),             # digit "1"
    "cifar100": ("mnist", 1),
    "svhn": ("cifar10", 1),              # GradSigns Table 7: CIFAR-10 cars for SVHN
    "gtsrb": ("mnist", 1),               # Namba & Sakuma §6.1: MNIST "1"s for GTSRB
    "fashion-mnist": ("mnist", 1),
}


@dataclass
class Zhang2018(Scheme):
    kind: str = "content"
    source: int | None = 1     # Y_s: CIFAR-10 "automobile" in Fig. 4; None: every class but the target (Namba Table 6)
    target: int = 0            # Y_d: CIFAR-10 "airplane"
    key_fraction: float = 1.0  # share of the owner's source images turned into keys
    logo: str = "TEST"         # content keys: a text, or the shapes "heart" / "star" (Namba §3.1)
    color: tuple[int, ...] = (128,)  # logo colour, one value (grey) or one per channel (GradSigns Table 7: "in gray")
    noise_std: float = 0.2     # on the [0, 1] pixel scale; the paper does not state it
    unrelated_dataset: str | None = None  # None: §5.1's choice for the task (UNRELATED)
    unrelated_class: int | None = None

    name = "zhang2018"
    paper_rule = "§4.3: a clean model classifies the keys 'randomly' (no threshold: the binomial test at chance)"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown Zhang et al. key kind {self.kind!r}; choose one of: {', '.join(KINDS)}")
        self.color = tuple(self.color)
        if self.source == self.target:
            raise ValueError("the source and target classes must differ (Algorithm 1: s != d)")
        if not 0.0 < self.key_fraction <= 1.0:
            raise ValueError(f"key_fraction must be in (0, 1], got {self.key_fraction}")

    def key_generation(self) -> Generation:
        own = "the owner's source-class images (held-out: the test set's)"
        return {"content": Generation(own, True, "a seeded choice of the owner's source-class images with the logo drawn "
                                      "on them (keys.stamp): a function of seed, config and data, so an adversarial "
                                      "example re-derives to something else"),
                "noise": Generation(own, True, "a seeded choice of the owner's source-class images plus Gaussian noise "
                                    "from a seeded generator (keys.gaussian_noise)"),
                "unrelated": Generation("a public dataset's images of one class (§5.1: MNIST '1's, EMNIST 'm's)", True,
                                        "a seeded choice of another, public dataset's images: the judge needs the seed "
                                        "and that dataset, not the owner's data")}[self.kind]

    @classmethod
    def from_knobs(cls, kind: str, knobs: dict) -> "Zhang2018":
        """The scheme for ``kind`` with the fields a profile's knobs set (other knobs are ignored)."""
        return cls(kind=kind, **cls.knob_settings(knobs))

    @classmethod
    def knob_settings(cls, knobs: dict) -> dict:
        """The settings a profile's knobs give the scheme: the knobs named like its fields, but ``kind``."""
        return {k: v for k, v in knobs.items() if k in cls.__dataclass_fields__ and k != "kind"}

    def check(self, spec) -> None:
        bad = [c for c in (self.source, self.target) if c is not None and not 0 <= c < spec.num_classes]
        if bad:
            raise ValueError(f"source and target must be class indices in [0, {spec.num_classes - 1}] for {spec.name}; "
                             f"got {bad[0]}")
        if self.kind == "unrelated":
            self.unrelated_source(spec.name)

    def unrelated_source(self, task: str) -> tuple[str, int]:
        """(dataset, class) the unrelated keys are drawn from for ``task``: the knobs', or §5.1's choice for it."""
        if self.unrelated_dataset is not None:
            if data.spec(self.unrelated_dataset).source == data.spec(task).source:
                raise ValueError(f"unrelated_dataset {self.unrelated_dataset!r} is drawn from the task's own "
                                 f"distribution ({task!r}); unrelated keys must come from another dataset")
            return self.unrelated_dataset, int(self.unrelated_class if self.unrelated_class is not None else 1)
        paper_task = data.STANDINS.get(task, task)  # a stand-in takes its base task's choice (it is that task's images)
        if paper_task not in UNRELATED:
            raise ValueError(f"no default unrelated dataset for {task!r}; set unrelated_dataset (e.g. -p unrelated_dataset "
                             f"fashion-mnist -p unrelated_class 1)")
        return UNRELATED[paper_task]

    def public_images(self, task: str) -> list[tuple[str, bool, str]]:
        """Unrelated keys come from the owner's half of another dataset's two splits (the trained key and
        the held-out one); the other kinds are made from the task's own images."""
        if self.kind != "unrelated":
            return []
        name, _ = self.unrelated_source(task)
        return [(name, True, "owner"), (name, False, "owner")]

    def apply(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """The key image made from each uint8 image in ``x`` (content: "TEST" drawn on it; noise:
        Gaussian noise added). Unrelated keys are other images, not a transform."""
        if self.kind == "unrelated":
            raise ValueError("unrelated keys are images of another dataset, not a transform of x")
        return self._generate(Split(x, torch.zeros(len(x), dtype=torch.int64)), seed)

    def _generate(self, base: Split, seed: int) -> torch.Tensor:
        if self.kind == "content":
            size = base.x.shape[-1]
            mask = shape_mask(self.logo, size) if self.logo in SHAPES else text_mask(self.logo, size)
            return stamp(base.x, mask, self.color)
        return gaussian_noise(base.x, self.noise_std, seed)

    def _sources(self, split: Split) -> Split:
        return split.where(self.source) if self.source is not None else split.subset(split.y != self.target)

    def make_key(self, splits: Splits, seed: int = 0, clean: nn.Module | None = None) -> tuple[Key, Key]:
        """Algorithm 1 lines 3-8 on the owner's data (the key) and on the test set (new keys, Table 1)."""
        return self._make_key(splits, seed, "owner")

    def thief_key(self, splits: Splits, seed: int, stolen: nn.Module, model_name: str, cfg: TrainConfig, tag: str) -> Key:
        """A thief's own key of this kind: made as the owner makes one, from the thief's data, and for
        unrelated keys from the thieves' half of the other dataset (:func:`wmlib.data.public_share`)."""
        return self._make_key(splits, seed, "thief")[0]

    def _make_key(self, splits: Splits, seed: int, share: str) -> tuple[Key, Key]:
        s = splits.spec
        meta = {**self.config(), "task": s.name, "seed": seed}
        if self.kind == "unrelated":
            # as many images as the task's own source images, each part (at most the other dataset's class): a
            # trained key larger than the content key would add steps to its model alone (the digits run's 3,600
            # owner digits had 6,000 Fashion-MNIST trousers as keys)
            name, cls = self.unrelated_source(s.name)
            bases = []
            for train, part in ((True, splits.owner), (False, splits.test)):
                x, y = data.public_share(name, train, share)  # owners and thieves draw from disjoint halves
                x = x[y == cls][:len(self._sources(part))]
                bases.append(Split(data.to_shape(x, s.channels, s.image_size), torch.full((len(x),), cls)))
            meta.update(unrelated_dataset=name, unrelated_class=cls)
        else:
            bases = [self._sources(splits.owner), self._sources(splits.test)]
        own, new = bases
        g = torch.Generator().manual_seed(seed)
        n = max(1, int(round(self.key_fraction * len(own))))
        own = own.subset(torch.randperm(len(own), generator=g)[:n])
        keys = []
        for i, base in enumerate((own, new)):
            x = base.x if self.kind == "unrelated" else self._generate(base, seed + 1000 * i)
            keys.append(Key(x.contiguous(), torch.full((len(x),), self.target, dtype=torch.int64),
                            {**meta, "part": ("trained", "new")[i]}))
        return keys[0], keys[1]

    def train(self, model: nn.Module, splits: Splits, key: Key, cfg: TrainConfig, **fit_kw) -> History:
        """Algorithm 1 line 10: train from scratch on the owner's data joined with the key samples."""
        train = Split(torch.cat([splits.owner.x, key.x]), torch.cat([splits.owner.y, key.y]))
        return fit(model, train, cfg, **fit_kw)


def make_keys(knobs: dict, splits: Splits) -> tuple[dict[str, Key], dict[str, Key]]:
    """Algorithm 1 lines 3-8 for every kind in ``knobs['kinds']``: the embedded key and the new key
    (Table 1), by kind."""
    pairs = {k: Zhang2018.from_knobs(k, knobs).make_key(splits, seed=knobs["seed"]) for k in knobs["kinds"]}
    return {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}


def embed_kinds(knobs: dict, splits: Splits, keys: dict[str, Key], held_out: dict[str, Key],
                device: torch.device | None = None, tag: str = "zhang2018",
                progress: bool = True) -> tuple[dict[str, nn.Module], dict[str, dict]]:
    """Algorithm 1 line 10 with one training setting (Tables 1-2): the clean model ``none``, then one
    model per kind trained from scratch on the owner's data and its key, each monitored on the test
    set and on every new key. Train-or-load; returns the models and their training histories by name."""
    tcfg = TrainConfig.from_knobs(knobs)
    monitor = {"val": splits.test, **{f"new:{k}": held_out[k].split for k in keys}}
    clean, hist, _ = train_classifier(f"{tag}-none", knobs["model"], splits, tcfg, monitor=monitor, device=device,
                                      progress=progress)
    models, histories = {"none": clean}, {"none": hist.as_dict()}
    for k in keys:
        wm = Zhang2018.from_knobs(k, knobs).embed(f"{tag}-{k}", knobs["model"], splits, keys[k], held_out[k], tcfg,
                                                  monitor=monitor, device=device, progress=progress)
        models[k], histories[k] = wm.model, wm.history.as_dict()
    return models, histories


def key_accuracy_table(oracles: dict[str, Oracle], keys: dict[str, Key], held_out: dict[str, Key]) -> pd.DataFrame:
    """Table 1: each kind's watermarked model (``oracles[kind]``) and the clean one (``oracles['none']``)
    on the embedded and on the new key samples; one column per kind."""
    return pd.DataFrame({k: {"watermarks (trained)": key_accuracy(oracles[k], keys[k]),
                             "watermarks (new)": key_accuracy(oracles[k], held_out[k]),
                             "clean model, trained keys": key_accuracy(oracles["none"], keys[k]),
                             "clean model, new keys": key_accuracy(oracles["none"], held_out[k])} for k in keys})


# --------------------------------------------------------------------------- the catalogue's entries

for _kind in ("content", "unrelated", "noise"):
    register(f"zhang-{_kind}", lambda s, kind=_kind: Zhang2018(kind=kind, **s))


def check_knobs(knobs: dict, spec, own: bool) -> None:
    """Zhang et al.'s knobs that must agree: source and target differ, and the unrelated key's images
    (chosen as a key kind or a rival) exist and come from another distribution than the task's."""
    if knobs.get("source") is not None and knobs["source"] == knobs.get("target"):
        raise ValueError(f"knobs 'source' and 'target' must differ (Zhang et al. Algorithm 1); both are {knobs['source']}")
    if "unrelated" in knobs.get("kinds", ()) or "zhang-unrelated" in knobs.get("compare", ()):  # its images, before any training
        try:
            Zhang2018.from_knobs("unrelated", {**knobs, "source": None}).check(spec)
        except ValueError as err:
            raise ValueError(f"the unrelated key: {err}") from None
    unrelated = knobs.get("unrelated_dataset")
    if unrelated is not None and data.spec(unrelated).source == spec.source:
        raise ValueError(f"unrelated_dataset {unrelated!r} is drawn from the task's own distribution "
                         f"({knobs['dataset']!r}): unrelated keys must come from another dataset, "
                         f"e.g. -p unrelated_dataset fashion-mnist -p unrelated_class 1")
    if unrelated is not None and knobs.get("unrelated_class") is not None \
            and knobs["unrelated_class"] >= data.spec(unrelated).num_classes:
        raise ValueError(f"knob 'unrelated_class' must be in [0, {data.spec(unrelated).num_classes - 1}] "
                         f"for {unrelated}; got {knobs['unrelated_class']}")


register_knobs("zhang2018", {
    "kinds": rules.list_of(rules.choice(KINDS)), "source": rules.integer(0, none=True),
    "unrelated_dataset": rules.choice(data.REGISTRY, none=True), "unrelated_class": rules.integer(0, none=True),
    "noise_std": rules.number(0.0, rules.INF, lo_open=True)}, check_knobs)
