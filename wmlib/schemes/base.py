"""The interface every paper's watermarking method implements."""
from __future__ import annotations

from abc import ABC, abstractmethod

from torch import nn

from ..data import Splits
from ..keys import Key
from ..train import History, TrainConfig
from ..verify import Oracle, Verdict, verify_key


class Scheme(ABC):
    """A black-box watermarking method: make the owner's key, embed it, verify a suspect."""

    name: str = "scheme"
    embeds_by_finetuning: bool = False  # True: embed() retrains an already trained model

    @abstractmethod
    def make_key(self, splits: Splits, seed: int = 0) -> tuple[Key, Key]:
        """``(key, new_key)``: the key embedded, and fresh samples made the same way from held-out
        data (to tell a learnt pattern from memorised samples)."""

    @abstractmethod
    def embed(self, model: nn.Module, splits: Splits, key: Key, cfg: TrainConfig, **fit_kw) -> History:
        """Train ``model`` (in place) so that it carries ``key``."""

    def verify(self, oracle: Oracle, key: Key, **kw) -> Verdict:
        """Black-box verification: a one-sided binomial test on the key accuracy (see wmlib.verify)."""
        return verify_key(oracle, key, **kw)
