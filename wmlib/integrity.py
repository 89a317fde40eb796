"""Integrity against a dishonest accuser (Liu et al., *False Claims against Model Ownership
Resolution*, USENIX Security 2024): the parties of a false claim, the rules a judge may apply, and
the defences, measured.

An accuser who owns no watermarked model crafts a false key on clean surrogates of its own
(:mod:`wmlib.accuser`) and claims any suspect that answers it with its labels. A judge decides with
one of three rules on the same hits: the paper's own rule (a fixed key-accuracy threshold), a
binomial test at chance, or the book's null fitted to a zoo of clean models (:class:`~wmlib.verify.Null`).
Because the book's zoo is public, a careful accuser pushes its keys *down* on the zoo
(:func:`adaptive_key`); the judge's answer is a *private* zoo of its own
(:func:`wmlib.zoo.Zoo.load` with the judge's seeds and tag). This module also builds the clean
suspects that differ from the zoo's recipe (:func:`independent_suspects`: other architectures,
optimisers, data shares, regularisation, distillation, and class-biased models), the per-suspect
control of a class bias (:func:`base_rates`, :func:`controlled`), and the tables of claim rates
with exact intervals that the integrity chapter shows.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Callable

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from . import compare, data, models
from .accuser import random_targets, transfer_key
from .attacks.extraction import extract
from .attacks.model import prune_magnitude
from .data import Split, Splits
from .keys import Key
from .train import TrainConfig, default_device, evaluate, model_digest, to_float, train_classifier
from .verify import (LabelTrials, Null, Oracle, false_claim_pairs, pair_rate, verify_counts, verify_once,
                     verify_trials)
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
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"a threshold must be in (0, 1], got {self.threshold}")

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


def rule_row(frame: pd.DataFrame, rule: str) -> dict:
    """A rule's rows of a :func:`claims_table` as one: claimed pairs and pairs summed over the
    protocols it judged apart (different entries' keys), and the largest of their upper bounds."""
    f = frame[frame["rule"] == rule]
    worst = f.loc[f["upper bound"].idxmax()]
    return {"claimed": int(f["claimed"].sum()), "pairs": int(f["pairs"].sum()), "upper bound": float(worst["upper bound"]),
            "bound over": worst["bound over"]}


def pair_text(row: dict) -> str:
    """A :func:`rate_row` (or :func:`rule_row`) in words: what it counts and what it supports."""
    rate = row["claimed"] / row["pairs"]
    return (f"{row['claimed']} of {row['pairs']} (suspect, key) pairs ({rate:.1%}; 95% upper bound "
            f"{row['upper bound']:.1%}, exact over {row['bound over']})")


def level_reasons(row: dict, alpha: float, judge: dict | None = None) -> dict[str, str]:
    """Why a promise "no innocent suspect claimed beyond ``alpha``" got its status, one text per status
    (:meth:`wmlib.report.PaperVsOurs.add`), from a :func:`rate_row` (or :func:`rule_row`); ``judge``:
    the same keys under the judge's private zoo, said beside a row that misses the level."""
    seen = pair_text(row) + " claimed"
    beside = f"; the judge's private zoo claims {pair_text(judge)}" if judge is not None else ""
    return {"model-based": f"{seen}: the bound is above α = {alpha:g}, so '≤ α' rests on the null model, not on this "
                           f"measurement{beside}",
            "deviates": f"{seen}: above α = {alpha:g}{beside}"}


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


def claims_table(hits: dict[tuple, torch.Tensor], rules: dict[str, Callable], protocols: dict[str, tuple[int, float | None]],
                 seed: int = 0) -> pd.DataFrame:
    """Claim rates of false keys: ``hits`` maps (accuser, suspect) to the suspect's hit vector on
    that accuser's key; ``rules`` maps a rule name to ``(accuser, protocol threshold) -> Rule | None``
    (None: the rule does not apply to that protocol); ``protocols`` maps the entries that share a
    verification protocol to ``(queries, paper threshold or None)``. One row per rule and distinct
    protocol (protocols that a rule judges alike share a row, e.g. every protocol of 100 queries
    under the binomial test): every (suspect, accuser's key) pair verified once (:func:`rate_row`)."""
    first = next(iter(hits))[0]
    groups: dict[tuple, list[str]] = {}
    for rname, make in rules.items():
        for proto, (n, tau) in protocols.items():
            rule = make(first, tau)
            if rule is not None:  # e.g. the paper's threshold, for a paper that gives none
                groups.setdefault((rname, n, tau if rule != make(first, None) else None), []).append(proto)
    rows = []
    for (rname, n, tau), protos in groups.items():
        pairs = pd.DataFrame([{"suspect": sus, "key": f"accuser {acc}",
                               **verify_once(h, rules[rname](acc, tau).critical(min(n, len(h))), n, seed + i)}
                              for i, ((acc, sus), h) in enumerate(hits.items())])
        rows.append({"rule": rname, "entries": "every label-key entry" if len(protos) == len(protocols) else "; ".join(protos),
                     "queries": min(n, len(next(iter(hits.values())))), **rate_row(pairs)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the parties of a chapter run

JUDGE_SEED = 3000      # the judge's private zoo: seeds 3000 + s
ACCUSER_SEED = 10_000  # accuser a's surrogates: seeds 10,000 + 100 a + s


def judge_zoo(knobs: dict, device: torch.device | None = None, progress: bool = True) -> Zoo:
    """The judge's private zoo: the zoo's recipe with ``judge_zoo`` architectures, the judge's seeds
    and ``judge_fraction`` shares of the task pool. Nobody but the judge sees these models."""
    return Zoo.load(knobs["dataset"], knobs["profile"], *shared_limits(knobs["profile"]), device=device, progress=progress,
                    seed_base=JUDGE_SEED, tag="judge", **dict(recipe_overrides(knobs), archs=knobs["judge_zoo"],
                                                               data_fraction=knobs["judge_fraction"]))


def surrogates(knobs: dict, accuser: int, device: torch.device | None = None, progress: bool = True) -> Zoo:
    """Accuser ``accuser``'s clean surrogates: the zoo's recipe with ``accuser_surrogates``
    architectures, its own seeds and ``accuser_fraction`` shares of the task pool."""
    if not 0 <= accuser < 100:
        raise ValueError(f"an accuser seed must be in [0, 99], got {accuser}")
    return Zoo.load(knobs["dataset"], knobs["profile"], *shared_limits(knobs["profile"]), device=device, progress=progress,
                    seed_base=ACCUSER_SEED + 100 * accuser, tag=f"accuser{accuser}",
                    **dict(recipe_overrides(knobs), archs=knobs["accuser_surrogates"], data_fraction=knobs["accuser_fraction"]))


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
    compare.pick_fc_target(knobs, zoo, data.task_splits(knobs, seed=knobs["seeds"][0]))
    context = compare.make_context(knobs)
    out = {}
    pairs = [(e, s) for e in knobs["entries"] for s in knobs["seeds"]]
    for e, s in tqdm(pairs, desc="the comparison's owners", disable=not progress, leave=False):
        scheme = compare.build(e, compare.ENTRIES[e], context["entries"][e]["settings"])
        out[(e, s)] = (scheme, compare.embed_entry(e, scheme, s, context))
    return out


# --------------------------------------------------------------------------- the false-claim attack, measured

def is_label_scheme(scheme: LabelTrials) -> bool:
    """Does one trial of ``scheme`` count a key query answered with the key's label (the generic
    trigger-set protocol Liu et al. attack)? GradSigns counts signature bits instead."""
    return type(scheme).hits is LabelTrials.hits


def protocols(owners: dict, knobs: dict) -> dict[str, tuple[int, float | None]]:
    """The verification protocols of the comparison's label-key entries: queries per verification
    and the paper's fixed threshold (``paper_threshold`` where the paper claims above a key accuracy
    "close to 1", else None), entries with the same protocol on one row."""
    groups: dict[tuple, list[str]] = {}
    for (entry, seed), (scheme, owner) in owners.items():
        if seed != knobs["seeds"][0] or not is_label_scheme(scheme):
            continue
        n = scheme.trial_count(owner.marked.verify_key, knobs["n_queries"])
        groups.setdefault((n, knobs["paper_threshold"] if scheme.accuracy_threshold else None), []).append(entry)
    return {", ".join(names): (n, tau) for (n, tau), names in groups.items()}


def false_keys(knobs: dict, accusers: dict[int, Zoo], public: Zoo | None = None, eps: float | None = None) -> dict[int, Key]:
    """Each accuser's false key: its test images pushed toward its random targets within
    ``eps`` (default ``accuser_eps``) on the ensemble of its surrogates, by ``accuser_method``
    (torchattacks, :func:`wmlib.accuser.transfer_key`); with the ``public`` zoo, the adaptive key
    (:func:`adaptive_key`, weight ``adaptive_lam``)."""
    eps = knobs["accuser_eps"] if eps is None else eps
    out = {}
    for a, zoo in accusers.items():
        images, targets = accuser_images(knobs, a)
        # steps of 5 eps / steps: the ball crossed five times over, so most steps move along its surface, as Liu et
        # al.'s 100 steps of 0.03 do
        kw = dict(eps=eps, steps=knobs["accuser_steps"], alpha=5 * eps / knobs["accuser_steps"], seed=a)
        out[a] = (adaptive_key(list(zoo.models.values()), list(public.models.values()), images, targets,
                               lam=knobs["adaptive_lam"], **kw) if public is not None
                  else transfer_key(list(zoo.models.values()), images, targets, method=knobs["accuser_method"], **kw))
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
    """The four rules a judge may apply to a label key (for :func:`claims_table`): the paper's
    fixed threshold, the binomial test at chance, the null fitted to the public zoo, and the null
    fitted to the judge's private zoo (both at ``alpha``, each fitted on that accuser's key)."""
    public = {a: zoo.null(k, confidence=confidence) for a, k in keys.items()}
    private = {a: judge.null(k, confidence=confidence) for a, k in keys.items()}
    chance = Null.binomial(1.0 / num_classes)
    return {"paper: key accuracy ≥ τ": lambda a, tau: None if tau is None else Rule("paper", threshold=tau),
            "binomial at chance": lambda a, tau: Rule("binomial", null=chance, alpha=alpha),
            "public zoo null": lambda a, tau: Rule("zoo", null=public[a], alpha=alpha),
            "judge's private zoo null": lambda a, tau: Rule("judge", null=private[a], alpha=alpha)}


def suspect_hits(keys: dict[int, Key], suspects: Zoo) -> dict[tuple[int, str], torch.Tensor]:
    """(accuser, suspect) -> the suspect's hits on that accuser's key."""
    return {(a, name): h for a, key in keys.items() for name, h in suspects.hits(key).items()}


def forged_signature(scheme, oracle: Oracle, key: Key) -> Key:
    """GradSigns' false claim: the accuser draws its own secret (``key``: carriers, projection, its
    own class-T images), reads the suspect's gradient signs through the black-box protocol (Eq. 5)
    and presents the bits it read as its signature: every bit matches the suspect, by construction."""
    g = scheme.gradient(oracle, key)
    bits = scheme.project(key, g) > 0
    return Key(key.x, key.y, {**key.meta, "kind": "extracted-signature"}, {**key.extras, "bits": bits})


def signature_claims(scheme, secret: Key, suspects: Zoo, zoo: Zoo, judge: Zoo, alpha: float,
                     confidence: float | None) -> tuple[pd.DataFrame, dict[str, Key]]:
    """GradSigns' false claim against every suspect: the signature read off it with the accuser's
    ``secret`` (:func:`forged_signature`), its bits read again as the verifier reads them, and the
    verdict under the paper's rule (binomial at ½, τ = 3e-3), the public zoo's null and the judge's
    (both at ``alpha``). Returns one row per (suspect, rule) and the forged keys."""
    rows, forged = [], {}
    for name, model in suspects.models.items():
        key = forged[name] = forged_signature(scheme, Oracle(model), secret)
        matched = scheme.hits(Oracle(model), key)
        for rule, null, level in (("paper: binomial at ½, τ = 3e-3", scheme.paper_null(key), 3e-3),
                                  ("public zoo null", zoo.null(key, scheme, confidence=confidence), alpha),
                                  ("judge's private zoo null", judge.null(key, scheme, confidence=confidence), alpha)):
            v = verify_counts(int(matched.sum()), len(matched), null, level)
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
            use = controlled(null, full, rates[name]) if rates is not None and is_label_scheme(scheme) else null
            m = min(n, len(h))
            rows.append({"entry": entry, "seed": seed, "suspect": name, "key": f"{entry} / seed {seed}",
                         "hit rate": float(h.float().mean()), **verify_once(h, use.critical(m, alpha), m, 1000 * i + j)})
    return pd.DataFrame(rows)


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
        if not is_label_scheme(scheme):
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


def gradsigns_scheme(knobs: dict):
    """The comparison's GradSigns entry built from its settings (for GradSigns' false claim when the
    run's entries leave it out)."""
    return compare.build("gradsigns", compare.ENTRIES["gradsigns"], knobs["schemes"]["gradsigns"])


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
