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

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from scipy.stats import binomtest
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
    """Where the result of ``cell`` under ``context`` is saved (a hash of both)."""
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
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": env})
    return ray


def _call(fn: CellFn, cell: Cell, context: dict) -> dict:
    """The Ray task: any callable (a function, a ``functools.partial``) applied to one cell."""
    return fn(cell, context)


def run(cells: list[Cell], fn: CellFn, context: dict, *, address: str | None = None, num_cpus: int | None = None,
        progress: bool = True) -> dict[Cell, dict]:
    """``fn(cell, context)`` for every cell without a saved result, as Ray tasks; returns every
    cell's result (saved ones loaded). ``context`` is the JSON-serialisable setting every cell shares
    (profile knobs, dataset): it is part of each result's cache key. Raises :class:`CellError`
    naming every failed cell after the others are saved."""
    if len(set(cells)) != len(cells):
        raise ValueError("the same cell appears twice in the sweep")
    results = {c: r for c in cells if (r := load_result(c, context)) is not None}
    todo = [c for c in cells if c not in results]
    failed: dict[Cell, BaseException] = {}
    with tqdm(total=len(cells), initial=len(results), desc="comparison cells", disable=not progress) as bar:
        if todo:
            ray = _start_ray(address, num_cpus)
            task = ray.remote(_call).options(max_retries=0)
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


@dataclass(frozen=True)
class Attack:
    """One attack of the suite: ``apply(model, task)`` returns the suspect the owner then queries (a
    model-side attack returns a new model's oracle, a query-side one wraps the API). ``only`` names
    the trial kind it is defined for (None: every scheme)."""
    name: str
    side: str
    apply: Callable
    only: str | None = None

    def reason_not_applicable(self, entry: Entry) -> str | None:
        if self.only is not None and entry.trials != self.only:
            return f"{self.name} attacks {self.only}-based verification; {entry.name} verifies by {entry.trials}"
        return None


def _attacks() -> dict[str, Attack]:
    from . import attacks
    from .verify import Oracle

    def finetune(model, task):
        return Oracle(attacks.finetune(model, task["thief"], task["finetune_cfg"])[0])

    def prune_finetune(model, task):  # the thief's strongest pruning + fine-tuning within the accuracy budget
        k = task["knobs"]
        return Oracle(attacks.worst_prune_finetune(model, task["thief"], task["test"], task["measure"], task["finetune_cfg"],
                                                   k["sweep_rates"], k["budget"], progress=False)[2])

    def query_modification(model, task):  # Namba & Sakuma's autoencoder in front of the API, detection on
        from .train import TrainConfig
        k = task["knobs"]
        ae_cfg = TrainConfig(epochs=k["ae_epochs"], batch_size=100, optimizer="adam", lr=k["ae_lr"], seed=task["seed"])
        bank = attacks.AutoencoderBank(task["thief"], ae_cfg, folds=k["folds"], progress=False)
        return bank.query_modification(Oracle(model), k["percentile"])

    return {a.name: a for a in (
        Attack("none", "none", lambda m, t: Oracle(m)),
        Attack("fine-tune", "model", finetune),
        Attack("prune-finetune", "model", prune_finetune),
        Attack("prune", "model", lambda m, t: Oracle(attacks.prune_magnitude(m, t["knobs"]["prune_rate"]))),
        Attack("quantize", "model", lambda m, t: Oracle(attacks.quantize_weights(m, t["knobs"]["quant_bits"]))),
        Attack("input-noise", "query", lambda m, t: attacks.NoisyOracle(Oracle(m), t["knobs"]["input_noise_std"],
                                                                         t["seed"])),
        Attack("query-modification", "query", query_modification),
        Attack("rounding", "query", lambda m, t: attacks.RoundedOracle(Oracle(m), t["knobs"]["decimals"]), only="bits"),
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
    context, so that a changed scheme does not reuse saved results."""
    return {name: repr(e.make(knobs)) + f" trials={e.trials} verify_on={e.verify_on}" for name, e in entries.items()}


def run_cell(cell: Cell, context: dict, entries: dict[str, Entry]) -> dict:
    """Embed (train-or-load) ``cell``'s watermark with its seed, attack it, and verify the suspect
    against the zoo's null. ``context`` holds the task and its knobs: ``dataset``, ``profile``,
    ``knobs`` (model, training and attack knobs), and ``zoo`` (Zoo.load arguments, or None for the
    book's shared zoo). An attack that does not apply returns its reason instead of a verdict."""
    import inspect

    from . import data
    from .train import TrainConfig, train_classifier
    from .verify import Oracle, oracle_accuracy, verify_counts
    from .verify import hits as label_hits
    from .zoo import Zoo

    entry, attack, knobs = entries[cell.entry], ATTACKS[cell.attack], context["knobs"]
    why_not = attack.reason_not_applicable(entry)
    if why_not:
        return {"applies": False, "reason": why_not}
    splits = data.owner_attacker_split(context["dataset"], knobs["attacker_fraction"], seed=cell.seed,
                                       train_limit=knobs.get("train_limit"), test_limit=knobs.get("test_limit"))
    scheme = entry.make(knobs)
    tcfg = TrainConfig.from_knobs(knobs, seed=cell.seed)
    takes_model = "model" in inspect.signature(scheme.make_key).parameters  # e.g. AFS: adversarial examples of it
    clean = None
    if scheme.embeds_by_finetuning or takes_model:
        clean, _, _ = train_classifier(f"compare-clean-s{cell.seed}", knobs["model"], splits, tcfg, progress=False)
    key, new = scheme.make_key(splits, seed=cell.seed, **({"model": clean} if takes_model else {}))
    marked, _, _ = train_classifier(f"compare-{entry.name}-s{cell.seed}", knobs["model"], splits, tcfg, key=key,
                                    embed=scheme.embed, init=clean if scheme.embeds_by_finetuning else None, progress=False)
    vkey = key if entry.verify_on == "key" else new
    zoo = Zoo.shared(context["dataset"], context["profile"], progress=False) if context.get("zoo") is None else \
        Zoo.load(context["dataset"], context["profile"], progress=False, **context["zoo"])
    hit_fn, floor = (label_hits, None) if entry.trials == "labels" else (scheme.hits, 0.5)
    null = zoo.null(vkey, hit_fn=hit_fn, floor=floor, confidence=knobs["zoo_confidence"])
    if entry.trials == "labels" and knobs["n_queries"] < len(vkey):
        vkey = vkey.sample(knobs["n_queries"], seed=cell.seed)
    task = {"knobs": knobs, "seed": cell.seed, "thief": splits.attacker, "test": splits.test,
            "measure": lambda m: float(hit_fn(Oracle(m), vkey).float().mean()),
            "finetune_cfg": TrainConfig.from_knobs(knobs, epochs=knobs["finetune_epochs"], lr=knobs["finetune_lr"],
                                                   optimizer="adam", schedule="none", milestones=(), weight_decay=0.0,
                                                   seed=cell.seed)}
    suspect = attack.apply(marked, task)
    queries = suspect.queries
    h = hit_fn(suspect, vkey)
    v = verify_counts(int(h.sum()), len(h), null, knobs["alpha"], suspect.queries - queries)
    return {"applies": True, "claimed": v.claimed, "statistic": v.statistic, "threshold": v.threshold,
            "p_value": v.p_value, "queries": v.queries, "test_acc": oracle_accuracy(suspect, splits.test)}
