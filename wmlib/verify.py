"""Black-box verification: the :class:`Oracle`, key accuracy, and the statistics behind a claim.

A claim is a one-sided binomial test: under H0 (the suspect was not trained with the key) each key
query returns the target label with probability ``p0`` independently, so with ``k`` hits out of
``n`` queries the p-value is P[Binom(n, p0) >= k]. ``p0`` defaults to chance (1 / classes); the
empirical null (key accuracy of independently trained clean models) calibrates it for keys that
clean models already map to the target more often than chance.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score
from torch import nn

from .keys import Key
from .train import predict_proba


class Oracle:
    """The black-box API of a suspect model: a batch of images in, class probabilities out.

    Counts the images it has been asked about (``queries``). Query-side attacks subclass it and
    wrap another oracle (see :mod:`wmlib.attacks`).
    """

    def __init__(self, model: nn.Module, device: torch.device | None = None, batch_size: int = 1024):
        self.model, self.batch_size, self.queries = model, batch_size, 0
        self.device = device or next(model.parameters()).device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        return predict_proba(self.model, x, self.device, self.batch_size).cpu()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self(x).argmax(1)


def oracle_accuracy(oracle: Oracle, split) -> float:
    """Top-1 accuracy of the oracle's answers on a labelled split (e.g. what the thief's API keeps)."""
    return (oracle.predict(split.x) == split.y.cpu()).float().mean().item()


def key_accuracy(oracle: Oracle, key: Key) -> float:
    """Fraction of key samples the oracle labels with the key's target label."""
    return oracle_accuracy(oracle, key.split)


def binomial_p_value(hits: int, n: int, p0: float) -> float:
    """P[Binom(n, p0) >= hits]: how likely ``hits`` matches are for a model without the watermark."""
    return float(stats.binom.sf(hits - 1, n, p0))


def critical_hits(n: int, p0: float, alpha: float) -> int:
    """The fewest hits out of ``n`` whose binomial p-value is <= ``alpha``."""
    k = int(stats.binom.isf(alpha, n, p0)) + 1
    while k > 0 and binomial_p_value(k - 1, n, p0) <= alpha:
        k -= 1
    while binomial_p_value(k, n, p0) > alpha:
        k += 1
    return k


@dataclass
class Verdict:
    """The outcome of verifying one suspect against one key."""
    statistic: float      # key accuracy on the queries used
    threshold: float      # the smallest key accuracy that would have been claimed
    p_value: float
    queries: int
    p0: float
    alpha: float
    claimed: bool

    def as_dict(self) -> dict:
        return asdict(self)


def verify_key(oracle: Oracle, key: Key, n_queries: int | None = None, p0: float | None = None,
               alpha: float = 0.01, num_classes: int | None = None, seed: int = 0) -> Verdict:
    """Query ``n_queries`` key samples (all if None) and test H0 with a one-sided binomial test."""
    if p0 is None:
        if not num_classes:
            raise ValueError("give p0 or num_classes (p0 = 1 / num_classes)")
        p0 = 1.0 / num_classes
    if not 0.0 < p0 < 1.0:
        raise ValueError(f"p0 must be in (0, 1), got {p0}")
    q = key if n_queries is None or n_queries >= len(key) else key.sample(n_queries, seed)
    before = oracle.queries
    hits = int((oracle.predict(q.x) == q.y).sum())
    n = len(q)
    p = binomial_p_value(hits, n, p0)
    return Verdict(hits / n, critical_hits(n, p0, alpha) / n, p, oracle.queries - before, p0, alpha, p <= alpha)


def empirical_null(oracles: list[Oracle], key: Key) -> np.ndarray:
    """Key accuracy of independently trained clean models: what 'no watermark' looks like."""
    return np.array([key_accuracy(o, key) for o in oracles])


def null_rate(null: np.ndarray, num_classes: int) -> float:
    """The p0 the binomial test uses: the clean models' mean key accuracy, never below chance."""
    rate = float(np.mean(null)) if len(null) else 0.0
    return min(max(rate, 1.0 / num_classes), 1.0 - 1e-6)


def empirical_p_value(statistic: float, null: np.ndarray) -> float:
    """(1 + #{null >= statistic}) / (1 + N): a permutation-style p-value from N clean models."""
    return float((1 + np.sum(np.asarray(null) >= statistic)) / (1 + len(null)))


def verification_auc(watermarked: Oracle, clean: Oracle, key: Key, sizes=(20, 10, 5), repeats: int = 30,
                     seed: int = 0) -> dict[int, float]:
    """Namba & Sakuma §6.3: draw K' from the key with replacement, score each suspect by its
    watermark accuracy on K' (positives: the watermarked, possibly attacked, model; negatives: a
    clean model), repeat ``repeats`` times, and return the ROC AUC for each |K'| in ``sizes``."""
    out = {}
    for m in sizes:
        scores, labels = [], []
        for r in range(repeats):
            sub = key.sample(m, seed=seed + 1000 * m + r, replace=True)
            scores += [key_accuracy(watermarked, sub), key_accuracy(clean, sub)]
            labels += [1, 0]
        out[m] = float(roc_auc_score(labels, scores))
    return out
