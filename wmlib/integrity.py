"""Integrity against a dishonest accuser (Liu et al., *False Claims against Model Ownership
Resolution*, USENIX Security 2024): the parties of a false claim, the rules a judge may apply, and
the defences, measured.

An accuser who owns no watermarked model crafts a false key on clean surrogates of its own
(:mod:`wmlib.accuser`) and claims any suspect that answers it with its labels. A judge decides with
one of three rules on the same hits: the paper's own rule (a fixed key-accuracy threshold), a
binomial test at chance, or the book's null fitted to a zoo of clean models (:class:`~wmlib.verify.Null`).
Because the book's zoo is public, a careful accuser pushes its keys *down* on the zoo's models, or
on its own copy of the zoo's recipe (:func:`adaptive_key`, :func:`recipe_copy`, its weight chosen on
its own models by :func:`choose_lam`); the judge's answer is a *private* zoo of its own
(:func:`wmlib.zoo.Zoo.load` with the judge's seeds and tag). This module also builds the clean
suspects that differ from the zoo's recipe (:func:`independent_suspects`: other architectures,
optimisers, data shares, regularisation, distillation, and class-biased models), the per-suspect
control of a class bias (:func:`base_rates`, :func:`controlled`), and the tables of claim rates
with exact intervals that the integrity chapter shows.
"""
from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass, replace
from typing import Callable

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from . import compare, data, models, schemes
from .accuser import TooFewExamples, liu_key, random_targets, transfer_key
from .attacks.extraction import extract
from .attacks.model import prune_magnitude
from .data import Split, Splits
from .keys import Key
from .train import TrainConfig, default_device, evaluate, model_digest, to_float, train_classifier
from .verify import (Null, Oracle, false_claim_pairs, key_accuracy, level_texts, pair_rate, pairs_text,
                     verify_counts, verify_once, verify_pair, verify_trials)
from .zoo import Zoo, member_share, recipe_overrides, shared_limits, task_pool, zoo_recipe

# --------------------------------------------------------------------------- clean suspects beyond the zoo

# What a suspect's recipe may change from the zoo's (wmlib.zoo.RECIPES): the training fields, and
#   arch      the architecture
#   skew      {"class": c, "others": f}: every image of class c in its share, a fraction f of the others
#   distill   an architecture: the suspect is that model distilled (scores at T) from a clean teacher of the zoo's recipe
#   T         the distillation temperature (default 3)
#   prune     a fraction of its weights removed by global magnitude pruning, without fine-tuning
SUSPECT_FIELDS = ("arch", "optimizer", "lr", "epochs", "data_fraction", "weight_decay", "augment", "momentum",
                  "schedule", "batch_size", "skew", "distill", "T", "prune")
SUSPECT_SEED = 5000  # the suspects' seeds: neither an owner's (0, 1, ...) nor the zoo's (1000 + s)


def check_suspects(recipes: dict) -> None:
    """Refuse a suspect recipe with an unknown field or a value out of its range, naming the suspect."""
    if not isinstance(recipes, dict) or not recipes:
        raise ValueError("suspects must be a non-empty dict: name -> the fields it changes from the zoo's recipe")
    for name, r in recipes.items():
        if not isinstance(r, dict):
            raise ValueError(f"suspect {name!r}: its recipe must be a dict of fields, got {r!r}")
        unknown = sorted(set(r) - set(SUSPECT_FIELDS))
        if unknown:
            raise ValueError(f"suspect {name!r}: unknown field(s) {', '.join(unknown)}; valid: {', '.join(SUSPECT_FIELDS)}")
        for field in ("arch", "distill"):
            if field in r and r[field] not in models.REGISTRY:
                raise ValueError(f"suspect {name!r}: {field} must be one of: {', '.join(sorted(models.REGISTRY))}; got {r[field]!r}")
        if "prune" in r and not (isinstance(r["prune"], float) and 0.0 < r["prune"] < 1.0):
            raise ValueError(f"suspect {name!r}: prune must be a fraction in (0, 1), got {r['prune']!r}")
        if "data_fraction" in r and not 0.0 < r["data_fraction"] <= 1.0:
            raise ValueError(f"suspect {name!r}: data_fraction must be in (0, 1], got {r['data_fraction']!r}")
        skew = r.get("skew")
        if skew is not None and (not isinstance(skew, dict) or set(skew) != {"class", "others"}
                                 or not 0.0 < skew["others"] <= 1.0 or int(skew["class"]) < 0):
            raise ValueError(f"suspect {name!r}: skew must be {{'class': c, 'others': f}} with f in (0, 1], got {skew!r}")


def _skewed(split: Split, cls: int, others: float, seed: int) -> Split:
    """Every image of class ``cls`` of ``split`` and a seeded fraction ``others`` of the rest."""
    mine = (split.y == cls).nonzero().flatten()
    rest = (split.y != cls).nonzero().flatten()
    keep = rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(seed))[:max(1, round(others * len(rest)))]]
    return split.subset(torch.cat([mine, keep]).sort().values)


def independent_suspects(dataset: str, profile: str, recipes: dict[str, dict], train_limit: int | None = None,
                         test_limit: int | None = None, device: torch.device | None = None,
                         progress: bool = True, **overrides) -> Zoo:
    """Train-or-load one clean model per entry of ``recipes`` (name -> the fields it changes from
    the zoo's recipe of ``profile`` with ``overrides``, see :data:`SUSPECT_FIELDS`), each on its own share of the same
    task pool as the zoo and with its own seed (``SUSPECT_SEED + i``). None of them is a zoo member
    or anybody's watermarked model. Returned as a :class:`~wmlib.zoo.Zoo` (its hits, rates and
    nulls work the same), whose summary says what each suspect changed."""
    check_suspects(recipes)
    device = device or default_device()
    base = zoo_recipe(dataset, profile, **overrides)
    pool, test, spec = task_pool(dataset, train_limit, test_limit)
    out, rows, digests = {}, [], {}
    for i, (name, r) in enumerate(tqdm(recipes.items(), desc="independent suspects", disable=not progress, leave=False)):
        seed = SUSPECT_SEED + i
        recipe = {**base, **{k: v for k, v in r.items() if k in TrainConfig.__dataclass_fields__ or k == "data_fraction"}}
        arch = r.get("arch", next(iter(base["archs"])))
        own = member_share(pool, recipe["data_fraction"], seed)
        if r.get("skew"):
            own = _skewed(own, int(r["skew"]["class"]), float(r["skew"]["others"]), seed)
        lr = r.get("lr", base["lr"].get(arch, base["lr"]["*"]))
        cfg = TrainConfig.from_knobs(recipe, lr=lr, seed=seed)
        splits = Splits(own, Split(own.x[:0], own.y[:0]), test, spec)
        if r.get("distill"):
            teacher, _, _ = train_classifier(f"suspect-{dataset}-{name}-teacher", arch, splits, cfg, device=device, progress=False)
            model, _ = extract(Oracle(teacher), own.x, r["distill"], spec, replace(cfg, seed=seed + 100), labels="scores",
                               T=float(r.get("T", 3.0)), tag=f"suspect-{dataset}-{name}", device=device)
            arch = f"{r['distill']} (distilled from {arch})"
        else:
            model, _, _ = train_classifier(f"suspect-{dataset}-{name}", arch, splits, cfg, device=device, progress=False)
        if r.get("prune"):
            model = prune_magnitude(copy.deepcopy(model), float(r["prune"]))
        model.eval()
        out[name], digests[name] = model, model_digest(model)
        changed = ", ".join(f"{k}={v}" for k, v in r.items()) or "—"
        rows.append({"model": name, "architecture": arch, "changes": changed, "training images": len(own),
                     "epochs": cfg.epochs, "test accuracy": evaluate(model, test, device)})
    return Zoo(dataset, profile, out, pd.DataFrame(rows).set_index("model"), digests)


def merged(*zoos: Zoo) -> Zoo:
    """One set of clean models from several (names must differ), e.g. every suspect."""
    names = [n for z in zoos for n in z.models]
    if len(set(names)) < len(names):
        raise ValueError(f"model names repeat across the sets: {sorted({n for n in names if names.count(n) > 1})}")
    return Zoo(zoos[0].dataset, zoos[0].profile, {k: v for z in zoos for k, v in z.models.items()},
               pd.concat([z.summary for z in zoos]), {k: v for z in zoos for k, v in z.digests.items()})


# --------------------------------------------------------------------------- the adaptive accuser

def adaptive_key(surrogates: list[nn.Module], public: list[nn.Module], images: torch.Tensor, targets: torch.Tensor, *,
                 eps: float, steps: int = 10, alpha: float | None = None, lam: float = 1.0, decay: float = 1.0,
                 seed: int = 0) -> Key:
    """The adaptive false key: momentum iterative FGSM (Dong et al., the update of torchattacks'
    ``MIFGSM``) on the loss ``CE(surrogates, target) + lam · mean over public models of
    -log(1 - p(target))``: the target pushed up on the accuser's surrogates and *down* on the
    public zoo, so that the zoo's null stays low while the suspect, if the key transfers, answers
    the target. ``lam = 0`` is the plain transfer key of :func:`wmlib.accuser.transfer_key`'s
    MIFGSM (the surrogates' mean logits). torchattacks minimises one model's cross-entropy, so the
    two-sided objective is written here, with its step, momentum and projection."""
    if not 0.0 < eps <= 1.0:
        raise ValueError(f"eps must be in (0, 1] (the [0, 1] pixel scale), got {eps}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    if not surrogates:
        raise ValueError("the accuser needs at least one surrogate model")
    alpha = eps / steps if alpha is None else alpha
    device = next(surrogates[0].parameters()).device
    for m in (*surrogates, *public):
        m.eval()
    x0 = to_float(images.to(device))
    t = targets.to(device)
    x, momentum = x0.clone(), torch.zeros_like(x0)
    for _ in range(steps):
        x.requires_grad_(True)
        logits = torch.stack([m(x) for m in surrogates]).mean(0)
        loss = F.cross_entropy(logits, t)
        if public and lam > 0:
            p = torch.stack([F.softmax(m(x), 1).gather(1, t[:, None]).squeeze(1) for m in public])
            loss = loss + lam * (-torch.log1p(-p.clamp(max=1 - 1e-6))).mean()
        (grad,) = torch.autograd.grad(loss, x)
        grad = grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        momentum = decay * momentum + grad
        x = (x.detach() - alpha * momentum.sign())
        x = (x0 + (x - x0).clamp(-eps, eps)).clamp(0, 1).detach()
    u8 = (x.cpu() * 255).round().to(torch.uint8)
    return Key(u8, targets.cpu().long(), {"kind": "false-claim-adaptive", "eps": eps, "steps": steps, "alpha": alpha,
                                          "lam": lam, "surrogates": len(surrogates), "public": len(public), "seed": seed})


# --------------------------------------------------------------------------- rules and claim rates

@dataclass(frozen=True)
class Rule:
    """How a judge turns ``k`` hits out of ``n`` trials into a claim: a null at level ``alpha``
    (the one verifier's test), or a fixed hit-rate ``threshold`` (a paper's own rule)."""
    name: str
    null: Null | None = None
    alpha: float | None = None
    threshold: float | None = None

    def __post_init__(self):
        if (self.null is None) == (self.threshold is None):
            raise ValueError("a rule is a null at a level alpha, or a fixed threshold: give exactly one")
        if self.null is not None and not (self.alpha is not None and 0.0 < self.alpha < 1.0):
            raise ValueError(f"a null rule needs alpha in (0, 1), got {self.alpha}")
        if self.threshold is not None and not self.threshold > 0.0:
            raise ValueError(f"a threshold must be a hit rate above 0 (above 1: nothing is claimed), got {self.threshold}")

    def critical(self, n: int) -> int:
        """The fewest hits out of ``n`` that are claimed (``n + 1``: none)."""
        if self.threshold is not None:
            return int(math.ceil(self.threshold * n - 1e-9))
        return self.null.critical(n, self.alpha)


def rate_row(pairs: pd.DataFrame, confidence: float = 0.95) -> dict:
    """What a frame of (suspect, key) pairs, each verified once, supports (:func:`wmlib.verify.pair_rate`):
    claimed pairs of pairs, the suspects and keys behind them, the rate and its exact upper bound
    over the suspects or the keys, and the mean claim probability over query draws."""
    r = pair_rate(pairs, confidence)
    return {"claimed": r.claimed, "pairs": r.pairs, "suspects": r.suspects, "keys": r.keys, "claim rate": r.rate,
            "upper bound": r.bound, "bound over": f"{r.suspects if r.bound_over == 'suspect' else r.keys} {r.bound_over}s",
            "suspects claimed": r.suspects_claimed, "expected over draws": r.expected}


RATE_FORMAT = {"claim rate": "{:.2%}", "upper bound": "{:.1%}", "expected over draws": "{:.2%}"}
"""How a table of :func:`rate_row` rows shows its numbers (for ``DataFrame.style.format``)."""


def _most_claimed(rows: pd.DataFrame) -> pd.Series:
    """The row that claims most: the highest rate, then the highest bound (the first on ties)."""
    return rows.sort_values(["claim rate", "upper bound"], ascending=False, kind="stable").iloc[0]


def rule_row(frame: pd.DataFrame, rule: str) -> dict:
    """A rule's rows of a :func:`claims_table` as one: the row of the protocol under which the
    rule claims most (the highest rate, then the highest bound). The protocols judge the *same*
    (suspect, key) pairs with other query counts or thresholds, so their counts are not added."""
    f = frame[frame["rule"] == rule]
    worst = _most_claimed(f)
    return {"claimed": int(worst["claimed"]), "pairs": int(worst["pairs"]), "suspects": int(worst["suspects"]),
            "keys": int(worst["keys"]), "upper bound": float(worst["upper bound"]), "bound over": worst["bound over"],
            "entries": worst["entries"], "protocols": len(f)}


def pair_text(row: dict, verb: str = "") -> str:
    """A :func:`rate_row` (or :func:`rule_row`) in words (:func:`wmlib.verify.pairs_text`), with the
    protocol it was read under when the rule has several."""
    where = (f", under the protocol of {row['entries']} where it claims most of {row['protocols']}"
             if row.get("protocols", 1) > 1 else "")
    return pairs_text(row["claimed"], row["pairs"], row["suspects"], row["keys"], row["upper bound"], row["bound over"],
                      verb=verb) + where


def share_text(claimed: int, suspects: int) -> str:
    """``claimed`` of ``suspects`` suspects, and the share, in words."""
    return f"{claimed} of {suspects} suspects ({claimed / suspects:.1%})"


def level_reasons(row: dict, alpha: float, judge: dict | None = None) -> dict[str, str]:
    """:func:`wmlib.verify.level_texts` for a :func:`rate_row` (or :func:`rule_row`); ``judge``: the
    same keys under the judge's private zoo, said beside a row that misses the level (a dishonest
    key's claims are the accuser's doing); without it, a claim says the null understates how clean
    models differ."""
    if judge is None:
        return level_texts(pair_text(row, " claimed"), alpha)
    beside = f"; the judge's private zoo claims {pair_text(judge)}"
    return level_texts(pair_text(row, " claimed"), alpha, model_based=beside, deviates=beside)


def base_rates(oracle: Oracle, ordinary: Split, num_classes: int) -> torch.Tensor:
    """Per class c: how often the suspect answers c to an ordinary image whose label is not c (its
    own rate of that answer where c would be wrong). A clean model biased toward c answers a key
    labelled c more often than the zoo does, without any watermark."""
    pred = oracle.predict(ordinary.x)
    y = ordinary.y.cpu()
    return torch.tensor([float((pred[y != c] == c).float().mean()) if (y != c).any() else 0.0 for c in range(num_classes)])


def controlled(null: Null, key: Key, rates: torch.Tensor) -> Null:
    """The per-suspect control: ``null`` with its floor raised to the suspect's own rate of the
    key's labels on ordinary images (:func:`base_rates`, averaged over the key's labels). The test
    then asks whether the suspect answers the key more often than it gives those labels anyway."""
    own = float(rates[key.y.cpu()].mean())
    return replace(null, floor=min(max(null.floor, own), 1.0 - 1e-9))


@dataclass(frozen=True)
class Protocol:
    """How one label-key entry of the comparison verifies: ``queries`` per verification, the paper's
    fixed key-accuracy threshold (None: the paper has none), and ``owner_threshold``, Liu et al.'s
    decision rule: the smallest hit rate the entry's owner claims on *its own* key against null
    models (the zoo) fitted on that key, fixed before any accuser's key is seen."""
    queries: int
    paper_threshold: float | None
    owner_threshold: float


def claims_table(hits: dict[tuple, torch.Tensor], rules: dict[str, Callable], protocols: dict[str, Protocol],
                 seed: int = 0) -> pd.DataFrame:
    """Claim rates of false keys: ``hits`` maps (accuser, suspect) to the suspect's hit vector on
    that accuser's key; ``rules`` maps a rule name to ``(accuser, protocol) -> Rule | None`` (None:
    the rule does not apply to that protocol); ``protocols`` maps each entry to its :class:`Protocol`.
    One row per rule and distinct verification (entries whose queries and rule agree share a row,
    e.g. every entry of 100 queries under the binomial test): every (suspect, accuser's key) pair
    verified once (:func:`rate_row`)."""
    first = next(iter(hits))[0]
    groups: dict[tuple, list[str]] = {}
    for rname, make in rules.items():
        for name, proto in protocols.items():
            rule = make(first, proto)
            if rule is not None:  # e.g. the paper's threshold, for a paper that gives none
                groups.setdefault((rname, proto.queries, rule), []).append(name)
    rows = []
    for (rname, n, _), names in groups.items():
        proto = protocols[names[0]]
        pairs = pd.DataFrame([{"suspect": sus, "key": f"accuser {acc}",
                               **verify_once(h, rules[rname](acc, proto).critical(min(n, len(h))), n, seed + i)}
                              for i, ((acc, sus), h) in enumerate(hits.items())])
        rows.append({"rule": rname, "entries": "every label-key entry" if len(names) == len(protocols) else ", ".join(names),
                     "queries": min(n, len(next(iter(hits.values())))), **rate_row(pairs)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the parties of a chapter run

JUDGE_SEED = 3000      # the judge's private zoo: seeds 3000 + s
ACCUSER_SEED = 10_000  # accuser a's surrogates: seeds 10,000 + 100 a + s
COPY_OFFSET = 50      # and its copy of the public recipe (recipe_copy): seeds 10,000 + 100 a + 50 + s


def judge_zoo(knobs: dict, device: torch.device | None = None, progress: bool = True) -> Zoo:
    """The judge's private zoo: the zoo's recipe with ``judge_zoo`` architectures, the judge's seeds
    and ``judge_fraction`` shares of the task pool. Nobody but the judge sees these models."""
    return Zoo.load(knobs["dataset"], knobs["profile"], *shared_limits(knobs["profile"]), device=device, progress=progress,
                    seed_base=JUDGE_SEED, tag="judge", **dict(recipe_overrides(knobs), archs=knobs["judge_zoo"],
                                                               data_fraction=knobs["judge_fraction"]))


def _accuser_models(knobs: dict, accuser: int, archs: str, offset: int, tag: str, device: torch.device | None,
                    progress: bool) -> Zoo:
    """Clean models of accuser ``accuser``: the zoo's recipe with ``knobs[archs]`` architectures, seeds
    ``ACCUSER_SEED + 100 accuser + offset + s`` and ``accuser_fraction`` shares of the task pool."""
    if not 0 <= accuser < 100:
        raise ValueError(f"an accuser seed must be in [0, 99], got {accuser}")
    return Zoo.load(knobs["dataset"], knobs["profile"], *shared_limits(knobs["profile"]), device=device, progress=progress,
                    seed_base=ACCUSER_SEED + 100 * accuser + offset, tag=tag,
                    **dict(recipe_overrides(knobs), archs=knobs[archs], data_fraction=knobs["accuser_fraction"]))


def surrogates(knobs: dict, accuser: int, device: torch.device | None = None, progress: bool = True) -> Zoo:
    """Accuser ``accuser``'s clean surrogates: the zoo's recipe with ``accuser_surrogates``
    architectures, its own seeds and ``accuser_fraction`` shares of the task pool."""
    return _accuser_models(knobs, accuser, "accuser_surrogates", 0, f"accuser{accuser}", device, progress)


def suspects(knobs: dict, device: torch.device | None = None, progress: bool = True) -> Zoo:
    """The independent suspects of ``knobs['suspects']`` (:func:`independent_suspects`)."""
    return independent_suspects(knobs["dataset"], knobs["profile"], knobs["suspects"], *shared_limits(knobs["profile"]),
                                device=device, progress=progress, **recipe_overrides(knobs))


def accuser_images(knobs: dict, accuser: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``accuser_key_size`` test images accuser ``accuser`` turns into its key, and the random
    targets (never the true class) it gives them."""
    _, test, spec = task_pool(knobs["dataset"], *shared_limits(knobs["profile"]))
    idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(ACCUSER_SEED + accuser))[:knobs["accuser_key_size"]]
    return test.x[idx], random_targets(test.y[idx], spec.num_classes, seed=accuser)


def owners(knobs: dict, zoo: Zoo, progress: bool = True) -> dict[tuple[str, int], tuple]:
    """Every comparison entry's owner per seed, trained or loaded exactly as the comparison does
    (:func:`wmlib.compare.embed_entry`, the function-coupled target picked from ``zoo``): (entry,
    seed) -> (its scheme, the :class:`~wmlib.compare.Owner`)."""
    schemes.settle(knobs["entries"], knobs["schemes"], zoo, data.task_splits(knobs, seed=knobs["seeds"][0]), knobs["seeds"][0])
    context = compare.make_context(knobs)
    out = {}
    pairs = [(e, s) for e in knobs["entries"] for s in knobs["seeds"]]
    for e, s in tqdm(pairs, desc="the comparison's owners", disable=not progress, leave=False):
        scheme = schemes.build(e, context["entries"][e]["settings"])
        out[(e, s)] = (scheme, compare.embed_entry(e, scheme, s, context))
    return out


# --------------------------------------------------------------------------- the false-claim attack, measured

def label_owners(owners: dict, knobs: dict):
    """(entry, scheme, owner) of every label-key entry's first owner seed (``knobs['seeds'][0]``)."""
    for (entry, seed), (scheme, owner) in owners.items():
        if seed == knobs["seeds"][0] and scheme.trials == "labels":
            yield entry, scheme, owner


def protocols(owners: dict, knobs: dict, zoo: Zoo, alpha: float) -> dict[str, Protocol]:
    """The verification protocol of every label-key entry of the comparison (its first owner seed):
    queries per verification, the paper's fixed threshold (``paper_threshold`` where the paper claims
    above a key accuracy "close to 1", else None), and the owner's own threshold (Liu et al.'s rule:
    the zoo null of the owner's key at ``alpha``)."""
    out = {}
    for entry, scheme, owner in label_owners(owners, knobs):
        key = owner.marked.verify_key
        n = scheme.trial_count(key, knobs["n_queries"])
        own = zoo.null(key, scheme, confidence=knobs["zoo_confidence"]).critical(n, alpha) / n
        out[entry] = Protocol(n, knobs["paper_threshold"] if scheme.accuracy_threshold else None, own)
    return out


KEY_KINDS = ("transfer", "liu")  # the accuser's own targeted MIFGSM key, and Liu et al.'s as published


def liu_images(knobs: dict, accuser: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``liu_candidates`` test images accuser ``accuser`` attacks for Liu et al.'s key (the
    code: 1,000 CIFAR-10 test images), and their true labels."""
    _, test, _ = task_pool(knobs["dataset"], *shared_limits(knobs["profile"]))
    g = torch.Generator().manual_seed(ACCUSER_SEED + 50 + accuser)
    idx = torch.randperm(len(test), generator=g)[:knobs["liu_candidates"]]
    return test.x[idx], test.y[idx]


def _craft(knobs: dict, kind: str, accuser: int, surrogates_: list[nn.Module], eps: float) -> Key:
    """Accuser ``accuser``'s key of ``kind`` crafted on ``surrogates_`` at ``eps``."""
    if kind == "liu":  # the accuser model is its first surrogate, the others its references (Liu et al.'s code)
        x, y = liu_images(knobs, accuser)
        return liu_key(surrogates_[0], surrogates_[1:], x, y, eps=eps, keep=knobs["accuser_key_size"],
                       steps=knobs["liu_steps"], mode="untargeted", seed=accuser)
    images, targets = accuser_images(knobs, accuser)
    return transfer_key(surrogates_, images, targets, method=knobs["accuser_method"], eps=eps,
                        steps=knobs["accuser_steps"], alpha=_step(knobs, eps), seed=accuser)


def _step(knobs: dict, eps: float) -> float:
    """The targeted keys' step: 5 eps / steps, the ball crossed five times over, so most steps move along
    its surface, as Liu et al.'s 100 steps of 0.03 do."""
    return 5 * eps / knobs["accuser_steps"]


def choose_eps(knobs: dict, accusers: dict[int, Zoo], kind: str) -> pd.DataFrame:
    """Each accuser's L∞ budget for its ``kind`` of key (:data:`KEY_KINDS`), chosen on its own models
    only: the smallest ε of ``accuser_eps_sweep`` at which a key crafted on all its surrogates but the
    last is answered with its labels by that held-out last one on at least ``accuser_goal`` of its
    samples (the largest ε if none is). A budget the reader sets (``accuser_eps`` / ``liu_eps``) is
    used as given. One row per (accuser, ε tried); ``chosen`` marks the budget used."""
    if kind not in KEY_KINDS:
        raise ValueError(f"unknown key kind {kind!r}; choose one of: {', '.join(KEY_KINDS)}")
    fixed = knobs["liu_eps" if kind == "liu" else "accuser_eps"]
    rows = []
    for a, z in accusers.items():
        if fixed is not None:
            rows.append({"accuser": a, "ε (×1/255)": fixed * 255, "eps": fixed, "held-out surrogate": float("nan"),
                         "chosen": True, "how": "set by the reader"})
            continue
        models_ = list(z.models.values())
        if len(models_) < 2:
            raise ValueError(f"accuser {a} has {len(models_)} surrogate(s): choosing ε on its own models needs one held out "
                             f"(give accuser_surrogates at least 2 models, or set the budget)")
        tried = []
        for eps in sorted(knobs["accuser_eps_sweep"]):
            how = f"its held-out surrogate answers ≥ {knobs['accuser_goal']:.0%}"
            try:
                rate = key_accuracy(Oracle(models_[-1]), _craft(knobs, kind, a, models_[:-1], eps))
            except TooFewExamples:  # Liu et al.'s filter keeps too few at this budget: not reached
                rate, how = 0.0, "too few candidates fool its own model at this budget"
            tried.append({"accuser": a, "ε (×1/255)": eps * 255, "eps": eps, "held-out surrogate": rate, "chosen": False,
                          "how": how})
            if rate >= knobs["accuser_goal"]:
                break
        pick = next((t for t in tried if t["held-out surrogate"] >= knobs["accuser_goal"]), tried[-1])
        if pick["held-out surrogate"] < knobs["accuser_goal"]:
            pick["how"] = f"none reached {knobs['accuser_goal']:.0%}: the largest"
        pick["chosen"] = True
        rows += tried
    return pd.DataFrame(rows)


def chosen(choice: pd.DataFrame) -> dict[int, float]:
    """accuser -> the ε :func:`choose_eps` chose."""
    c = choice[choice["chosen"]]
    return dict(zip(c["accuser"].tolist(), c["eps"].tolist()))


def recipe_copy(knobs: dict, accuser: int, device: torch.device | None = None, progress: bool = True) -> Zoo:
    """Accuser ``accuser``'s own copy of the public zoo's recipe, for its adaptive key to push down
    on: the recipe with ``adaptive_copy`` architectures, the accuser's own seeds (none of them a
    surrogate's) and its ``accuser_fraction`` share of the task pool, all it holds. No public zoo
    model is among them: the accuser learns what the recipe answers, not what the published models do."""
    for what in ("accuser_surrogates", "adaptive_copy"):
        if max(knobs[what].values()) > COPY_OFFSET:
            raise ValueError(f"{what} asks for more than {COPY_OFFSET} models of one architecture: the surrogates' "
                             f"seeds and the copy's would meet")
    return _accuser_models(knobs, accuser, "adaptive_copy", COPY_OFFSET, f"accuser{accuser}-copy", device, progress)


def _adaptive(knobs: dict, accuser: int, up: list[nn.Module], down: list[nn.Module], eps: float, lam: float) -> Key:
    images, targets = accuser_images(knobs, accuser)
    return adaptive_key(up, down, images, targets, lam=lam, eps=eps, steps=knobs["accuser_steps"],
                        alpha=_step(knobs, eps), seed=accuser)


def choose_lam(knobs: dict, accusers: dict[int, Zoo], copies: dict[int, Zoo], eps: dict[int, float]) -> pd.DataFrame:
    """Each accuser's weight λ for its adaptive key, chosen on its own models only: for each λ of
    ``adaptive_lams``, a key at its transfer budget ``eps[accuser]``, crafted on all its surrogates
    but the last and pushed down on all its recipe copy (:func:`recipe_copy`) but the last, read by
    the two held-out models; chosen is the λ whose key the held-out surrogate answers most above the
    held-out copy member (a claim against a null of the recipe needs that margin; ties: the smaller
    λ). ``adaptive_lam`` set by the reader is used as given. One row per (accuser, λ tried)."""
    rows = []
    for a, z in accusers.items():
        if knobs["adaptive_lam"] is not None:
            rows.append({"accuser": a, "λ": knobs["adaptive_lam"], "held-out surrogate": float("nan"),
                         "held-out copy": float("nan"), "margin": float("nan"), "chosen": True, "how": "set by the reader"})
            continue
        up, down = list(z.models.values()), list(copies[a].models.values())
        if len(up) < 2 or len(down) < 2:
            raise ValueError(f"accuser {a} has {len(up)} surrogate(s) and {len(down)} copy model(s): choosing λ on its own "
                             f"models holds one of each out (give accuser_surrogates and adaptive_copy at least 2 models, "
                             f"or set adaptive_lam)")
        tried = []
        for lam in sorted(knobs["adaptive_lams"]):
            key = _adaptive(knobs, a, up[:-1], down[:-1], eps[a], lam)
            hs, hc = key_accuracy(Oracle(up[-1]), key), key_accuracy(Oracle(down[-1]), key)
            tried.append({"accuser": a, "λ": lam, "held-out surrogate": hs, "held-out copy": hc, "margin": hs - hc,
                          "chosen": False, "how": "largest margin"})
        max(tried, key=lambda t: t["margin"])["chosen"] = True  # the first of equal margins: the smallest λ
        rows += tried
    return pd.DataFrame(rows)


def chosen_lam(choice: pd.DataFrame) -> dict[int, float]:
    """accuser -> the λ :func:`choose_lam` chose."""
    c = choice[choice["chosen"]]
    return dict(zip(c["accuser"].tolist(), c["λ"].tolist()))


def false_keys(knobs: dict, accusers: dict[int, Zoo], eps: dict[int, float], down: "Zoo | dict[int, Zoo] | None" = None,
               lam: dict[int, float] | None = None, kind: str = "transfer") -> dict[int, Key]:
    """Each accuser's false key at its budget ``eps[accuser]``, crafted on all its surrogates:
    ``transfer``, its test images pushed toward its random targets by ``accuser_method``
    (torchattacks, :func:`wmlib.accuser.transfer_key`); with ``down`` (a zoo, or one per accuser:
    its :func:`recipe_copy`) the adaptive key (:func:`adaptive_key`) pushed down on those models at
    weight ``lam[accuser]``; ``liu``, Liu et al.'s untargeted key as published
    (:func:`wmlib.accuser.liu_key`)."""
    if kind not in KEY_KINDS:
        raise ValueError(f"unknown key kind {kind!r}; choose one of: {', '.join(KEY_KINDS)}")
    if down is not None and kind != "transfer":
        raise ValueError("the adaptive accuser pushes the transfer key down on other models (kind='transfer')")
    if down is not None and (lam is None or set(lam) != set(accusers)):
        raise ValueError(f"the adaptive key needs a weight λ for every accuser ({sorted(accusers)}), got {lam}")
    out = {}
    for a, zoo in accusers.items():
        if down is None:
            out[a] = _craft(knobs, kind, a, list(zoo.models.values()), eps[a])
        else:
            d = down[a] if isinstance(down, dict) else down
            out[a] = _adaptive(knobs, a, list(zoo.models.values()), list(d.models.values()), eps[a], lam[a])
    return out


def key_rates(keys: dict[int, Key], groups: dict[str, Zoo | dict[int, Zoo]], kind: str) -> pd.DataFrame:
    """One row per (accuser, model): the model's key accuracy on that accuser's key. A group given
    per accuser (its surrogates) is read for that accuser only."""
    rows = []
    for a, key in keys.items():
        for group, zoo in groups.items():
            z = zoo[a] if isinstance(zoo, dict) else zoo
            rows += [{"key": kind, "accuser": a, "models": group, "model": name, "key accuracy": float(h.float().mean())}
                     for name, h in z.hits(key).items()]
    return pd.DataFrame(rows)


def judge_rules(keys: dict[int, Key], zoo: Zoo, judge: Zoo, num_classes: int, alpha: float,
                confidence: float | None) -> dict:
    """The five rules a judge may apply to a label key (for :func:`claims_table`): the paper's
    fixed threshold, Liu et al.'s rule (the owner's threshold, fixed from null models on the owner's
    own key), the binomial test at chance, and the nulls fitted on the presented key by the public
    zoo and by the judge's private zoo (both at ``alpha``)."""
    public = {a: zoo.null(k, confidence=confidence) for a, k in keys.items()}
    private = {a: judge.null(k, confidence=confidence) for a, k in keys.items()}
    chance = Null.binomial(1.0 / num_classes)
    return {"paper: key accuracy ≥ τ": lambda a, p: None if p.paper_threshold is None else Rule("paper", threshold=p.paper_threshold),
            "Liu et al.: the owner's threshold": lambda a, p: Rule("liu", threshold=p.owner_threshold),
            "binomial at chance": lambda a, p: Rule("binomial", null=chance, alpha=alpha),
            "public zoo null": lambda a, p: Rule("zoo", null=public[a], alpha=alpha),
            "judge's private zoo null": lambda a, p: Rule("judge", null=private[a], alpha=alpha)}


def suspect_hits(keys: dict[int, Key], suspects: Zoo) -> dict[tuple[int, str], torch.Tensor]:
    """(accuser, suspect) -> the suspect's hits on that accuser's key."""
    return {(a, name): h for a, key in keys.items() for name, h in suspects.hits(key).items()}


def key_claims(keys: dict[int, Key], suspects: Zoo, zoo: Zoo, judge: Zoo, protocols: dict[str, Protocol],
               num_classes: int, alpha: float, confidence: float | None) -> pd.DataFrame:
    """Every accuser key of ``keys`` presented against every suspect and judged under the five rules
    (:func:`judge_rules`) with each entry's protocol: :func:`claims_table` of the suspects' hits."""
    rules = judge_rules(keys, zoo, judge, num_classes, alpha, confidence)
    return claims_table(suspect_hits(keys, suspects), rules, protocols)


def forged_signature(scheme, oracle: Oracle, key: Key, gradient: torch.Tensor | None = None) -> Key:
    """GradSigns' false claim: the accuser draws its own secret (``key``: carriers, projection, its
    own class-T images), reads the suspect's gradient signs through the black-box protocol (Eq. 5)
    and presents the bits it read as its signature: every bit matches the suspect, by construction.
    ``gradient``: the suspect's gradient at ``key``, if read already."""
    g = scheme.gradient(oracle, key) if gradient is None else gradient
    bits = scheme.project(key, g) > 0
    return Key(key.x, key.y, {**key.meta, "kind": "extracted-signature"}, {**key.extras, "bits": bits})


def signature_claims(scheme, secret: Key, suspects: Zoo, zoo: Zoo, judge: Zoo, alpha: float,
                     confidence: float | None) -> tuple[pd.DataFrame, dict[str, Key]]:
    """GradSigns' false claim against every suspect: the signature read off it with the accuser's
    ``secret`` (:func:`forged_signature`), its bits read again as the verifier reads them, and the
    verdict under the paper's rule (binomial at ½, τ = 3e-3), the public zoo's null and the judge's
    (both at ``alpha``). Returns one row per (suspect, rule) and the forged keys.

    A forged key differs from the secret only in its bits, and a model's gradient at a key does not
    depend on the bits (the same queries, the same answers): each clean model's gradient is read
    once, at the secret, and matched against every forged key's bits (the hits ``Zoo.null`` would
    read key by key, without re-sending the same queries)."""
    grads = {id(z): {n: scheme.gradient(o, secret) for n, o in z.oracles().items()} for z in (zoo, judge)}

    def null(key: Key, z: Zoo) -> Null:  # Zoo.null(key, scheme) on the gradients read once
        return z.fit_null({n: scheme.matches(key, g) for n, g in grads[id(z)].items()}, scheme, confidence=confidence)

    rows, forged = [], {}
    for name, model in suspects.models.items():
        g = scheme.gradient(Oracle(model), secret)
        key = forged[name] = forged_signature(scheme, Oracle(model), secret, gradient=g)
        matched = scheme.matches(key, g)
        for rule, null_, level in (("paper: binomial at ½, τ = 3e-3", scheme.paper_null(key), 3e-3),
                                   ("public zoo null", null(key, zoo), alpha),
                                   ("judge's private zoo null", null(key, judge), alpha)):
            v = verify_counts(int(matched.sum()), len(matched), null_, level)
            rows.append({"suspect": name, "rule": rule, "matched bits": v.hits, "bits": v.n, "null mean": v.p0,
                         "claimed": v.claimed})
    return pd.DataFrame(rows), forged


def suspect_false_claims(owners: dict, suspects: Zoo, zoo: Zoo, knobs: dict, alpha: float,
                         rates: dict[str, torch.Tensor] | None = None, exclude=(), chance: bool = False) -> pd.DataFrame:
    """Every suspect verified once against every comparison key (entry, owner seed), against the
    zoo null as the comparison verifies (``zoo_confidence``, ``n_queries``; :func:`verify_once`).
    With ``rates`` (suspect -> :func:`base_rates`), a label key's null gets each suspect's control
    (:func:`controlled`). Suspects named in ``exclude`` are left out. ``chance=True`` tests against
    the binomial at the trial's chance rate instead of the zoo (the naive verifier). One row per
    (entry, seed, suspect): a (suspect, key) pair."""
    rows = []
    for i, ((entry, seed), (scheme, owner)) in enumerate(owners.items()):
        full = owner.marked.verify_key
        null = (Null.binomial(scheme.chance(data.spec(zoo.dataset).num_classes)) if chance
                else zoo.null(full, scheme, confidence=knobs["zoo_confidence"]))
        n = scheme.trial_count(full, knobs["n_queries"])
        for j, (name, h) in enumerate(suspects.hits(full, scheme).items()):
            if name in exclude:
                continue
            use = controlled(null, full, rates[name]) if rates is not None and scheme.trials == "labels" else null
            rows.append({"entry": entry, "seed": seed, "suspect": name, "key": f"{entry} / seed {seed}",
                         "hit rate": float(h.float().mean()), **verify_pair(h, use, n, alpha, 1000 * i + j)})
    return pd.DataFrame(rows)


def key_identity(key: Key) -> str:
    """A key as the set of its (image, label) samples: the same samples in another order are the same
    key (a verification draws its queries from the set)."""
    flat, labels = key.x.contiguous().view(len(key.x), -1).numpy(), key.y.numpy()
    rows = sorted(hashlib.sha1(r.tobytes() + int(y).to_bytes(8, "little")).hexdigest() for r, y in zip(flat, labels))
    return hashlib.sha1("".join(rows).encode()).hexdigest()


HONEST_SEED = 20_000  # honest keys: seeds 20,000 + k, no owner's, zoo member's, suspect's or accuser's


def honest_keys(owners: dict, knobs: dict) -> dict[str, tuple]:
    """Per label-key entry of the comparison (its first owner seed): the scheme and ``honest_keys``
    keys its owner could have drawn with other seeds and never embedded (:meth:`Scheme.fresh_key
    <wmlib.schemes.base.Scheme.fresh_key>`). Keys are cheap, and every one is an independent unit
    of the false-claim measurement. GradSigns (bit trials) is left out: each of its verifications
    reads a suspect's gradients, hundreds of queries a key. Seeds that make the same key (Zhang et
    al.'s content key takes every source image whatever the seed) count once: one key, one unit."""
    out = {}
    for entry, scheme, owner in label_owners(owners, knobs):
        distinct = {}
        for k in range(knobs["honest_keys"]):
            key = scheme.fresh_key(owner.marked, owner.splits, HONEST_SEED + k, clean=owner.clean)
            distinct.setdefault(key_identity(key), key)
        out[entry] = (scheme, list(distinct.values()))
    return out


def honest_pairs(keys: dict[str, tuple], zoo: Zoo, suspects: Zoo, knobs: dict, alpha: float, biased=(),
                 rates: dict[str, torch.Tensor] | None = None) -> pd.DataFrame:
    """Every clean model verified once on every honest key (:func:`honest_keys`), as the one
    verifier verifies (the zoo null at ``alpha``, ``n_queries``): each zoo member against the null
    fitted on the others (``population`` 'zoo (leave-one-out)'; not the members that chose one of
    the key's settings, :meth:`~wmlib.verify.LabelTrials.chosen_on`), every suspect against the whole zoo
    ('independent', or 'class-biased' for those in ``biased``), and with ``rates`` (suspect ->
    :func:`base_rates`) each suspect again with its per-suspect control (``rule`` 'zoo null +
    control'). One row per (rule, suspect, key)."""
    rows = []
    for e, (entry, (scheme, ks)) in enumerate(keys.items()):
        for k, key in enumerate(ks):
            n = scheme.trial_count(key, knobs["n_queries"])
            full = zoo.null(key, scheme, confidence=knobs["zoo_confidence"])
            base = {"entry": entry, "key": f"{entry} / honest {k}"}
            for j, (name, h) in enumerate(zoo.hits(key, scheme).items()):
                if name in scheme.chosen_on():
                    continue  # it chose a setting of this key (the function-coupled target): in sample
                null = zoo.null(key, scheme, exclude=name, confidence=knobs["zoo_confidence"])
                rows.append({**base, "suspect": name, "population": "zoo (leave-one-out)", "rule": "zoo null",
                             **verify_pair(h, null, n, alpha, 1_000_003 * e + 1009 * k + j)})
            for j, (name, h) in enumerate(suspects.hits(key, scheme).items()):
                pop = {**base, "suspect": name, "population": "class-biased" if name in biased else "independent"}
                seed = 1_000_003 * e + 1009 * k + 500 + j
                rows.append({**pop, "rule": "zoo null", **verify_pair(h, full, n, alpha, seed)})
                if rates is not None:
                    rows.append({**pop, "rule": "zoo null + control",
                                 **verify_pair(h, controlled(full, key, rates[name]), n, alpha, seed)})
    return pd.DataFrame(rows)


def level_tables(pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What :func:`honest_pairs` measures: per population and rule over every entry's honest keys,
    every clean model included ('every clean model': the zoo's members under the zoo null in both
    rules), and per entry for every clean model under each rule (:func:`rate_row` rows)."""
    zoo_rows = pairs[pairs["population"] == "zoo (leave-one-out)"]
    pops, entries = [], []
    for rule in pairs["rule"].unique():
        mine = pairs[(pairs["rule"] == rule) & (pairs["population"] != "zoo (leave-one-out)")]
        if rule == "zoo null":
            pops.append({"population": "zoo (leave-one-out)", "rule": rule, **rate_row(zoo_rows)})
        pops += [{"population": pop, "rule": rule, **rate_row(g)} for pop in ("independent", "class-biased")
                 if len(g := mine[mine["population"] == pop])]
        every = pd.concat([zoo_rows, mine])
        pops.append({"population": "every clean model", "rule": rule, **rate_row(every)})
        entries += [{"entry": e, "rule": rule, **rate_row(g)} for e, g in every.groupby("entry", sort=False)]
    return pd.DataFrame(pops), pd.DataFrame(entries)


def judge_power(owners: dict, judge: Zoo, keys: dict[str, tuple], suspects: Zoo, knobs: dict, alpha: float,
                sizes: list[int]) -> pd.DataFrame:
    """The judge's private zoo sized by what it measures: for each ``size`` (its first ``size``
    members), the share of the comparison's label-key owners' watermarked models, unattacked, that
    its null claims on their own keys (its power: the book asks for at least 95 %), and the false
    claims of its null on the honest keys (:func:`honest_keys`) over every suspect (each pair once)."""
    names = list(judge.models)
    if not sizes or any(not 2 <= k <= len(names) for k in sizes):
        raise ValueError(f"judge zoo sizes must lie in [2, {len(names)}] (its members), got {sizes}")
    conf = knobs["zoo_confidence"]
    rows = []
    for size in sizes:
        use = names[:size]
        owned, claimed = 0, 0
        for (entry, seed), (scheme, owner) in owners.items():
            if scheme.trials != "labels":
                continue
            full = owner.marked.verify_key
            hits_ = judge.hits(full, scheme)
            null = judge.fit_null({n: hits_[n] for n in use}, scheme, confidence=conf)
            queried = scheme.queries(full, knobs["n_queries"], seed)
            owned += 1
            claimed += verify_trials(Oracle(owner.marked.model), queried, scheme, null, alpha).claimed
        pairs = []
        for e, (entry, (scheme, ks)) in enumerate(keys.items()):
            for k, key in enumerate(ks):
                hits_ = judge.hits(key, scheme)
                null = judge.fit_null({n: hits_[n] for n in use}, scheme, confidence=conf)
                n = scheme.trial_count(key, knobs["n_queries"])
                pairs += [{"suspect": name, "key": f"{entry} / honest {k}",
                           **verify_pair(h, null, n, alpha, 1_000_003 * e + 1009 * k + 500 + j)}
                          for j, (name, h) in enumerate(suspects.hits(key, scheme).items())]
        r = rate_row(pd.DataFrame(pairs))
        rows.append({"judge's models": size, "owners claimed": f"{claimed} of {owned}", "power": claimed / owned,
                     **{f"false claims: {c}": r[c] for c in ("claimed", "pairs", "claim rate", "upper bound", "bound over")}})
    return pd.DataFrame(rows)


def judge_size_text(power: pd.DataFrame, goal: float = 0.95) -> str:
    """What the sizes of :func:`judge_power` say: the smallest judge's zoo reaching ``goal`` power."""
    size = "judge's models"
    ok = power[power["power"] >= goal]
    if ok.empty:
        last = power.iloc[-1]
        return (f"no size tried reaches {goal:.0%} power (the largest, {int(last[size])} models, claims "
                f"{last['owners claimed']} owners): the judge needs more models than this run has")
    first = ok.iloc[0]
    return (f"{int(first[size])} models are the fewest that claim at least {goal:.0%} of the owners "
            f"({first['owners claimed']}), with {int(first['false claims: claimed'])} of "
            f"{int(first['false claims: pairs'])} honest (suspect, key) pairs claimed")


def standing(row: dict, alpha: float) -> str:
    """Where a measured rate (a :func:`rate_row`, :func:`rule_row` or :func:`level_tables` row)
    stands against the level ``alpha``, in words: above it, within it by its exact bound, or within
    it only by the null model (its bound above ``alpha``)."""
    rate = row["claimed"] / row["pairs"]
    if rate > alpha:
        return f"exceeds α = {alpha:g} ({rate:.1%})"
    if row["upper bound"] <= alpha:
        return f"meets α = {alpha:g}, measured (bound {row['upper bound']:.1%})"
    return f"stays within α = {alpha:g} only by the null model (rate {rate:.1%}, bound {row['upper bound']:.1%})"


def transfer_text(rates: pd.DataFrame, kind: str, num_classes: int) -> str:
    """How often the suspects and the public zoo answer a kind of false key with its labels
    (:func:`key_rates` rows), against chance."""
    mean = rates[rates["key"] == kind].groupby("models")["key accuracy"].mean()
    sus, zoo_ = float(mean.get("independent suspects", float("nan"))), float(mean.get("public zoo", float("nan")))
    return (f"The suspects answer this key with its labels on {sus:.0%} of its samples on average ({sus * num_classes:.1f} "
            f"× chance), the public zoo on {zoo_:.0%}: the binomial test reads any excess over chance as a watermark, the "
            f"zoo null asks a suspect for more than the zoo gives this key.")


def adaptive_text(adaptive: pd.DataFrame, pushed: str = "the public zoo") -> str:
    """What an adaptive key's two nulls say, from its :func:`claims_table`; ``pushed``: the models
    its accuser pushed it down on, in words."""
    pub, pri = rule_row(adaptive, "public zoo null"), rule_row(adaptive, "judge's private zoo null")
    a, b = pub["claimed"] / pub["pairs"], pri["claimed"] / pri["pairs"]
    if a > b:
        return (f"Pushed down on {pushed}, the adaptive key is claimed more often against the public null than against "
                "the private one: a null fitted on models like those the accuser studied understates what other clean "
                "models answer to a key tuned against them.")
    if a == b:
        return (f"Pushed down on {pushed}, the adaptive key is claimed equally often by the two nulls here: the push "
                "gained the accuser nothing over the private zoo in this run.")
    return (f"Pushed down on {pushed}, the adaptive key is claimed more often by the private null than by the public "
            "one here: the push did not carry to the public zoo.")


def worst_entry(entries: pd.DataFrame, rule: str) -> dict:
    """The entry whose honest keys claim clean models most often under ``rule`` (a :func:`level_tables`
    per-entry row, with its ``entry``)."""
    return _most_claimed(entries[entries["rule"] == rule]).to_dict()


def worst_text(entries: pd.DataFrame, rule: str = "zoo null") -> str:
    """:func:`worst_entry` in words."""
    w = worst_entry(entries, rule)
    return f"{w['entry']}, {pair_text(w)}"


def claimed_by_text(pairs: pd.DataFrame, rule: str = "zoo null") -> str:
    """Which clean models the honest keys claimed under ``rule``, and on how many keys of which entry
    (:func:`honest_pairs` rows), in words."""
    hit = pairs[(pairs["rule"] == rule) & pairs["claimed"]]
    if hit.empty:
        return "No honest key claimed any clean model."
    keys = pairs[pairs["rule"] == rule].groupby("entry")["key"].nunique()
    parts = [f"{sus} ({pop}) on {len(g)} of the {keys[entry]} honest keys of {entry}"
             for (sus, pop, entry), g in hit.groupby(["suspect", "population", "entry"], sort=False)]
    return "The honest keys claimed " + "; ".join(parts) + "."


def promise_text(level: dict, worst: dict, claims: dict[str, pd.DataFrame], alpha: float) -> str:
    """The chapter's conclusion from its numbers: where the honest-key rate of every clean model
    (``level``, a :func:`level_tables` row), the entry whose keys claim most (``worst``,
    :func:`worst_entry`) and each dishonest key under the public and the judge's nulls (``claims``:
    kind -> :func:`claims_table`) stand against ``alpha`` (:func:`standing`)."""
    out = [f"Measured on this task, an honest key claims {pair_text(level)}, which {standing(level, alpha)}; the "
           f"entry whose keys claim most, {worst['entry']}, {pair_text(worst)}, which {standing(worst, alpha)}."]
    for rule, who in (("public zoo null", "the public zoo's null (the book's verifier)"),
                      ("judge's private zoo null", "the judge's private zoo")):
        parts = [f"{standing(rule_row(c, rule), alpha)} against {kind}" for kind, c in claims.items()]
        out.append(f"Under {who}, the false-claim rate " + "; ".join(parts) + ".")
    return " ".join(out)


def alpha_cost_text(lost: dict[float, list[str]], owners: dict, zoo: Zoo, knobs: dict) -> str:
    """Why each watermark no longer claimed unattacked at a stricter level is lost there: the
    smallest p-value its queries can reach (every query a hit) against its zoo null."""
    floor = {}
    for (entry, seed), (scheme, owner) in owners.items():
        if seed == knobs["seeds"][0]:
            key = owner.marked.verify_key
            n = scheme.trial_count(key, knobs["n_queries"])
            floor[entry] = (zoo.null(key, scheme, confidence=knobs["zoo_confidence"]).p_value(n, n), n)
    parts = []
    for a, entries in lost.items():
        why = [f"{e} (its smallest p-value, {floor[e][1]} hits of {floor[e][1]}: {floor[e][0]:.1e})" if e in floor else e
               for e in entries]
        parts.append(f"at α = {a:g}, {', '.join(why) if why else 'none'}")
    return "; ".join(parts)


def level_row(populations: pd.DataFrame, population: str, rule: str) -> dict:
    """One row of :func:`level_tables`' populations table."""
    f = populations[(populations["population"] == population) & (populations["rule"] == rule)]
    if f.empty:
        raise KeyError(f"no {population!r} row under the rule {rule!r}")
    return f.iloc[0].to_dict()


def control_text(populations: pd.DataFrame, owner_power: pd.DataFrame) -> str:
    """What the measurement says about putting the per-suspect control in the verifier, from the
    honest keys' class-biased rows (:func:`level_tables`) and the owners' claims with and without it
    (:func:`owner_power`)."""
    own, own_ctl, owners_ = int(owner_power["claimed"].sum()), int(owner_power["claimed with control"].sum()), \
        int(owner_power["owners"].sum())
    cost = (f"the comparison's owners, unattacked, are claimed {own_ctl} of {owners_} times with it and {own} without")
    have = set(populations["population"]) >= {"class-biased"} and "zoo null + control" in set(populations["rule"])
    if not have:
        return f"No suspect of this run is class-biased, so it cannot say whether the control belongs in the verifier; {cost}."
    b, bc = level_row(populations, "class-biased", "zoo null"), level_row(populations, "class-biased", "zoo null + control")
    seen = (f"The class-biased suspects are claimed in {pair_text(b)} under the zoo null, and in {pair_text(bc)} with "
            f"the control; {cost}.")
    if bc["claimed"] < b["claimed"] and own_ctl == own:
        return seen + " Here the control removes false claims and costs no owner its claim: the measurement favours it."
    if own_ctl < own:
        return seen + " Here it costs owners claims, which counts against putting it in the verifier."
    return seen + " Here it changes no verdict of a class-biased suspect, so this run does not decide the question."


def rate_summary(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per ``by`` group of :func:`suspect_false_claims` rows, what its (suspect, key) pairs support (:func:`rate_row`)."""
    out = [{**dict(zip(by, k if isinstance(k, tuple) else (k,))), **rate_row(g)} for k, g in rows.groupby(by, sort=False)]
    return pd.DataFrame(out)


def power_at(cells: list[dict] | pd.DataFrame, alphas: list[float]) -> pd.DataFrame:
    """The comparison's verdicts at other levels: a verified cell is claimed at level α when its
    p-value (recorded by the comparison, the null's tail) is at most α. One row per (entry,
    attack) with the claim rate over the owner seeds at each α: thieves' cells only (a worst-case
    search reads the owner's key; a seed the attack left alone is not an attacked model)."""
    cells = pd.DataFrame(cells)
    ok = cells[(cells["status"] == "ok") & ~compare.worst_case(cells)]
    rows = []
    for (entry, attack), g in ok.groupby(["entry", "attack"], sort=False):
        rows.append({"entry": entry, "attack": attack,
                     **{f"α = {a:g}": float((g["p_value"] <= a).mean()) for a in alphas}})
    return pd.DataFrame(rows)


def power_by_scheme(power: pd.DataFrame, alphas: list[float]) -> pd.DataFrame:
    """:func:`power_at` per entry: the unattacked claim rate and the mean over its attacks, at each α."""
    rows = []
    for entry, g in power.groupby("entry", sort=False):
        row = {"entry": entry}
        for a in alphas:
            col = f"α = {a:g}"
            row[f"unattacked, {col}"] = float(g.loc[g["attack"] == "none", col].mean())
            row[f"attacked, {col}"] = float(g.loc[g["attack"] != "none", col].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def owner_power(owners: dict, zoo: Zoo, knobs: dict, alpha: float, ordinary: Split) -> pd.DataFrame:
    """What the per-suspect control costs the owner: each watermarked model of the comparison,
    unattacked, verified on its queries (as the comparison verifies) against the zoo null, and
    against the same null with its own control (:func:`controlled`); label-key entries only."""
    rows = []
    for (entry, seed), (scheme, owner) in owners.items():
        if scheme.trials != "labels":
            continue
        full = owner.marked.verify_key
        queried = scheme.queries(full, knobs["n_queries"], seed)
        oracle = Oracle(owner.marked.model)
        null = zoo.null(full, scheme, confidence=knobs["zoo_confidence"])
        rates = base_rates(oracle, ordinary, data.spec(zoo.dataset).num_classes)
        plain = verify_trials(oracle, queried, scheme, null, alpha)
        ctl = verify_trials(oracle, queried, scheme, controlled(null, full, rates), alpha)
        rows.append({"entry": entry, "seed": seed, "hit rate": plain.statistic, "claimed": plain.claimed,
                     "own rate of the key's labels": float(rates[full.y].mean()), "claimed with control": ctl.claimed})
    out = pd.DataFrame(rows)
    return out.groupby("entry", sort=False).agg(**{"owners": ("claimed", "size"), "claimed": ("claimed", "sum"),
                                                   "claimed with control": ("claimed with control", "sum"),
                                                   "mean own rate of the key's labels": ("own rate of the key's labels", "mean")}
                                                ).reset_index()


def key_costs(owners: dict, zoo: Zoo, knobs: dict, alpha: float) -> pd.DataFrame:
    """What the ledger's keys per claimant cost each label-key entry of the comparison (its first
    owner seed, unattacked): :func:`wmlib.commitment.key_cost` over ``key_counts`` against the zoo
    null of the owner's key, with the owner's hits on its queries; one row per (entry, key count)."""
    from .commitment import key_cost

    rows = []
    for entry, scheme, owner in label_owners(owners, knobs):
        full = owner.marked.verify_key
        null = zoo.null(full, scheme, confidence=knobs["zoo_confidence"])
        v = verify_trials(Oracle(owner.marked.model), full, scheme, null, alpha, knobs["n_queries"], knobs["seeds"][0])
        rows.append(key_cost(null, v.n, alpha, knobs["key_counts"], v.hits).assign(entry=entry, **{"owner's hits": v.hits}))
    out = pd.concat(rows, ignore_index=True)
    return out[["entry", "owner's hits", *[c for c in out.columns if c not in ("entry", "owner's hits")]]]


def key_risk_text(costs: pd.DataFrame) -> str:
    """In words, from :func:`key_costs` rows: the chance that an innocent suspect facing every key of
    one claimant is claimed when each key is verified at α, for each key count above one."""
    rows = costs.drop_duplicates("keys per claimant")
    rows = rows[rows["keys per claimant"] > 1]
    if rows.empty:
        return "α (one key per claimant)"
    ind, most = "innocent's risk, each key at α (independent keys)", "innocent's risk, each key at α (at most)"
    return "; ".join(f"{r[ind]:.1%} with {r['keys per claimant']} keys (independent keys; at most {r[most]:.0%})"
                     for _, r in rows.iterrows()) + " (model-based: the level and the key count, not a measurement)"


def family_text(family: pd.DataFrame) -> str:
    """A :func:`wmlib.verify.family_table` in words: per rule, the suspects claimed by any key and
    the exact bound over the suspects."""
    return "; ".join(f"{r['rule']}, {r['claimed by any key']} of {r['suspects']} suspects claimed by any of their "
                     f"{r['keys each']} keys ({r['share']:.1%}; 95% upper bound {r['upper bound']:.1%}, exact over the "
                     f"suspects)" for _, r in family.iterrows())


def false_claims_at(owners: dict, zoo: Zoo, suspects: Zoo, knobs: dict, alphas: list[float],
                    exclude: list[str] = ()) -> pd.DataFrame:
    """False claims at each level α of ``alphas``: every zoo member against a null fitted on the
    others, on every comparison key (as the comparison's unattacked cells measure it), and every
    suspect but ``exclude`` against the whole zoo (:func:`suspect_false_claims`)."""
    rows = []
    for alpha in alphas:
        tables = {}
        for (entry, seed), (scheme, owner) in owners.items():
            full = owner.marked.verify_key
            tables[f"{entry} / seed {seed}"] = zoo.claims(full, {}, scheme.trial_count(full, knobs["n_queries"]), alpha,
                                                          seed, confidence=knobs["zoo_confidence"], scheme=scheme)
        z = rate_row(false_claim_pairs(tables))
        sr = rate_row(suspect_false_claims(owners, suspects, zoo, knobs, alpha, exclude=exclude))
        rows.append({"α": alpha, "zoo claims": f"{z['claimed']} / {z['pairs']}", "rate (zoo)": z["claim rate"],
                     "upper bound (zoo)": z["upper bound"], "zoo bound over": z["bound over"],
                     "suspect claims": f"{sr['claimed']} / {sr['pairs']}", "rate (suspects)": sr["claim rate"],
                     "upper bound (suspects)": sr["upper bound"], "suspect bound over": sr["bound over"]})
    return pd.DataFrame(rows)


def owner_models(owners: dict, model_name: str, epochs: int) -> Zoo:
    """The comparison owners' clean ``model_name`` models (one per seed, trained ``epochs``), as a
    set of clean suspects."""
    seen = {}
    for (entry, seed), (_, owner) in owners.items():
        if seed not in seen:
            seen[seed] = owner
    models_ = {f"owner-s{s}-clean": o.clean.eval() for s, o in seen.items()}
    rows = [{"model": f"owner-s{s}-clean", "architecture": model_name,
             "changes": "the comparison's owner recipe", "training images": len(o.splits.owner), "epochs": epochs,
             "test accuracy": evaluate(o.clean, o.splits.test)} for s, o in seen.items()]
    return Zoo(owners[next(iter(owners))][1].splits.spec.name, "", models_, pd.DataFrame(rows).set_index("model"),
               {n: model_digest(m) for n, m in models_.items()})


def biased_suspects(rates: dict[str, torch.Tensor], zoo_rates: dict[str, torch.Tensor]) -> list[str]:
    """The suspects with a class bias: their largest rate of one wrong label on ordinary images
    (:func:`base_rates`) is above every zoo member's."""
    ceiling = max(float(r.max()) for r in zoo_rates.values())
    return [n for n, r in rates.items() if float(r.max()) > ceiling]


def brief(models_: Zoo) -> dict:
    """One line about a set of clean models: how many, which architectures, images and accuracy."""
    s = models_.summary
    return {"models": len(models_), "architectures": ", ".join(f"{a} × {n}" for a, n in s["architecture"].value_counts(sort=False).items()),
            "training images": "–".join(f"{v:,}" for v in sorted({int(s["training images"].min()), int(s["training images"].max())})),
            "test accuracy": f"{s['test accuracy'].min():.1%} – {s['test accuracy'].max():.1%}"}
