"""The clean-model zoo: independently trained models without any watermark, shared by every chapter.

A claim is only as good as its null. The zoo is what "no watermark" looks like for a task: several
architectures that fit the task, each trained with several seeds, each on its own random share of
the task's training images (an independent party has its own data from the same distribution).
Every chapter verifies against a null fitted to the zoo (:class:`wmlib.verify.Null`) and measures
its false-claim rate by leaving each zoo model out in turn (:func:`wmlib.verify.claim_table`).

Members are trained once through the train-or-load cache, so every chapter (and the comparison
chapter) that asks for the same task and profile gets the same models.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from . import data, timing
from .profiles import ENV_VAR, PROFILES, ZHANG2018
from .data import Split, Splits
from .keys import Key
from .train import TrainConfig, default_device, evaluate, model_digest, train_classifier
from .verify import LABELS, LabelTrials, Null, Oracle, claim_table, require_claimed, verify_trials

ZOO_SEED = 20180604  # shuffles the training set before ``train_limit`` and the members' shares
# (train_limit, test_limit) of the shared zoo per profile: the task size of the chapters' profiles
# (smoke shrinks every chapter's task to 6,000 / 2,000 images, default to 15,000 training images)
SHARED_LIMITS = {p: (ZHANG2018[p]["train_limit"], ZHANG2018[p]["test_limit"]) for p in PROFILES}

# A member whose training died (seen on an AMD CPU: the Fashion-MNIST zoo's lenet5-s0, SGD 0.05, at 10 % test accuracy,
# answering one class to everything, where an Intel CPU's learned) is not a clean model of the task: its answers widen the
# null until a 30-sample key cannot be claimed at all. Below the recipe's dead_below x chance (DEAD: 1.5; 0 checks nothing,
# for a test's deliberately tiny zoo) it is trained again from another initialisation (seed + RETRY_STRIDE, the same data
# share), at most RETRIES times, and the summary says how often.
DEAD, RETRIES, RETRY_STRIDE = 1.5, 2, 100_000

# The zoo's recipe per profile: architectures that fit the task, each with this many seeds, each
# member trained on its own random ``data_fraction`` of the task's training images. One recipe per
# profile and image kind, shared by every chapter: 28x28 grey (MNIST, Fashion-MNIST) and 32x32 RGB.
_ZOO_COMMON = dict(data_fraction=0.5, batch_size=128, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
                   schedule="cosine", milestones=[], augment=False, dead_below=DEAD)
RECIPES = {
    # 8 models in seconds on 2 CPU cores (fewer leave the 99 % bounds of wmlib.verify.Null too wide to claim anything)
    "smoke": {"grey28": dict(_ZOO_COMMON, archs={"lenet1": 4, "lenet5": 4}, epochs=3, lr={"*": 0.05}),
              "rgb32": dict(_ZOO_COMMON, archs={"resnet20": 2, "vgg11": 2}, epochs=2, lr={"*": 0.05}, augment=True)},
    # >= 10 models: the LeNets Zhang and Namba use, and Carlini & Wagner's net (Zhang's own); about 7 min on 2 cores in
    # `full` (each on half of 60,000 images), a quarter of that in `default` (half of 15,000)
    "default": {"grey28": dict(_ZOO_COMMON, archs={"lenet1": 4, "lenet3": 4, "lenet5": 4, "cw": 2}, epochs=8,
                               lr={"*": 0.05, "cw": 0.01}),
                "rgb32": dict(_ZOO_COMMON, archs={"resnet20": 5, "vgg11": 5}, epochs=30, lr={"*": 0.1}, augment=True)},
    # >= 20 models, on a GPU
    "paper": {"grey28": dict(_ZOO_COMMON, archs={"lenet1": 5, "lenet3": 5, "lenet5": 5, "cw": 5}, epochs=20,
                             lr={"*": 0.05, "cw": 0.01}),
              "rgb32": dict(_ZOO_COMMON, archs={"resnet20": 10, "vgg11": 10}, epochs=40, lr={"*": 0.1}, augment=True)},
}
# full strength: the default recipe (its pool, SHARED_LIMITS, is all of the task's images where default's is a quarter)
RECIPES["full"] = copy.deepcopy(RECIPES["default"])
# the paper's code paths at smoke size (CI): the paper's recipe in batches of 32 (a few hundred steps in seconds on a CPU),
# cut by each chapter's zoo_archs / zoo_epochs knobs (wmlib.profiles.PAPER_SMOKE)
RECIPES["paper-smoke"] = {kind: dict(r, batch_size=32) for kind, r in copy.deepcopy(RECIPES["paper"]).items()}
KNOBS = {"zoo_archs": "archs", "zoo_epochs": "epochs"}  # a chapter's knobs that change its zoo's recipe (None: the profile's)


def zoo_recipe(dataset: str, profile: str, **overrides) -> dict:
    """The zoo recipe of ``profile`` for ``dataset``'s image kind, with ``overrides`` applied."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    s = data.spec(dataset)
    kind = {(1, 28): "grey28", (3, 32): "rgb32"}.get((s.channels, s.image_size))
    if kind is None:
        raise ValueError(f"no zoo recipe for {s.channels}x{s.image_size}x{s.image_size} images ({dataset}); "
                         f"add one to wmlib.zoo.RECIPES")
    recipe = copy.deepcopy(RECIPES[profile][kind])
    unknown = sorted(set(overrides) - set(recipe))
    if unknown:
        raise ValueError(f"unknown zoo recipe field(s) {', '.join(unknown)}; valid: {', '.join(sorted(recipe))}")
    recipe.update(overrides)
    if not recipe["archs"] or any(int(n) < 1 for n in recipe["archs"].values()):
        raise ValueError(f"the zoo needs at least one architecture with >= 1 seed, got {recipe['archs']}")
    if sum(recipe["archs"].values()) < 3:
        raise ValueError("a zoo needs >= 3 models: leave-one-out fits each null on the others (>= 2)")
    if not 0.0 < recipe["data_fraction"] <= 1.0:
        raise ValueError(f"data_fraction must be in (0, 1], got {recipe['data_fraction']}")
    return recipe


def recipe_overrides(knobs: dict) -> dict:
    """The zoo recipe fields that a chapter's knobs change (:data:`KNOBS`; None leaves the profile's)."""
    return {field: knobs[k] for k, field in KNOBS.items() if knobs.get(k) is not None}


def shared_limits(profile: str) -> tuple[int | None, int | None]:
    """``(train_limit, test_limit)`` of the shared zoo's task under ``profile`` (None: all images):
    the pool every clean party of the book draws its share from (:func:`task_pool`)."""
    return SHARED_LIMITS.get(profile, (None, None))


def task_pool(dataset: str, train_limit: int | None = None, test_limit: int | None = None) -> tuple[Split, Split, data.DatasetSpec]:
    """``(pool, test, spec)``: the task's training images every clean party draws its own share
    from (shuffled with :data:`ZOO_SEED`, the first ``train_limit``), and its test images (the first
    ``test_limit`` of the same shuffle)."""
    spec = data.spec(dataset)
    x, y = data.load(dataset, train=True)
    xt, yt = data.load(dataset, train=False)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(ZOO_SEED))[:train_limit]
    test = Split(xt, yt) if test_limit is None else Split(xt, yt).subset(
        torch.randperm(len(yt), generator=torch.Generator().manual_seed(ZOO_SEED))[:test_limit])
    return Split(x[perm], y[perm]), test, spec


def member_share(pool: Split, fraction: float, seed: int) -> Split:
    """The random ``fraction`` of ``pool`` that the clean party with ``seed`` trains on."""
    share = torch.randperm(len(pool), generator=torch.Generator().manual_seed(ZOO_SEED + seed))
    return pool.subset(share[:max(1, int(round(fraction * len(pool))))])


def members(recipe: dict) -> list[tuple[str, int]]:
    """The ``(architecture, s)`` of every member of a zoo ``recipe``, in training order."""
    return [(arch, s) for arch, count in recipe["archs"].items() for s in range(count)]


def _check_seed_base(seed_base) -> None:
    if isinstance(seed_base, bool) or not isinstance(seed_base, int) or seed_base < 100:
        raise ValueError(f"seed_base must be an integer >= 100 (the owners' seeds are 0, 1, ...), got {seed_base!r}")


def _member(dataset: str, recipe: dict, pool: Split, test: Split, spec: data.DatasetSpec, arch: str, s: int,
            seed_base: int, tag: str, device: torch.device) -> tuple[nn.Module, dict]:
    """Train-or-load member ``s`` of ``arch``: its model and its row of the zoo's summary (a run
    that stayed at chance trained again: :data:`DEAD`, the recipe's ``dead_below``)."""
    seed = seed_base + s  # never the owners' seeds (0, 1, ...): a zoo model is nobody's watermarked model
    own = member_share(pool, recipe["data_fraction"], seed)
    name = f"{arch}-s{s}"
    for retry in range(RETRIES + 1):
        cfg = TrainConfig.from_knobs(recipe, lr=recipe["lr"].get(arch, recipe["lr"]["*"]), seed=seed + retry * RETRY_STRIDE)
        model, _, _ = train_classifier(f"{tag}-{dataset}-{name}", arch, Splits(own, Split(own.x[:0], own.y[:0]), test, spec),
                                       cfg, device=device, progress=False)
        acc = evaluate(model, test, device)
        if acc >= recipe["dead_below"] / spec.num_classes:
            break
    else:
        raise RuntimeError(f"zoo member {name} ({dataset}) stayed at chance ({acc:.1%} test accuracy) from {RETRIES + 1} "
                           f"initialisations: lower its learning rate in wmlib.zoo.RECIPES (now {cfg.lr:g})")
    return model, {"model": name, "architecture": arch, "seed": cfg.seed, "training images": len(own),
                   "epochs": cfg.epochs, "test accuracy": acc, "dead runs": retry}


def train_member(dataset: str, profile: str, arch: str, s: int, overrides: dict | None = None,
                 seed_base: int = 1000, tag: str = "zoo") -> dict:
    """Train (or load) one member of the shared zoo of ``dataset`` under ``profile``, exactly as
    :meth:`Zoo.shared` would (same data share, recipe and cache key), and return its summary row:
    the unit of work ``make book`` schedules (:mod:`wmlib.schedule`), so that members train side by
    side before the chapters load them."""
    recipe = zoo_recipe(dataset, profile, **(overrides or {}))
    if (arch, s) not in members(recipe):
        raise ValueError(f"{arch}-s{s} is not a member of the {profile} zoo for {dataset}: {members(recipe)}")
    _check_seed_base(seed_base)
    pool, test, spec = task_pool(dataset, *shared_limits(profile))
    return _member(dataset, recipe, pool, test, spec, arch, s, seed_base, tag, default_device())[1]


@dataclass
class Zoo:
    """Named clean models for one task (``dataset`` + ``profile`` recipe) and what they answer."""
    dataset: str
    profile: str
    models: dict[str, nn.Module]
    summary: pd.DataFrame                       # one row per member: architecture, seed, images, test accuracy
    digests: dict[str, str] = field(default_factory=dict)
    _hits: dict[tuple, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.models)

    @classmethod
    def load(cls, dataset: str, profile: str, train_limit: int | None = None, test_limit: int | None = None,
             device: torch.device | None = None, progress: bool = True, seed_base: int = 1000, tag: str = "zoo",
             **overrides) -> "Zoo":
        """Train-or-load the zoo of ``profile`` (:data:`RECIPES`) for ``dataset``.
        ``train_limit`` / ``test_limit`` shrink the task as the chapter's profile does; ``overrides``
        change recipe fields (e.g. ``archs={"lenet5": 3}``). Member ``s`` of an architecture is
        trained with seed ``seed_base + s`` under the cache tag ``{tag}-{dataset}-{arch}-s{s}``: another
        party's clean models (an accuser's, a judge's private zoo) are the same recipe with its own
        seeds and tag."""
        device = device or default_device()
        recipe = zoo_recipe(dataset, profile, **overrides)
        _check_seed_base(seed_base)
        pool, test, spec = task_pool(dataset, train_limit, test_limit)
        models, rows, digests = {}, [], {}
        for arch, s in tqdm(members(recipe), desc=f"clean models: {tag} ({dataset})", disable=not progress, leave=False):
            model, row = _member(dataset, recipe, pool, test, spec, arch, s, seed_base, tag, device)
            models[row["model"]], digests[row["model"]] = model, model_digest(model)
            rows.append(row)
        return cls(dataset, profile, models, pd.DataFrame(rows).set_index("model"), digests)

    @classmethod
    def shared(cls, dataset: str, profile: str, device: torch.device | None = None, progress: bool = True,
               **overrides) -> "Zoo":
        """The zoo that ``python -m wmlib.zoo`` builds for ``profile`` (and ``make book`` before the
        chapters): the task at the size of :data:`SHARED_LIMITS`, whatever share of it a chapter's
        owner trains on. An independent party has its own data from the task's distribution; it
        need not hold as many images as the owner. ``overrides`` change recipe fields."""
        train_limit, test_limit = shared_limits(profile)
        return cls.load(dataset, profile, train_limit, test_limit, device, progress, **overrides)

    @classmethod
    def for_chapter(cls, knobs: dict, device: torch.device | None = None, progress: bool = True) -> "Zoo":
        """The shared zoo of a chapter's resolved ``knobs``: its dataset and profile, with the recipe
        cut by its ``zoo_archs`` / ``zoo_epochs`` knobs where they are set."""
        return cls.shared(knobs["dataset"], knobs["profile"], device, progress, **recipe_overrides(knobs))

    def subset(self, names) -> "Zoo":
        """The members ``names`` only (e.g. :meth:`probe`), answering as they do here."""
        missing = [n for n in names if n not in self.models]
        if missing or not names:
            raise ValueError(f"not members of this zoo: {', '.join(missing) or '(none named)'}; members: {', '.join(self.models)}")
        return Zoo(self.dataset, self.profile, {n: self.models[n] for n in names}, self.summary.loc[list(names)],
                   {n: self.digests[n] for n in names if n in self.digests})

    def probe(self) -> list[str]:
        """The members that may choose a setting from what clean models answer: the first half of
        each architecture's seeds (rounded up); the others stay out of sample for the false claims of
        that setting. (One seed each was too few: in smoke, two models left four classes at 0 %, and
        the tie went to a class the whole zoo gives 6 % of the triggers.)"""
        first = self.summary.groupby("architecture", sort=False).cumcount()
        half = (self.summary.groupby("architecture", sort=False)["architecture"].transform("size") + 1) // 2
        return list(self.summary.index[first < half])

    def oracles(self) -> dict[str, Oracle]:
        return {name: Oracle(m) for name, m in self.models.items()}

    def hits(self, key: Key, scheme: LabelTrials = LABELS) -> dict[str, torch.Tensor]:
        """Per member, one bool per trial of ``key`` (cached per key and trial). The trial is the
        scheme's (:class:`~wmlib.verify.LabelTrials`): by default a key query answered with the
        key's label; GradSigns counts signature bits."""
        d = (key.digest(), scheme.hits_id())
        if d not in self._hits:
            self._hits[d] = {name: scheme.hits(o, key) for name, o in self.oracles().items()}
        return self._hits[d]

    def rates(self, key: Key, scheme: LabelTrials = LABELS) -> pd.Series:
        """Each member's hit rate (key accuracy, or matched bits / N): the statistic the null is fitted to."""
        return pd.Series({name: h.float().mean().item() for name, h in self.hits(key, scheme).items()},
                         name="hit rate")

    def class_shares(self, x: torch.Tensor) -> pd.Series:
        """How often the zoo's members, pooled, answer each class for the images ``x``: which label
        an innocent model gives a trigger (e.g. to pick a target class that no clean model gives)."""
        k = data.spec(self.dataset).num_classes
        counts = sum(torch.bincount(o.predict(x), minlength=k) for o in self.oracles().values())
        return pd.Series((counts.double() / counts.sum()).tolist(), name="share of zoo answers")

    def _floor(self, scheme: LabelTrials) -> float:
        return scheme.chance(data.spec(self.dataset).num_classes)

    def null(self, key: Key, scheme: LabelTrials = LABELS, exclude: str | None = None,
             confidence: float | None = 0.99) -> Null:
        """The null for ``key`` under ``scheme``'s trial, fitted on every member but ``exclude``,
        never below the trial's chance rate (no claim is easier than against a random guess)."""
        return self.fit_null(self.hits(key, scheme), scheme, exclude, confidence)

    def fit_null(self, hits: dict[str, torch.Tensor], scheme: LabelTrials = LABELS, exclude: str | None = None,
                 confidence: float | None = 0.99) -> Null:
        """:meth:`null` on hit vectors of (some of) the members read already: e.g. a subset of them,
        or signature bits matched against another key's bits without re-reading the gradients."""
        return Null.from_hits(hits, exclude=exclude, digests=self.digests, floor=self._floor(scheme), confidence=confidence)

    def gate(self, marked: dict[str, tuple[Oracle, Key]], n_queries: int | None, alpha: float, remedy: str,
             confidence: float | None = 0.99, seed: int = 0, scheme: LabelTrials = LABELS,
             keep_out_of_reach: bool = False) -> pd.DataFrame:
        """The embedding gate of :func:`wmlib.verify.require_claimed`: verify every watermarked
        model (name -> its oracle and its own key) against this zoo's null; returns the verdicts,
        or raises naming the models that were not claimed and ``remedy`` (the knobs to raise).
        ``keep_out_of_reach``: a model whose key no count could get claimed (the null's threshold
        above 100 % at this size: a fact about the key and the zoo, not an embedding that more
        training mends) is returned unclaimed instead, for the caller to leave out and say so."""
        verdicts = {name: verify_trials(o, k, scheme, self.null(k, scheme, confidence=confidence), alpha, n_queries, seed)
                    for name, (o, k) in marked.items()}
        require_claimed({n: v for n, v in verdicts.items() if not (keep_out_of_reach and v.out_of_reach)}, remedy)
        return pd.DataFrame({name: v.as_dict() for name, v in verdicts.items()}).T

    def claims(self, key: Key, suspects: dict[str, torch.Tensor], n_queries: int, alpha: float = 0.01,
               seed: int = 0, confidence: float | None = 0.99, scheme: LabelTrials = LABELS, **null_kw) -> pd.DataFrame:
        """:func:`wmlib.verify.claim_table` for ``key``: each member against the others (false
        claims; in sample for the members that chose one of ``scheme``'s settings), every suspect
        (hit vectors of the same trial) against the zoo. ``null_kw`` go to
        :meth:`wmlib.verify.Null.fit` (e.g. ``overdispersion=False``)."""
        return claim_table(self.hits(key, scheme), suspects, n_queries, alpha, seed, digests=self.digests,
                           in_sample=scheme.chosen_on(), floor=self._floor(scheme), confidence=confidence, **null_kw)


def main(argv: list[str] | None = None) -> int:
    """``python -m wmlib.zoo DATASET ... [--profile P]``: train (or load) the zoo of each task up
    front and print its table, so that every chapter of a build finds it in the cache."""
    import argparse
    import os
    import sys
    import time

    parser = argparse.ArgumentParser(prog="python -m wmlib.zoo", description=main.__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--profile", default=None, help=f"{' | '.join(PROFILES)} (default: $WMLIB_PROFILE or default)")
    args = parser.parse_args(argv)
    profile = args.profile or os.environ.get(ENV_VAR) or "default"
    try:
        for name in args.datasets:
            t0, work = time.perf_counter(), timing.snapshot()
            z = Zoo.shared(name, profile)
            done = timing.rates(timing.since(work))
            speed = f", {done['train_images_per_s']:,.0f} training img/s" if done["train_images_per_s"] else ""
            print(f"== clean-model zoo for {name} ({profile}): {len(z)} models, {time.perf_counter() - t0:.0f} s "
                  f"({done['trainings']} trained, {done['epochs']} epochs{speed})")
            print(z.summary.to_string(float_format=lambda v: f"{v:.4f}"))
    except (ValueError, data.DataUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
