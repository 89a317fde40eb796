"""Model-side attacks: the thief changes the weights (the input is never modified). Fine-tuning,
magnitude pruning, prune-then-fine-tune sweeps and the strongest one within an accuracy budget,
8-bit weight quantisation, FGSM adversarial fine-tuning; and the suite's model-side attacks:
fine-tuning (two thief sizes), pruning, prune + fine-tune, quantisation, transfer learning and
overwriting with the thief's own watermark."""
from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Callable

import pandas as pd
import torch
from torch import nn
from torch.ao.quantization.observer import MinMaxObserver
from torch.nn.utils import prune
from tqdm.auto import tqdm

from .. import data as _data
from .. import rules
from ..data import Split
from ..keys import Key, fgsm
from ..models import feature_layers, weight_layers
from ..train import TrainConfig, evaluate, fit, fit_cached
from ..verify import Oracle, key_accuracy, verify_key
from .base import Attack, OracleThreat, Suspect, Threat, register

PRUNE_SCOPES = ("global", "layer", "features")

# what an attack sweep measures on each attacked model: a Key (its key accuracy through an Oracle),
# or any model -> score function (e.g. GradSigns' white-box bit accuracy)
Measure = Key | Callable[[nn.Module], float]


def measure(model: nn.Module, what: Measure) -> float:
    """``what``'s score of ``model``: key accuracy for a :class:`~wmlib.keys.Key`, else ``what(model)``."""
    return key_accuracy(Oracle(model), what) if isinstance(what, Key) else float(what(model))


def _weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in weight_layers(model)]


def sparsity(model: nn.Module) -> float:
    """Fraction of zero weights over all conv / linear layers."""
    ws = [m.weight for m, _ in _weights(model)]
    return float(sum((w == 0).sum().item() for w in ws) / sum(w.numel() for w in ws))


def pruning_probe(models: dict[str, nn.Module], keys: dict[str, Key]) -> Callable[[str, float, int], tuple]:
    """``probe(kind, rate, n)``: the answers of ``models[kind]`` pruned by ``rate`` to the first ``n``
    samples of ``keys[kind]``, and its key accuracy (what :func:`wmlib.plots.pruning_panels` draws)."""
    def probe(kind: str, rate: float, n: int) -> tuple[torch.Tensor, float]:
        o = Oracle(prune_magnitude(models[kind], rate))
        return o.predict(keys[kind].x[:n]), key_accuracy(o, keys[kind])
    return probe


def prune_magnitude(model: nn.Module, amount: float, scope: str = "global", permanent: bool = True) -> nn.Module:
    """A copy with the ``amount`` fraction of smallest-magnitude conv / linear weights set to zero.

    ``scope='global'`` ranks all weights together (Han et al. 2015, as in GradSigns §4.3.1 and
    Namba §4.3.1); ``'layer'`` prunes each layer by the same fraction; ``'features'`` ranks together
    every weight but the classifier's (the last linear layer), which it leaves whole, as Wen et al.'s
    code prunes (``pruning.py``: LeNet-5's conv1, conv2, fc1 and fc2; ResNet-18's convolutions). With ``permanent=False`` the
    mask stays attached (torch.nn.utils.prune), so later training keeps pruned weights at zero;
    :func:`make_permanent` folds it in.
    """
    if scope not in PRUNE_SCOPES:
        raise ValueError(f"unknown prune scope {scope!r}; choose one of: {', '.join(PRUNE_SCOPES)}")
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")
    model = copy.deepcopy(model)
    params = [(m, "weight") for m in feature_layers(model)] if scope == "features" else _weights(model)
    if amount > 0:
        if scope in ("global", "features"):
            prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
        else:
            for m, name in params:
                prune.l1_unstructured(m, name, amount=amount)
        if permanent:
            make_permanent(model)
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold any attached pruning masks into the weights and biases (in place)."""
    for m in model.modules():
        for name in ("weight", "bias"):
            if prune.is_pruned(m) and hasattr(m, f"{name}_mask"):
                prune.remove(m, name)
    return model


def finetune(model: nn.Module, data: Split, cfg: TrainConfig, monitor: dict[str, Split] | None = None,
             progress: bool = False) -> tuple[nn.Module, dict]:
    """A copy fine-tuned on the thief's ``data`` (all layers). ``monitor`` splits (e.g. the key)
    are measured after every epoch; with a ``val`` split and ``cfg.keep_best`` the best validation
    epoch is kept (early stopping, as in GradSigns §4.3.1)."""
    model = copy.deepcopy(model)
    hist = fit_cached(model, data, cfg, tag="fine-tune", monitor=monitor, device=next(model.parameters()).device,
                      desc="fine-tune")
    return model, hist.as_dict()


def finetune_trials(model: nn.Module, pool: Split, cfg: TrainConfig, trials: int, samples: int,
                    measures: dict[str, Measure], test: Split, seed: int = 0) -> tuple[nn.Module, pd.DataFrame]:
    """Wen et al. Figs. 5-7: ``trials`` chained fine-tunings (trial k starts from trial k-1's model),
    each on a fresh seeded draw of ``samples`` images from the thief's ``pool`` (in-distribution
    data for fine-tuning, another task's for transfer learning). One row per trial (0: before any)
    with the test accuracy and each of ``measures``. Returns the last model and the table."""
    if samples > len(pool):
        raise ValueError(f"samples must be in 1..{len(pool)} (the thief's pool), got {samples}")
    g = torch.Generator().manual_seed(seed)
    current = copy.deepcopy(model)
    device = next(current.parameters()).device
    rows = []
    for t in range(trials + 1):
        if t > 0:
            draw = pool.subset(torch.randperm(len(pool), generator=g)[:samples])
            fit_cached(current, draw, replace(cfg, seed=cfg.seed + t), tag="fine-tune-trial", device=device, desc=f"trial {t}")
        rows.append({"trial": t, "test_acc": evaluate(current, test, device),
                     **{name: measure(current, m) for name, m in measures.items()}})
    return current, pd.DataFrame(rows)


def last_trial_asr(model: nn.Module, key: Key, pool: Split, cfg: TrainConfig, trials: int, samples: int, test: Split,
                   seed: int = 0) -> float:
    """``key``'s accuracy after the last of :func:`finetune_trials` on ``model`` (the function-coupled
    chapter's thief, as a measure of one model and key)."""
    return float(finetune_trials(model, pool, cfg, trials, samples, {"ASR": key}, test, seed=seed)[1]["ASR"].iloc[-1])


def prune_sweep(model: nn.Module, test: Split, keys: dict[str, Measure], rates, scope: str = "global") -> pd.DataFrame:
    """Magnitude pruning alone (no fine-tuning) at each rate: sparsity, test accuracy and each of
    ``keys`` (see :func:`measure`)."""
    device = next(model.parameters()).device
    rows = []
    for rate in rates:
        pruned = prune_magnitude(model, rate, scope)
        row = {"rate": rate, "sparsity": sparsity(pruned), "test_acc": evaluate(pruned, test, device)}
        row.update({name: measure(pruned, key) for name, key in keys.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def prune_finetune(model: nn.Module, rate: float, thief: Split, cfg: TrainConfig, scope: str = "global",
                   val_fraction: float = 0.3, keep_sparse: bool = True, patience: int | None = None) -> nn.Module:
    """Prune ``rate`` of the weights, then fine-tune on the thief's data (GradSigns §4.3.1, Namba
    §4.3.1): 70 % of it trains, 30 % validates, and the best validation epoch is kept (early
    stopping). ``keep_sparse`` keeps pruned weights at zero while fine-tuning (GradSigns: pruned
    weights are "removed from the computation graph"); ``patience`` stops early (the GradSigns code: 2)."""
    n_val = int(round(val_fraction * len(thief)))
    val, tr = thief.subset(slice(0, n_val)), thief.subset(slice(n_val, None))
    tuned = prune_magnitude(model, rate, scope, permanent=not keep_sparse)
    fit_cached(tuned, tr, replace(cfg, keep_best=True), tag="prune-fine-tune", monitor={"val": val},
               device=next(model.parameters()).device, patience=patience)
    return make_permanent(tuned)


def prune_finetune_sweep(model: nn.Module, thief: Split, test: Split, keys: dict[str, Measure],
                         cfg: TrainConfig, rates=tuple(i / 10 for i in range(10)), progress: bool = True,
                         **kw) -> pd.DataFrame:
    """:func:`prune_finetune` at each rate in ``rates``; one row per rate with test and key accuracy
    after pruning alone and after fine-tuning. Pick the thief's best with :func:`worst_within_budget`."""
    device = next(model.parameters()).device
    rows = []
    for rate in tqdm(rates, desc="prune+fine-tune", disable=not progress, leave=False):
        pruned = prune_magnitude(model, rate, kw.get("scope", "global"))
        row = {"rate": rate, "test_acc_pruned": evaluate(pruned, test, device)}
        row.update({f"{name}_pruned": measure(pruned, key) for name, key in keys.items()})
        tuned = prune_finetune(model, rate, thief, cfg, **kw)
        row.update({"sparsity": sparsity(tuned), "test_acc": evaluate(tuned, test, device)})
        row.update({name: measure(tuned, key) for name, key in keys.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def worst_within_budget(sweep: pd.DataFrame, column: str, baseline_acc: float, budget: float = 0.10,
                        acc_column: str = "test_acc") -> pd.Series:
    """The sweep row with the lowest ``column`` among those whose test accuracy is at least
    ``(1 - budget) * baseline_acc``: the papers' protocol (GradSigns §4.3.1, Namba §4.3.1), a
    worst-case search that reads the owner's key and the test labels, an upper bound on the damage
    and not what a thief can run (:func:`thief_prune_finetune` is the thief's)."""
    ok = sweep[sweep[acc_column] >= (1.0 - budget) * baseline_acc]
    if ok.empty:
        raise ValueError("no attacked model keeps its test accuracy within the budget")
    return ok.loc[ok[column].idxmin()]


def worst_prune_finetune(model: nn.Module, thief: Split, test: Split, key: Measure, cfg: TrainConfig,
                         rates=tuple(i / 10 for i in range(10)), budget: float = 0.10,
                         progress: bool = True) -> tuple[pd.DataFrame, pd.Series, nn.Module]:
    """The worst case of pruning + fine-tuning within ``budget`` (:func:`worst_within_budget`: it
    reads ``key``): the sweep over ``rates``, its worst row for ``key`` and that attacked model."""
    sweep = prune_finetune_sweep(model, thief, test, {"key": key}, cfg, rates=rates, progress=progress)
    worst = worst_within_budget(sweep, "key", evaluate(model, test, next(model.parameters()).device), budget)
    return sweep, worst, prune_finetune(model, float(worst["rate"]), thief, cfg)


def quantize_weights(model: nn.Module, bits: int = 8) -> nn.Module:
    """A copy whose conv / linear weights are rounded to ``bits``-bit symmetric per-tensor integers
    (scale from torch.ao's MinMaxObserver) and stored back as floats (fake quantisation)."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in 2..8, got {bits}")
    model = copy.deepcopy(model)
    qmax = 2 ** (bits - 1) - 1
    for m, _ in _weights(model):
        obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric,
                             quant_min=-qmax, quant_max=qmax).to(m.weight.device)
        obs(m.weight.detach())
        scale, zero = obs.calculate_qparams()
        with torch.no_grad():
            m.weight.copy_(torch.fake_quantize_per_tensor_affine(
                m.weight, float(scale), int(zero), -qmax, qmax))
    return model


BatchHook = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def mixed_batches(make: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor], share: float,
                  name: str = "share") -> BatchHook:
    """A :func:`wmlib.train.fit` batch hook that replaces the first ``share`` of every batch (at least
    one image) by ``make(model, x, y)`` of those images, labels kept: adversarial examples of the model
    as it is at that step, or images stamped with a trigger. ``name`` is the knob a bad share is named by."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {share}")

    def hook(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = max(1, int(round(share * len(x))))
        return torch.cat([make(m, x[:k], y[:k]), x[k:]]), y
    return hook


def adversarial_finetune(model: nn.Module, data: Split, cfg: TrainConfig, eps: float, mix: float = 0.5,
                         monitor: dict[str, Split] | None = None) -> tuple[nn.Module, dict]:
    """GradSigns §4.3.3 (Table 4): a copy fine-tuned on a mixture of FGSM examples (with their
    correct labels) and clean samples. In every batch the first ``mix`` share is replaced by FGSM
    examples of the model as it is at that step (ε and the mixture are not given in the paper)."""
    if not 0.0 < eps <= 1.0:
        raise ValueError(f"eps must be in (0, 1] (the [0, 1] pixel scale), got {eps}")
    hook = mixed_batches(lambda m, x, y: fgsm(m, x, y, eps), mix, "mix")
    model = copy.deepcopy(model)
    hist = fit_cached(model, data, cfg, tag="adversarial-fine-tune", monitor=monitor, batch_hook=hook,
                      describe={"batch_hook": "fgsm examples with their labels replace the first share of each batch",
                                "eps": eps, "mix": mix}, device=next(model.parameters()).device, desc="adversarial fine-tune")
    return model, hist.as_dict()


OVERWRITE_DATA = ("mixed", "triggers")


def overwrite(model: nn.Module, thief, task, cfg: TrainConfig, seed: int, data: str = "mixed") -> tuple[nn.Module, Key]:
    """Overwriting (Wen et al. §5, Table 3): the thief embeds a watermark of its own with ``thief``
    (a public scheme) into a copy of ``model``, fine-tuning with ``cfg``, its key drawn with ``seed``
    from ``task``, its own data as a task (:meth:`wmlib.data.Splits.thief_task`). ``data``:
    ``"mixed"`` trains as ``thief`` embeds (its triggers mixed into its clean data); ``"triggers"``
    fine-tunes on the thief's triggers alone, one reading of the paper's "fine-tune the watermarked
    models with the selected watermark samples" (§5.3), whose "smaller changing impact [...] due to
    the training data scale" suggests a small set, for as many optimiser steps as the mixed thief
    takes (``cfg.epochs`` over its clean data: the epochs over the triggers scaled up to match).
    Returns the overwritten model and the thief's held-out key (its own watermark's success, for
    reports)."""
    if data not in OVERWRITE_DATA:
        raise ValueError(f"unknown overwriting data {data!r}; choose one of: {', '.join(OVERWRITE_DATA)}")
    key, held_out = thief.make_key(task, seed=seed)
    m = copy.deepcopy(model)
    device = next(m.parameters()).device
    if data == "triggers":
        steps = math.ceil(len(task.owner) / cfg.batch_size) * cfg.epochs  # the mixed thief's
        fit(m, key.split, replace(cfg, epochs=math.ceil(steps / math.ceil(len(key) / cfg.batch_size))), progress=False,
            device=device)
        m.eval()
    else:
        thief.train(m, task, key, cfg, progress=False, device=device)
    return m, held_out


def overwrite_table(targets: dict, task, cfg: TrainConfig, thief_seed: int, test: Split, n_queries: int, alpha: float,
                    seed: int = 0, also: dict[str, dict[str, Key]] | None = None,
                    data: str = "mixed") -> tuple[dict[str, nn.Module], pd.DataFrame]:
    """Wen et al. Table 3: per name, ``targets[name] = (model, owner's held-out key, its null,
    thief scheme)``; the model overwritten by the thief (:func:`overwrite`, its key drawn with
    ``thief_seed``), then the owner's ASR, the thief's, whether the shared verifier still claims the
    model for the owner, and its test accuracy; ``also[name]`` (column -> owner's key) adds the
    owner's ASR on other keys, as ``original ASR (column)``; ``data``: the thief's training data
    (:func:`overwrite`). Returns the overwritten models and the table."""
    overwritten, rows = {}, []
    for name, (model, key, null, thief) in targets.items():
        overwritten[name], thief_held_out = overwrite(model, thief, task, cfg, thief_seed, data)
        o = Oracle(overwritten[name])
        rows.append({"model": name, "original ASR": key_accuracy(o, key),
                     **{f"original ASR ({col})": key_accuracy(o, k) for col, k in (also or {}).get(name, {}).items()},
                     "new ASR": key_accuracy(o, thief_held_out),
                     "owner still claimed": verify_key(o, key, n_queries=n_queries, null=null, alpha=alpha, seed=seed).claimed,
                     "test accuracy": evaluate(overwritten[name], test, next(overwritten[name].parameters()).device)})
    return overwritten, pd.DataFrame(rows).set_index("model")


def finetune_config(knobs: dict, **changes) -> TrainConfig:
    """The thief's fine-tuning recipe of Zhang et al., Namba & Sakuma and the comparison:
    ``finetune_epochs`` at ``finetune_lr`` with ``finetune_optimizer`` (Adam if the chapter has no
    such knob), no schedule, no weight decay, no augmentation; the task's batch size."""
    return TrainConfig.from_knobs(knobs, **{"epochs": knobs["finetune_epochs"], "lr": knobs["finetune_lr"],
                                            "optimizer": knobs.get("finetune_optimizer", "adam"), "schedule": "none",
                                            "milestones": (), "weight_decay": 0.0, "augment": False, **changes})


# --------------------------------------------------------------------------- the suite's model-side attacks

_POS, _COUNT, _SHARE = rules.number(0.0, rules.INF, lo_open=True), rules.integer(1), rules.number(0.0, 1.0, hi_open=True)
_FINETUNE = {"finetune_epochs": _COUNT, "finetune_lr": _POS}

class FineTune(Attack):
    """All layers fine-tuned on the thief's data (or a ``share`` of it) with its fine-tuning recipe."""
    question = "survives fine-tuning (both thief sizes)"
    side = "model"

    def __init__(self, name: str = "fine-tune", share_knob: str | None = None, about: str = ""):
        self.name, self.share_knob = name, share_knob
        self.about = about or "all layers fine-tuned on the thief's data (Adam)"
        self.knobs = {**_FINETUNE, **({share_knob: rules.number(0.0, 1.0, lo_open=True, hi_open=True)} if share_knob else {})}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        thief = threat.thief
        share = threat.settings[self.share_knob] if self.share_knob else 1.0
        if share < 1.0:
            g = torch.Generator().manual_seed(threat.seed)
            thief = thief.subset(torch.randperm(len(thief), generator=g)[:max(1, int(round(share * len(thief))))])
        return Suspect(Oracle(finetune(model, thief, threat.finetune)[0]), {"thief_images": len(thief)})


class Prune(Attack):
    name, side, about = "prune", "model", "global magnitude pruning, no retraining"
    knobs = {"prune_rate": _SHARE}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        return Suspect(Oracle(prune_magnitude(model, threat.settings["prune_rate"])))


def thief_prune_finetune(model: nn.Module, thief: Split, cfg: TrainConfig, rates, budget: float,
                         val_fraction: float = 0.3, measure: Callable[[nn.Module], float] | None = None
                         ) -> tuple[pd.DataFrame, float, nn.Module]:
    """Prune + fine-tune (:func:`prune_finetune`) at each of ``rates``, judged on the thief's own
    validation split (its first ``val_fraction``, which :func:`prune_finetune` never trains on):
    a rate is affordable when its validation accuracy stays within ``budget`` points of the stolen
    model's. The thief takes the highest affordable rate (the most it can change the model without
    knowing the key); a worst-case search passes the owner's ``measure`` and takes the affordable
    rate that drives it lowest. With no affordable rate, the one that kept the most accuracy.
    Returns the sweep (``val_acc``, ``affordable``, and ``owner`` where measured), the rate and its model."""
    device = next(model.parameters()).device
    val = thief.subset(slice(0, int(round(val_fraction * len(thief)))))
    base = evaluate(model, val, device)
    rows, tuned = [], {}
    for rate in rates:
        tuned[rate] = prune_finetune(model, rate, thief, cfg, val_fraction=val_fraction)
        row = {"rate": rate, "val_acc": evaluate(tuned[rate], val, device)}
        if measure is not None:
            row["owner"] = measure(tuned[rate])
        rows.append(row)
    sweep = pd.DataFrame(rows)
    sweep["affordable"] = sweep["val_acc"] >= base - budget
    ok = sweep[sweep["affordable"]]
    if ok.empty:
        pick = sweep.loc[sweep["val_acc"].idxmax()]
    else:
        pick = ok.loc[ok["owner"].idxmin()] if measure is not None else ok.loc[ok["rate"].idxmax()]
    rate = float(pick["rate"])
    return sweep, rate, tuned[pick["rate"]]


class PruneFineTune(Attack):
    """The thief's prune + fine-tune: the highest pruning rate whose fine-tuned model keeps the
    thief's own validation accuracy within its budget (:func:`thief_prune_finetune`)."""
    question = "survives prune + fine-tune within the accuracy budget"
    name, side = "prune-finetune", "model"
    about = "the highest pruning rate, then fine-tuning, that keeps the thief's own validation accuracy within its budget"
    knobs = {"sweep_rates": rules.list_of(_SHARE), "budget": _SHARE, **_FINETUNE}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        sweep, rate, pruned = thief_prune_finetune(model, threat.thief, threat.finetune, threat.settings["sweep_rates"],
                                                   threat.budget, measure=self._measure(threat))
        return Suspect(Oracle(pruned), {"prune_rate": rate, "within_budget": bool(sweep["affordable"].any())})

    def _measure(self, threat: Threat):
        return None


class WorstPruneFineTune(PruneFineTune):
    """A worst-case search, not a thief: among the same affordable rates, the one whose model the
    owner's statistic scores lowest (it reads the owner's key: an upper bound on what pruning and
    fine-tuning can do within the budget, never a removal)."""
    name, oracle = "prune-finetune-oracle", True
    question = ""  # a worst-case search answers no question about a thief
    about = "worst case (reads the owner's key): the affordable pruning rate the owner's statistic scores lowest"

    def _measure(self, threat: Threat):
        if not isinstance(threat, OracleThreat):
            raise TypeError(f"{self.name} is a worst-case search: it needs an OracleThreat (the owner's statistic)")
        return threat.measure


class Quantize(Attack):
    name, side, about = "quantize", "model", "weights rounded to 8-bit integers per tensor"
    knobs = {"quant_bits": rules.integer(2, 8)}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        return Suspect(Oracle(quantize_weights(model, threat.settings["quant_bits"])))


class Transfer(Attack):
    """Wen et al. §5: fine-tuned on another task with as many classes; the head is kept. Named
    ``task-transfer``: the reference toolkit's ``transfer-learning`` (a clean pretrained backbone, no
    stolen weights) is another attack. The other
    task's images are the thieves' half of its public dataset (:func:`wmlib.data.public_share`):
    its training split trains, its test split measures the new task."""
    question = "survives transfer to another task"
    name, side, about = "task-transfer", "model", "fine-tuned to another task with as many classes (the head is kept)"
    knobs = {"transfer_dataset": rules.choice(_data.REGISTRY), "transfer_epochs": _COUNT, "transfer_lr": _POS}

    def check(self, settings: dict, spec: _data.DatasetSpec) -> None:
        other = _data.spec(settings["transfer_dataset"])
        if other.source == spec.source:
            raise ValueError(f"transfer_dataset {settings['transfer_dataset']!r} is the task's own distribution: "
                             "transfer learning moves the model to another task")
        if other.num_classes != spec.num_classes:
            raise ValueError(f"transfer_dataset {settings['transfer_dataset']!r} has {other.num_classes} classes, the "
                             f"task {spec.num_classes}: the head is kept, so the classes must match in number")

    def public_images(self, settings: dict, spec: _data.DatasetSpec) -> list[tuple[str, bool, str]]:
        return [(settings["transfer_dataset"], True, "thief"), (settings["transfer_dataset"], False, "thief")]

    def _split(self, threat: Threat, train: bool) -> Split:
        x, y = _data.public_share(threat.settings["transfer_dataset"], train, "thief")
        return Split(_data.to_shape(x, threat.spec.channels, threat.spec.image_size), y)

    def images(self, threat: Threat) -> torch.Tensor:
        return torch.cat([self._split(threat, True).x, self._split(threat, False).x])

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        k = threat.settings
        cfg = TrainConfig(epochs=k["transfer_epochs"], batch_size=100, optimizer="adam", lr=k["transfer_lr"],
                          seed=threat.seed)
        moved = finetune(model, self._split(threat, True), cfg)[0]
        return Suspect(Oracle(moved), {"transfer_acc": evaluate(moved, self._split(threat, False))})


class Overwrite(Attack):
    """The thief embeds a function-coupled watermark of its own by fine-tuning (Wen et al. §5)."""
    question = "survives overwriting"
    name, side, about = "overwrite", "model", "the thief fine-tunes its own function-coupled watermark in"
    knobs = {"overwrite_sources": rules.pair(), "overwrite_target": rules.integer(0), "overwrite_epochs": _COUNT,
             "overwrite_lr": _POS, "overwrite_key_fraction": rules.number(0.0, 1.0, lo_open=True, hi_open=True),
             "overwrite_triggers": _COUNT}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        from ..schemes import FunctionCoupled  # the thief uses a public scheme

        k = threat.settings
        thief = FunctionCoupled(sources=tuple(k["overwrite_sources"]), target=k["overwrite_target"],
                                key_fraction=k["overwrite_key_fraction"], verify_triggers=k["overwrite_triggers"])
        cfg = TrainConfig(epochs=k["overwrite_epochs"], batch_size=100, optimizer="adam", lr=k["overwrite_lr"],
                          seed=threat.seed)
        m, theld = overwrite(model, thief, threat.splits, cfg, threat.seed + 100)
        return Suspect(Oracle(m), {"thief_key_acc": key_accuracy(Oracle(m), theld)})


register(FineTune())
register(FineTune("fine-tune-small", "thief_small", "the same on a tenth of the thief's data (a thief with fewer images)"))
register(Prune())
register(PruneFineTune())
register(WorstPruneFineTune())
register(Quantize())
register(Transfer())
register(Overwrite())
