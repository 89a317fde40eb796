"""The contract every attack implements: ``apply(model, threat) -> Suspect``.

A :class:`Threat` holds what the thief has, and nothing of the owner's: its own labelled images
(a share of the task's training set, true labels included; every choice a thief makes uses its own
validation split), its fine-tuning recipe, the accuracy it is willing to lose (absolute points on
its own validation split), its own seed (never an owner's key seed), the attack settings, the
stolen model's architecture and the public scheme (Kerckhoffs). Not the task's test split: the
owners' held-out keys are made from it. The owner's
statistic is computed after the attack, by whoever verifies. An attack that needs the owner's key
is a worst-case search, not a thief: it declares ``oracle = True``, receives an
:class:`OracleThreat` (which adds the owner's statistic) and is reported as an upper bound, never
as a removal. :meth:`Attack.owner_report` adds what the owner sees of an attack's report (e.g.
whether Neural Cleanse flagged the key's target class). A :class:`Suspect` is the oracle the owner
then queries plus what the attack reports. Model-side attacks return a new model's oracle;
query-side attacks wrap the API. :meth:`Attack.applies_to` gives the reason when an attack does not
apply to a scheme; :class:`NotApplicable` raised from ``apply`` does the same for one cell.

A new attack is one file: subclass :class:`Attack`, implement ``apply`` and :func:`register` an
instance; the chapters and the comparison then find it by name (:func:`get`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from ..data import DatasetSpec, Split, Splits
from ..keys import Key
from ..train import TrainConfig
from ..verify import Oracle


THREAT_KNOBS = frozenset({"finetune_epochs", "finetune_lr", "finetune_optimizer", "budget"})
"""The thief's fine-tuning recipe and accuracy budget: every :class:`Threat` carries them, so no
attack owns them (:func:`owned_knobs`) even where it declares their rules."""


def owned_knobs(suite: dict[str, "Attack"]) -> dict[str, list[str]]:
    """Each attack's own knobs (those it declares, less :data:`THREAT_KNOBS`): a comparison cell's
    result depends on its attack's own knobs and on no other attack's."""
    return {name: sorted(set(a.knobs) - THREAT_KNOBS) for name, a in suite.items()}


@dataclass
class Threat:
    """What one thief has for one attacked model (nothing of the owner's)."""
    thief: Split                      # the thief's own images with their true labels (a share of the training set)
    spec: DatasetSpec
    seed: int                         # the thief's randomness (its own: never an owner's key seed)
    finetune: TrainConfig             # how the thief fine-tunes
    budget: float                     # accuracy points the thief may lose on its own validation split
    settings: dict                    # every attack's knobs (epochs, rates, thresholds, ...)
    model_name: str                   # the stolen model's architecture (the method is public)
    scheme: object                    # the watermarking scheme (public: Kerckhoffs)
    tag: str = "thief"                # names what the thief trains in the model cache

    @property
    def splits(self) -> Splits:
        """The thief's data as a task of its own (keys it makes, a watermark it embeds): the first
        :data:`THIEF_TRAIN` of its images train, the rest are its held-out data. The task's test
        split is not the thief's: the owners' held-out keys are made from it."""
        n = int(round(THIEF_TRAIN * len(self.thief)))
        return Splits(self.thief.subset(slice(0, n)), self.thief.subset(slice(0, 0)), self.thief.subset(slice(n, None)),
                      self.spec)


THIEF_TRAIN = 0.8
"""The share of the thief's images that trains a task of its own (:attr:`Threat.splits`); the rest is held out."""


@dataclass
class OwnerView:
    """What the owner brings after an attack: its queried ``key``, the public ``test`` split and its
    statistic ``hit_rate`` on an oracle. Only :meth:`Attack.owner_report` reads it."""
    key: Key
    test: Split
    hit_rate: Callable[[Oracle], float]


@dataclass
class OracleThreat(Threat):
    """A worst-case search's threat: the thief's, plus the owner's statistic on a model (what a
    search that is not a thief minimises). Only an attack with ``oracle = True`` receives one."""
    hit_rate: Callable[[Oracle], float] | None = None

    def measure(self, model: nn.Module) -> float:
        """The owner's statistic on a model (the score the search drives down)."""
        return self.hit_rate(Oracle(model))


@dataclass
class Suspect:
    """What the owner queries after an attack, and what the attack reports (cost, flags, ...)."""
    oracle: Oracle
    report: dict = field(default_factory=dict)
    parts: dict = field(default_factory=dict)  # what the attack built (a detector, ...), for owner_report only


class NotApplicable(Exception):
    """Raised by an attack that cannot run on a cell; the message is the reason the matrix shows."""


class Attack(ABC):
    """One attack: ``name`` (how profiles and the matrix call it), ``side`` ('model', 'query' or
    'none'), ``about`` (one line for the book), ``only`` (the kind of verification trial it is
    defined for, e.g. 'bits'; None: every scheme), ``oracle`` (True: a worst-case search that uses
    the owner's statistic, reported as an upper bound and never as a removal), ``extraction`` (True:
    model extraction, which the reference toolkit's thief runs on every training image where its
    fine-tuning attacks get a third; ``answers``: what it learns from, the API's top-1 ``labels``, its
    ``scores``, or ``none`` of the API's answers), ``knobs``, the
    rule (:mod:`wmlib.rules`) of every setting it reads from ``threat.settings``, which
    :func:`wmlib.settings.resolve` applies, and ``question``, what the comparison's which-scheme-when
    asks of it (with every attack that asks the same; ``family``: the question asks a family of attacks
    and names the members a sweep ran)."""
    name: str = "attack"
    side: str = "model"
    about: str = ""
    only: str | None = None
    oracle: bool = False
    extraction: bool = False  # trains a model of its own from the API (no stolen weights kept): WRT's thief gives it every image
    answers: str = ""  # an extraction's teacher: the API's "labels" (top-1), its "scores", or "none" (true labels, no API)
    knobs: dict = {}
    question: str = ""  # empty: which-scheme-when asks nothing of it
    family: bool = False

    def applies_to(self, scheme) -> str | None:
        """None when the attack applies to ``scheme``, else the reason it does not."""
        if self.only is not None and scheme.trials != self.only:
            return f"{self.name} attacks {self.only}-based verification; these schemes verify by {scheme.trials}"
        return None

    def check(self, settings: dict, spec: DatasetSpec) -> None:
        """Refuse, with the reason, settings that cannot work on the task ``spec`` (called when the
        comparison's knobs are read, long before a cell runs); by default every setting its rules allow works."""

    def public_images(self, settings: dict, spec: DatasetSpec) -> list[tuple[str, bool, str]]:
        """The public images the attack trains or queries with besides the thief's own share:
        ``(dataset, train split?, share)`` triples (:func:`wmlib.data.public_share`), checked against
        every key's images when the knobs are read. By default none."""
        return []

    def images(self, threat: Threat):
        """Those images themselves for this cell (uint8, the task's shape), or None: the comparison
        checks that none of them is a key image of the cell's owner. Images an attack makes while it
        runs (keys of its own, ...) go in its suspect's ``parts["images"]``, checked after it."""
        return None

    def owner_report(self, suspect: "Suspect", threat: Threat, owner: OwnerView) -> dict:
        """What the owner reads off the attack with its own key, test split and statistic
        (:class:`OwnerView`), after the attack and outside the thief's view: e.g. how often a
        detector flags the key. ``suspect.parts`` holds what the attack built; by default nothing."""
        return {}

    @abstractmethod
    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        """Attack ``model`` (never modified in place) and return what the owner then queries."""


REGISTRY: dict[str, Attack] = {}


def register(attack: Attack) -> Attack:
    """Add an attack to the suite (a name is registered once)."""
    if attack.name in REGISTRY:
        raise ValueError(f"an attack named {attack.name!r} exists already; registered: {', '.join(REGISTRY)}")
    REGISTRY[attack.name] = attack
    return attack


def get(name: str) -> Attack:
    """The attack registered as ``name``; an unknown name lists the valid ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; choose one of: {', '.join(REGISTRY)}") from None


class NoAttack(Attack):
    name, side, about = "none", "none", "the watermarked model as the owner deployed it"

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        return Suspect(Oracle(model))


register(NoAttack())
