"""The comparison's engine: independent cells (scheme x seed x attack) run as Ray tasks.

A :class:`Cell` names one watermarked model (a scheme entry and an owner seed) under one attack.
:func:`run` sends every cell that has no saved result to Ray and collects the results as they
finish, with a progress bar of cells done / total. Each result is saved as JSON next to the model
cache, under a hash of the cell and of the sweep's context (the knobs that decide it), so a rerun
is free and a failed cell is retried alone. A failing cell never takes the finished ones with it:
they are saved first, then one error names every failed cell and its cause.

With nothing configured, Ray starts locally on this machine's cores (or GPU); with ``RAY_ADDRESS``
(or ``address=``) the same sweep runs on a cluster, whose workers must be able to import ``wmlib``
and read the datasets and the cache (a shared ``WMLIB_CACHE``).
"""
from __future__ import annotations

import copy
import functools
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from scipy.stats import binomtest
from torch import nn
from tqdm.auto import tqdm

from .train import cache_dir, config_hash


@dataclass(frozen=True, order=True)
class Cell:
    """One independent unit of the comparison: the watermarked model ``entry`` with owner seed
    ``seed``, attacked by ``attack``."""
    entry: str
    seed: int
    attack: str

    def __str__(self) -> str:
        return f"{self.entry} / seed {self.seed} / {self.attack}"


CellFn = Callable[[Cell, dict], dict]


class CellError(RuntimeError):
    """One or more cells failed; ``failed`` maps each to its error, ``results`` holds the others."""

    def __init__(self, failed: dict[Cell, BaseException], results: dict[Cell, dict], total: int):
        self.failed, self.results = failed, results
        causes = "; ".join(f"[{c}] {_cause(e)}" for c, e in sorted(failed.items()))
        super().__init__(f"{len(failed)} of {total} comparison cells failed (the other {len(results)} are saved; "
                         f"a rerun retries only the failed ones): {causes}")


def _cause(err: BaseException) -> str:
    """The original error's type and message (Ray wraps a task's exception in a RayTaskError)."""
    inner = getattr(err, "cause", None) or err
    lines = str(inner).strip().splitlines() or [""]
    return f"{type(inner).__name__}: {lines[-1]}"


def result_path(cell: Cell, context: dict) -> Path:
    """Where the result of ``cell`` under ``context`` is saved (a hash of both). Of the context's
    ``entries`` (see :func:`entry_context`) only the cell's own counts: adding a scheme to the sweep
    leaves the other cells' results valid."""
    if isinstance(context.get("entries"), dict):
        context = {**context, "entries": context["entries"].get(cell.entry)}
    return cache_dir() / "compare" / f"{cell.entry}-s{cell.seed}-{cell.attack}-{config_hash({**asdict(cell), **context})}.json"


def load_result(cell: Cell, context: dict) -> dict | None:
    path = result_path(cell, context)
    return json.loads(path.read_text()) if path.exists() else None


def _save(cell: Cell, context: dict, result: dict) -> None:
    path = result_path(cell, context)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, default=float))
    os.replace(tmp, path)  # atomic: a reader sees no result or the whole one


def _start_ray(address: str | None, num_cpus: int | None):
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:  # local: the workers see the driver's import path and the book's cache and data folders
        env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
               **{k: v for k, v in os.environ.items() if k.startswith("WMLIB_")}}
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 runtime_env={"env_vars": env})
    return ray


def _call(fn: CellFn, cell: Cell, context: dict) -> dict:
    """The Ray task: any callable (a function, a ``functools.partial``) applied to one cell."""
    return fn(cell, context)


def run(cells: list[Cell], fn: CellFn, context: dict, *, address: str | None = None, num_cpus: int | None = None,
        gpus_per_cell: float | None = None, progress: bool = True) -> dict[Cell, dict]:
    """``fn(cell, context)`` for every cell without a saved result, as Ray tasks; returns every
    cell's result (saved ones loaded). ``context`` is the JSON-serialisable setting every cell shares
    (profile knobs, dataset): it is part of each result's cache key. Raises :class:`CellError`
    naming every failed cell after the others are saved. ``gpus_per_cell``: the share of a GPU each
    task asks for (Ray hides the GPUs from a task that asks for none); None: a quarter of one when
    the cluster has GPUs (a LeNet or ResNet-20 cell does not fill a GPU), else none."""
    if len(set(cells)) != len(cells):
        raise ValueError("the same cell appears twice in the sweep")
    results = {c: r for c in cells if (r := load_result(c, context)) is not None}
    todo = [c for c in cells if c not in results]
    failed: dict[Cell, BaseException] = {}
    with tqdm(total=len(cells), initial=len(results), desc="comparison cells", disable=not progress) as bar:
        if todo:
            ray = _start_ray(address, num_cpus)
            if gpus_per_cell is None:
                gpus_per_cell = 0.25 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
            if not 0.0 <= gpus_per_cell <= 1.0:
                raise ValueError(f"gpus_per_cell must be in [0, 1], got {gpus_per_cell}")
            task = ray.remote(_call).options(max_retries=0, num_gpus=gpus_per_cell)
            fn_ref, ctx = ray.put(fn), ray.put(context)
            pending = {task.remote(fn_ref, c, ctx): c for c in todo}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                cell = pending.pop(done[0])
                try:
                    results[cell] = ray.get(done[0])
                except Exception as err:  # noqa: BLE001 - every failure is reported, with its cell
                    failed[cell] = err
                    continue
                _save(cell, context, results[cell])
                bar.update()
    if failed:
        raise CellError(failed, results, len(cells))
    return results


def claim_rate(claimed: list[bool], confidence: float = 0.95) -> tuple[float, float, float]:
    """The share of claimed verifications with its exact (Clopper-Pearson) ``confidence`` interval."""
    n, k = len(claimed), int(sum(bool(c) for c in claimed))
    if n == 0:
        raise ValueError("no verifications to summarise")
    ci = binomtest(k, n).proportion_ci(confidence, method="exact")
    return k / n, float(ci.low), float(ci.high)


# --------------------------------------------------------------------------- the entries, the attacks, one cell

@dataclass(frozen=True)
class Entry:
    """One watermark of the comparison: ``make(knobs)`` builds its configured
    :class:`~wmlib.schemes.Scheme` (make_key / embed / verify). ``trials='labels'`` counts key
    queries answered with the key's label; ``'bits'`` counts matching signature bits (the scheme's
    ``hits``, a null floor of 0.5). ``verify_on='new'`` verifies on the second key ``make_key``
    returns (held-out triggers) instead of the embedded one."""
    name: str
    make: Callable[[dict], object]
    trials: str = "labels"
    verify_on: str = "key"

    def __post_init__(self):
        if self.trials not in TRIALS:
            raise ValueError(f"trials must be one of: {', '.join(TRIALS)}; got {self.trials!r}")
        if self.verify_on not in ("key", "new"):
            raise ValueError(f"verify_on must be 'key' or 'new', got {self.verify_on!r}")


TRIALS = ("labels", "bits")
ENTRIES: dict[str, Entry] = {}


def register(name: str, make: Callable[[dict], object], trials: str = "labels", verify_on: str = "key") -> Entry:
    """Add a watermark to the comparison (see the book's "Add your own scheme"): every attack that
    applies to it then runs on it. A name is registered once."""
    if name in ENTRIES:
        raise ValueError(f"a comparison entry named {name!r} exists already; registered: {', '.join(sorted(ENTRIES))}")
    ENTRIES[name] = Entry(name, make, trials, verify_on)
    return ENTRIES[name]


class NotApplicable(Exception):
    """Raised by an attack that cannot run on a cell; the message is the reason the matrix shows."""


@dataclass(frozen=True)
class Attack:
    """One attack of the suite: ``apply(model, task)`` returns the suspect the owner then queries (a
    model-side attack returns a new model's oracle, a query-side one wraps the API). ``only`` names
    the trial kind it is defined for (None: every scheme); ``about`` says what it does, for the book."""
    name: str
    side: str
    apply: Callable
    only: str | None = None
    about: str = ""

    def reason_not_applicable(self, entry: Entry) -> str | None:
        if self.only is not None and entry.trials != self.only:
            return f"{self.name} attacks {self.only}-based verification; these schemes verify by {entry.trials}"
        return None


def _thief_splits(task: dict):
    """The thief's own data as the training data of a task of its own; held-out keys (which only
    the reports use) come from the public test split."""
    from .data import Splits

    thief = task["thief"]
    return Splits(thief, thief.subset(slice(0, 0)), task["test"], task["spec"])


def _make_key(scheme, splits, seed: int, model: nn.Module):
    """``scheme.make_key`` with ``model`` passed to the schemes whose keys are made from a trained
    model (AFS: its adversarial examples)."""
    import inspect

    takes_model = "model" in inspect.signature(scheme.make_key).parameters
    return scheme.make_key(splits, seed=seed, **({"model": model} if takes_model else {}))


def thief_key(task: dict):
    """The key a thief makes with the (public) scheme on its own data and with its own seed: what a
    key-sample detector is trained on. AFS keys are adversarial examples of the stolen model; Li et
    al.'s thief trains an encoder of its own (the Li chapter's leak study)."""
    from .train import TrainConfig

    e, k, seed = task["embedded"], task["knobs"], task["seed"] + 100
    splits = _thief_splits(task)
    key, _ = _make_key(e.scheme, splits, seed, e.model)
    if hasattr(e.scheme, "watermark"):
        bundle, _, _ = e.scheme.train_or_load(f"compare-thief-{task['entry']}-s{task['seed']}", k["model"], splits, key,
                                              TrainConfig.from_knobs(k, seed=seed), progress=False)
        key = e.scheme.watermark(key, bundle.encoder)
    return key


def _attacks() -> dict[str, Attack]:
    from . import attacks, data, detector
    from .train import TrainConfig, evaluate
    from .verify import Oracle, key_accuracy

    def finetune(model, task, share=1.0):
        thief = task["thief"]
        if share < 1.0:
            g = torch.Generator().manual_seed(task["seed"])
            thief = thief.subset(torch.randperm(len(thief), generator=g)[:max(1, int(round(share * len(thief))))])
        out = Oracle(attacks.finetune(model, thief, task["finetune_cfg"])[0])
        out.report = {"thief_images": len(thief)}
        return out

    def prune_finetune(model, task):  # the thief's strongest pruning + fine-tuning within the accuracy budget
        k = task["knobs"]
        _, worst, pruned = attacks.worst_prune_finetune(model, task["thief"], task["test"], task["measure"],
                                                       task["finetune_cfg"], k["sweep_rates"], k["budget"], progress=False)
        out = Oracle(pruned)
        out.report = {"prune_rate": float(worst["rate"])}
        return out

    def transfer(model, task):  # Wen et al. §5: fine-tuned on another task with as many classes; the head is kept
        k, s = task["knobs"], task["spec"]
        x, y = data.load(k["transfer_dataset"], train=True)
        xt, yt = data.load(k["transfer_dataset"], train=False)
        shape = lambda v: data.to_shape(v, s.channels, s.image_size)
        cfg = TrainConfig(epochs=k["transfer_epochs"], batch_size=100, optimizer="adam", lr=k["transfer_lr"], seed=task["seed"])
        moved = attacks.finetune(model, data.Split(shape(x), y), cfg)[0]
        out = Oracle(moved)
        out.report = {"transfer_acc": evaluate(moved, data.Split(shape(xt), yt))}
        return out

    def overwrite(model, task):  # the thief embeds a function-coupled watermark of its own by fine-tuning
        from .schemes import FunctionCoupled

        k = task["knobs"]
        thief = FunctionCoupled(sources=tuple(k["overwrite_sources"]), target=k["overwrite_target"],
                                key_fraction=k["overwrite_key_fraction"], verify_triggers=k["verify_triggers"])
        splits = _thief_splits(task)
        tkey, theld = thief.make_key(splits, seed=task["seed"] + 100)
        m = copy.deepcopy(model)
        cfg = TrainConfig(epochs=k["overwrite_epochs"], batch_size=100, optimizer="adam", lr=k["overwrite_lr"], seed=task["seed"])
        thief.embed(m, splits, tkey, cfg, progress=False, device=next(m.parameters()).device)
        out = Oracle(m)
        out.report = {"thief_key_acc": key_accuracy(Oracle(m), theld)}
        return out

    def query_modification(model, task):  # Namba & Sakuma's autoencoder in front of the API, detection on
        k = task["knobs"]
        ae_cfg = TrainConfig(epochs=k["ae_epochs"], batch_size=100, optimizer="adam", lr=k["ae_lr"], seed=task["seed"])
        bank = attacks.AutoencoderBank(task["thief"], ae_cfg, folds=k["folds"], progress=False)
        out = bank.query_modification(Oracle(model), k["percentile"])
        # Namba & Sakuma's Table 2 sends every key query through the autoencoder (no detection): recorded beside
        out.report = {**{f"flagged_{n}": v for n, v in out.detection_rates(task["vkey"].x).items()},
                      "statistic_always": task["hit_rate"](bank.query_modification(Oracle(model), k["percentile"], always=True))}
        return out

    def key_detector(model, task):  # Li et al. §6.3: a detector trained on the thief's own keys gates the API
        k, s = task["knobs"], task["spec"]
        own = thief_key(task)
        torch.manual_seed(task["seed"])
        det = detector.pixel_detector(s.channels, s.image_size)
        cfg = TrainConfig(epochs=k["detector_epochs"], batch_size=128, lr=k["detector_lr"], seed=task["seed"])
        detector.train_detector(det, task["thief"].x, own.x, cfg)
        ordinary = task["test"].x[:k["detector_ordinary"]]
        auc = detector.detection_roc(det, ordinary, task["vkey"].x)[2]
        out = attacks.KeyDetectorOracle(Oracle(model), det, task["thief"].x, k["detector_fpr"])
        out.report = {"auc": auc, "flagged_key": float(out.flags(task["vkey"].x).float().mean()),
                      "flagged_test": float(out.flags(ordinary).float().mean())}
        return out

    return {a.name: a for a in (
        Attack("none", "none", lambda m, t: Oracle(m), about="the watermarked model as the owner deployed it"),
        Attack("fine-tune", "model", finetune, about="all layers fine-tuned on the thief's data (Adam)"),
        Attack("fine-tune-small", "model", lambda m, t: finetune(m, t, t["knobs"]["thief_small"]),
               about="the same on a tenth of the thief's data (a thief with fewer images)"),
        Attack("prune", "model", lambda m, t: Oracle(attacks.prune_magnitude(m, t["knobs"]["prune_rate"])),
               about="global magnitude pruning, no retraining"),
        Attack("prune-finetune", "model", prune_finetune,
               about="the strongest pruning rate + fine-tuning whose test accuracy stays within the thief's budget"),
        Attack("quantize", "model", lambda m, t: Oracle(attacks.quantize_weights(m, t["knobs"]["quant_bits"])),
               about="weights rounded to 8-bit integers per tensor"),
        Attack("transfer", "model", transfer, about="fine-tuned to another task with as many classes (the head is kept)"),
        Attack("overwrite", "model", overwrite, about="the thief fine-tunes its own function-coupled watermark in"),
        Attack("input-noise", "query", lambda m, t: attacks.NoisyOracle(Oracle(m), t["knobs"]["input_noise_std"], t["seed"]),
               about="Gaussian noise added to every query"),
        Attack("query-modification", "query", query_modification,
               about="Namba & Sakuma's autoencoder: queries it flags are answered on their reconstruction"),
        Attack("key-detector", "query", key_detector,
               about="a detector trained on keys the thief made itself; flagged queries get the runner-up class"),
        Attack("rounding", "query", lambda m, t: attacks.RoundedOracle(Oracle(m), t["knobs"]["round_decimals"]), only="bits",
               about="scores rounded to a few decimals"),
        Attack("perturbation", "query", lambda m, t: attacks.PerturbedOracle(Oracle(m), t["knobs"]["perturb_M"],
                                                                               t["knobs"]["perturb_eps"], seed=t["seed"]),
               only="bits", about="GradSigns App. B: scores perturbed, the top labels kept in order"),
    )}


ATTACKS = _attacks()


def grid(entries: list[str], seeds: list[int], attacks: list[str], registry: dict[str, Entry] | None = None) -> list[Cell]:
    """Every (entry, seed, attack) cell; unknown entry or attack names list the valid ones."""
    registry = ENTRIES if registry is None else registry
    for names, valid, what in ((entries, registry, "entry"), (attacks, ATTACKS, "attack")):
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise ValueError(f"unknown comparison {what}(s) {', '.join(map(repr, unknown))}; choose from: {', '.join(valid)}")
    return [Cell(e, int(s), a) for e in entries for s in seeds for a in attacks]


def entry_context(entries: dict[str, Entry], knobs: dict) -> dict[str, str]:
    """What each entry's scheme is under ``knobs`` (its repr, every field): put it in the sweep's
    context, so that a changed scheme does not reuse saved results. A knob a scheme refuses is
    named with the entry."""
    out = {}
    for name, e in entries.items():
        try:
            out[name] = repr(e.make(knobs)) + f" trials={e.trials} verify_on={e.verify_on}"
        except (ValueError, KeyError) as err:
            raise ValueError(f"comparison entry {name!r}: {err}") from None
    return out


SWEEP_KNOBS = ("entries", "seeds", "attacks")  # which cells run; every other knob decides what a cell computes


def make_context(knobs: dict, zoo: dict | None = None, registry: dict[str, Entry] | None = None) -> dict:
    """The setting every cell of a sweep shares (and its results' cache key): the task, the knobs
    that decide a cell (not which cells run), the zoo (Zoo.load arguments; None: the book's shared
    zoo) and what each chosen entry's scheme is."""
    registry = ENTRIES if registry is None else registry
    cell_knobs = {k: v for k, v in knobs.items() if k not in SWEEP_KNOBS}
    return {"dataset": knobs["dataset"], "profile": knobs["profile"], "knobs": cell_knobs, "zoo": zoo,
            "entries": entry_context({n: registry[n] for n in knobs["entries"]}, cell_knobs)}


# --------------------------------------------------------------------------- one cell

@functools.lru_cache(maxsize=8)
def _splits(dataset: str, attacker_fraction: float, seed: int, train_limit, test_limit):
    from . import data
    return data.owner_attacker_split(dataset, attacker_fraction, seed=seed, train_limit=train_limit, test_limit=test_limit)


@functools.lru_cache(maxsize=4)
def _zoo(dataset: str, profile: str, zoo_json: str):
    from .zoo import Zoo
    args = json.loads(zoo_json)
    return Zoo.shared(dataset, profile, progress=False) if args is None else Zoo.load(dataset, profile, progress=False, **args)


@dataclass
class Embedded:
    """One owner's watermarked model (entry, seed) with what the cells need of it."""
    scheme: object
    splits: object
    clean: nn.Module
    model: nn.Module
    key: object                 # the embedded key (Li et al.: the encoded key)
    vkey: object                # the key the owner verifies with (``new`` for verify_on='new')
    seconds: float              # embedding time (for schemes that retrain the clean model: clean + retraining)
    clean_seconds: float
    loaded: bool                # True: the watermarked model came from the cache (e.g. a chapter trained it)


def embed_entry(entry: Entry, seed: int, context: dict) -> Embedded:
    """Train (or load) the clean model and ``entry``'s watermarked model for owner ``seed``."""
    from .schemes.namba2019 import retrain_config
    from .train import TrainConfig, train_classifier

    knobs = context["knobs"]
    splits = _splits(context["dataset"], knobs["attacker_fraction"], seed, knobs.get("train_limit"), knobs.get("test_limit"))
    scheme = entry.make(knobs)
    tcfg = TrainConfig.from_knobs(knobs, seed=seed)
    clean, chist, _ = train_classifier(f"compare-clean-s{seed}", knobs["model"], splits, tcfg, progress=False)
    key, new = _make_key(scheme, splits, seed, clean)
    tag = f"compare-{entry.name}-s{seed}"
    if hasattr(scheme, "watermark"):  # Li et al.: host, encoder and discriminator trained together
        bundle, hist, loaded = scheme.train_or_load(tag, knobs["model"], splits, key, tcfg, progress=False)
        model, key, new = bundle.host, scheme.watermark(key, bundle.encoder), scheme.watermark(new, bundle.encoder)
    else:
        cfg = replace(retrain_config(knobs), seed=seed) if scheme.embeds_by_finetuning else tcfg
        model, hist, loaded = train_classifier(tag, knobs["model"], splits, cfg, key=key, embed=scheme.embed,
                                               init=clean if scheme.embeds_by_finetuning else None, progress=False)
    seconds = sum(hist.seconds) + (sum(chist.seconds) if scheme.embeds_by_finetuning else 0.0)
    return Embedded(scheme, splits, clean, model, key, key if entry.verify_on == "key" else new, seconds,
                    sum(chist.seconds), loaded)


def run_cell(cell: Cell, context: dict, entries: dict[str, Entry]) -> dict:
    """Embed (train-or-load) ``cell``'s watermark with its seed, attack it, and verify the suspect
    against the zoo's null. ``context`` holds the task and its knobs: ``dataset``, ``profile``,
    ``knobs`` (model, training and attack knobs), and ``zoo`` (Zoo.load arguments, or None for the
    book's shared zoo). An attack that does not apply returns its reason instead of a verdict. The
    unattacked cell ('none') also measures the embedding (accuracy, time) and the key's false
    claims on the zoo (each member against a null fitted on the others)."""
    from .train import TrainConfig, evaluate
    from .verify import Oracle, false_claims, oracle_accuracy, verify_counts
    from .verify import hits as label_hits

    import time

    t0 = time.perf_counter()
    entry, attack, knobs = entries[cell.entry], ATTACKS[cell.attack], context["knobs"]
    why_not = attack.reason_not_applicable(entry)
    if why_not:
        return {"applies": False, "reason": why_not}
    e = embed_entry(entry, cell.seed, context)
    zoo = _zoo(context["dataset"], context["profile"], json.dumps(context.get("zoo"), sort_keys=True))
    hit_fn, floor = (label_hits, None) if entry.trials == "labels" else (e.scheme.hits, 0.5)
    null = zoo.null(e.vkey, hit_fn=hit_fn, floor=floor, confidence=knobs["zoo_confidence"])
    vkey = e.vkey.sample(knobs["n_queries"], seed=cell.seed) \
        if entry.trials == "labels" and knobs["n_queries"] < len(e.vkey) else e.vkey

    def hit_rate(oracle) -> float:
        return float(hit_fn(oracle, vkey).float().mean())

    task = {"knobs": knobs, "seed": cell.seed, "entry": entry.name, "embedded": e, "spec": e.splits.spec,
            "thief": e.splits.attacker, "test": e.splits.test, "vkey": vkey,
            "hit_rate": hit_rate, "measure": lambda m: hit_rate(Oracle(m)),
            "finetune_cfg": TrainConfig.from_knobs(knobs, epochs=knobs["finetune_epochs"], lr=knobs["finetune_lr"],
                                                   optimizer="adam", schedule="none", milestones=(), weight_decay=0.0,
                                                   seed=cell.seed)}
    try:
        suspect = attack.apply(e.model, task)
    except NotApplicable as why:
        return {"applies": False, "reason": str(why)}
    queries = suspect.queries
    h = hit_fn(suspect, vkey)
    v = verify_counts(int(h.sum()), len(h), null, knobs["alpha"], suspect.queries - queries)
    out = {"applies": True, "claimed": v.claimed, "statistic": v.statistic, "threshold": v.threshold,
           "p_value": v.p_value, "queries": v.queries, "test_acc": oracle_accuracy(suspect, e.splits.test),
           **{f"report_{k}": val for k, val in getattr(suspect, "report", {}).items()}}
    if cell.attack == "none":
        n = knobs["n_queries"] if entry.trials == "labels" else len(e.vkey)
        table = zoo.claims(e.vkey, {}, n, knobs["alpha"], knobs["false_claim_draws"], cell.seed, floor=floor,
                           confidence=knobs["zoo_confidence"], hit_fn=hit_fn)
        fc, total = false_claims(table)
        out.update({"clean_acc": evaluate(e.clean, e.splits.test), "embed_seconds": e.seconds,
                    "clean_seconds": e.clean_seconds, "loaded": e.loaded, "key_size": len(e.key),
                    "false_claims": fc, "false_claim_verifications": total, "zoo_models": len(zoo)})
    out["seconds"] = time.perf_counter() - t0  # this cell's wall time in its worker (embedding included if trained here)
    return out


# --------------------------------------------------------------------------- the sweep and its tables

def sweep(entries: list[str], seeds: list[int], attacks: list[str], context: dict,
          registry: dict[str, Entry] | None = None, **run_kw) -> pd.DataFrame:
    """The whole matrix in two stages of Ray tasks: every (entry, seed) embedded and verified
    unattacked first, then every attack on the watermarks that were claimed. A watermark that is
    not claimed unattacked did not embed: its attack cells say so instead of reporting a number.
    One row per cell: ``status`` is 'ok' or 'n/a' (with ``reason``)."""
    registry = ENTRIES if registry is None else registry
    fn = functools.partial(run_cell, entries=registry)
    attacks = [a for a in attacks if a != "none"]  # 'none' is the first stage
    first = run(grid(entries, seeds, ["none"], registry), fn, context, **run_kw)
    embedded = {(c.entry, c.seed) for c, r in first.items() if r.get("claimed")}
    later = [c for c in grid(entries, seeds, attacks, registry)
             if (c.entry, c.seed) in embedded and not ATTACKS[c.attack].reason_not_applicable(registry[c.entry])]
    results = {**first, **(run(later, fn, context, **run_kw) if later else {})}
    rows = []
    for c in grid(entries, seeds, ["none", *attacks], registry):
        r = results.get(c) or {"applies": False, "reason": ATTACKS[c.attack].reason_not_applicable(registry[c.entry]) or
                               f"the watermark did not embed: {c.entry} (seed {c.seed}) is not claimed unattacked"}
        rows.append({"entry": c.entry, "seed": c.seed, "attack": c.attack,
                     "status": "ok" if r["applies"] else "n/a", **{k: v for k, v in r.items() if k != "applies"}})
    return pd.DataFrame(rows)


def matrix(cells: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per (entry, attack): claims over the seeds with the exact ``confidence`` interval,
    the mean key statistic (hit rate or matched bits), the thief's mean test accuracy and what the
    attack cost it (against the same seed's unattacked model), the queries per verification, or
    the reason the attack does not apply."""
    rows = []
    before = cells[(cells.attack == "none") & (cells.status == "ok")].set_index(["entry", "seed"])["test_acc"]
    for (entry, attack), g in cells.groupby(["entry", "attack"], sort=False):
        ok = g[g.status == "ok"]
        if ok.empty:
            rows.append({"entry": entry, "attack": attack, "status": "n/a", "reason": g["reason"].iloc[0]})
            continue
        rate, lo, hi = claim_rate(ok["claimed"].tolist(), confidence)
        rows.append({"entry": entry, "attack": attack, "status": "ok", "claimed": f"{int(ok['claimed'].sum())} / {len(ok)}",
                     "claim rate": rate, "ci low": lo, "ci high": hi, "statistic": ok["statistic"].mean(),
                     "threshold": ok["threshold"].mean(), "test accuracy": ok["test_acc"].mean(),
                     "accuracy cost": float((before.reindex(list(zip(ok["entry"], ok["seed"]))).to_numpy()
                                             - ok["test_acc"].to_numpy()).mean()),
                     "queries": ok["queries"].mean(),
                     "reason": "" if len(ok) == len(g) else f"{len(g) - len(ok)} seed(s) n/a: {g[g.status != 'ok'].reason.iloc[0]}"})
    return pd.DataFrame(rows).set_index(["entry", "attack"])


def embedding_table(cells: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per entry, from its unattacked cells: how often it embedded (claimed on its own key), the
    test accuracy against the same owner's clean model, the embedding time against training the
    clean model, the queries per verification, and the false-claim rate on the clean zoo
    (leave-one-out, pooled over seeds) with its exact ``confidence`` interval."""
    rows = {}
    for entry, g in cells[cells.attack == "none"].groupby("entry", sort=False):
        fc, total = int(g["false_claims"].sum()), int(g["false_claim_verifications"].sum())
        ci = binomtest(fc, total).proportion_ci(confidence, method="exact")
        rows[entry] = {"embedded": f"{int(g['claimed'].sum())} / {len(g)}", "test accuracy": g["test_acc"].mean(),
                       "accuracy cost": (g["clean_acc"] - g["test_acc"]).mean(),
                       "time overhead": (g["embed_seconds"] / g["clean_seconds"]).mean(),
                       "queries": g["queries"].mean(), "false claims": f"{fc} / {total}",
                       "false-claim rate": fc / total, "fcr ci high": float(ci.high),
                       "loaded from cache": int(g["loaded"].sum())}
    return pd.DataFrame(rows).T


# --------------------------------------------------------------------------- the book's schemes

def _book_entries() -> dict[str, Entry]:
    """Every watermark of the book's chapters, configured by the comparison's knobs."""
    from .schemes import FineTuneKeys, FunctionCoupled, GradSigns, Li2019, Namba2019, Zhang2018

    def zhang(kind):
        return lambda k: Zhang2018(kind=kind, source=k["source"], target=k["target"], key_fraction=k["zhang_key_fraction"],
                                   noise_std=k["noise_std"], unrelated_dataset=k["unrelated_dataset"],
                                   unrelated_class=k["unrelated_class"])

    def fc(fusion):
        def make(k):
            if k.get("fc_target") is None:
                raise ValueError("knob 'fc_target' is None: pick it first (function_coupled.least_answered_target)")
            return FunctionCoupled(fusion=fusion, r=k["fc_r"], sources=tuple(k["fc_sources"]), target=k["fc_target"],
                                   key_fraction=k["fc_key_fraction"], verify_triggers=k["verify_triggers"],
                                   key_per_batch=k["fc_key_per_batch"], mask_ratio=k["mask_ratio"], ft_lr=k["ft_lr"],
                                   ft_samples=k["ft_samples"])
        return make

    return {e.name: e for e in (
        Entry("zhang-content", zhang("content")), Entry("zhang-unrelated", zhang("unrelated")),
        Entry("zhang-noise", zhang("noise")),
        Entry("namba-proposal", lambda k: Namba2019(n_keys=k["n_keys"], T=k["T"], key_per_batch=k["key_per_batch"])),
        Entry("namba-afs", lambda k: FineTuneKeys("afs", k["n_keys"], k["afs_eps"], k["key_per_batch"])),
        Entry("namba-ds", lambda k: FineTuneKeys("ds", k["n_keys"], k["afs_eps"], k["key_per_batch"])),
        Entry("li2019", lambda k: Li2019.from_knobs({**k, "key_fraction": k["li_key_fraction"]})),
        Entry("gradsigns", lambda k: GradSigns.from_knobs(k, key_per_batch=k["gs_key_per_batch"]), trials="bits"),
        Entry("fc-direct", fc("direct"), verify_on="new"), Entry("fc-invisible", fc("invisible"), verify_on="new"),
    )}


ENTRIES.update(_book_entries())


def which_scheme_when(mat: pd.DataFrame, emb: pd.DataFrame, full: float = 1.0) -> pd.DataFrame:
    """The chapter's summary, every answer computed from the matrix and citing its cells: a cell
    counts as survived when its claim rate over the seeds is at least ``full``."""
    ok = mat[mat["status"] == "ok"].reset_index()
    attacked = ok[ok["attack"] != "none"]
    embedded = [e for e in emb.index if emb.loc[e, "embedded"].split(" / ")[0] != "0"]
    rows = []

    def cite(frame):
        return "; ".join(f"{r.entry} / {r.attack}: {r.claimed}" for r in frame.itertuples())

    survived = attacked[attacked["claim rate"] >= full].groupby("entry")["attack"].apply(list)
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
                                 f"{emb.loc[cheap, 'time overhead']:.2f}x, embedded {emb.loc[cheap, 'embedded']}"})
        few = min(embedded, key=lambda e: emb.loc[e, "queries"])
        rows.append({"question": "fewest queries per verification", "answer": few,
                     "evidence": f"{emb.loc[few, 'queries']:.0f} queries"})
    for question, names in (("survives fine-tuning (both thief sizes)", ["fine-tune", "fine-tune-small"]),
                            ("survives prune + fine-tune within the accuracy budget", ["prune-finetune"]),
                            ("survives the autoencoder query modification", ["query-modification"]),
                            ("survives the key-sample detector", ["key-detector"]),
                            ("survives overwriting", ["overwrite"]), ("survives transfer learning", ["transfer"])):
        cells = attacked[attacked["attack"].isin(names)]
        if cells.empty:
            continue
        swept = cells["attack"].nunique()  # the attacks of the question that this sweep ran
        full_rows = cells.groupby("entry").filter(lambda g: len(g) == swept and (g["claim rate"] >= full).all())
        winners = list(dict.fromkeys(full_rows["entry"]))
        rows.append({"question": question, "answer": ", ".join(winners) or "no scheme",
                     "evidence": cite(full_rows) if winners else "best: " + cite(cells.nlargest(1, "claim rate"))})
    fc = emb["false claims"].apply(lambda v: tuple(int(x) for x in v.split(" / ")))
    rows.append({"question": "claims an innocent (zoo) model", "answer": "no scheme" if all(c == 0 for c, _ in fc) else
                 ", ".join(f"{e} ({c} of {n:,} verifications)" for e, (c, n) in fc.items() if c),
                 "evidence": "; ".join(f"{e}: {c} / {n}" for e, (c, n) in fc.items())})
    return pd.DataFrame(rows)
