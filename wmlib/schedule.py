"""``make book`` as one schedule across cores: the zoo's members, the chapters and the comparison's
cells are Ray tasks of one local cluster, each with a fixed thread count, so that a build takes
about its work divided by the cores plus its longest chain of dependent steps.

The plan (:func:`plan`) is a graph of :class:`Step`: every member of every clean zoo a chapter
verifies against (trained once, side by side, before any chapter reads it), then the five paper
chapters (each a papermill run in its own process), then the comparison, whose driver holds no
core while its cells run as tasks of the same cluster (``RAY_ADDRESS``), then the integrity
chapter (it reads the comparison's records). A chapter whose inputs did not change since its last
successful run (:func:`inputs_digest`) is kept, not run; a model or a comparison cell
saved by an interrupted build is loaded, not recomputed.

The build writes what happened (``schedule.json``: each step's thread count, start and end, and
the duration of every comparison cell), from which :func:`critical_path` gives the longest chain
and :func:`project` the time the same work would take on other core counts. A projection is a
list-scheduling simulation of measured durations, not a measurement: it assumes a step takes as
long on another machine as it took here.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .cells import env_cores, env_count
from .data import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
# the chapters that read other chapters' results run after them (the comparison loads the chapters' models where its
# configuration is theirs, so it waits for them instead of training the same models beside them)
LATE = ("comparison.ipynb", "integrity.ipynb")
# Each step trains with a fixed thread count, whatever the machine: a model trained with 1 thread differs in its last
# bits from one trained with 2 (oneDNN splits its reductions by thread), so a fixed count gives the same book on 2 cores
# and on 16. One thread a step: two 1-thread LeNet-5 loops side by side train 1.29x the images per second of one 2-thread
# loop on 2 cores (11.7k + 11.6k against 18.1k img/s, measured here), and the comparison's cells always ran one thread
# each. The integrity chapter takes 2: it runs alone at the end of the chain. WMLIB_THREADS sets every step's count
# (WMLIB_THREADS=2 is how every build before the schedule trained on 2 cores).
THREADS_ENV, DEFAULT_THREADS, THREADS = "WMLIB_THREADS", 1, {"integrity.ipynb": 2}
# notebooks whose driver only dispatches: its cells are tasks of the same cluster, one thread each, and the driver
# holds no core while it waits (its own work, the tables and the knockoff's budget curve after the sweep, is < 5 % of the step)
DISPATCHERS = ("comparison.ipynb",)
# a paper chapter's seconds in a cold `default` build (1 thread, 2 cores, 2026-12-06): the order of a build without a
# record of its own, longest first, so that the shortest chapter fills the last gap beside the longest
FIRST_BUILD = {"li2019.ipynb": 969, "namba2019.ipynb": 939, "gradsigns.ipynb": 880, "function_coupled.ipynb": 505,
               "zhang2018.ipynb": 307}
CELL_LOG = "WMLIB_CELL_LOG"  # cells.run appends each finished cell's seconds here during a scheduled build


@dataclass(frozen=True)
class Step:
    """One task of the build: ``kind`` 'zoo' (one clean model, ``args`` = train_member's) or
    'notebook' (``args`` = the notebook's path); it starts when every step of ``after`` is done and
    holds ``cpus`` cores (0 for a dispatcher) while running ``threads`` threads."""
    name: str
    kind: str
    after: tuple[str, ...] = ()
    threads: int = 1
    cpus: float = 1.0
    args: dict = field(default_factory=dict, compare=False, hash=False)


def zoo_demands(profile: str) -> list[tuple[str, dict]]:
    """Every shared zoo a chapter of ``profile`` verifies against, its main run and its ablations
    (``(dataset, recipe overrides)``, each once)."""
    from . import settings
    from .profiles import CHAPTERS
    from .zoo import recipe_overrides

    seen: dict[str, tuple[str, dict]] = {}
    for chapter in CHAPTERS:
        cfg = settings.resolve(chapter, profile)
        for run in (cfg, *(settings.variant(chapter, cfg, a) for a in settings.ABLATIONS)):
            if run is not None:
                demand = (run["dataset"], recipe_overrides(run))
                seen.setdefault(json.dumps(demand, sort_keys=True), demand)
    return list(seen.values())


def step_threads(step: str = "") -> int:
    """The thread count of ``step``: :data:`THREADS_ENV` if set (checked), else :data:`THREADS` or
    :data:`DEFAULT_THREADS`."""
    n = env_count(THREADS_ENV, "threads per build step")
    return THREADS.get(step, DEFAULT_THREADS) if n is None else n


def plan(profile: str, notebooks: list[Path] | None = None, cores: int = 2, previous: dict | None = None,
         threads: int | None = None) -> list[Step]:
    """The build's steps for ``profile``: the zoos' members, then the paper chapters, then the
    comparison and the integrity chapter (:data:`LATE`, in that order). Every step runs ``threads``
    threads (default: its own, :func:`step_threads`), capped at ``cores`` (a step cannot hold more
    cores than the cluster has). ``previous`` (step name ->
    seconds, from the last build's record) puts the longest paper chapters first."""
    from .zoo import members, zoo_recipe

    notebooks = sorted(NOTEBOOKS.glob("*.ipynb")) if notebooks is None else [Path(n) for n in notebooks]

    def count(name: str) -> int:
        return min(threads or step_threads(name), cores)
    steps = []
    for dataset, overrides in zoo_demands(profile):
        for arch, s in members(zoo_recipe(dataset, profile, **overrides)):
            tag = "" if not overrides else " " + json.dumps(overrides, sort_keys=True)
            steps.append(Step(f"zoo {dataset}{tag} {arch}-s{s}", "zoo", (), count("zoo"), float(count("zoo")),
                              args={"dataset": dataset, "profile": profile, "arch": arch, "s": s, "overrides": overrides}))
    steps.sort(key=lambda st: -(previous or {}).get(st.name, 0.0))  # the zoo's longest members first (the last record's)
    zoo = tuple(s.name for s in steps)
    longest = previous or FIRST_BUILD
    early = sorted((n for n in notebooks if n.name not in LATE), key=lambda n: -longest.get(n.name, 0.0))
    late = [n for name in LATE for n in notebooks if n.name == name]
    waits_for = tuple(n.name for n in early)  # a late chapter waits for every paper chapter, then for the late one before it
    for nb in early + late:
        after = zoo if nb in early else waits_for
        steps.append(Step(nb.name, "notebook", after, count(nb.name), 0.0 if nb.name in DISPATCHERS else float(count(nb.name)),
                          {"path": str(nb)}))
        if nb in late:
            waits_for = (nb.name,)
    return steps


# --------------------------------------------------------------------------- running it

# what an executed notebook depends on besides its own source: the reads of another chapter's record (the schedule runs it after them)
READS = {"integrity.ipynb": ("comparison.ipynb",)}


def inputs_digest(notebook: Path, profile: str) -> str:
    """A digest of everything a chapter's executed copy depends on: its source (and the sources of
    the chapters whose records it reads, :data:`READS`), every file of wmlib, the pinned packages,
    the profile and the ``WMLIB_*`` environment. ``make book`` re-executes a notebook only when it
    changed; its models come from the model cache either way."""
    import hashlib

    notebook = Path(notebook)
    h = hashlib.sha256(f"{profile}\n".encode())
    files = [notebook, *(notebook.parent / n for n in READS.get(notebook.name, ())),
             *sorted((REPO_ROOT / "wmlib").rglob("*.py")), REPO_ROOT / "requirements.txt"]
    for f in files:
        h.update(f"{f.relative_to(REPO_ROOT) if f.is_relative_to(REPO_ROOT) else f.name}\n".encode() + f.read_bytes())
    h.update(json.dumps(sorted((k, v) for k, v in os.environ.items() if k.startswith("WMLIB_"))).encode())
    return h.hexdigest()



def _threads_env(threads: int) -> dict:
    return {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def _die_with_parent() -> None:
    """In the papermill child: be stopped when the Ray worker that started it dies (a stopped build
    stops its chapters; their kernels exit with papermill). Linux only; elsewhere a no-op."""
    import ctypes
    import signal
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _execute(step: Step, profile: str, out_dir: str, address: str, cell_log: str, *_after) -> dict:
    """The Ray task of one step; ``_after`` are the results of the steps it waits for."""
    t0 = time.time()
    if step.kind == "zoo":
        import torch

        from .zoo import train_member
        torch.set_num_threads(step.threads)
        row = train_member(**step.args)
        return {"name": step.name, "start": t0, "end": time.time(), "detail": row}
    # absolute paths: the kernel runs in the notebook's folder
    nb, out = Path(step.args["path"]).resolve(), Path(out_dir).resolve() / Path(step.args["path"]).name
    digest, saved = inputs_digest(nb, profile), out.with_name(out.name + ".digest")
    if (not os.environ.get("WMLIB_REEXECUTE") and out.exists() and saved.exists() and saved.read_text().strip() == digest):
        return {"name": step.name, "start": t0, "end": time.time(), "kept": True}
    saved.unlink(missing_ok=True)
    log = out.parent / "logs" / f"{nb.stem}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **_threads_env(step.threads), "RAY_ADDRESS": address, CELL_LOG: str(Path(cell_log).resolve())}
    cmd = [sys.executable, "-m", "papermill", str(nb), str(out), "-p", "profile", profile, "-k", "python3",
           "--cwd", str(nb.parent), "--request-save-on-cell-execute", "--no-progress-bar", "--log-output"]
    with log.open("w") as fh:
        rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                            preexec_fn=_die_with_parent).returncode
    if rc != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise RuntimeError(f"{nb.name} failed (papermill exit {rc}); its log is {log}. Last lines:\n{tail}")
    saved.write_text(digest + "\n")  # written after a successful run only
    return {"name": step.name, "start": t0, "end": time.time(), "kept": False}


def build(profile: str, cores: int, out_dir: Path, notebooks: list[Path] | None = None) -> dict:
    """Run :func:`plan` on a local Ray cluster of ``cores`` cores; every step's result (start, end)
    and the comparison's cell durations are written to ``out_dir/schedule.json``. Raises after the
    steps that could finish have finished, naming every failed step."""
    import logging

    import ray

    last = out_dir / "schedule.json"
    previous = {st["name"]: run_seconds(st) for st in json.loads(last.read_text())["steps"]
                if run_seconds(st)} if last.exists() else None
    steps = plan(profile, notebooks, cores, previous)
    out_dir.mkdir(parents=True, exist_ok=True)
    cell_log = out_dir / "cells.jsonl"
    cell_log.unlink(missing_ok=True)
    models_before = sum(1 for _ in _cache_models())
    t0 = time.time()
    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
           **{k: v for k, v in os.environ.items() if k.startswith("WMLIB_")}}
    if os.environ.get("RAY_ADDRESS"):  # a cluster: its nodes share this checkout's path, the datasets and WMLIB_CACHE
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False, logging_level=logging.ERROR,
                 runtime_env={"env_vars": {k: v for k, v in env.items() if k != "PYTHONPATH"}})
    else:
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 runtime_env={"env_vars": env})
    address = ray.get_runtime_context().gcs_address
    # Ray hides the GPUs from a task that asks for none: with GPUs, each step but the dispatcher asks for a quarter of one,
    # as the comparison's cells do (wmlib.cells.run)
    gpu = 0.25 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    task = ray.remote(max_retries=0)(_execute)
    refs, names = {}, {}
    for step in steps:  # in plan order: Ray starts ready tasks in the order they were submitted
        ref = task.options(num_cpus=step.cpus, num_gpus=gpu if step.cpus else 0.0, name=step.name).remote(
            step, profile, str(out_dir), address, str(cell_log), *(refs[a] for a in step.after))
        refs[step.name], names[ref] = ref, step.name
    print(f"== {len(steps)} steps on {cores} core(s), profile {profile}: "
          f"{sum(s.kind == 'zoo' for s in steps)} zoo models, then {sum(s.kind == 'notebook' for s in steps)} notebooks",
          flush=True)
    results, failed, pending = {}, {}, list(refs.values())
    while pending:
        try:
            done, pending = ray.wait(pending, num_returns=1)
        except KeyboardInterrupt:  # stopped: what was saved (models, comparison cells) is loaded by the next build
            ray.shutdown()
            _write_record(out_dir, profile, cores, t0, models_before, steps, results, cell_log, stopped=True)
            raise
        name = names[done[0]]
        try:
            results[name] = ray.get(done[0])
        except Exception as err:  # noqa: BLE001 - every failure is reported, with its step
            failed[name] = err
            print(f"   FAILED {name}", flush=True)
            continue
        r = carry_time(results[name], previous)
        if name.startswith("zoo "):
            zoo_done = sum(n.startswith("zoo ") for n in results)
            if zoo_done == sum(s.kind == "zoo" for s in steps):
                print(f"   zoo: {zoo_done} models (at {r['end'] - t0:.0f} s)", flush=True)
        else:
            what = "kept (unchanged since its last run)" if r.get("kept") else f"{r['end'] - r['start']:.0f} s"
            print(f"   {name}: {what} (at {r['end'] - t0:.0f} s)", flush=True)
    ray.shutdown()
    record = _write_record(out_dir, profile, cores, t0, models_before, steps, results, cell_log)
    if failed:
        first = [n for n in failed if not any(a in failed for a in next(s.after for s in steps if s.name == n))]
        raise RuntimeError(f"{len(failed)} step(s) failed ({', '.join(failed)}); the first: "
                           + "; ".join(f"[{n}] {getattr(failed[n], 'cause', None) or failed[n]}" for n in first))
    return record


def _write_record(out_dir: Path, profile: str, cores: int, t0: float, models_before: int, steps: list[Step], results: dict,
                  cell_log: Path, stopped: bool = False) -> dict:
    """``out_dir/schedule.json``: every step with its result (start, end; ``failed`` if it has none)
    and the comparison's cells; ``stopped`` if the build was interrupted (its unfinished steps then
    say ``failed``), with the models the cache holds now."""
    record = {"profile": profile, "cores": cores, "start": t0, "end": time.time(), "models_before": models_before,
              "steps": [{**{k: v for k, v in asdict(s).items() if k != "args"}, **results.get(s.name, {"failed": True})}
                        for s in steps],
              "cells": [json.loads(line) for line in cell_log.read_text().splitlines()] if cell_log.exists() else []}
    if stopped:
        record.update(stopped=True, models_after=sum(1 for _ in _cache_models()))
    (out_dir / "schedule.json").write_text(json.dumps(record, indent=1, default=str))
    return record


def step_seconds(step: dict) -> float:
    """A recorded step's wall seconds: none if it was kept (unchanged) or never finished."""
    return 0.0 if step.get("kept") or "end" not in step else step["end"] - step["start"]


def carry_time(result: dict, previous: dict | None) -> dict:
    """A step's result with, if it was kept, what the run that made its output took (``previous``:
    step name -> :func:`run_seconds` of the last record)."""
    if result.get("kept") and previous and result["name"] in previous:
        result["last_run_seconds"] = previous[result["name"]]
    return result


def run_seconds(step: dict) -> float:
    """What a recorded step's output took to make: its wall seconds if it ran, or, if it was kept,
    those of the run that made the output it kept (carried from build to build); 0 if unknown."""
    return step.get("last_run_seconds", 0.0) if step.get("kept") else step_seconds(step)


def _cache_models():
    from .train import cache_dir
    return cache_dir().rglob("*.pt") if cache_dir().exists() else iter(())


# --------------------------------------------------------------------------- what it took, and what it would take

@dataclass(frozen=True)
class Task:
    """A unit of the simulated schedule: ``seconds`` long on ``cpus`` cores, after ``after``."""
    name: str
    seconds: float
    cpus: float = 1.0
    after: tuple[str, ...] = ()


def tasks(record: dict) -> list[Task]:
    """The recorded build as :class:`Task` s: each step with its measured duration; a dispatcher
    (the comparison) unfolds into its driver's own time (1 core), its cells (each with its
    measured seconds, one core, in the batches its driver sent them: a batch starts when the
    previous one is done) and nothing else. Kept steps take no time."""
    cells_by_batch: dict[str, list[dict]] = {}
    for c in record.get("cells", []):
        cells_by_batch.setdefault(str(c["batch"]), []).append(c)
    out = []
    for s in record["steps"]:
        secs, after = step_seconds(s), tuple(s["after"])
        if s["name"] not in DISPATCHERS or not cells_by_batch or s.get("kept"):
            out.append(Task(s["name"], secs, s["cpus"] or 1.0, after))  # a dispatcher without cells: its driver's core
            continue
        batches = [cells_by_batch[b] for b in sorted(cells_by_batch, key=lambda b: float(b))]
        span = max(c["done_at"] for c in batches[-1]) - min(float(b[0]["batch"]) for b in batches)
        driver = max(secs - span, 0.0)
        out.append(Task(f"{s['name']} (driver)", driver, 1.0, after))
        prev, seen = (f"{s['name']} (driver)",), {}
        for batch in batches:  # a cell run again in a later batch (the reference thief's sweep reruns 'none') is a task of its own
            names = []
            for c in batch:
                seen[c["cell"]] = seen.get(c["cell"], 0) + 1
                names.append(f"{s['name']} cell {c['cell']}" + (f" (run {seen[c['cell']]})" if seen[c["cell"]] > 1 else ""))
            out += [Task(n, float(c["seconds"]), 1.0, prev) for n, c in zip(names, batch)]
            prev = tuple(names)
        out.append(Task(s["name"], 0.0, 0.0, prev))  # the step is done when its last batch is
    return out


def critical_path(ts: list[Task]) -> tuple[float, list[str]]:
    """The longest chain of dependent tasks: its seconds and its tasks (no core count can build
    faster than this)."""
    best: dict[str, tuple[float, list[str]]] = {}
    for t in ts:  # tasks come after the tasks they wait for (plan order)
        prev = max((best[a] for a in t.after), key=lambda b: b[0], default=(0.0, []))
        best[t.name] = (prev[0] + t.seconds, prev[1] + [t.name])
    return max(best.values(), key=lambda b: b[0]) if best else (0.0, [])


def project(ts: list[Task], cores: int) -> float:
    """The seconds ``ts`` would take on ``cores`` cores under greedy list scheduling, the task with
    the longest chain still ahead of it first (a projection from measured durations)."""
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    ts = [Task(t.name, t.seconds, min(t.cpus, cores), t.after) for t in ts]  # no task holds more cores than there are
    by = {t.name: t for t in ts}
    ahead: dict[str, float] = {}
    for t in reversed(ts):
        ahead[t.name] = t.seconds + max((ahead[u.name] for u in ts if t.name in u.after), default=0.0)
    done_at: dict[str, float] = {}
    running: list[tuple[float, str]] = []
    now, free, waiting = 0.0, float(cores), sorted(by, key=lambda n: -ahead[n])
    while waiting or running:
        started = True
        while started:
            started = False
            for n in waiting:
                t = by[n]
                if all(a in done_at for a in t.after) and t.cpus <= free + 1e-9:
                    waiting.remove(n)
                    free -= t.cpus
                    running.append((now + t.seconds, n))
                    started = True
                    break
        if not running:
            raise ValueError("the tasks' dependencies form a cycle or name a missing task")
        running.sort()
        now, n = running.pop(0)
        free += by[n].cpus
        done_at[n] = now
    return now


def summary(record: dict, projections=(2, 4, 8, 16)) -> dict:
    """The build's wall time, its work (core-seconds: each step's seconds times the cores it held,
    cells unfolded), its critical path and its projected time on each core count of
    ``projections`` that can hold its widest step (a 2-thread step on 1 core would take longer than
    it took here, which a projection from its duration cannot know)."""
    ts = tasks(record)
    length, chain = critical_path(ts)
    widest = max((t.cpus for t in ts), default=1.0)
    secs = {t.name: t.seconds for t in ts}
    return {"wall": record["end"] - record["start"], "cores": record["cores"],
            "work": sum(t.seconds * max(t.cpus, 1.0) for t in ts if t.seconds),
            "critical_path": length, "chain": [n for n in chain if secs[n] > 0],
            "projected": {c: project(ts, c) for c in projections if c >= widest}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wmlib.schedule", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="execute every notebook of the book as one schedule")
    b.add_argument("--profile", default=None)
    b.add_argument("--cores", type=int, default=None, help="cores of the local cluster (default: $WMLIB_CORES or all)")
    b.add_argument("--out", type=Path, default=REPO_ROOT / "book" / "executed")
    b.add_argument("notebooks", nargs="*", type=Path)
    p = sub.add_parser("plan", help="print the steps of a build without running them")
    p.add_argument("--profile", default=None)
    p.add_argument("--cores", type=int, default=2)
    s = sub.add_parser("summary", help="the critical path and projections of a recorded build")
    s.add_argument("record", type=Path)
    s.add_argument("--cores", type=int, nargs="+", default=[2, 4, 8, 16])
    args = parser.parse_args(argv)
    from .profiles import ENV_VAR, PROFILES
    profile = getattr(args, "profile", None) or os.environ.get(ENV_VAR) or "default"
    if profile not in PROFILES:
        print(f"error: unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}", file=sys.stderr)
        return 2
    if args.cmd == "plan":
        for st in plan(profile, cores=args.cores):
            print(f"{st.name}\tthreads {st.threads}\tcores {st.cpus:g}\tafter {len(st.after)} step(s)")
        return 0
    if args.cmd == "summary":
        print(summary_text(summary(json.loads(args.record.read_text()), tuple(args.cores))))
        return 0
    try:
        cores = args.cores if args.cores is not None else (env_cores() or len(os.sched_getaffinity(0)))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if cores < 1:
        print(f"error: --cores must be >= 1, got {cores}", file=sys.stderr)
        return 2
    try:
        step_threads()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        record = build(profile, cores, args.out, args.notebooks or None)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("== stopped: every model and comparison cell saved so far is loaded, not recomputed, by the next build",
              file=sys.stderr)
        return 130
    print(summary_text(summary(record)))
    return 0


def summary_text(s: dict) -> str:
    proj = ", ".join(f"{c} core{'s' * (c > 1)} {v / 60:.1f} min" for c, v in s["projected"].items())
    return (f"== schedule: {s['wall'] / 60:.1f} min wall on {s['cores']} core(s); work {s['work'] / 60:.1f} core-min; "
            f"critical path {s['critical_path'] / 60:.1f} min: {' -> '.join(s['chain'])}\n"
            f"   projected from these durations (not measured): {proj}")


if __name__ == "__main__":
    sys.exit(main())
