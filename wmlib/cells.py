"""The engine: independent cells run as Ray tasks, with saved results. It knows nothing of
watermarking: a :class:`Cell` is three names (an entry, a seed, an attack) and a cell function
turns one into a JSON-serialisable result.

:func:`run` sends every cell that has no saved result to Ray and collects the results as they
finish, with a progress bar of cells done / total. Each result is saved as JSON next to the model
cache, under a hash of the cell and of the sweep's context (the settings that decide it), so a
rerun is free and a failed cell is retried alone. A failing cell never takes the finished ones with
it: they are saved first, then one error names every failed cell and its cause.

With nothing configured, Ray starts locally on this machine's cores (or GPU); with ``RAY_ADDRESS``
(or ``address=``) the same sweep runs on a cluster, whose workers must be able to import ``wmlib``
and read the datasets and the cache (a shared ``WMLIB_CACHE``).
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from scipy.stats import binomtest
from tqdm.auto import tqdm

from . import timing
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


def cell_context(cell: Cell, context: dict) -> dict:
    """What of the sweep's ``context`` decides ``cell``: of its ``entries`` only the cell's own, and
    of its ``knobs`` none that ``owned_knobs`` (``{attack: [knob, ...]}``) gives to other attacks
    only. A cell's result is saved under this, and the cell function runs with it, so an attack
    that read another attack's knob would fail instead of reusing a stale result."""
    if isinstance(context.get("entries"), dict):
        context = {**context, "entries": {cell.entry: context["entries"][cell.entry]}
                   if cell.entry in context["entries"] else {}}
    owned = context.get("owned_knobs")
    if isinstance(owned, dict):
        others = set().union(*map(set, owned.values())) - set(owned.get(cell.attack, ()))
        context = {**context, "knobs": {k: v for k, v in context["knobs"].items() if k not in others},
                   "owned_knobs": sorted(owned.get(cell.attack, ()))}
    return context


def result_path(cell: Cell, context: dict) -> Path:
    """Where the result of ``cell`` under ``context`` is saved: a hash of the cell and of what of
    the context decides it (:func:`cell_context`). Adding a scheme to the sweep, or changing one
    attack's knob, leaves the other cells' results valid."""
    return cache_dir() / "compare" / f"{cell.entry}-s{cell.seed}-{cell.attack}-{config_hash({**asdict(cell), **cell_context(cell, context)})}.json"


def load_result(cell: Cell, context: dict) -> dict | None:
    path = result_path(cell, context)
    return json.loads(path.read_text()) if path.exists() else None


def _save(cell: Cell, context: dict, result: dict) -> None:
    path = result_path(cell, context)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, default=float))
    os.replace(tmp, path)  # atomic: a reader sees no result or the whole one


CORES_ENV = "WMLIB_CORES"


def env_count(name: str, what: str) -> int | None:
    """A whole number >= 1 from the environment variable ``name`` (checked, the error naming
    ``what`` it counts); None when unset."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a whole number >= 1 ({what}), got {raw!r}")
    return int(raw)


def env_cores() -> int | None:
    """The cores a local cluster may use, from :data:`CORES_ENV` (checked); None when unset (all of them).
    ``make test`` sets 1 for each of its parallel workers; ``wmlib.schedule build`` reads it too."""
    return env_count(CORES_ENV, "cores of the local cluster")


def _start_ray(address: str | None, num_cpus: int | None):
    import ray

    if ray.is_initialized():
        return ray
    num_cpus = num_cpus if num_cpus is not None else env_cores()
    address = address or os.environ.get("RAY_ADDRESS")
    wmlib_env = {k: v for k, v in os.environ.items() if k.startswith("WMLIB_")}
    if address:  # a cluster (make book's own, wmlib.schedule, or the reader's): its workers see the book's WMLIB_* settings
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, runtime_env={"env_vars": wmlib_env})
    else:  # local: the workers see the driver's import path and the book's cache and data folders
        env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **wmlib_env}
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 runtime_env={"env_vars": env})
    return ray


def _call(fn: CellFn, cell: Cell, context: dict) -> dict:
    """The Ray task: any callable (a function, a ``functools.partial``) applied to one cell and the
    part of the context that decides it."""
    return fn(cell, cell_context(cell, context))


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
            batch, log = time.time(), os.environ.get("WMLIB_CELL_LOG")  # a scheduled build's record (wmlib.schedule)
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
                timing.absorb(timing.from_fields(results[cell]))
                if log:
                    with open(log, "a") as fh:
                        fh.write(json.dumps({"cell": str(cell), "batch": batch, "done_at": time.time(),
                                             "seconds": float(results[cell].get("seconds", 0.0))}) + "\n")
                bar.update()
    if failed:
        raise CellError(failed, results, len(cells))
    return results


def claim_rate(claimed: list[bool], confidence: float = 0.95) -> tuple[float, float, float]:
    """The share of claimed verifications with its exact (Clopper-Pearson) ``confidence`` interval."""
    return count_rate(int(sum(bool(c) for c in claimed)), len(claimed), confidence)


def count_rate(k: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """``k`` claims out of ``n`` verifications: the rate with its exact (Clopper-Pearson)
    ``confidence`` interval."""
    if n == 0:
        raise ValueError("no verifications to summarise")
    ci = binomtest(k, n).proportion_ci(confidence, method="exact")
    return k / n, float(ci.low), float(ci.high)
