"""The contract every watermark implements, and the one way a chapter or the comparison embeds it.

A :class:`Scheme` says what its key is (:meth:`Scheme.make_key`), how a model is trained with it
(:meth:`Scheme.train`, a hook of the one training loop), how a whole watermarked model comes about
(:meth:`Scheme.embed`: from scratch, by retraining the owner's clean model, or jointly with an
encoder; the scheme's business), what one verification trial is (:class:`~wmlib.verify.LabelTrials`:
a key query by default, a signature bit for GradSigns) and how a suspect is verified
(:meth:`Scheme.verify`). :func:`watermark` runs the whole owner's side for any scheme.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, is_dataclass, replace

import torch
from torch import nn

from ..data import DatasetSpec, Split, Splits
from ..keys import Key
from ..train import History, TrainConfig, fit, train_classifier
from ..verify import LabelTrials, Null, Oracle, Verdict, verify_trials


@dataclass(frozen=True)
class Generation:
    """How a scheme's key comes about (read from its ``make_key``): what the generator needs
    besides the committed seed and config, whether seed + data re-derive the queried key (so that
    an adversarial example cannot pass as a key, :func:`wmlib.commitment.check_generated`), and why."""
    needs: str
    verifiable: bool
    reason: str


@dataclass
class Watermarked:
    """One owner's watermarked model and what the owner keeps: the key it embedded, the held-out
    key (made the same way from data training never saw), and how long embedding took."""
    scheme: "Scheme"
    model: nn.Module
    key: Key                 # the embedded key, as the owner queries it (Li et al.: encoded images)
    held_out: Key            # the same kind of key from held-out data (a learnt pattern, not memorised samples)
    history: History
    seconds: float           # training time of embedding (a scheme that retrains: the clean model's too)
    loaded: bool             # True: the watermarked model came from the cache
    parts: dict = field(default_factory=dict)  # what else the owner keeps (Li et al.: the encoder)

    @property
    def verify_key(self) -> Key:
        """The key the owner verifies with: the embedded one, or the held-out one for a scheme the
        book verifies on fresh triggers (Wen et al.'s: a pattern, not memorised samples)."""
        return self.held_out if self.scheme.verifies_held_out else self.key


class Scheme(LabelTrials, ABC):
    """A black-box watermarking method: make the owner's key, embed it, verify a suspect."""

    name: str = "scheme"
    retrains: bool = False           # True: embed() retrains the owner's trained clean model
    verifies_held_out: bool = False  # True: the owner verifies with the held-out key
    # the paper's own decision rule, in its words, and whether it is a fixed key accuracy "close to 1" that the paper
    # never fixes (the integrity chapter applies its knob paper_threshold to those)
    paper_rule: str = "none given"
    accuracy_threshold: bool = False

    def config(self) -> dict:
        """Everything that decides what the scheme does (the model cache hashes it)."""
        if not is_dataclass(self):
            raise NotImplementedError(f"{type(self).__name__} must say what decides it: define config()")
        return {"scheme": self.name, **asdict(self)}

    def key_generation(self) -> Generation | None:
        """How :meth:`make_key` builds the key the owner queries (None: not declared). The
        integrity chapter shows it and :mod:`wmlib.commitment` re-derives the keys that allow it."""
        return None

    def check(self, spec: DatasetSpec) -> None:
        """Refuse settings that do not fit the task ``spec`` (a class index beyond its classes, ...),
        before anything is trained; the key's making checks the same."""

    def public_images(self, task: str) -> list[tuple[str, bool, str]]:
        """The public images the keys are drawn from besides the task's own (``(dataset, train split?,
        share)``, :func:`wmlib.data.public_share`): no attack may train or query on them. By default
        none: keys made from the owner's share of the task and from its test split, which no thief trains on."""
        return []

    @abstractmethod
    def make_key(self, splits: Splits, seed: int = 0, clean: nn.Module | None = None) -> tuple[Key, Key]:
        """``(key, held_out)``: the key embedded, and fresh samples made the same way from held-out
        data. ``clean`` is the owner's trained clean model, for keys made from one (AFS)."""

    @abstractmethod
    def train(self, model: nn.Module, splits: Splits, key: Key, cfg: TrainConfig, **fit_kw) -> History:
        """Train ``model`` (in place) so that it carries ``key``."""

    def train_config(self, cfg: TrainConfig) -> TrainConfig:
        """The training config :meth:`embed` uses, given the task's (a retraining scheme has its own)."""
        return cfg

    def embed(self, tag: str, model_name: str, splits: Splits, key: Key, held_out: Key, cfg: TrainConfig, *,
              clean: nn.Module | None = None, monitor: dict[str, Split] | None = None,
              device: torch.device | None = None, progress: bool = True) -> Watermarked:
        """Train (or load from the cache, under ``tag``) the watermarked ``model_name``: from scratch
        with ``cfg``, or, for a scheme that ``retrains``, from a copy of ``clean``."""
        if self.retrains and clean is None:
            raise ValueError(f"{self.name} retrains the owner's clean model: pass clean=")
        model, hist, loaded = train_classifier(tag, model_name, splits, self.train_config(cfg), key=key, scheme=self,
                                               init=clean if self.retrains else None, monitor=monitor, device=device,
                                               progress=progress)
        return Watermarked(self, model, key, held_out, hist, sum(hist.seconds), loaded)

    def thief_key(self, splits: Splits, seed: int, stolen: nn.Module, model_name: str, cfg: TrainConfig, tag: str) -> Key:
        """The key a thief who knows the method makes on its own data (``splits``) with its own
        ``seed`` (e.g. to train a key-sample detector); ``stolen`` is the ``model_name`` model it
        holds; a scheme whose keys come out of training trains with ``cfg`` under ``tag``."""
        return self.make_key(splits, seed, clean=stolen)[0]

    def twin(self, key: Key) -> Key | None:
        """The key's images without what makes them a key (the trigger), with the key's labels: a
        model that answers these with the key's label as often as the key itself learnt a class, not a
        watermark. None: the scheme's keys have no such twin (by default)."""
        return None

    def fresh_key(self, marked: Watermarked, splits: Splits, seed: int, clean: nn.Module | None = None) -> Key:
        """A key the owner of ``marked`` could have drawn with another ``seed`` and never embedded
        (made as :meth:`make_key` makes it, the part the owner verifies): an *honest* key for
        measuring how often clean models are claimed. ``clean`` is the owner's clean model."""
        key, held_out = self.make_key(splits, seed=seed, clean=clean)
        return held_out if self.verifies_held_out else key

    def verify(self, oracle: Oracle, key: Key, null: Null | None = None, alpha: float = 0.01,
               n_queries: int | None = None, seed: int = 0) -> Verdict:
        """Black-box verification through the one verifier (:func:`wmlib.verify.verify_trials`):
        this scheme's trials on ``key`` tested against ``null`` (None: the paper's own null)."""
        return verify_trials(oracle, key, self, null if null is not None else self.paper_null(key), alpha, n_queries, seed)


def require_positive_integers(scheme: Scheme, *fields: str) -> None:
    """Refuse a scheme whose ``fields`` are not positive integers (bools are not), naming the first."""
    for f in fields:
        v = getattr(scheme, f)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{f} must be a positive integer, got {v!r}")


class Retrains(Scheme):
    """A scheme that embeds by retraining the owner's trained model for ``retrain_epochs`` at a
    constant ``retrain_lr`` (Namba & Sakuma §6.1.2), with ``key_per_batch`` key samples in every
    minibatch (:func:`embed_by_finetuning`)."""
    retrains = True

    def train_config(self, cfg: TrainConfig) -> TrainConfig:
        return retrain_config(cfg, self.retrain_epochs, self.retrain_lr)


def embed_by_finetuning(model: nn.Module, splits: Splits, key: Key, cfg: TrainConfig, key_per_batch: int,
                        weight_transform=None, **fit_kw) -> History:
    """Retrain a trained ``model`` on the owner's data with ``key_per_batch`` key samples mixed into
    every minibatch; a key made of owner images (``meta['owner_indices']``: a label change) leaves
    those images out of the ordinary data."""
    owner = splits.owner
    if "owner_indices" in key.meta:
        keep = torch.ones(len(owner), dtype=torch.bool)
        keep[torch.tensor(key.meta["owner_indices"])] = False
        owner = owner.subset(keep)
    return fit(model, owner, cfg, key=key.split, key_per_batch=key_per_batch, weight_transform=weight_transform, **fit_kw)


def retrain_config(cfg: TrainConfig, epochs: int, lr: float) -> TrainConfig:
    """How a scheme retrains a trained model: ``epochs`` at a constant ``lr`` (Namba & Sakuma §6.1.2)."""
    return replace(cfg, epochs=epochs, lr=lr, schedule="none", milestones=())


def watermark(scheme: Scheme, tag: str, model_name: str, splits: Splits, cfg: TrainConfig, seed: int, *,
              clean: tuple[nn.Module, History] | None = None, monitor: dict[str, Split] | None = None,
              device: torch.device | None = None, progress: bool = True) -> tuple[Watermarked, nn.Module, History]:
    """The owner's whole side for any scheme: train (or load) the clean model ``{tag}-clean`` (or
    take ``clean``: the model and its history), make the key with ``seed`` (from the clean model
    where the scheme needs one), and embed it under ``tag``. Returns the watermarked model, the
    clean model and its history."""
    if clean is None:
        clean = train_classifier(f"{tag}-clean", model_name, splits, cfg, monitor=monitor, device=device,
                                 progress=progress)[:2]
    clean, chist = clean
    key, held_out = scheme.make_key(splits, seed=seed, clean=clean)
    wm = scheme.embed(tag, model_name, splits, key, held_out, cfg, clean=clean, monitor=monitor, device=device,
                      progress=progress)
    if scheme.retrains:
        wm.seconds += sum(chist.seconds)
    return wm, clean, chist
