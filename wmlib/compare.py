"""The comparison chapter: every registered watermark under one attack suite and one verifier.

An *entry* is a watermark of the catalogue (:data:`wmlib.schemes.CATALOGUE`): its name, and its
configured :class:`~wmlib.schemes.Scheme` built from the comparison's settings. A cell (entry x
owner seed x attack, :class:`~wmlib.cells.Cell`) embeds the entry's watermark for that owner
(train-or-load, :func:`wmlib.schemes.watermark`), applies the attack from
:data:`wmlib.attacks.REGISTRY` to it and verifies the suspect with the scheme's own trials against
the clean-model zoo's null. :func:`sweep` runs the whole matrix in two stages on the Ray engine of
:mod:`wmlib.cells`; :func:`matrix`, :func:`embedding_table` and :func:`which_scheme_when` summarise
it in numeric columns (formatting is the page's business).
"""
from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from . import attacks as _attacks
from . import data, timing
from .schemes import CATALOGUE, Make, Scheme, build
from .schemes.base import Watermarked, watermark
from .cells import Cell, cell_context, claim_rate, run
from .train import TrainConfig, evaluate, train_classifier
from .verify import Oracle, false_claim_pairs, oracle_accuracy, pair_rate, verify_trials

Suite = dict[str, _attacks.Attack]


def grid(entries: list[str], seeds: list[int], attacks: list[str], registry: dict[str, Make] | None = None,
         suite: Suite | None = None) -> list[Cell]:
    """Every (entry, seed, attack) cell; unknown entry or attack names list the valid ones. ``registry``
    and ``suite`` default to the registered entries and attacks."""
    registry = CATALOGUE if registry is None else registry
    suite = _attacks.REGISTRY if suite is None else suite
    for names, valid, what in ((entries, registry, "entry"), (attacks, suite, "attack")):
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise ValueError(f"unknown comparison {what}(s) {', '.join(map(repr, unknown))}; choose from: {', '.join(valid)}")
    return [Cell(e, int(s), a) for e in entries for s in seeds for a in attacks]


def entry_context(entries: dict[str, Make], schemes: dict[str, dict]) -> dict[str, dict]:
    """Each entry's settings (``schemes[name]``, ``{}`` if none) and what its scheme is under them
    (its repr, every field): the sweep's context holds them, so that a changed scheme does not
    reuse saved results, and a cell builds its scheme from them."""
    return {name: {"settings": schemes.get(name, {}), "scheme": repr(build(name, schemes.get(name, {}), entries))}
            for name in entries}


RESULTS_VERSION = 3
"""What a saved cell result means, beyond its knobs: raised whenever the code changes what a cell computes for the
same knobs (2: the thief's own seed and data; 3: the unattacked cell records each zoo model's one verification, its
pair, 2026-12-07), so that no result of the old meaning is reloaded."""

# which cells run, the entries' own settings (in ``entries``) and the knockoff's budget curve (cells of its own)
SWEEP_KNOBS = ("entries", "seeds", "attacks", "schemes", "knockoff_budgets", "reference_thief_attacks")


def make_context(knobs: dict, zoo: dict | None = None, registry: dict[str, Make] | None = None) -> dict:
    """The setting every cell of a sweep shares (and its results' cache key): the task, the knobs
    that decide a cell (not which cells run), the zoo (Zoo.load arguments; None: the book's shared
    zoo) and what each chosen entry's scheme is."""
    from .zoo import KNOBS, recipe_overrides, shared_limits
    registry = CATALOGUE if registry is None else registry
    cell_knobs = {k: v for k, v in knobs.items() if k not in SWEEP_KNOBS and k not in KNOBS}  # the zoo's: in "zoo"
    cut = recipe_overrides(knobs)
    if zoo is None and cut:  # the shared zoo, cut by the knobs: its Zoo.load arguments
        zoo = dict(zip(("train_limit", "test_limit"), shared_limits(knobs["profile"])), **cut)
    return {"results_version": RESULTS_VERSION, "dataset": knobs["dataset"], "profile": knobs["profile"],
            "knobs": cell_knobs, "zoo": zoo,
            "entries": entry_context({n: registry[n] for n in knobs["entries"]}, knobs.get("schemes", {}))}


def suite_table(names: list[str], suite: Suite | None = None) -> pd.DataFrame:
    """One row per attack of ``names``: its side, what it applies to and what the thief does."""
    suite = _attacks.REGISTRY if suite is None else suite
    return pd.DataFrame([{"attack": a.name, "side": a.side, "applies to": a.only or "every scheme",
                          "what the thief does": a.about} for a in (suite[n] for n in names)])


def attack_knobs(names: list[str], knobs: dict, suite: Suite | None = None) -> pd.DataFrame:
    """One row per attack of ``names``: the knobs it reads (its own and the thief's recipe and
    budget it declares) with their values in ``knobs``: what the thief knows and spends."""
    suite = _attacks.REGISTRY if suite is None else suite
    return pd.DataFrame([{"attack": n, "knobs": ", ".join(f"{k} = {knobs[k]}" for k in sorted(suite[n].knobs) if k in knobs)
                          or "—"} for n in names])


# --------------------------------------------------------------------------- one cell

@functools.lru_cache(maxsize=8)
def _splits(dataset: str, thief_fraction: float, seed: int, train_limit, test_limit):
    return data.owner_thief_split(dataset, thief_fraction, seed=seed, train_limit=train_limit, test_limit=test_limit)


@functools.lru_cache(maxsize=4)
def _zoo(dataset: str, profile: str, zoo_json: str):
    from .zoo import Zoo
    args = json.loads(zoo_json)
    return Zoo.shared(dataset, profile, progress=False) if args is None else Zoo.load(dataset, profile, progress=False, **args)


@dataclass
class Owner:
    """One owner's side of a cell: its data, clean model and watermarked model."""
    splits: data.Splits
    clean: nn.Module
    clean_seconds: float
    marked: Watermarked


def embed_entry(name: str, scheme: Scheme, seed: int, context: dict) -> Owner:
    """Train (or load) owner ``seed``'s clean model and ``scheme``'s watermarked model."""
    knobs = context["knobs"]
    splits = _splits(context["dataset"], knobs["thief_fraction"], seed, knobs.get("train_limit"), knobs.get("test_limit"))
    tcfg = TrainConfig.from_knobs(knobs, seed=seed)
    clean = train_classifier(f"compare-clean-s{seed}", knobs["model"], splits, tcfg, progress=False)[:2]
    marked, _, chist = watermark(scheme, f"compare-{name}-s{seed}", knobs["model"], splits, tcfg, seed, clean=clean,
                                 progress=False)
    return Owner(splits, clean[0], sum(chist.seconds), marked)


def worst_case(frame: pd.DataFrame) -> pd.Series:
    """Which rows of a sweep's cells or of its matrix are a worst-case search (``oracle``; False
    where a frame has no such column or a row no value)."""
    return frame["oracle"].fillna(False).astype(bool) if "oracle" in frame else pd.Series(False, index=frame.index)


def thief_seed(owner_seed: int) -> int:
    """The thief's own seed in the cell of owner ``owner_seed``: fixed, and never a seed any owner
    draws a key with (a key drawn from a seed alone, such as uniform noise or GradSigns' signature,
    would otherwise be the thief's to regenerate)."""
    return int(hashlib.sha256(f"thief of owner {owner_seed}".encode()).hexdigest()[:8], 16)


THIEF_VIEWS = ("book", "reference")
"""Who the thief is: the book's (its own share of the training images, ``thief_fraction``) or the
reference toolkit's (:func:`reference_thief`), set by a context's ``thief_view`` knob (absent: the book's)."""


def reference_thief(owner: Owner, extraction: bool, key_images: set[str]) -> data.Split:
    """The reference toolkit's thief (Lukas et al.'s WRT): the first third of the task's training
    images for an attack that fine-tunes the stolen model, all of them for model extraction
    (``extraction``), true labels kept. The training images are the owner's and the book thief's
    shares together, in the owner split's seeded order (the thief's share first), less every image
    of the owner's keys (``key_images``, :func:`image_digests`): WRT's thief holds images the owner
    trained on, and a key built from a training image (Namba & Sakuma's relabelled ones) is never
    the thief's."""
    pool = data.Split(torch.cat([owner.splits.thief.x, owner.splits.owner.x]),
                      torch.cat([owner.splits.thief.y, owner.splits.owner.y]))
    keep = torch.tensor([d not in key_images for d in row_digests(pool.x)])
    pool = pool.subset(keep.nonzero().flatten())
    return pool if extraction else pool.subset(slice(0, len(pool) // 3))


def threat(cell: Cell, owner: Owner, scheme: Scheme, knobs: dict, attack: _attacks.Attack | None = None,
           queried=None, key_images: set[str] | None = None) -> _attacks.Threat:
    """What the thief of ``cell`` has: the owner's thief split (with its true labels), its own seed
    (:func:`thief_seed`), its fine-tuning recipe and budget, the public scheme. With ``thief_view``
    'reference' in ``knobs``, the reference toolkit's thief (:func:`reference_thief`, which needs the
    owner's ``key_images``) instead of the book's share. A worst-case search (``attack.oracle``) gets
    an :class:`~wmlib.attacks.OracleThreat`, which adds the owner's statistic on the ``queried`` key."""
    seed = thief_seed(cell.seed)
    view = knobs.get("thief_view", "book")
    if view not in THIEF_VIEWS:
        raise ValueError(f"thief_view must be one of {', '.join(THIEF_VIEWS)}; got {view!r}")
    if view == "reference":
        if key_images is None:
            raise ValueError("the reference thief's images leave out the owner's keys: give key_images")
        thief = reference_thief(owner, attack is not None and attack.extraction, key_images)
    else:
        thief = owner.splits.thief
    fields = dict(thief=thief, spec=owner.splits.spec, seed=seed,
                  finetune=_attacks.finetune_config(knobs, seed=seed), budget=knobs.get("budget"), settings=knobs,
                  model_name=knobs["model"], scheme=scheme,
                  tag=f"compare-{'ref' if view == 'reference' else ''}thief-{cell.entry}-s{cell.seed}")
    if attack is not None and attack.oracle:
        return _attacks.OracleThreat(**fields, hit_rate=lambda oracle: float(scheme.hits(oracle, queried).float().mean()))
    return _attacks.Threat(**fields)


def row_digests(x) -> list[str]:
    """The digest of each uint8 image of ``x`` (its exact pixels), in order."""
    flat = x.contiguous().view(len(x), -1).numpy()
    return [hashlib.sha1(row.tobytes()).hexdigest() for row in flat]


def image_digests(x) -> set[str]:
    """One digest per uint8 image of ``x`` (:func:`row_digests`), as a set."""
    return set(row_digests(x))


def check_public_images(entries: dict[str, Scheme], suite: Suite, knobs: dict, task: str) -> None:
    """Refuse, when the knobs are read, an attack whose public images (:meth:`Attack.public_images`)
    may share an image with a chosen entry's keys or held-out keys (:meth:`Scheme.public_images`)."""
    spec = data.spec(task)
    for a in suite.values():
        for theirs in a.public_images(knobs, spec):
            for name, scheme in entries.items():
                for ours in scheme.public_images(task):
                    if data.may_overlap(theirs, ours):
                        split = lambda t: f"{t[0]} ({'training' if t[1] else 'test'} split, {t[2]}'s half)"  # noqa: E731
                        raise ValueError(f"attack {a.name!r} uses {split(theirs)}, which may share images with entry "
                                         f"{name!r}'s keys from {split(ours)}: an attack must never hold a key image")


def cell_images(attack: _attacks.Attack, t: _attacks.Threat) -> dict:
    """What the thief of a cell trains or queries with before it runs, by name: its own share and
    the attack's public images (None where it has none)."""
    return {"the thief's own images": t.thief.x, f"{attack.name}'s public images": attack.images(t)}


def check_disjoint(key_images: set[str], images: dict) -> None:
    """The same at run time, image by image: none of ``images`` (name -> uint8 images or None: the
    thief's share and the attack's public images before it runs, what it made after) is one of the
    owner's ``key_images`` (:func:`image_digests` of its keys)."""
    for what, x in images.items():
        shared = key_images & image_digests(x) if x is not None else set()
        if shared:
            raise RuntimeError(f"{what} share {len(shared)} image(s) with the owner's keys")


def run_cell(cell: Cell, context: dict, entries: dict[str, Make], suite: Suite | None = None) -> dict:
    """Embed (train-or-load) ``cell``'s watermark with its seed, attack it, and verify the suspect
    against the zoo's null. ``context`` holds the task and its knobs: ``dataset``, ``profile``,
    ``knobs`` (model, training and attack knobs), and ``zoo`` (Zoo.load arguments, or None for the
    book's shared zoo). An attack that does not apply returns its reason instead of a verdict. The
    unattacked cell ('none') also measures the embedding (accuracy, time) and the key's false
    claims on the zoo (each member against a null fitted on the others)."""
    t0, work = time.perf_counter(), timing.snapshot()
    knobs = context["knobs"]
    scheme = build(cell.entry, context["entries"][cell.entry]["settings"], entries)
    attack = (_attacks.REGISTRY if suite is None else suite)[cell.attack]
    why_not = attack.applies_to(scheme)
    if why_not:
        return {"applies": False, "reason": why_not}
    owner = embed_entry(cell.entry, scheme, cell.seed, context)
    zoo = _zoo(context["dataset"], context["profile"], json.dumps(context.get("zoo"), sort_keys=True))
    full = owner.marked.verify_key
    null = zoo.null(full, scheme, confidence=knobs["zoo_confidence"])
    queried = scheme.queries(full, knobs["n_queries"], cell.seed)
    key_images = image_digests(owner.marked.key.x) | image_digests(owner.marked.held_out.x)
    t = threat(cell, owner, scheme, knobs, attack, queried, key_images)
    check_disjoint(key_images, cell_images(attack, t))
    try:
        suspect = attack.apply(owner.marked.model, t)
    except _attacks.NotApplicable as why:
        return {"applies": False, "reason": str(why)}
    check_disjoint(key_images, {f"the images {attack.name} made": suspect.parts.get("images")})  # keys of its own
    v = verify_trials(suspect.oracle, queried, scheme, null, knobs["alpha"])
    seen = attack.owner_report(suspect, t, _attacks.OwnerView(
        queried, owner.splits.test, lambda oracle: float(scheme.hits(oracle, queried).float().mean())))
    out = {"applies": True, "claimed": v.claimed, "statistic": v.statistic, "threshold": v.threshold,
           "p_value": v.p_value, "queries": v.queries, "test_acc": oracle_accuracy(suspect.oracle, owner.splits.test),
           "oracle": attack.oracle, "acted": bool(suspect.report.get("acted", True)),
           **{f"report_{k}": val for k, val in {**suspect.report, **seen}.items()}}
    twin = scheme.twin(full)  # the key without its trigger: answered alike, the model learnt a class, not the key
    if twin is not None:
        out["twin_statistic"] = float(scheme.hits(suspect.oracle, twin).float().mean())
    if cell.attack == "none":
        table = zoo.claims(full, {}, scheme.trial_count(full, knobs["n_queries"]), knobs["alpha"],
                           cell.seed, confidence=knobs["zoo_confidence"], scheme=scheme)
        pairs = false_claim_pairs({cell.entry: table})  # each zoo model verified once on this owner's key
        out.update({"clean_acc": evaluate(owner.clean, owner.splits.test), "embed_seconds": owner.marked.seconds,
                    "clean_seconds": owner.clean_seconds, "loaded": owner.marked.loaded, "key_size": len(owner.marked.key),
                    "false_claims": int(pairs["claimed"].sum()), "false_claim_pairs": pairs.drop(columns="key").to_dict("records"),
                    "zoo_models": len(zoo)})
    out["seconds"] = time.perf_counter() - t0  # this cell's wall time in its worker (embedding included if trained here)
    out.update(timing.as_fields(timing.since(work)))  # what it trained and evaluated
    return out


# --------------------------------------------------------------------------- precision against the seed spread

def precision_runs(entries: list[str], seeds: list[int], context: dict, precisions=("fp32", "bf16"),
                   registry: dict[str, Make] | None = None) -> pd.DataFrame:
    """Each entry embedded (train-or-load, clean model included) with each owner seed at each
    training precision, and verified unattacked: one row per (entry, precision, seed) with the
    watermarked model's test accuracy, its hit rate on the verification key and whether the zoo's
    null claims it. Evaluation is float32 at every precision (:func:`wmlib.train.fit`)."""
    registry = CATALOGUE if registry is None else registry
    zoo = _zoo(context["dataset"], context["profile"], json.dumps(context.get("zoo"), sort_keys=True))
    rows = []
    for name in entries:
        scheme = build(name, context["entries"][name]["settings"], registry)
        for precision in precisions:
            ctx = {**context, "knobs": {**context["knobs"], "precision": precision}}
            for seed in seeds:
                owner = embed_entry(name, scheme, seed, ctx)
                key, knobs = owner.marked.verify_key, ctx["knobs"]  # verified as the unattacked cell of the sweep is
                oracle, null = Oracle(owner.marked.model), zoo.null(key, scheme, confidence=knobs["zoo_confidence"])
                v = verify_trials(oracle, scheme.queries(key, knobs["n_queries"], seed), scheme, null, knobs["alpha"])
                rows.append({"entry": name, "precision": precision, "seed": seed,
                             "test accuracy": evaluate(owner.marked.model, owner.splits.test),
                             "key hit rate": float(scheme.hits(oracle, key).float().mean()),
                             "claimed": bool(v.claimed), "embed seconds": owner.marked.seconds})
    return pd.DataFrame(rows)


def precision_spread(runs: pd.DataFrame, metrics=("test accuracy", "key hit rate")) -> pd.DataFrame:
    """Per entry and metric of :func:`precision_runs`: the float32 seeds' range (the seed-to-seed
    spread), the bfloat16 mean against the float32 mean, and whether their difference stays within
    that range (``within spread``); ``claimed`` counts the claimed seeds at each precision."""
    out = []
    for entry, g in runs.groupby("entry", sort=False):
        fp, bf = g[g.precision == "fp32"], g[g.precision == "bf16"]
        for m in metrics:
            spread = float(fp[m].max() - fp[m].min())
            diff = float(bf[m].mean() - fp[m].mean())
            out.append({"entry": entry, "metric": m, "fp32 seeds": ", ".join(f"{v:.4f}" for v in fp[m]),
                        "bf16 seeds": ", ".join(f"{v:.4f}" for v in bf[m]), "fp32 spread": spread,
                        "bf16 - fp32 (means)": diff, "within spread": abs(diff) <= spread,
                        "claimed (fp32 / bf16)": f"{int(fp.claimed.sum())}/{len(fp)} / {int(bf.claimed.sum())}/{len(bf)}"})
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- the sweep and its tables

def unclaimed_reason(entry: str, seed: int, unattacked: dict) -> str:
    """Why the attack cells of a watermark not claimed unattacked report nothing (``unattacked``: its
    unattacked cell, empty when that cell failed): it did not embed, or, when no hit rate could have been claimed (the null's
    threshold above 100 %), the clean zoo answers its key too often and too variously: then it is out
    of reach whatever the model answers, which is said with what the model does answer."""
    if not unattacked:
        return f"no unattacked verdict: the unattacked cell of {entry} (seed {seed}) failed"
    if unattacked.get("threshold", 0.0) > 1.0:
        return (f"out of reach: {entry} (seed {seed}) answers {unattacked['statistic']:.0%} of its key queries, but the "
                f"clean zoo answers them so often and so variously that no count of {int(unattacked['queries'])} queries "
                f"could be claimed (threshold {unattacked['threshold']:.0%})")
    return f"the watermark did not embed: {entry} (seed {seed}) is not claimed unattacked"


def sweep(entries: list[str], seeds: list[int], attacks: list[str], context: dict,
          registry: dict[str, Make] | None = None, suite: Suite | None = None, **run_kw) -> pd.DataFrame:
    """The whole matrix in two stages of Ray tasks: every (entry, seed) embedded and verified
    unattacked first, then every attack on the watermarks that were claimed. A watermark that is
    not claimed unattacked has no attack verdicts: its attack cells say why (:func:`unclaimed_reason`).
    One row per cell: ``status`` is 'ok', 'n/a' (with ``reason``) or 'no action' (the attack found
    nothing to act on, e.g. Neural Cleanse flagged no class: the model is served as it was, which is
    not a survival); ``oracle`` marks a worst-case search. ``registry`` and ``suite``
    (the entries and attacks; default: the registered ones) travel with the tasks to the workers."""
    registry = CATALOGUE if registry is None else registry
    suite = _attacks.REGISTRY if suite is None else suite
    fn = functools.partial(run_cell, entries=registry, suite=suite)
    context = {**context, "owned_knobs": _attacks.owned_knobs(suite)}  # a cell's result: its attack's knobs only
    attacks = [a for a in attacks if a != "none"]  # 'none' is the first stage
    first = run(grid(entries, seeds, ["none"], registry, suite), fn, context, **run_kw)
    embedded = {(c.entry, c.seed) for c, r in first.items() if r.get("claimed")}
    schemes = {e: build(e, context["entries"][e]["settings"], registry) for e in entries}

    def reason(c: Cell) -> str | None:
        return suite[c.attack].applies_to(schemes[c.entry])

    later = [c for c in grid(entries, seeds, attacks, registry, suite) if (c.entry, c.seed) in embedded and not reason(c)]
    results = {**first, **(run(later, fn, context, **run_kw) if later else {})}
    unattacked = {(c.entry, c.seed): r for c, r in first.items()}
    rows = []
    for c in grid(entries, seeds, ["none", *attacks], registry, suite):
        r = results.get(c) or {"applies": False, "reason": reason(c) or unclaimed_reason(c.entry, c.seed,
                                                                                          unattacked.get((c.entry, c.seed), {}))}
        status = ("ok" if r.get("acted", True) else "no action") if r["applies"] else "n/a"
        rows.append({"entry": c.entry, "seed": c.seed, "attack": c.attack, "status": status,
                     **{k: v for k, v in r.items() if k != "applies"}, "oracle": suite[c.attack].oracle})
    return pd.DataFrame(rows)


def knob_curve(entry: str, seed: int, attack: str, knob: str, values: list, context: dict,
               registry: dict[str, Make] | None = None, suite: Suite | None = None) -> pd.DataFrame:
    """One cell run again at each value of one of its attack's knobs (e.g. the knockoff's query
    budget), in this process: one row per value with the verdict, the thief's test accuracy and its
    report. Its models go through the model cache; the rows are not saved."""
    registry = CATALOGUE if registry is None else registry
    suite = _attacks.REGISTRY if suite is None else suite
    if knob not in suite[attack].knobs:
        raise ValueError(f"{knob!r} is not a knob of the attack {attack!r}; its knobs: {', '.join(sorted(suite[attack].knobs))}")
    rows = []
    for v in values:
        ctx = {**context, "knobs": {**context["knobs"], knob: v}, "owned_knobs": _attacks.owned_knobs(suite)}
        r = run_cell(Cell(entry, int(seed), attack), cell_context(Cell(entry, int(seed), attack), ctx), registry, suite)
        rows.append({knob: v, **{k: r.get(k) for k in ("applies", "claimed", "statistic", "threshold", "test_acc")},
                     **{k: val for k, val in r.items() if k.startswith("report_")}})
    return pd.DataFrame(rows)


def _accuracy_loss(cells: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Per cell of ``rows``: the test accuracy of the same (entry, seed)'s unattacked model in
    ``cells`` (``stolen``), and what the thief's model lost against it (``loss``)."""
    before = cells[(cells.attack == "none") & (cells.status == "ok")].set_index(["entry", "seed"])["test_acc"]
    stolen = before.reindex(list(zip(rows["entry"], rows["seed"]))).to_numpy()
    return pd.DataFrame({"stolen": stolen, "loss": stolen - rows["test_acc"].to_numpy()}, index=rows.index)


def matrix(cells: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per (entry, attack): whether the attack is a worst-case search (``oracle``: an upper
    bound, not a thief), claims over the seeds it acted on (``claimed`` of ``seeds``) with the exact
    ``confidence`` interval, the mean key statistic (hit rate or matched bits), the thief's mean
    test accuracy and what the attack cost it (against the same seed's unattacked model), the
    queries per verification, or the reason the attack does not apply."""
    rows = []
    oracle = worst_case(cells)
    for (entry, attack), g in cells.groupby(["entry", "attack"], sort=False):
        ok, idle = g[g.status == "ok"], g[g.status == "no action"]
        worst = bool(oracle.loc[g.index].any())
        if ok.empty:
            rows.append({"entry": entry, "attack": attack, "status": "no action" if len(idle) else "n/a", "oracle": worst,
                         **({"no action": len(idle)} if len(idle) else {}),
                         "reason": f"nothing to act on in {len(idle)} seed(s)" if len(idle) else g["reason"].iloc[0]})
            continue
        note = [f"{len(idle)} seed(s) with nothing to act on"] if len(idle) else []
        if len(ok) + len(idle) < len(g):
            note.append(f"{len(g) - len(ok) - len(idle)} seed(s) n/a: {g[g.status == 'n/a'].reason.iloc[0]}")
        rate, lo, hi = claim_rate(ok["claimed"].tolist(), confidence)
        rows.append({"entry": entry, "attack": attack, "status": "ok", "oracle": worst, "claimed": int(ok["claimed"].sum()),
                     "seeds": len(ok), "no action": len(idle), "claim rate": rate, "ci low": lo, "ci high": hi, "statistic": ok["statistic"].mean(),
                     "threshold": ok["threshold"].mean(), "test accuracy": ok["test_acc"].mean(),
                     "accuracy cost": float(_accuracy_loss(cells, ok)["loss"].mean()),
                     "queries": ok["queries"].mean(), "reason": "; ".join(note)})
    out = pd.DataFrame(rows).set_index(["entry", "attack"])
    for column in ("claimed", "seeds", "no action"):  # counts stay integers where a row has them
        if column in out:
            out[column] = out[column].astype("Int64")
    return out


def zoo_pairs(cells: pd.DataFrame) -> pd.DataFrame:
    """The (zoo model, key) pairs of the unattacked cells: each zoo model verified once against the
    null of the others on each owner's key (entry / seed), its outcome and claim probability."""
    rows = [{**p, "key": f"{r['entry']} / seed {r['seed']}", "entry": r["entry"]}
            for _, r in cells[cells.attack == "none"].iterrows() for p in r["false_claim_pairs"]]
    return pd.DataFrame(rows, columns=["suspect", "key", "entry", "claimed", "claim probability"])


def embedding_table(cells: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per entry, from its unattacked cells: how often it embedded (``embedded`` of ``seeds``:
    claimed on its own key), the test accuracy against the same owner's clean model, the embedding
    time against training the clean model, the queries per verification, and the false claims on
    the clean zoo: the (zoo model, key) pairs claimed (each model verified once per owner seed,
    leave-one-out) with the exact ``confidence`` upper bound over the models (or the keys)
    (:func:`wmlib.verify.pair_rate`), and, for a key with an untriggered twin (:meth:`Scheme.twin`),
    how often the watermarked model answers the twin with the key's label (NaN: no twin)."""
    rows, pairs = {}, zoo_pairs(cells)
    for entry, g in cells[cells.attack == "none"].groupby("entry", sort=False):
        r = pair_rate(pairs[pairs.entry == entry], confidence)
        rows[entry] = {"embedded": int(g["claimed"].sum()), "seeds": len(g), "test accuracy": g["test_acc"].mean(),
                       "accuracy cost": (g["clean_acc"] - g["test_acc"]).mean(),
                       "time overhead": (g["embed_seconds"] / g["clean_seconds"]).mean(),
                       "queries": g["queries"].mean(), "false claims": r.claimed, "pairs": r.pairs,
                       "zoo models": r.suspects, "false-claim rate": r.rate, "fcr bound": r.bound,
                       "loaded from cache": int(g["loaded"].sum()),
                       # the key without its trigger (Scheme.twin): near the statistic, the watermark is a class relabelled
                       "untriggered twin": g["twin_statistic"].mean() if "twin_statistic" in g else float("nan")}
    return pd.DataFrame.from_dict(rows, orient="index").astype(
        {"embedded": int, "seeds": int, "false claims": int, "pairs": int, "zoo models": int, "loaded from cache": int})


def attacked_cells(cells: pd.DataFrame, max_loss: float = 0.05) -> pd.DataFrame:
    """The verified attack cells, each with what the thief lost against the same owner's unattacked
    model (``accuracy loss``), the key statistic's margin over the null's threshold, and Lukas et
    al.'s success rule (S&P 2022, the Watermark-Robustness-Toolbox's plots): an attack ``removes``
    the watermark when the thief keeps its test accuracy within ``max_loss`` (absolute) of the stolen
    model and the owner's claim fails. A worst-case search (``oracle``) never removes: it reads the
    owner's key, so its cells are an upper bound on the damage, not a thief's result. A cell whose
    attack found nothing to act on (status 'no action') is kept, and never removes: its model is
    served as it was."""
    out = cells[(cells.attack != "none") & cells.status.isin(["ok", "no action"])].copy()
    out["oracle"] = worst_case(out)
    out[["stolen acc", "accuracy loss"]] = _accuracy_loss(cells, out)[["stolen", "loss"]].to_numpy()
    out["margin"] = out["statistic"] - out["threshold"]
    out["removed"] = ((~out["claimed"].astype(bool)) & (out["accuracy loss"] <= max_loss) & ~out["oracle"]
                      & (out["status"] == "ok"))
    return out


def thief_cost(cells: pd.DataFrame) -> pd.DataFrame:
    """Per attack, what it cost the thief, averaged over its verified cells: models trained,
    training epochs, queries to the stolen API (model extraction), the cell's wall seconds in its
    worker and the thief's test accuracy and loss against the stolen model. Thieves only: a
    worst-case search is not a thief's cost."""
    att = attacked_cells(cells)
    att = att[~att["oracle"]]
    for column in ("work_trainings", "work_epochs"):
        if column not in att:
            att[column] = 0
    asked = [c for c in att if c.startswith("report_") and c.endswith("api_queries")]  # a chain's parts report theirs
    att["api queries"] = att[asked].fillna(0).sum(axis=1) if asked else 0
    g = att.groupby("attack", sort=False)
    return pd.DataFrame({"cells": g.size(), "models trained": g["work_trainings"].mean(),
                         "epochs": g["work_epochs"].mean(), "API queries": g["api queries"].mean(),
                         "seconds per cell": g["seconds"].mean(), "test accuracy": g["test_acc"].mean(),
                         "accuracy loss": g["accuracy loss"].mean()})


def removals(cells: pd.DataFrame, max_loss: float = 0.05) -> pd.DataFrame:
    """Lukas et al.'s success rule (:func:`attacked_cells`) per scheme: the attacks that removed its
    watermark in every seed, and the cheapest of them (fewest seconds per cell), or "none of the suite"."""
    att = attacked_cells(cells, max_loss)
    att = att[~att["oracle"]]  # a worst-case search is not a thief's removal
    rows = []
    for entry, g in att.groupby("entry", sort=False):
        per = g.groupby("attack", sort=False).agg(removed=("removed", "sum"), seeds=("removed", "size"),
                                                  seconds=("seconds", "mean"))
        always = per[per["removed"] == per["seeds"]].sort_values("seconds")
        some = per[(per["removed"] > 0) & (per["removed"] < per["seeds"])]
        rows.append({"entry": entry, "attacks tried": len(per), "removed by (every seed)": len(always),
                     "cheapest removal": always.index[0] if len(always) else "none of the suite",
                     "its seconds per cell": float(always["seconds"].iloc[0]) if len(always) else float("nan"),
                     "removing attacks": ", ".join(always.index),
                     "in some seeds only": ", ".join(f"{a} ({int(r.removed)} / {int(r.seeds)})" for a, r in some.iterrows())})
    return pd.DataFrame(rows).set_index("entry") if rows else pd.DataFrame()


def thief_views(book: pd.DataFrame, reference: pd.DataFrame, max_loss: float = 0.05) -> pd.DataFrame:
    """The same attacks run by the book's thief (``book``'s cells) and by the reference toolkit's
    (``reference``'s, a sweep with ``thief_view`` 'reference'): per attack and thief, the
    watermarks it removed in every seed (Lukas et al.'s rule, :func:`attacked_cells`), the mean claim
    rate over its cells and the accuracy it lost (against the same owner's unattacked model). The book's thief's removals are a lower bound
    against the reference's; the difference says by how much."""
    rows = []
    for name, cells in (("book", book), ("reference", reference)):
        att = attacked_cells(cells, max_loss)
        att = att[~att["oracle"] & att["attack"].isin(set(reference["attack"]) - {"none"})]
        for attack, g in att.groupby("attack", sort=False):
            per = g.groupby("entry", sort=False)["removed"].all()
            rows.append({"attack": attack, "thief": name, "removed (every seed)": int(per.sum()), "watermarks": len(per),
                         "claim rate": float(g["claimed"].astype(float).mean()),
                         "accuracy loss": float(g["accuracy loss"].mean())})
    return pd.DataFrame(rows, columns=["attack", "thief", "removed (every seed)", "watermarks", "claim rate", "accuracy loss"])


def thief_views_text(views: pd.DataFrame) -> str:
    """One sentence from :func:`thief_views`: per attack, the watermarks each thief removed."""
    if views.empty:
        return "the reference toolkit's thief did not run in this profile (`full` runs it)"
    parts = []
    for attack, g in views.groupby("attack", sort=False):
        r = g.set_index("thief")
        if {"book", "reference"} <= set(r.index):
            parts.append(f"{attack}: {int(r.loc['book', 'removed (every seed)'])} of {int(r.loc['book', 'watermarks'])} "
                         f"removed by the book's thief, {int(r.loc['reference', 'removed (every seed)'])} by the reference's "
                         f"(mean claim rate {r.loc['book', 'claim rate']:.0%} against {r.loc['reference', 'claim rate']:.0%})")
    return "; ".join(parts)


def best_removals(attacked: pd.DataFrame) -> pd.DataFrame:
    """Per entry, the thief's attack that removed it in every seed (Lukas et al.'s rule,
    :func:`attacked_cells`) at the least mean accuracy loss: the SoK's "best attack". Columns
    ``attack``, ``accuracy loss``, ``statistic`` and ``threshold`` (means over the seeds); an entry that
    no attack removes in every seed is absent."""
    thief = attacked[~worst_case(attacked)]
    rows = {}
    for entry, g in thief.groupby("entry", sort=False):
        per = g.groupby("attack", sort=False).agg(removed=("removed", "all"), loss=("accuracy loss", "mean"),
                                                  statistic=("statistic", "mean"), threshold=("threshold", "mean"))
        per = per[per["removed"]]
        if len(per):
            best = per["loss"].idxmin()
            rows[entry] = {"attack": best, "accuracy loss": float(per.loc[best, "loss"]),
                           "statistic": float(per.loc[best, "statistic"]), "threshold": float(per.loc[best, "threshold"])}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["attack", "accuracy loss", "statistic", "threshold"])


def lukas_findings(attacked: pd.DataFrame) -> dict:
    """Lukas et al.'s three findings, measured on this sweep's attacked cells (:func:`attacked_cells`):
    the watermarks that no attack removes in every seed (``unremoved``), the single attacks that
    remove every watermark in every seed (``removes_all``), and for each chained attack (a name with
    '+') the share of watermarks it removes in every seed and, for the others, their claims and the
    accuracy the thief lost (``chains``: name -> (share, reason))."""
    attacked = attacked[~worst_case(attacked)]  # thieves only
    per = attacked.groupby(["entry", "attack"], sort=False)["removed"].all().unstack()
    entries = list(per.index)
    unremoved = [e for e in entries if not per.loc[e].fillna(False).astype(bool).any()]
    removes_all = [a for a in per.columns if "+" not in a and per[a].notna().all() and per[a].astype(bool).all()]
    chains = {}
    for chain in [a for a in per.columns if "+" in a]:
        g = attacked[attacked["attack"] == chain]
        kept = [f"{e} (claimed in {int(h['claimed'].sum())} of {len(h)} seeds, {h['accuracy loss'].mean():.1%} accuracy lost)"
                for e, h in g.groupby("entry", sort=False) if not h["removed"].all()]
        chains[chain] = (float(per[chain].fillna(False).astype(bool).mean()),
                         "not removed in every seed: " + "; ".join(kept) if kept else "")
    return {"unremoved": unremoved, "removes_all": removes_all, "chains": chains}


def seed_note(seeds: list[int]) -> str:
    """What "in every seed" rests on in a sweep of ``seeds``: one owner model per watermark says so."""
    if len(seeds) == 1:
        return ("this run has one owner seed per watermark, so 'every seed' is that one model and no answer below "
                "holds across owners (the `full` profile runs three)")
    return f"this run has {len(seeds)} owner seeds per watermark"


def questions(suite: Suite) -> list[tuple[str, bool, list[str]]]:
    """Which-scheme-when's questions about attacks (``Attack.question``), each with whether it asks a
    family and the attacks that ask it, in the suite's order: the book's own questions first, then the
    families."""
    asked: dict[str, tuple[bool, list[str]]] = {}
    for a in suite.values():
        if a.question:
            asked.setdefault(a.question, (a.family, []))[1].append(a.name)
    order = sorted(asked, key=lambda q: asked[q][0])  # stable: the suite's order within each kind
    return [(q, *asked[q]) for q in order]


def extraction_table(attacked: pd.DataFrame, emb: pd.DataFrame, suite=None, confidence: float = 0.95,
                     max_loss: float = 0.05) -> pd.DataFrame:
    """The watermarks under model extraction (the attacks that train a model of their own from the
    API, ``Attack.extraction``; thieves only), one row per (entry, attack): what the thief learnt from
    (``answers``: the API's top-1 labels, its scores, or none of its answers), the owner's claims over
    the seeds with their exact ``confidence`` interval, the mean key statistic against the threshold,
    the thief's accuracy loss against the stolen model, and each seed's outcome by Lukas et al.'s rule
    (:func:`attacked_cells`): ``kept`` (claimed while the thief stayed within ``max_loss``, and, for a
    key with an untriggered twin, the twin not claimed alike), ``removed`` (claim lost within
    ``max_loss``), or ``thief failed`` (it lost more: neither a removal nor a survival); then the
    twin's rate and what the watermark cost its owner (``emb``: :func:`embedding_table`)."""
    suite = _attacks.REGISTRY if suite is None else suite
    thief = attacked[~worst_case(attacked)]
    ext = thief[thief["attack"].map(lambda a: bool(suite[a].extraction))]
    rows = []
    for (entry, attack), g in ext.groupby(["entry", "attack"], sort=False):
        rate, lo, hi = claim_rate(g["claimed"].tolist(), confidence)
        near = g["accuracy loss"] <= max_loss
        twin = g["twin_statistic"] if "twin_statistic" in g else pd.Series(float("nan"), index=g.index)
        honest = ~(twin >= g["threshold"])  # NaN (no twin) compares False: honest
        rows.append({"entry": entry, "attack": attack, "answers": suite[attack].answers, "claimed": int(g["claimed"].sum()),
                     "seeds": len(g), "ci low": lo, "ci high": hi, "statistic": g["statistic"].mean(),
                     "threshold": g["threshold"].mean(), "thief's accuracy loss": g["accuracy loss"].mean(),
                     "kept": int((g["claimed"].astype(bool) & near & honest).sum()), "removed": int(g["removed"].sum()),
                     "thief failed": int((~near).sum()), "untriggered twin": twin.mean(),
                     "owner's accuracy cost": emb.loc[entry, "accuracy cost"],
                     "owner's time overhead": emb.loc[entry, "time overhead"]})
    columns = ["entry", "attack", "answers", "claimed", "seeds", "ci low", "ci high", "statistic", "threshold",
               "thief's accuracy loss", "kept", "removed", "thief failed", "untriggered twin", "owner's accuracy cost",
               "owner's time overhead"]
    return pd.DataFrame(rows, columns=columns).set_index(["entry", "attack"])


def extraction_text(table: pd.DataFrame) -> str:
    """The extraction section's answer in words, from :func:`extraction_table`: per watermark, under
    how many extraction attacks its claim was kept in every seed by a thief within 5 points, how many
    removed it in every seed, and how many thieves failed (lost more than 5 points: no verdict); a
    watermark survives only where some attack's thief stayed close and the claim held in every seed,
    and no attack removed it in every seed."""
    if not len(table):
        return "no extraction attack ran on a claimed watermark in this sweep"
    said, survivors = [], []
    for entry, g in table.reset_index().groupby("entry", sort=False):
        kept = g[g["kept"] == g["seeds"]]["attack"].tolist()
        removed = g[g["removed"] == g["seeds"]]["attack"].tolist()
        failed = g[g["thief failed"] == g["seeds"]]["attack"].tolist()
        if kept and not removed:
            survivors.append(entry)
        said.append(f"{entry}: kept under {len(kept)} of {len(g)} attacks" + (f" ({', '.join(kept)})" if kept else "")
                    + f", removed by {len(removed)}" + (f", {len(failed)} thieves lost more than 5 points" if failed else ""))
    head = (f"{', '.join(survivors)} kept {'its' if len(survivors) == 1 else 'their'} claim in every seed under some "
            "extraction attack whose thief stayed within 5 points, and no extraction attack removed "
            + ("it" if len(survivors) == 1 else "them") + " in every seed" if survivors else
            "no watermark of the sweep kept its claim in every seed against an extraction thief that stayed within 5 "
            "points while no such thief removed it")
    return f"{head}; per watermark: " + "; ".join(said)


def which_scheme_when(mat: pd.DataFrame, emb: pd.DataFrame, full: float = 1.0,
                      removed: pd.DataFrame | None = None, suite: Suite | None = None) -> pd.DataFrame:
    """The chapter's summary, every answer computed from the matrix's thieves (never a worst-case
    search) and citing its cells: a cell counts as survived when its claim rate over the seeds it
    acted on is at least ``full`` and it acted on every seed; each question the ``suite``'s attacks
    ask (:func:`questions`; default: the registered attacks) that the matrix ran; with ``removed``
    (:func:`removals`), which schemes no attack removes by Lukas et al.'s rule, and each one's
    cheapest removal."""
    ok = mat[mat["status"] == "ok"].reset_index()
    attacked = ok[(ok["attack"] != "none") & ~worst_case(ok)].copy()
    # survived: claimed in every seed, and acted on in every seed (a seed the attack left alone is no evidence);
    # a row with no seed acted on is not in `ok` at all, so its entry cannot answer a question that needs it
    idle = attacked.get("no action", pd.Series(0, index=attacked.index)).fillna(0) > 0
    attacked["held"] = (attacked["claim rate"] >= full) & ~idle
    embedded = [e for e in emb.index if emb.loc[e, "embedded"] > 0]
    rows = []

    def cite(frame):
        return "; ".join(f"{r.entry} / {r.attack}: {r.claimed} / {r.seeds}" for r in frame.itertuples())

    survived = attacked[attacked["held"]].groupby("entry")["attack"].apply(list)
    tried = attacked.groupby("entry")["attack"].apply(list)
    if len(tried):
        share = {e: len(survived.get(e, [])) / len(tried[e]) for e in tried.index}
        best = max(share, key=share.get)
        rows.append({"question": "most robust across the suite", "answer": best,
                     "evidence": f"claimed in every seed under {len(survived.get(best, []))} of {len(tried[best])} applicable "
                                 f"attacks ({', '.join(survived.get(best, [])) or 'none'})"})
    if embedded:
        cheap = min(embedded, key=lambda e: emb.loc[e, "accuracy cost"])
        rows.append({"question": "cheapest to embed", "answer": cheap,
                     "evidence": f"accuracy cost {emb.loc[cheap, 'accuracy cost']:+.2%}, time overhead "
                                 f"{emb.loc[cheap, 'time overhead']:.2f}x, embedded {emb.loc[cheap, 'embedded']} / "
                                 f"{emb.loc[cheap, 'seeds']}"})
        few = min(embedded, key=lambda e: emb.loc[e, "queries"])
        rows.append({"question": "fewest queries per verification", "answer": few,
                     "evidence": f"{emb.loc[few, 'queries']:.0f} queries"})
    for question, family, names in questions(_attacks.REGISTRY if suite is None else suite):
        cells = attacked[attacked["attack"].isin(names)]
        if cells.empty:
            continue
        swept = cells["attack"].nunique()  # the attacks of the question that this sweep ran
        if family:  # a family asks about the members this sweep ran, and names them
            question = f"{question} ({', '.join(a for a in names if a in set(cells['attack']))})"
        full_rows = cells.groupby("entry").filter(lambda g: len(g) == swept and g["held"].all())
        winners = list(dict.fromkeys(full_rows["entry"]))
        rows.append({"question": question, "answer": ", ".join(winners) or "no scheme",
                     "evidence": cite(full_rows) if winners else "best: " + cite(cells.nlargest(1, "claim rate"))})
    if removed is not None and len(removed):
        kept = [e for e in removed.index if removed.loc[e, "removed by (every seed)"] == 0]
        rows.append({"question": "no attack of the suite removes it (Lukas et al.'s rule)",
                     "answer": ", ".join(kept) or "no scheme",
                     "evidence": "; ".join(f"{e}: {r['cheapest removal']}" for e, r in removed.iterrows())})
    fc = {e: (int(emb.loc[e, "false claims"]), int(emb.loc[e, "pairs"])) for e in emb.index}
    rows.append({"question": "claims an innocent (zoo) model", "answer": "no scheme" if all(c == 0 for c, _ in fc.values()) else
                 ", ".join(f"{e} ({c} of {n:,} zoo model–key pairs)" for e, (c, n) in fc.items() if c),
                 "evidence": "; ".join(f"{e}: {c} / {n}" for e, (c, n) in fc.items())})
    return pd.DataFrame(rows)
