"""Where a run's time goes: every training (:func:`wmlib.train.fit`) and every batch evaluation
notes itself in this process's ledger; a notebook's cells become its phases.

:class:`Phases` hooks into the IPython kernel (when there is one) and records, for every executed
cell, its wall time and the work done inside it: models trained, epochs, training images and
seconds, images evaluated. :meth:`wmlib.report.Run.record` saves the phases with the results and
the status page lists the largest, so the next speed-up is aimed at the phase that costs most.
Work done in the comparison's Ray workers is added to the driver's ledger as results arrive
(:func:`absorb`): its seconds are worker seconds, summed over workers that ran side by side.
"""
from __future__ import annotations

import time

FIELDS = ("trainings", "epochs", "train_images", "train_seconds", "eval_images", "eval_seconds")
_LEDGER = dict.fromkeys(FIELDS, 0)


def note_fit(epochs: int, images: int, seconds: float) -> None:
    """One finished training run: epochs run, images seen (every epoch), its seconds."""
    _LEDGER["trainings"] += 1
    _LEDGER["epochs"] += epochs
    _LEDGER["train_images"] += images
    _LEDGER["train_seconds"] += seconds


def note_eval(images: int, seconds: float) -> None:
    """One batched pass of a model over ``images`` images (accuracy, scores, reconstructions)."""
    _LEDGER["eval_images"] += images
    _LEDGER["eval_seconds"] += seconds


def snapshot() -> dict:
    return dict(_LEDGER)


def since(snap: dict) -> dict:
    """The work done since ``snap`` (a :func:`snapshot`), one number per field of :data:`FIELDS`."""
    return {k: _LEDGER[k] - snap[k] for k in FIELDS}


def as_fields(work: dict) -> dict:
    """``work`` (a :func:`since`) as flat fields of a result (``work_trainings``, ...)."""
    return {f"work_{k}": v for k, v in work.items()}


def from_fields(result: dict) -> dict:
    """The work a result carries in the fields :func:`as_fields` wrote."""
    return {k: result[f"work_{k}"] for k in FIELDS if f"work_{k}" in result}


def absorb(work: dict) -> None:
    """Add work done elsewhere (a Ray worker's :func:`since`) to this process's ledger."""
    for k in FIELDS:
        _LEDGER[k] += work.get(k, 0)


def rates(row: dict) -> dict:
    """``row`` with images per second of training and of evaluation added (None where there was none)."""
    return {**row, "train_images_per_s": row["train_images"] / row["train_seconds"] if row["train_seconds"] else None,
            "eval_images_per_s": row["eval_images"] / row["eval_seconds"] if row["eval_seconds"] else None}


class Phases:
    """The phases of a run: one row per executed notebook cell (in an IPython kernel) with its wall
    seconds and its ledger delta. Outside a kernel it records nothing and :meth:`rows` is empty."""

    def __init__(self):
        self._rows: list[dict] = []
        self._open: tuple[str, float, dict] | None = None
        self._count = 0
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython comes with the notebook stack
            return
        ip = get_ipython()
        if ip is not None:
            ip.events.register("pre_run_cell", self._pre)
            ip.events.register("post_run_cell", self._post)

    def _pre(self, info) -> None:
        self._count += 1
        first = next((ln.strip() for ln in (info.raw_cell or "").splitlines() if ln.strip()), "")
        self._open = (f"[{self._count}] {first[:70]}", time.perf_counter(), snapshot())

    def _post(self, result) -> None:
        if self._open is None:
            return
        label, t0, snap = self._open
        self._open = None
        self._rows.append({"phase": label, "seconds": round(time.perf_counter() - t0, 2), **since(snap)})

    def rows(self) -> list[dict]:
        """The finished cells so far, each with its images per second."""
        return [rates(r) for r in self._rows]
