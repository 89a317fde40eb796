"""Two defences against the dishonest accuser: timestamped key commitment and verifiable key generation.

Liu et al. (*False Claims against Model Ownership Resolution*, USENIX Security 2024, §3 and §7)
show that an accuser who owns no watermarked model can present transferable adversarial examples
as its "key" and have an innocent suspect answer them (:mod:`wmlib.accuser`). A verifier that only
counts hits cannot tell such a key from a real one. Two checks before the count can (§7):

* **Key commitment** — the owner publishes its key's digest (:meth:`~wmlib.keys.Key.digest`) on a
  public, append-only :class:`Ledger` when it releases its model. A judge hears a claim only with a
  key the claimant committed *before* the suspect was released (:meth:`Ledger.check`,
  :func:`verify_committed`): a key crafted on the suspect, after its release, is refused. The
  committed key is the whole key; a verification still draws its queries from it.
* **Verifiable key generation** — the commitment also records the seed and the public generator
  (the scheme's ``config()`` and digests of the data it draws from). The judge re-runs
  :meth:`Scheme.make_key <wmlib.schemes.base.Scheme.make_key>` (:func:`rederive`) and refuses a key
  that differs (:func:`check_generated`): an adversarial example chosen for a suspect is not what a
  seeded generator makes from the owner's data. Which of the book's keys allow this, and what the
  judge needs for the others, each scheme declares from its ``make_key``
  (:meth:`Scheme.key_generation <wmlib.schemes.base.Scheme.key_generation>`) and
  :func:`verifiability` tabulates.

Both checks run before :func:`wmlib.verify.verify_trials` and leave its test unchanged. Three rules
make the ledger the one the paper means, not one a claimant can steer:

* **no release time, no claim**: :meth:`Ledger.check` refuses a claim against a suspect whose release
  time is not given (:class:`MissingReleaseError`), since the time check is the whole defence;
* **keys per claimant are capped** (``Ledger(keys_per_claimant=K)``) and each verification runs at
  α / K (:meth:`Ledger.level`): an innocent suspect that faces every key one claimant may ever commit
  is claimed with probability at most α (Bonferroni), where K keys each at α risk up to K α
  (:func:`key_cost` shows what 1, 10 and 100 keys cost either way);
* **the judge draws the queries**, from a public seed (:func:`query_seed`: a digest of the commitment
  and the suspect's name), so no claimant can try seeds until one draw claims.

What it cannot stop: the data digest in a commitment proves which data a key was derived from and
that they existed at commitment time, not that they are ordinary images. An accuser who commits
crafted "owner data" (e.g. examples that transfer to any model of a public recipe) before a suspect's
release passes both checks; only the rule applied to the hits (a null fitted on the presented key,
by models the accuser cannot see) answers that.
"""
from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass

import pandas as pd
from torch import nn

from .data import Splits
from .keys import Key
from .schemes.base import Scheme
from .schemes.catalogue import build_unsettled
from .train import config_hash, tensor_digest
from .verify import LabelTrials, Null, Oracle, Verdict, verify_trials


def short(digest: str) -> str:
    """The first 12 hex digits of a digest: what an error message names."""
    return digest[:12]


class UncommittedKeyError(ValueError):
    """The claimant presents a key whose digest it never committed (or someone else did)."""


class LateCommitmentError(ValueError):
    """The key was committed only at or after the suspect's release: it may have been made for it."""


class DuplicateCommitmentError(ValueError):
    """A digest is on the ledger already: a ledger is append-only, nothing is overwritten."""


class KeyNotGeneratedError(ValueError):
    """The presented key is not what the committed seed and public generator make."""


class MissingReleaseError(ValueError):
    """A claim names no release time for its suspect: the commitment's time cannot be checked."""


class KeyCapError(ValueError):
    """The claimant has committed as many keys as the ledger allows one claimant."""


def _finite(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number on the caller's clock (a release day, a UNIX time), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Commitment:
    """One record of the ledger: ``owner`` committed the key with ``digest`` at ``time``.

    ``time`` is on the caller's clock (a release day, a UNIX time, ...): the ledger only compares
    it with a suspect's release time on the same clock. ``seed`` and ``generator`` (what
    re-derives the key: :func:`key_generator`) are optional; with them a judge can also check that
    the key was generated, not chosen (:func:`check_generated`)."""
    digest: str
    owner: str
    time: float
    seed: int | None = None
    generator: dict | None = None


class Ledger:
    """A public, append-only record of key commitments (Liu et al. §7: commit keys with a timestamp).

    Every digest is committed once, by one owner; nothing is overwritten or removed, and the clock
    never runs backwards: a commitment cannot be dated before one already on the ledger (a real
    ledger stamps the time itself, e.g. a timestamping authority; here the caller gives it so a
    chapter can replay a history)."""

    def __init__(self, keys_per_claimant: int = 1):
        if isinstance(keys_per_claimant, bool) or not isinstance(keys_per_claimant, int) or keys_per_claimant < 1:
            raise ValueError(f"keys_per_claimant must be an integer >= 1, got {keys_per_claimant!r}")
        self.keys_per_claimant = keys_per_claimant
        self._records: list[Commitment] = []
        self._by_digest: dict[str, Commitment] = {}

    def level(self, alpha: float) -> float:
        """The level of one verification: ``alpha`` divided among the keys one claimant may commit,
        so that a suspect facing all of them is claimed with probability at most ``alpha``."""
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        return alpha / self.keys_per_claimant

    def keys_of(self, owner: str) -> list[Commitment]:
        """Every commitment of ``owner``, in the order made."""
        return [c for c in self._records if c.owner == owner]

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self):
        return iter(tuple(self._records))

    def commit(self, key: Key, owner: str, time: float, seed: int | None = None,
               generator: dict | None = None) -> Commitment:
        """Publish ``key``'s digest for ``owner`` at ``time`` (with the ``seed`` and ``generator``
        that re-derive it, if given). A digest already on the ledger is an error."""
        if not isinstance(owner, str) or not owner:
            raise ValueError(f"owner must be a non-empty name, got {owner!r}")
        time = _finite(time, "time")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        digest = key.digest()
        if digest in self._by_digest:
            old = self._by_digest[digest]
            raise DuplicateCommitmentError(
                f"key {short(digest)} is committed already (by {old.owner!r} at {old.time:g}); the ledger is "
                f"append-only, so nothing is overwritten: commit a new key (another seed) instead")
        mine = len(self.keys_of(owner))
        if mine >= self.keys_per_claimant:
            raise KeyCapError(
                f"{owner!r} has committed {mine} key(s), the most this ledger allows one claimant (keys_per_claimant = "
                f"{self.keys_per_claimant}, each verified at alpha / {self.keys_per_claimant}): with more keys, an innocent "
                f"suspect would face more chances to be claimed than the level allows")
        if self._records and time < self._records[-1].time:
            raise ValueError(f"time {time:g} is before the ledger's latest commitment ({self._records[-1].time:g}): the "
                             f"ledger's clock never runs backwards (a backdated commitment is what a timestamp prevents)")
        record = Commitment(digest, owner, time, seed, copy.deepcopy(generator))
        self._records.append(record)
        self._by_digest[digest] = record
        return record

    def lookup(self, digest: str) -> Commitment | None:
        """The commitment of ``digest`` (a full :meth:`Key.digest`), or None."""
        return self._by_digest.get(digest)

    def check(self, key: Key, owner: str, released: float | None) -> Commitment:
        """The commitment that lets ``owner`` claim with ``key``: ``key``'s digest committed by
        ``owner`` strictly before the suspect's ``released`` time (a claim without one is refused)."""
        if released is None:
            raise MissingReleaseError(
                f"a claim by {owner!r} names no release time for its suspect: without it the ledger cannot tell a key "
                f"committed before the suspect existed from one made for it, so the claim is refused (give released=)")
        digest = key.digest()
        record = self.lookup(digest)
        if record is None:
            sampled = (f" It is a sample of a key (Key.sample, {key.meta['sampled']} samples): present the committed "
                       f"whole key and let the verifier draw its queries (n_queries)." if "sampled" in key.meta else "")
            raise UncommittedKeyError(
                f"key {short(digest)} presented by {owner!r} was never committed: no commitment of this digest is on "
                f"the ledger (a key changed after its commitment, even in one pixel, has another digest).{sampled} "
                f"A claim needs the exact key committed (Ledger.commit(key, owner, time)) before the suspect's release")
        if record.owner != owner:
            raise UncommittedKeyError(
                f"key {short(digest)} presented by {owner!r} was committed by {record.owner!r}, not by the claimant: "
                f"only whoever committed a key can claim with it")
        if record.time >= _finite(released, "released"):
            raise LateCommitmentError(
                f"key {short(digest)} of {owner!r} was committed at {record.time:g}, not before the suspect's release at "
                f"{_finite(released, 'released'):g}: a key committed after a model is public may have been made for it "
                f"(Liu et al.); commit keys when releasing your own model")
        return record

    def table(self) -> pd.DataFrame:
        """The public record: one row per commitment, in the order made."""
        return pd.DataFrame([{"digest": short(c.digest), "owner": c.owner, "time": c.time, "seed": c.seed,
                              "generator": c.generator is not None} for c in self._records],
                            columns=["digest", "owner", "time", "seed", "generator"])


def query_seed(record: Commitment, suspect: str) -> int:
    """The judge's public seed for drawing a claim's queries: a digest of the commitment (its key
    digest, claimant and time) and the suspect's public name. Anyone can recompute it; no party
    can choose it, so no claimant can retry draws until one claims."""
    if not isinstance(suspect, str) or not suspect:
        raise ValueError(f"the suspect must be named (its public name or model digest), got {suspect!r}")
    text = f"{record.digest}|{record.owner}|{record.time!r}|{suspect}"
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def verify_committed(oracle: Oracle, key: Key, trials: LabelTrials, null: Null, ledger: Ledger, owner: str,
                     released: float | None, suspect: str, alpha: float = 0.01,
                     n_queries: int | None = None) -> Verdict:
    """:func:`wmlib.verify.verify_trials` behind the ledger: refuse the claim unless ``owner``
    committed ``key`` (the whole key) before the suspect's ``released`` time, then verify as the one
    verifier does at the ledger's level (``alpha`` divided among the keys a claimant may commit,
    :meth:`Ledger.level`), with ``n_queries`` drawn from the committed key by the judge's public
    seed (:func:`query_seed` of the commitment and ``suspect``)."""
    record = ledger.check(key, owner, released)
    return verify_trials(oracle, key, trials, null, ledger.level(alpha), n_queries, query_seed(record, suspect))


def key_cost(null: Null, n: int, alpha: float, counts=(1, 10, 100), hits: int | None = None) -> pd.DataFrame:
    """What ``counts`` committed keys per claimant cost, for one verification protocol (``null``,
    ``n`` trials): the fewest hits claimed when each key is verified at ``alpha / K`` (the ledger's
    level), whether an owner's ``hits`` still clear it, and the chance that an innocent suspect facing
    all K keys is claimed if each were verified at ``alpha`` instead (model-based: at most K ``alpha``
    by the union bound, 1 - (1 - alpha)^K for independent keys; at most ``alpha`` at the divided level)."""
    rows = []
    for k in counts:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"key counts must be integers >= 1, got {k!r}")
        crit = null.critical(n, alpha / k)
        row = {"keys per claimant": k, "level per key": alpha / k, "hits needed": f"{crit} of {n}" if crit <= n else f"none of {n}",
               "innocent's risk, each key at α (independent keys)": 1 - (1 - alpha) ** k,
               "innocent's risk, each key at α (at most)": min(1.0, k * alpha)}
        if hits is not None:
            row["the owner's key claimed at α / K"] = hits >= crit
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- verifiable generation

def key_generator(scheme: Scheme, splits: Splits) -> dict:
    """The public generator of ``scheme``'s keys on ``splits``: its config and digests of the data
    ``make_key`` draws from (the owner's and the test images). Commit it with the seed
    (``Ledger.commit(..., seed=, generator=)``); the data themselves are shown to the judge only."""
    return {"config": scheme.config(), "task": splits.spec.name,
            "owner": tensor_digest(splits.owner.x, splits.owner.y), "test": tensor_digest(splits.test.x, splits.test.y)}


def rederive(scheme: Scheme, splits: Splits, seed: int, clean: nn.Module | None = None,
             held_out: bool | None = None) -> Key:
    """The key ``scheme.make_key(splits, seed, clean)`` makes: the embedded key, or, for a scheme
    that verifies on held-out triggers (``verifies_held_out``, Wen et al. §5), the held-out one
    (``held_out`` True / False picks either part)."""
    key, new = scheme.make_key(splits, seed=seed, clean=clean)
    return new if (scheme.verifies_held_out if held_out is None else held_out) else key


def check_generated(scheme: Scheme, key: Key, splits: Splits, record: Commitment, clean: nn.Module | None = None, *,
                    held_out: bool | None = None) -> None:
    """Refuse ``key`` unless it is the key its commitment ``record`` re-derives: ``record`` must be
    ``key``'s, hold the seed and the generator (:func:`key_generator`: the scheme's settings and
    digests of the data), the data on ``splits`` must be the committed ones, and :func:`rederive`
    with the committed seed must make ``key`` bit for bit."""
    presented = key.digest()
    if record.digest != presented:
        raise KeyNotGeneratedError(f"key {short(presented)} is not the key of this commitment ({short(record.digest)})")
    if record.seed is None or record.generator is None:
        raise KeyNotGeneratedError(
            f"the commitment of key {short(presented)} by {record.owner!r} holds no "
            f"{'seed' if record.seed is None else 'generator'}: nothing to re-derive the key from, so it cannot be "
            f"shown to be generated rather than chosen (commit with seed= and generator=key_generator(scheme, splits))")
    now = key_generator(scheme, splits)
    # compared in JSON form: a generator read back from a published record has lists for tuples
    changed = [k for k in now if k not in record.generator or config_hash({k: record.generator[k]}) != config_hash({k: now[k]})]
    if changed:
        raise KeyNotGeneratedError(
            f"the generator or data differ from the committed ones in {', '.join(changed)}: re-derive with the "
            f"committed scheme settings and the data whose digests were committed")
    seed = record.seed
    expected = rederive(scheme, splits, seed, clean, held_out).digest()
    if expected != presented:
        how = scheme.key_generation()
        note = f" Note: {how.reason}" if how is not None and not how.verifiable else ""
        raise KeyNotGeneratedError(
            f"key {short(presented)} is not the key {scheme.name} generates from seed {seed} on these data ({short(expected)}): "
            f"it was not made by the committed generator (an adversarial example, an altered key, another seed or other "
            f"data). Present the key rederive(scheme, splits, seed) makes, with the seed and data it was made from.{note}")


def verifiability(entries, schemes: dict[str, dict] | None = None, num_classes: int = 10) -> pd.DataFrame:
    """One row per entry (names of :data:`wmlib.schemes.CATALOGUE`): its scheme, which part of
    ``make_key`` :func:`rederive` returns, what the generator needs, whether the committed seed and
    data re-derive the key the owner queries, and why. ``schemes`` holds each entry's settings
    (default: the comparison's smoke profile), for a task of ``num_classes`` classes."""
    if schemes is None:
        from .profiles import COMPARISON
        schemes = COMPARISON["smoke"]["schemes"]
    rows = []
    for name in entries:
        # what the zoo settles (the function-coupled target) takes a stand-in: any class shows how its keys are made
        scheme = build_unsettled(name, schemes.get(name, {}), num_classes)
        how, kind = scheme.key_generation(), getattr(scheme, "kind", None)
        rows.append({"entry": name, "scheme": scheme.name + (f" ({kind})" if kind else ""),
                     "rederive returns": "the held-out key" if scheme.verifies_held_out else "the embedded key",
                     "generator needs": how.needs if how else "?",
                     "verifiable from seed + data": bool(how and how.verifiable),
                     "reason": how.reason if how else "not declared: the scheme defines no key_generation()"})
    return pd.DataFrame(rows)
