"""Recording a run, the *paper vs ours* table, and the book's reproduction-status page.

Every chapter ends by calling :meth:`Run.record`, which writes ``data/results/<chapter>-<profile>-
<dataset>.json`` with the config, seed, device, wall time, metrics and the paper-vs-ours rows.
``python -m wmlib.report status`` turns the recorded ``default`` runs into the status page tables.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from . import timing
from .data import REPO_ROOT, is_standin
from .verify import PairRate, level_reasons

STATUSES = ("reproduced", "consistent", "model-based", "deviates", "not comparable", "not in our copy", "not in the paper")
EXPLAINED = ("model-based", "deviates", "not in our copy", "not in the paper")  # a row with one of these statuses must say why
BOUNDS = (None, "at least", "at most")


def results_dir() -> Path:
    return Path(os.environ.get("WMLIB_RESULTS", REPO_ROOT / "data" / "results"))


def compare(paper: float | None, ours: float, tol: float, same_setting: bool, bound: str | None = None,
            upper: float | None = None) -> str:
    """A status label: within ``tol`` of the paper in its own setting is *reproduced*, in another
    setting *consistent*; outside ``tol`` *deviates* (the row must say why). ``bound`` = "at least"
    (or "at most") reads the paper's number as a one-sided claim, e.g. "stays above the threshold":
    ours matches it when ``ours >= paper - tol`` (``ours <= paper + tol``). A promise "at most" with
    a measured ``upper`` bound on ours (e.g. a false-claim rate's, :func:`wmlib.verify.pair_rate`)
    is met only when that bound meets it; when only the point estimate does, the promise rests on
    the statistical model, not on the measurement: *model-based*."""
    if paper is None or (isinstance(paper, float) and math.isnan(paper)):
        return "not in our copy"
    if bound not in BOUNDS:
        raise ValueError(f"unknown bound {bound!r}; choose one of: {', '.join(map(str, BOUNDS))}")
    if upper is not None and bound != "at most":
        raise ValueError("a measured upper bound answers a promise 'at most': give bound='at most'")
    ok = {None: abs(ours - paper) <= tol, "at least": ours >= paper - tol, "at most": ours <= paper + tol}[bound]
    if ok and upper is not None and upper > paper + tol:
        return "model-based"
    if ok:
        return "reproduced" if same_setting else "consistent"
    return "deviates"


@dataclass
class PaperVsOurs:
    """Rows of the table every chapter ends with."""
    rows: list[dict] = field(default_factory=list)

    def add(self, what: str, paper: float | None, ours: float, setting: str, tol: float,
            same_setting: bool, reason: str | dict[str, str] = "", fmt: str = "{:.2%}", bound: str | None = None,
            upper: float | None = None) -> None:
        """One row. ``reason``: one text, or one per status (``{"deviates": ..., "model-based": ...}``),
        of which the row shows only the one for the status it got. ``upper``: a measured upper bound
        on ``ours`` (:func:`compare`), shown beside it."""
        status = compare(paper, ours, tol, same_setting, bound, upper)
        if isinstance(reason, dict):
            unknown = set(reason) - set(STATUSES)
            if unknown:
                raise ValueError(f"row {what!r}: reasons for unknown statuses {sorted(unknown)}")
            reason = reason.get(status, "")
        if status in EXPLAINED and not reason:
            raise ValueError(f"row {what!r} has status {status!r}: give the reason")
        prefix = {None: "", "at least": "≥ ", "at most": "≤ "}[bound]
        shown = ("—" if isinstance(ours, float) and math.isnan(ours) else fmt.format(ours)) + \
            ("" if upper is None else f" (upper bound {fmt.format(upper)})")  # NaN: nothing of ours to show (say why)
        self.rows.append({"what": what, "paper": "—" if paper is None else prefix + fmt.format(paper),
                          "ours": shown, "setting": setting, "status": status, "reason": reason})

    def add_ours(self, what: str, ours: float, setting: str, reason: str, fmt: str = "{:.2%}") -> None:
        """A row the paper has no number for (the book's own question, e.g. a stricter protocol, or a
        setting the paper does not run): status *not in the paper*, ``reason`` says what it measures."""
        if not reason:
            raise ValueError(f"row {what!r} has status 'not in the paper': say what it measures")
        self.rows.append({"what": what, "paper": "—", "ours": fmt.format(ours), "setting": setting,
                          "status": "not in the paper", "reason": reason})

    def add_level(self, what: str, alpha: float, rate: PairRate, setting: str, key: str = "key", fmt: str = "{:.2%}") -> None:
        """The book's promise "false claims <= ``alpha``" as one row: ``rate`` (pairs of clean zoo
        models and keys) beside its measured upper bound, with the reason for the status it gets
        (:func:`wmlib.verify.level_reasons`)."""
        self.add(what, alpha, rate.rate, setting, tol=0.0, same_setting=True, bound="at most", upper=rate.bound,
                 reason=level_reasons(rate, alpha, key=key), fmt=fmt)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["what", "paper", "ours", "setting", "status", "reason"])

    def show(self):
        """The table as the chapter shows it: every cell in full (a plain DataFrame display cuts text
        after 50 characters, which would hide the reasons)."""
        return self.frame().style.hide(axis="index")


class Run:
    """Start the clock when a chapter starts; :meth:`record` writes what the run measured."""

    def __init__(self, chapter: str, config: dict, device: torch.device):
        self.chapter, self.config, self.device, self.t0 = chapter, copy.deepcopy(dict(config)), device, time.perf_counter()
        self.phases = timing.Phases()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    @property
    def path(self) -> Path:
        return results_dir() / f"{self.chapter}-{self.config['profile']}-{self.config['dataset']}.json"

    def _rows(self, table: PaperVsOurs) -> list[dict]:
        """The paper-vs-ours rows as recorded: a run on a stand-in dataset compares nothing with a
        paper, so each of its rows is 'not comparable' and says why."""
        name = self.config.get("dataset", "")
        if not is_standin(name):
            return table.rows
        return [{**r, "status": "not comparable",
                 "reason": f"run on {name}, a stand-in of the task's shape, not the paper's dataset"
                           + (f"; {r['reason']}" if r["reason"] else "")} for r in table.rows]

    def record(self, metrics: dict, table: PaperVsOurs) -> Path:
        device_name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else platform.processor() or "cpu"
        payload = {"chapter": self.chapter, "config": self.config, "device": str(self.device),
                   "device_name": device_name, "torch": torch.__version__, "threads": torch.get_num_threads(),
                   "wall_seconds": round(time.perf_counter() - self.t0, 1),
                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "metrics": metrics, "paper_vs_ours": self._rows(table), "phases": self.phases.rows()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=float))
        os.replace(tmp, self.path)
        return self.path


def load_record(chapter: str, profile: str, dataset: str) -> dict:
    """What ``chapter`` recorded (:meth:`Run.record`) for ``profile`` on ``dataset``; a chapter that
    reads another's results names the notebook to run first when there is none."""
    path = results_dir() / f"{chapter}-{profile}-{dataset}.json"
    if not path.exists():
        raise FileNotFoundError(f"no recorded {chapter} run for profile {profile!r} on {dataset} in {results_dir()}: run "
                                f"notebooks/{chapter}.ipynb with the same profile first (make book runs it before this chapter)")
    return json.loads(path.read_text())


def ablation_reason(paper: float, ours: float, tol: float, ablation: float | None, same: bool = False,
                    note: str = "", where: str = "on MNIST digits", missing: str = "no digits run of this key type",
                    fmt: str = "{:.3f}", within: bool = False, what: str = "the same attack",
                    cause: str = "the dataset", next_test: str = "") -> str:
    """For a row outside ``tol`` of the paper, what an ablation run in the paper's setting says
    (``ablation``: its number, None if it did not run): the setting explains the gap, or it does not.
    Empty for a row within tolerance or in the paper's own setting, unless ``within``: then the
    ablation's number is still said beside ours. ``note`` is said first; ``fmt`` formats the number,
    ``what`` names the measurement (an attack, or e.g. "the clean model's accuracy"), ``cause`` what the
    ablation changed (an ablation that also changes the recipe tests both together); ``next_test``:
    what a further ablation measured, said in place of "cause untested" when this one does not
    explain the gap, and after the verdict otherwise."""
    if same:
        said = ""
    elif abs(ours - paper) <= tol:
        said = note + f"; {where}: {fmt.format(float(ablation))}" if within and ablation is not None else ""
    elif ablation is None:
        said = note + f"; untested ({missing})"
    elif abs(float(ablation) - paper) <= tol:
        said = note + f"; tested: {where} {what} gives {fmt.format(float(ablation))}, so {cause} explains the gap"
    else:
        return (note + f"; tested: {where} it is still {fmt.format(float(ablation))}, so {cause} does not explain it"
                + (f"; {next_test}" if next_test else " (cause untested)"))
    return said + (f"; {next_test}" if next_test else "")


@dataclass(frozen=True)
class Ablated:
    """An ablation run's numbers by paper-vs-ours row (``numbers``; empty: it did not run), said beside
    a row by :func:`ablation_reason` (``where`` it ran, ``missing``: why it has no number, ``same``:
    the row is in the paper's own setting)."""
    numbers: dict
    same: bool
    where: str
    missing: str

    def said(self, row: str, paper: float, ours: float, tol: float, fmt: str = "{:.2%}", what: str = "the same attack",
             next_test: str = "", cause: str = "the dataset") -> str:
        """:func:`ablation_reason` for ``row``, its ablation number said beside ours even within ``tol``."""
        return ablation_reason(paper, ours, tol, self.numbers.get(row), self.same, where=self.where, fmt=fmt, within=True,
                               what=what, missing=self.missing, next_test=next_test, cause=cause)


def start(chapter: str, profile: str | None, params: dict, show: tuple[str, ...] = ("model",)) -> tuple[dict, torch.device, Run]:
    """A chapter's first call: its knobs (the profile with every knob of ``params``, the notebook's
    parameters, that is not None; :func:`wmlib.settings.resolve`), the device, the seed set, the
    clock started. Prints the profile, the dataset, the knobs in ``show`` and the device."""
    from .settings import full_adds, names, resolve
    from .train import default_device, seed_everything

    cfg = resolve(chapter, profile, **{k: params.get(k) for k in names(chapter)})
    device = default_device()
    if "seed" in cfg:
        seed_everything(cfg["seed"])
    run = Run(chapter, cfg, device)
    shown = "  ".join(f"{k}={cfg[k]}" for k in show)
    print(f"profile={cfg['profile']}  dataset={cfg['dataset']}  {shown}  device={device}")
    cuts = full_adds(chapter, cfg["profile"])
    if cuts:  # the rendered page says what this run left out (wrapped: a code cell's output does not wrap)
        import textwrap

        print("This page was produced by the `default` profile; `WMLIB_PROFILE=full make book` runs it at full strength:")
        print("\n".join(textwrap.fill(c, 100, initial_indent="- ", subsequent_indent="  ") for c in cuts))
    return cfg, device, run


def glue(values: dict) -> None:
    """Hand numbers to the prose of the rendered page (myst-nb glue), without displaying them."""
    from myst_nb import glue as _glue
    for name, value in values.items():
        _glue(name, value, display=False)


def status_markdown(paths: list[Path]) -> str:
    """One section per recorded run: its setting, wall time and paper-vs-ours table."""
    out = []
    for p in sorted(paths):
        r = json.loads(p.read_text())
        c = r["config"]
        out.append(f"## {r['chapter']} — profile `{c['profile']}`, {c['dataset']}, {c['model']}\n")
        out.append(f"Run on {r['device']} ({r['device_name']}, {r.get('threads', '?')} threads, "
                   f"{c.get('precision', 'fp32')} training), torch {r['torch']}, "
                   f"{r['wall_seconds']:.0f} s, finished {r['finished']}.\n")
        out.append(pd.DataFrame(r["paper_vs_ours"]).to_markdown(index=False) + "\n")
        if r.get("phases"):
            out.append(phases_markdown(r["phases"], r["wall_seconds"]))
    return "\n".join(out) if out else "No chapter has recorded a run yet.\n"


def phases_markdown(phases: list[dict], wall: float, top: int = 8) -> str:
    """The ``top`` most expensive phases (notebook cells) of a run, with the work done in each:
    where the next speed-up should aim."""
    rows = sorted(phases, key=lambda r: -r["seconds"])[:top]
    frame = pd.DataFrame([{"phase (cell)": f"`{r['phase']}`", "seconds": round(r["seconds"]),
                           "share": f"{r['seconds'] / wall:.0%}" if wall else "",
                           "models trained": r["trainings"], "epochs": r["epochs"],
                           "training img/s": f"{r['train_images_per_s']:,.0f}" if r.get("train_images_per_s") else "",
                           "images evaluated": r["eval_images"],
                           "evaluation img/s": f"{r['eval_images_per_s']:,.0f}" if r.get("eval_images_per_s") else ""}
                          for r in rows])
    shown = sum(r["seconds"] for r in rows)
    return (f"Where the time went: the {len(rows)} longest of {len(phases)} cells, {shown:.0f} s of {wall:.0f} s "
            "(training and evaluation seconds done in the comparison's Ray workers are summed over workers).\n\n"
            + frame.to_markdown(index=False) + "\n")


def benchmark_line(bench: dict) -> str:
    """One sentence of what this machine trains per second (``scripts/benchmark_train.py --json``): the
    yardstick beside a build's times, since machines of the same name differ by up to 1.7x."""
    ips = bench["images_per_s"]
    line = (f"Machine: {bench['device']}; {bench['model']} on {bench['data']} trains {ips['plain']:,.0f} images/s in a "
            f"plain PyTorch loop ({ips['wmlib']:,.0f} in wmlib's), batch {bench['batch_size']}, float32; matmul peak "
            f"{bench['matmul_peak_gflops']['float32']:,.0f} GFLOP/s float32")
    bf16_peak = bench["matmul_peak_gflops"].get("bfloat16")
    line += (f", {bf16_peak:,.0f} bfloat16" if bf16_peak is not None else
             "; no native bfloat16 here (its peak is not measured and the precision knob's bf16 is refused)")
    if bench.get("bf16_vs_fp32"):
        line += f"; with the precision knob's bf16, {bench['bf16_vs_fp32']['wmlib']:.2f}x float32's rate"
    return line + " (`python scripts/benchmark_train.py --epochs 1 --repeats 1 --stack 0`).\n"


def build_times_markdown(record: dict, bench: dict | None = None) -> str:
    """A scheduled build (:func:`wmlib.schedule.build`'s record) step by step: each zoo's members
    together, each notebook with its thread count, when it started and its seconds; then the wall
    time, the work, the critical path and the projections to other core counts (labelled as
    projections). ``bench``: the machine's benchmark, said beside them."""
    from .schedule import run_seconds, step_seconds, summary

    rows = {}
    for st in record["steps"]:
        zoo = st["kind"] == "zoo"
        name = " ".join(st["name"].split()[:2]) if zoo else st["name"]  # a zoo's members: one row, "zoo DATASET"
        r = rows.setdefault(name, {"step": name, "models": 0, "threads": st["threads"], "started (min)": None,
                                   "ended (min)": 0.0, "busy seconds": 0.0, "its output took (s)": 0.0})
        r["models"] += zoo
        if "start" in st:
            at, to = (st["start"] - record["start"]) / 60, (st["end"] - record["start"]) / 60
            r["started (min)"] = at if r["started (min)"] is None else min(r["started (min)"], at)
            r["ended (min)"] = max(r["ended (min)"], to)
        r["busy seconds"] += step_seconds(st)
        r["its output took (s)"] += run_seconds(st)
        r["status"] = "failed" if st.get("failed") else "kept (unchanged)" if st.get("kept") else "ran"
    table = pd.DataFrame(rows.values())
    table["step"] = [f"{r.step} ({r.models} clean models)" if r.models else r.step for r in table.itertuples()]
    table = table.drop(columns="models").round({"started (min)": 1, "ended (min)": 1, "busy seconds": 0,
                                                "its output took (s)": 0})
    table["its output took (s)"] = table["its output took (s)"].where(table["its output took (s)"] > 0)  # unknown: blank
    sm = summary(record)
    kind = ("cold: the model cache was empty" if record["models_before"] == 0
            else f"warm: {record['models_before']} models were cached")
    proj = "; ".join(f"{c} core{'s' * (c > 1)}: {v / 60:.0f} min" for c, v in sm["projected"].items())
    return (f"## Build times\n\nThis book's last build, profile `{record['profile']}`, as one schedule on "
            f"{record['cores']} core{'s' * (record['cores'] > 1)} ({kind} when it began; the environment and the HTML are "
            f"not counted): **{sm['wall'] / 60:.0f} min** wall for {sm['work'] / 60:.0f} core-minutes of work. "
            "A step's busy seconds are its wall time (a zoo's: its models' times added up, trained side by side); "
            "the comparison's driver holds no core while its cells run as tasks of the same cluster. A step kept from an "
            "earlier build (its inputs unchanged) takes no time now; *its output took* the seconds of the run that made "
            "it, carried from build to build.\n\n"
            + table.to_markdown(index=False) + "\n\n"
            f"The critical path, the longest chain of steps that wait for each other, is {sm['critical_path'] / 60:.0f} min: "
            f"{' → '.join(sm['chain'][:1] + ['…'] + sm['chain'][-3:] if len(sm['chain']) > 5 else sm['chain'])}. "
            f"**Projected** (a list-scheduling simulation of these measured durations, not a measurement): {proj}.\n"
            + ("\n" + benchmark_line(bench) if bench else ""))


def count_figures(notebook: Path) -> int:
    """How many PNG images an executed notebook carries (a book chapter without any is broken)."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    return sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wmlib.report")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("status", help="print the reproduction-status tables as MyST markdown")
    s.add_argument("--profile", default="default")
    s.add_argument("--out", type=Path, help="write here instead of stdout")
    s.add_argument("--schedule", type=Path, help="the build's record (python -m wmlib.schedule build writes it)")
    s.add_argument("--benchmark", type=Path, help="the machine's benchmark (scripts/benchmark_train.py --json)")
    f = sub.add_parser("check-figures", help="fail if an executed notebook has no figure")
    f.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "check-figures":
        empty = [str(p) for p in args.notebooks if count_figures(p) == 0]
        for p in empty:
            print(f"error: {p} has no figures (was the kernel's matplotlib backend overridden?)", file=sys.stderr)
        return 1 if empty else 0
    text = status_markdown(list(results_dir().glob(f"*-{args.profile}-*.json")))
    if args.schedule and args.schedule.exists():
        bench = json.loads(args.benchmark.read_text()) if args.benchmark and args.benchmark.exists() else None
        text = build_times_markdown(json.loads(args.schedule.read_text()), bench) + "\n" + text
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
