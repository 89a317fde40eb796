"""The contract every attack implements: ``apply(model, threat) -> Suspect``.

A :class:`Threat` says what the thief has (its own data, the public test split, its fine-tuning
recipe, the test accuracy it is willing to lose, its seed, the attack settings) and what the owner
will count (the public scheme and the key's hit rate, which the thief cannot see but an evaluation
of the strongest attack within the budget must). A :class:`Suspect` is the oracle the owner then
queries plus what the attack reports. Model-side attacks return a new model's oracle; query-side
attacks wrap the API. :meth:`Attack.applies_to` gives the reason when an attack does not apply to a
scheme; :class:`NotApplicable` raised from ``apply`` does the same for one cell.

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
    """What one thief has, and what the owner's verification counts, for one attacked model."""
    thief: Split                      # the thief's own data
    test: Split                       # the public test split
    spec: DatasetSpec
    seed: int                         # the thief's randomness (the owner's seed of the cell)
    finetune: TrainConfig             # how the thief fine-tunes
    budget: float                     # the test accuracy the thief may give up
    settings: dict                    # every attack's knobs (epochs, rates, thresholds, ...)
    model_name: str                   # the stolen model's architecture (the method is public)
    scheme: object                    # the watermarking scheme (public: Kerckhoffs)
    verify_key: Key                   # what the owner will query (reports only: the thief never sees it)
    hit_rate: Callable[[Oracle], float]  # the owner's statistic on an oracle (reports, worst-case search)
    tag: str = "thief"                # names what the thief trains in the model cache

    @property
    def splits(self) -> Splits:
        """The thief's data as the training data of a task of its own (:meth:`wmlib.data.Splits.thief_task`)."""
        return Splits(self.thief, self.thief.subset(slice(0, 0)), self.test, self.spec)

    def measure(self, model: nn.Module) -> float:
        """The owner's statistic on a model (the score a worst-case search maximises the damage to)."""
        return self.hit_rate(Oracle(model))


@dataclass
class Suspect:
    """What the owner queries after an attack, and what the attack reports (cost, flags, ...)."""
    oracle: Oracle
    report: dict = field(default_factory=dict)


class NotApplicable(Exception):
    """Raised by an attack that cannot run on a cell; the message is the reason the matrix shows."""


class Attack(ABC):
    """One attack: ``name`` (how profiles and the matrix call it), ``side`` ('model', 'query' or
    'none'), ``about`` (one line for the book), ``only`` (the kind of verification trial it is
    defined for, e.g. 'bits'; None: every scheme) and ``knobs``, the rule (:mod:`wmlib.rules`) of
    every setting it reads from ``threat.settings``, which :func:`wmlib.settings.resolve` applies."""
    name: str = "attack"
    side: str = "model"
    about: str = ""
    only: str | None = None
    knobs: dict = {}

    def applies_to(self, scheme) -> str | None:
        """None when the attack applies to ``scheme``, else the reason it does not."""
        if self.only is not None and scheme.trials != self.only:
            return f"{self.name} attacks {self.only}-based verification; these schemes verify by {scheme.trials}"
        return None

    def check(self, settings: dict, spec: DatasetSpec) -> None:
        """Refuse, with the reason, settings that cannot work on the task ``spec`` (called when the
        comparison's knobs are read, long before a cell runs); by default every setting its rules allow works."""

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
