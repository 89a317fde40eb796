"""Black-box verification: the :class:`Oracle`, key accuracy, and the statistics behind a claim.

A claim is a one-sided test. The owner sends ``n`` key queries and counts ``k`` hits (answers equal
to the key's label, or, for signature keys, bits that match). Under H0 the suspect is a clean model
that was never trained with the key. Clean models do *not* share one hit rate: independently
trained networks answer the same key very differently (the Zhang chapter's unrelated key: 3 % to
28 %). A :class:`Null` therefore models the hit rate of a clean model as Beta-distributed around
the rate of a *zoo* of clean models (:mod:`wmlib.zoo`), which makes ``k`` beta-binomial; with zero
spread it is the plain binomial test P[Binom(n, p0) >= k]. Every verdict records the null it used.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score
from torch import nn

from .keys import Key
from .train import model_digest, predict_proba


class Oracle:
    """The black-box API of a suspect model: a batch of images in, class probabilities out.

    Counts the images it has been asked about (``queries``). Query-side attacks subclass it and
    wrap another oracle, ``inner`` (see :mod:`wmlib.attacks`).
    """
    model: nn.Module | None = None
    inner: "Oracle | None" = None  # the oracle a query-side wrapper forwards to

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


def hits(oracle: Oracle, key: Key) -> torch.Tensor:
    """Per key sample: did the oracle answer with the key's label? (bool, on the CPU)"""
    return oracle.predict(key.x) == key.y.cpu()


class LabelTrials:
    """What one verification trial is, and what chance gets right: the default is one key query
    answered with the key's label (chance 1 / classes). Every :class:`~wmlib.schemes.Scheme` is one;
    a signature scheme overrides the trial (GradSigns: one signature bit, chance ½). The zoo, the
    verifier and the comparison ask only these methods, never which scheme they hold."""
    trials = "labels"  # what a trial counts; attacks on one kind of verification name it

    def hits(self, oracle: Oracle, key: Key) -> torch.Tensor:
        """One bool per trial: did the oracle answer the key query with the key's label?"""
        return hits(oracle, key)

    def chance(self, num_classes: int) -> float:
        """The hit rate of a random guesser, the null's floor."""
        return 1.0 / num_classes

    def queries(self, key: Key, n_queries: int | None, seed: int = 0) -> Key:
        """The part of ``key`` one verification sends: ``n_queries`` samples drawn with ``seed``
        (the whole key if None or not fewer than the key)."""
        return key if n_queries is None or n_queries >= len(key) else key.sample(n_queries, seed)

    def trial_count(self, key: Key, n_queries: int) -> int:
        """How many trials one verification of ``key`` counts (the claim tables' ``n_queries``): its
        queries, never more than the key holds (a 30-sample key is 30 trials, whatever ``n_queries``)."""
        return min(n_queries, len(key))

    def hits_id(self) -> str:
        """What the hits depend on besides the key (the zoo caches hit vectors under it)."""
        return "labels"

    def chosen_on(self) -> tuple[str, ...]:
        """The clean models whose answers chose one of this scheme's settings (e.g. the function-
        coupled target): their false claims are in sample, and no false-claim rate counts them."""
        return ()

    def paper_null(self, key: Key) -> "Null":
        """The null a paper verifies with when no zoo is given."""
        raise ValueError("label trials need a null fitted to clean models: give null=Zoo.null(key, scheme)")


LABELS = LabelTrials()


def binomial_p_value(hits: int, n: int, p0: float) -> float:
    """P[Binom(n, p0) >= hits]: how likely ``hits`` matches are for a model without the watermark."""
    return float(stats.binom.sf(hits - 1, n, p0))


def critical_hits(n: int, p0: float, alpha: float) -> int:
    """The fewest hits out of ``n`` whose binomial p-value is <= ``alpha``."""
    return Null.binomial(p0).critical(n, alpha)


@dataclass(frozen=True)
class Null:
    """H0 for a hit count: a clean model's hit rate is Beta-distributed, so ``k`` hits out of ``n``
    queries are beta-binomial (``spread`` > 0) or binomial (``spread`` = 0).

    ``mean`` is the expected hit rate of a clean model and ``spread`` the share of its variance
    that is between models, ρ = Var(rate) / (mean (1 - mean)) (the beta-binomial's intra-class
    correlation; a = mean (1/ρ - 1), b = (1 - mean)(1/ρ - 1)). ``floor`` is a second, separate
    guard: the p-value is the larger of the fitted null's and that of a binomial test at ``floor``
    (e.g. chance, 1 / classes), so no claim is easier than against a random guesser.

    Why a beta-binomial fitted to a zoo rather than a tolerance bound on the zoo's rates: a claim
    needs the null's upper tail at α = 1 %, far beyond what 10-20 clean models can show (a
    distribution-free bound at that level needs hundreds of models). The Beta extrapolates the tail
    from the zoo's mean and spread, keeps the query-sampling noise of the test itself, and reduces
    to the plain binomial when clean models do not differ.
    """
    mean: float
    spread: float = 0.0
    models: int = 0                      # clean models it was fitted on; 0: assumed (e.g. chance)
    confidence: float | None = None      # the fit's upper confidence level for mean and spread
    floor: float = 0.0                   # also test against a binomial at this rate (e.g. chance)
    rates: tuple[float, ...] = ()        # the statistic of each clean model it was fitted on
    members: tuple[str, ...] = ()
    digests: tuple[str, ...] = field(default=(), repr=False)  # weight digests: a suspect is never in its own null

    def __post_init__(self):
        if not 0.0 < self.mean < 1.0:
            raise ValueError(f"the null's mean hit rate must be in (0, 1), got {self.mean}")
        if not 0.0 <= self.spread < 1.0:
            raise ValueError(f"the null's spread must be in [0, 1), got {self.spread}")

    @classmethod
    def binomial(cls, p0: float) -> "Null":
        """The plain binomial test: every clean model hits with the same ``p0`` (zero spread)."""
        if not 0.0 < p0 < 1.0:
            raise ValueError(f"p0 must be in (0, 1), got {p0}")
        return cls(mean=p0)

    @classmethod
    def fit(cls, hits, trials, *, floor: float = 0.0, confidence: float | None = 0.99,
            overdispersion: bool = True, members=(), digests=()) -> "Null":
        """Fit mean and spread to clean models' hit counts (``hits[i]`` out of ``trials[i]``).

        Moments: the between-model variance is the sample variance of the rates (ddof 1) less the
        binomial sampling variance of each count, which is itself smaller by the between-model share
        (the small-sample factor 1 / (1 - h), h the mean of 1 / trials). With ``confidence`` both are
        replaced by their one-sided upper bounds (Student t for the mean, χ² for the variance), so a
        small zoo errs toward *not* claiming; ``confidence=None`` uses the point estimates. The
        default, 99 %, is what the leave-one-out false-claim tables of the chapters need for a zoo
        whose architectures answer a key differently (the Zhang chapter shows 95 % next to it).
        ``overdispersion=False`` fits the plain binomial at the zoo's mean rate (one p0 for every
        clean model).
        """
        k, m = np.asarray(hits, dtype=float), np.broadcast_to(np.asarray(trials, dtype=float), np.shape(hits))
        if len(k) < 2:
            raise ValueError(f"fitting a null needs at least 2 clean models, got {len(k)}")
        if np.any(m <= 0) or np.any(k < 0) or np.any(k > m):
            raise ValueError("hits must lie in [0, trials] with trials > 0")
        if confidence is not None and not 0.5 <= confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1) or None, got {confidence}")
        r, n = k / m, len(k)
        mean, s2 = float(r.mean()), float(r.var(ddof=1))
        if confidence is not None:
            mean += float(stats.t.ppf(confidence, n - 1)) * np.sqrt(s2 / n)
            s2 = (n - 1) * s2 / float(stats.chi2.ppf(1.0 - confidence, n - 1))
        if not 0.0 <= floor < 1.0:
            raise ValueError(f"floor must be in [0, 1), got {floor}")
        tiny = 0.5 / (m.sum() + 1.0)  # Jeffreys' estimate for no hits at all: a hit is never impossible
        mean = float(np.clip(max(mean, tiny), 1e-9, 1.0 - 1e-9))
        # E[s²] = σ² + E[p(1 - p)] h with h the mean of 1 / trials, and E[p(1 - p)] = mean (1 - mean) - σ²: the
        # sampling term shrinks by what varies between models, so σ² = (s² - mean (1 - mean) h) / (1 - h)
        h = float(np.mean(1.0 / m))
        between = max(s2 - mean * (1.0 - mean) * h, 0.0) / (1.0 - h) if h < 1.0 else 0.0  # one trial each: not identified
        spread = float(min(between / (mean * (1.0 - mean)), 0.99)) if overdispersion else 0.0
        return cls(mean, spread, n, confidence, floor, tuple(float(x) for x in r), tuple(members), tuple(digests))

    @classmethod
    def from_hits(cls, hits: dict[str, torch.Tensor], exclude: str | None = None,
                  digests: dict[str, str] | None = None, **kw) -> "Null":
        """:meth:`fit` on per-sample hit vectors of named clean models, leaving out ``exclude``."""
        if exclude is not None and exclude not in hits:
            raise ValueError(f"{exclude!r} is not among the clean models: {', '.join(hits)}")
        names = [name for name in hits if name != exclude]
        return cls.fit([int(hits[n].sum()) for n in names], [len(hits[n]) for n in names], members=names,
                       digests=[digests[n] for n in names] if digests else (), **kw)

    @property
    def a(self) -> float:
        return self.mean * (1.0 / self.spread - 1.0) if self.spread > 0 else float("inf")

    @property
    def b(self) -> float:
        return (1.0 - self.mean) * (1.0 / self.spread - 1.0) if self.spread > 0 else float("inf")

    def _sf(self, k, n: int):
        """P[K >= k] for K the hit count of a clean model over ``n`` queries (the larger of the
        fitted null's and the floor's)."""
        k = np.asarray(k) - 1
        sf = stats.binom.sf(k, n, self.mean) if self.spread == 0.0 else stats.betabinom.sf(k, n, self.a, self.b)
        return np.maximum(sf, stats.binom.sf(k, n, self.floor)) if self.floor > 0 else sf

    def pmf(self, n: int) -> np.ndarray:
        """P[K = k] for k = 0..n under the fitted null (for figures; without the floor)."""
        ks = np.arange(n + 1)
        return stats.binom.pmf(ks, n, self.mean) if self.spread == 0.0 else stats.betabinom.pmf(ks, n, self.a, self.b)

    def p_value(self, hits: int, n: int) -> float:
        return float(self._sf(hits, n))

    def critical(self, n: int, alpha: float) -> int:
        """The fewest hits out of ``n`` whose p-value is <= ``alpha`` (``n + 1``: no count is enough)."""
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        ok = np.nonzero(self._sf(np.arange(n + 1), n) <= alpha)[0]
        return int(ok[0]) if len(ok) else n + 1

    def false_claim_rate(self, n: int, alpha: float) -> float:
        """The chance that a clean model drawn from this null is claimed (<= alpha; less when the
        test is discrete)."""
        k = self.critical(n, alpha)
        return self.p_value(k, n) if k <= n else 0.0

    def as_dict(self) -> dict:
        return {"models": self.models, "mean": self.mean, "spread": self.spread, "a": self.a, "b": self.b,
                "confidence": self.confidence, "floor": self.floor, "members": list(self.members),
                "rates": list(self.rates)}


@dataclass
class Verdict:
    """The outcome of verifying one suspect against one key, with the null it was tested against."""
    statistic: float      # hit rate on the queries used
    threshold: float      # the smallest hit rate that would have been claimed (> 1: none at this n)
    p_value: float
    queries: int          # queries the suspect answered
    hits: int
    n: int                # trials: key queries, or signature bits
    alpha: float
    claimed: bool
    expected_false_claim_rate: float  # under the null, at alpha
    null: dict            # Null.as_dict()

    @property
    def p0(self) -> float:
        return self.null["mean"]

    @property
    def out_of_reach(self) -> bool:
        """No count of this many trials could be claimed: the null's threshold lies above 100 %."""
        return self.threshold > 1.0

    def as_dict(self) -> dict:
        """The flat fields a results table shows (the full null stays in ``null``)."""
        d = {k: v for k, v in asdict(self).items() if k != "null"}
        d.update({"null models": self.null["models"], "null mean": self.null["mean"],
                  "null spread": self.null["spread"]})
        return d


def verify_counts(hits: int, n: int, null: Null, alpha: float = 0.01, queries: int = 0) -> Verdict:
    """Test ``hits`` successes out of ``n`` trials against ``null`` at level ``alpha``. The trials
    can be key queries (label matches) or signature bits (bit matches)."""
    if not 0 <= hits <= n or n < 1:
        raise ValueError(f"need 0 <= hits <= n and n >= 1, got hits={hits}, n={n}")
    p, crit = null.p_value(hits, n), null.critical(n, alpha)
    expected = null.p_value(crit, n) if crit <= n else 0.0  # Null.false_claim_rate, without a second search
    return Verdict(hits / n, crit / n, p, queries, int(hits), int(n), alpha, p <= alpha, expected, null.as_dict())


def holm(verdicts: "dict[str, Verdict | float]", alpha: float = 0.01) -> dict[str, bool]:
    """One suspect verified on several keys (``verdicts``: key -> :class:`Verdict` or its p-value),
    claimed with the family-wise error held at ``alpha`` (Holm's step-down): the p-values in
    ascending order, the i-th (from 0) claimed while it is at most ``alpha / (K - i)``; the first
    that is not stops the rest. Each verdict alone is at level ``alpha``, so an innocent model facing
    K keys risks up to K ``alpha``; this holds it to ``alpha``."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    p = {k: float(v.p_value if isinstance(v, Verdict) else v) for k, v in verdicts.items()}
    order = sorted(p, key=p.get)
    out, going = {}, True
    for i, k in enumerate(order):
        going = going and p[k] <= alpha / (len(order) - i)
        out[k] = going
    return {k: out[k] for k in verdicts}


def family_table(pairs: pd.DataFrame, alpha: float, confidence: float = 0.95) -> pd.DataFrame:
    """The family-wise risk of innocent suspects that each face every key of ``pairs`` (one row per
    (``suspect``, ``key``) pair with its one-draw ``claimed``, its ``claim probability`` over draws
    and the ``p-value`` of the judge's draw): the share of suspects claimed by *any* key, with each
    key verified at ``alpha`` and with Holm's step-down over the suspect's keys (:func:`holm`), each
    with its exact one-sided upper bound over the suspects (the independent units); and, for each key
    at ``alpha``, the mean chance over query draws that any key claims a suspect."""
    rows, keys_each = [], int(pairs.groupby("suspect")["key"].nunique().max())
    for rule in ("each key at α", "Holm over the keys"):
        claimed, risk = [], []
        for _, g in pairs.groupby("suspect", sort=False):
            if rule == "each key at α":
                claimed.append(bool(g["claimed"].any()))
                risk.append(1.0 - float(np.prod(1.0 - g["claim probability"].to_numpy())))
            else:
                claimed.append(any(holm(dict(zip(g["key"], g["p-value"])), alpha).values()))
        s, c = len(claimed), int(sum(claimed))
        rows.append({"rule": rule, "suspects": s, "keys each": keys_each,
                     "claimed by any key": c, "share": c / s, "upper bound": _exact_high(c, s, confidence),
                     "any claim over draws": float(np.mean(risk)) if risk else float("nan")})
    return pd.DataFrame(rows)


def suspect_digest(oracle: Oracle) -> str | None:
    """The weight digest of the model behind an oracle (through query-side wrappers), if any."""
    while oracle.inner is not None:
        oracle = oracle.inner
    return model_digest(oracle.model) if isinstance(oracle.model, nn.Module) else None


def require_claimed(claimed: dict[str, "bool | Verdict"], remedy: str) -> None:
    """The embedding gate: every watermarked model (name -> claimed on its own key by the shared
    verifier, or its :class:`Verdict`) must be claimed before any attack, so that a scheme that
    failed to embed never reaches a table. ``remedy`` names the knobs to raise."""
    def ok(v) -> bool:
        return bool(v.claimed if isinstance(v, Verdict) else v)

    failed = [name + (f" ({v.statistic:.1%} < {v.threshold:.1%})" if isinstance(v, Verdict) else "")
              for name, v in claimed.items() if not ok(v)]
    if failed:
        out_of_reach = [name for name, v in claimed.items() if isinstance(v, Verdict) and v.out_of_reach]
        raise RuntimeError(f"not embedded (the zoo null does not claim {', '.join(failed)} on their own keys): {remedy}"
                           + ("" if not out_of_reach else
                              f". No count can be claimed for {', '.join(out_of_reach)}: the zoo's clean models answer that "
                              "key so variously that the null's threshold lies above every hit at this size; more training "
                              "does not help, a larger key (more samples or bits) or a larger zoo does"))


def check_not_in_null(oracle: Oracle, null: Null, hint: str = "Zoo.null(key, exclude=name)") -> None:
    """Refuse a suspect that is one of the clean models ``null`` was fitted on: it would be tested
    against itself. ``hint`` says how to fit the null without it."""
    if null.digests and suspect_digest(oracle) in null.digests:
        raise ValueError(f"the suspect is one of the clean models its null was fitted on; fit the null without it ({hint})")


def verify_trials(oracle: Oracle, key: Key, trials: LabelTrials, null: Null, alpha: float = 0.01,
                  n_queries: int | None = None, seed: int = 0) -> Verdict:
    """The one verifier: send what one verification of ``key`` sends (``trials.queries``), count the
    hits (``trials.hits``) and test them against ``null``. A suspect that is one of the null's own
    clean models is an error: it would be tested against itself."""
    check_not_in_null(oracle, null)
    q = trials.queries(key, n_queries, seed)
    before = oracle.queries
    h = trials.hits(oracle, q)
    return verify_counts(int(h.sum()), len(h), null, alpha, oracle.queries - before)


def verify_key(oracle: Oracle, key: Key, n_queries: int | None = None, null: Null | None = None,
               p0: float | None = None, alpha: float = 0.01, num_classes: int | None = None,
               seed: int = 0) -> Verdict:
    """Query ``n_queries`` key samples (all if None) and test H0 against ``null``; without one, the
    plain binomial test with ``p0`` (default: chance, 1 / ``num_classes``). A suspect that is one of
    the null's own clean models is an error: it would be tested against itself."""
    if null is None:
        if p0 is None:
            if not num_classes:
                raise ValueError("give a null, p0 or num_classes (p0 = 1 / num_classes)")
            p0 = 1.0 / num_classes
        null = Null.binomial(p0)
    return verify_trials(oracle, key, LABELS, null, alpha, n_queries, seed)


def claims_at(hit_vector: torch.Tensor, critical: int, n: int, draws: int, seed: int = 0) -> int:
    """How many of ``draws`` verifications, each ``n`` trials drawn without replacement from
    ``hit_vector``, count at least ``critical`` hits (a rule's fewest claimed hits out of ``n``)."""
    size = len(hit_vector)
    good = int(hit_vector.sum())
    if n >= size:  # every draw is the whole key
        return draws if good >= critical else 0
    k = np.random.default_rng(seed).hypergeometric(good, size - good, n, size=draws)
    return int((k >= critical).sum())


def drawn_hits(hit_vector: torch.Tensor, n: int, seed: int) -> int:
    """The hits of the judge's one draw of ``n`` trials from ``hit_vector`` with ``seed`` (the first
    draw :func:`claims_at` makes with that seed): the draw :func:`verify_once` judges."""
    size, good = len(hit_vector), int(hit_vector.sum())
    if n >= size:
        return good
    return int(np.random.default_rng(seed).hypergeometric(good, size - good, n, size=1)[0])


def verify_once(hit_vector: torch.Tensor, critical: int, n: int, seed: int) -> dict:
    """One verification of a (suspect, key) pair: ``n`` trials drawn without replacement from
    ``hit_vector`` (the judge's draw, from ``seed``) claimed at ``critical`` hits, and the chance
    that any one draw claims it (:func:`claim_probability`: the spread within the pair, not new evidence)."""
    n = min(n, len(hit_vector))
    return {"claimed": drawn_hits(hit_vector, n, seed) >= critical,
            "claim probability": claim_probability(hit_vector, critical, n)}


def verify_pair(hit_vector: torch.Tensor, null: Null, n: int, alpha: float, seed: int) -> dict:
    """:func:`verify_once` against ``null`` at ``alpha``, with the p-value of the judge's draw (for
    Holm's step-down over a suspect's keys, :func:`family_table`)."""
    n = min(n, len(hit_vector))
    return {**verify_once(hit_vector, null.critical(n, alpha), n, seed),
            "p-value": null.p_value(drawn_hits(hit_vector, n, seed), n)}


def claim_table(zoo_hits: dict[str, torch.Tensor], suspects: dict[str, torch.Tensor], n_queries: int,
                alpha: float = 0.01, seed: int = 0, digests: dict[str, str] | None = None, in_sample=(),
                **null_kw) -> pd.DataFrame:
    """Each suspect verified once on ``n_queries`` queries drawn from the key (``claimed``: the
    judge's draw, from ``seed``), and the chance that one draw claims it (``claim probability``,
    exact: the spread over draws, not new evidence). Each zoo model is a suspect in turn, tested
    against the null fitted on the *other* zoo models (leave-one-out: its claims are false claims);
    every other suspect (watermarked, attacked) is tested against the whole zoo (power). Zoo models
    in ``in_sample`` (they chose a setting of the key, :meth:`LabelTrials.chosen_on`) are tested the
    same way but with role 'clean (in sample)', which no false-claim rate counts."""
    unknown = set(in_sample) - set(zoo_hits)
    if unknown:
        raise ValueError(f"in_sample names models outside the zoo: {', '.join(sorted(unknown))}")
    rows = []
    full = Null.from_hits(zoo_hits, digests=digests, **null_kw)
    for i, (name, h) in enumerate([*zoo_hits.items(), *suspects.items()]):
        clean = i < len(zoo_hits)
        null = Null.from_hits(zoo_hits, exclude=name, digests=digests, **null_kw) if clean else full
        n = min(n_queries, len(h))
        critical = null.critical(n, alpha)
        role = ("clean (in sample)" if name in in_sample else "clean (leave-one-out)") if clean else "suspect"
        rows.append({"suspect": name, "role": role,
                     "statistic": float(h.float().mean()), "threshold": critical / n,
                     **verify_once(h, critical, n, seed + i), "queries": n, "null models": null.models})
    return pd.DataFrame(rows)


def false_claim_pairs(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The (clean model, key) pairs of :func:`claim_table` results, one table per key: each zoo
    model verified once against the null of the others (``claimed``, the table's first draw) and
    its ``claim probability`` over query draws."""
    rows = [t.loc[t["role"] == "clean (leave-one-out)", ["suspect", "claimed", "claim probability"]].assign(key=k)
            for k, t in tables.items()]
    return pd.concat(rows, ignore_index=True)[["suspect", "key", "claimed", "claim probability"]]


def false_claim_rate(tables: dict[str, pd.DataFrame], confidence: float = 0.95) -> PairRate:
    """:func:`pair_rate` of the (clean model, key) pairs of ``tables`` (:func:`false_claim_pairs`)."""
    return pair_rate(false_claim_pairs(tables), confidence)


def claim_summary(tables: dict[str, pd.DataFrame], nulls: dict[str, Null] | None = None,
                  alpha: float = 0.01) -> pd.DataFrame:
    """One row per key: the zoo models it claims (leave-one-out; each verified once) with the
    exact bound over models and the mean claim probability over query draws, and each other
    suspect's claim probability (power: the chance one verification claims it). With ``nulls``, also
    the false-claim rate each full-zoo null expects at ``alpha``."""
    rows = {}
    for key, t in tables.items():
        r = false_claim_rate({key: t})
        row = {"zoo models": r.suspects, "zoo models claimed": f"{r.claimed} / {r.pairs}", "false-claim rate": r.rate,
               f"{r.confidence:.0%} bound (exact)": r.bound, "expected over draws": r.expected}
        row["queries"] = int(t["queries"].iloc[0])
        if nulls is not None:
            row["expected (null)"] = nulls[key].false_claim_rate(row["queries"], alpha)
        row.update({f"claimed: {s.suspect}": s["claim probability"] for _, s in t[t["role"] == "suspect"].iterrows()})
        rows[key] = row
    return pd.DataFrame(rows).T


def summary_formats(summary: pd.DataFrame) -> dict[str, str]:
    """How a :func:`claim_summary` table shows its numbers (for ``DataFrame.style.format``)."""
    rates = [c for c in summary.columns if c.startswith("claimed: ") or " bound" in c or c.startswith("expected over")]
    return {**{c: "{:.1%}" for c in rates}, "false-claim rate": "{:.1%}", "expected (null)": "{:.1e}"}


def verification_auc(positive: torch.Tensor, negatives: list[torch.Tensor], sizes=(20, 10, 5),
                     repeats: int = 30, seed: int = 0) -> dict[int, float]:
    """Namba & Sakuma §6.3: draw K' from the key with replacement, score each suspect by its
    watermark accuracy on K' (positive: the watermarked, possibly attacked, model; negatives: clean
    models, e.g. the zoo), repeat ``repeats`` times, and return the ROC AUC for each |K'| in
    ``sizes``. Suspects are given as per-sample hit vectors on the key (:func:`hits`), so every
    suspect is scored on the same K'."""
    if not negatives:
        raise ValueError("the AUC needs at least one clean model as a negative")
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m in sizes:
        scores, labels = [], []
        for _ in range(repeats):
            idx = torch.randint(0, len(positive), (m,), generator=g)
            scores.append(positive[idx].float().mean().item())
            labels.append(1)
            scores += [neg[idx].float().mean().item() for neg in negatives]
            labels += [0] * len(negatives)
        out[m] = float(roc_auc_score(labels, scores))
    return out


# --------------------------------------------------------------------------- what a false-claim rate counts
#
# A false-claim experiment verifies clean suspects against keys. Its unit of replication is the (suspect, key) pair:
# repeated query draws of one pair are not new evidence (with a key no longer than the queries, every draw is the same
# verification), and pairs that share a suspect, or a key, are not independent of each other. So a pair is verified
# once (the judge's one draw of queries), the chance that any one draw claims it is computed exactly (the spread within
# the pair), and an interval over pairs is clustered by suspect and by key.


def claim_probability(hit_vector: torch.Tensor, critical: int, n: int) -> float:
    """The chance that one verification of ``n`` trials, drawn without replacement from
    ``hit_vector`` (a pair's per-sample hits), counts at least ``critical`` hits: exact
    (hypergeometric), the spread of one (suspect, key) pair over query draws, not new evidence."""
    size, good = len(hit_vector), int(hit_vector.sum())
    n = min(n, size)
    if critical > n:
        return 0.0
    return float(stats.hypergeom.sf(critical - 1, size, good, n))


@dataclass(frozen=True)
class PairRate:
    """Claims over (suspect, key) pairs, each pair verified once, and what the count can support.

    ``rate`` is the share of claimed pairs. Two upper bounds, each exact (Clopper-Pearson) over one
    kind of independent unit and at ``(1 + confidence) / 2`` so that the smaller of the two holds
    at ``confidence`` (Bonferroni; at ``confidence`` itself when there is one key or one suspect,
    whose bound is 1): over suspects (the share of suspects claimed by any key; keys as
    fixed) and over keys (the share of keys that claim any suspect; suspects as fixed). Either share
    is at least the pair rate, so each bounds it. ``boot_low`` / ``boot_high``: a two-way cluster
    (pigeonhole) bootstrap percentile interval of the pair rate, suspects and keys resampled
    independently; it says nothing when no pair is claimed (both 0), which is why the bound is the
    exact one. ``expected`` is the mean claim probability of a pair over query draws."""
    pairs: int
    suspects: int
    keys: int
    claimed: int
    rate: float
    suspects_claimed: int
    keys_claiming: int
    bound_suspects: float
    bound_keys: float
    boot_low: float
    boot_high: float
    expected: float
    confidence: float

    @property
    def bound(self) -> float:
        """The upper bound at ``confidence`` on the false-claim rate of one verification of a pair."""
        return min(self.bound_suspects, self.bound_keys)

    @property
    def bound_over(self) -> str:
        """The unit the smaller bound counts: ``suspect`` or ``key``."""
        return "suspect" if self.bound_suspects <= self.bound_keys else "key"

    @property
    def family_rate(self) -> float:
        """The share of suspects claimed by at least one of the keys (an innocent model facing them all)."""
        return self.suspects_claimed / self.suspects

    def text(self, suspect: str = "suspect", key: str = "key") -> str:
        """What the count is and what it supports, in words (glue for a chapter's prose)."""
        over = _count(self.suspects, suspect) if self.bound_over == "suspect" else _count(self.keys, key)
        return pairs_text(self.claimed, self.pairs, self.suspects, self.keys, self.bound, over, self.confidence, suspect,
                          key, verb=" claimed")

    def as_dict(self) -> dict:
        return {**asdict(self), "bound": self.bound, "bound over": self.bound_over, "family rate": self.family_rate}


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("s" if n != 1 else "")


def pairs_text(claimed: int, pairs: int, suspects: int, keys: int, bound: float, over: str, confidence: float = 0.95,
               suspect: str = "suspect", key: str = "key", verb: str = "") -> str:
    """Claims over (suspect, key) pairs in the book's one phrasing: how many of how many pairs,
    the suspects and keys behind them, the rate and its exact upper bound over ``over`` (e.g.
    "14 suspects"). ``verb`` follows "pairs" (" claimed"), for a sentence that has none."""
    grid = (f"{_count(suspects, suspect)} × {_count(keys, key)}" if pairs == suspects * keys
            else f"{_count(suspects, suspect)} and {_count(keys, key)}, not every pair of them")  # e.g. in-sample pairs left out
    return (f"{claimed} of {pairs} ({suspect}, {key}) pairs{verb} ({grid}, each pair verified once; {claimed / pairs:.1%}, "
            f"{confidence:.0%} upper bound {bound:.1%}, exact over the {over})")


def models_needed(alpha: float, confidence: float = 0.95) -> int:
    """The independent clean suspects, none of them claimed, whose exact one-sided ``confidence``
    bound reaches ``alpha``: what measuring "a false-claim rate <= alpha" takes."""
    return int(np.ceil(np.log(1.0 - confidence) / np.log(1.0 - alpha)))


def level_texts(seen: str, alpha: float, model_based: str = "",
                deviates: str = ", so the null understates how clean models differ") -> dict[str, str]:
    """Why a promise "false claims <= ``alpha``" got the status it got, one text per status
    (:meth:`wmlib.report.PaperVsOurs.add`), after ``seen`` (what was counted, e.g. :func:`pairs_text`):
    *model-based* when the rate meets ``alpha`` but its measured bound does not (the promise rests on
    the null model), *deviates* when the rate itself is above ``alpha``; each followed by its own
    ``model_based`` / ``deviates`` words (by default a claim on clean models says the null
    understates how they differ)."""
    return {"model-based": f"{seen}: the bound is above α = {alpha:g}, so '≤ α' rests on the null model, not on this "
                           f"measurement{model_based}",
            "deviates": f"{seen}: the rate is above α = {alpha:g}{deviates}"}


def level_reasons(rate: PairRate, alpha: float, suspect: str = "clean zoo model", key: str = "key") -> dict[str, str]:
    """:func:`level_texts` for a rate over clean zoo models, with what would measure the level."""
    return level_texts(rate.text(suspect, key), alpha,
                       model_based=f"; with no claim, {models_needed(alpha, rate.confidence)} independent {suspect}s "
                                   f"would bound it at α")


def _exact_high(k: int, n: int, level: float) -> float:
    """The one-sided exact (Clopper-Pearson) upper bound at ``level`` on a rate seen ``k`` times in ``n``."""
    return float(stats.binomtest(k, n).proportion_ci(2.0 * level - 1.0, method="exact").high)


def pair_rate(pairs: pd.DataFrame, confidence: float = 0.95, boot: int = 2000, seed: int = 0) -> PairRate:
    """:class:`PairRate` of a frame with one row per (``suspect``, ``key``) pair, its one-draw
    outcome ``claimed`` and its ``claim probability`` over draws (:func:`claim_probability`)."""
    if pairs.empty:
        raise ValueError("no (suspect, key) pairs to summarise")
    if pairs.duplicated(["suspect", "key"]).any():
        raise ValueError("a (suspect, key) pair appears twice: repeated draws of one pair are not new pairs")
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
    grid = pairs.pivot(index="suspect", columns="key", values="claimed")  # NaN: a pair not verified
    c = grid.to_numpy(dtype=float)
    seen = ~np.isnan(c)
    c = np.nan_to_num(c)
    s_any, k_any = int((c.max(axis=1) > 0).sum()), int((c.max(axis=0) > 0).sum())
    S, K = c.shape
    # each bound at half the error, so that their minimum holds at `confidence`; one suspect (or one key) bounds nothing
    level = (1.0 + confidence) / 2.0 if S > 1 and K > 1 else confidence
    rng = np.random.default_rng(seed)
    rates = []
    for _ in range(boot):
        i, j = rng.integers(0, S, S), rng.integers(0, K, K)
        w = seen[np.ix_(i, j)]
        rates.append(c[np.ix_(i, j)][w].mean() if w.any() else 0.0)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(rates, [tail, 1.0 - tail])
    k = int(c[seen].sum())
    return PairRate(int(seen.sum()), S, K, k, k / int(seen.sum()), s_any, k_any, _exact_high(s_any, S, level),
                    _exact_high(k_any, K, level), float(lo), float(hi), float(pairs["claim probability"].mean()),
                    confidence)
