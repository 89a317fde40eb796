"""What a thief does to dodge the proof.

Model-side attacks map a model to a new model (the input is never modified): fine-tuning, magnitude
pruning, prune-then-fine-tune sweeps, 8-bit weight quantisation. Query-side attacks wrap an
:class:`~wmlib.verify.Oracle`: input noise (fresh per query, or one pattern per trial), Namba &
Sakuma's autoencoder query modification, a key-sample detector that answers flagged queries with the
runner-up class, and GradSigns' score rounding and score perturbation.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, replace
from typing import Callable

import numpy as np
import pandas as pd
import torch
from scipy.spatial.distance import jensenshannon
from torch import nn
from torch.ao.quantization.observer import MinMaxObserver
from torch.nn.utils import prune
from tqdm.auto import tqdm

from .data import Split
from .keys import Key, fgsm
from .models import weight_layers
from .train import (History, TrainConfig, evaluate, fit, predict_proba, reconstruct, reconstruction_loss, tensor_digest, to_float,
                    train_or_load)
from .verify import Oracle, key_accuracy

PRUNE_SCOPES = ("global", "layer")

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


def prune_magnitude(model: nn.Module, amount: float, scope: str = "global", permanent: bool = True) -> nn.Module:
    """A copy with the ``amount`` fraction of smallest-magnitude conv / linear weights set to zero.

    ``scope='global'`` ranks all weights together (Han et al. 2015, as in GradSigns §4.3.1 and
    Namba §4.3.1); ``'layer'`` prunes each layer by the same fraction. With ``permanent=False`` the
    mask stays attached (torch.nn.utils.prune), so later training keeps pruned weights at zero;
    :func:`make_permanent` folds it in.
    """
    if scope not in PRUNE_SCOPES:
        raise ValueError(f"unknown prune scope {scope!r}; choose one of: {', '.join(PRUNE_SCOPES)}")
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")
    model = copy.deepcopy(model)
    params = _weights(model)
    if amount > 0:
        if scope == "global":
            prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
        else:
            for m, name in params:
                prune.l1_unstructured(m, name, amount=amount)
        if permanent:
            make_permanent(model)
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold any attached pruning masks into the weights (in place)."""
    for m in model.modules():
        if prune.is_pruned(m) and hasattr(m, "weight_mask"):
            prune.remove(m, "weight")
    return model


def finetune(model: nn.Module, data: Split, cfg: TrainConfig, monitor: dict[str, Split] | None = None,
             progress: bool = False) -> tuple[nn.Module, dict]:
    """A copy fine-tuned on the thief's ``data`` (all layers). ``monitor`` splits (e.g. the key)
    are measured after every epoch; with a ``val`` split and ``cfg.keep_best`` the best validation
    epoch is kept (early stopping, as in GradSigns §4.3.1)."""
    model = copy.deepcopy(model)
    hist = fit(model, data, cfg, monitor=monitor or {}, progress=progress, desc="fine-tune",
               device=next(model.parameters()).device)
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
            fit(current, draw, replace(cfg, seed=cfg.seed + t), device=device, progress=False, desc=f"trial {t}")
        rows.append({"trial": t, "test_acc": evaluate(current, test, device),
                     **{name: measure(current, m) for name, m in measures.items()}})
    return current, pd.DataFrame(rows)


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


def prune_finetune(model: nn.Module, rate: float, attacker: Split, cfg: TrainConfig, scope: str = "global",
                   val_fraction: float = 0.3, keep_sparse: bool = True, patience: int | None = None) -> nn.Module:
    """Prune ``rate`` of the weights, then fine-tune on the thief's data (GradSigns §4.3.1, Namba
    §4.3.1): 70 % of it trains, 30 % validates, and the best validation epoch is kept (early
    stopping). ``keep_sparse`` keeps pruned weights at zero while fine-tuning (GradSigns: pruned
    weights are "removed from the computation graph"); ``patience`` stops early (the GradSigns code: 2)."""
    n_val = int(round(val_fraction * len(attacker)))
    val, tr = attacker.subset(slice(0, n_val)), attacker.subset(slice(n_val, None))
    tuned = prune_magnitude(model, rate, scope, permanent=not keep_sparse)
    fit(tuned, tr, replace(cfg, keep_best=True), monitor={"val": val}, device=next(model.parameters()).device,
        progress=False, patience=patience)
    return make_permanent(tuned)


def prune_finetune_sweep(model: nn.Module, attacker: Split, test: Split, keys: dict[str, Measure],
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
        tuned = prune_finetune(model, rate, attacker, cfg, **kw)
        row.update({"sparsity": sparsity(tuned), "test_acc": evaluate(tuned, test, device)})
        row.update({name: measure(tuned, key) for name, key in keys.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def worst_within_budget(sweep: pd.DataFrame, column: str, baseline_acc: float, budget: float = 0.10,
                        acc_column: str = "test_acc") -> pd.Series:
    """The sweep row with the lowest ``column`` among those whose test accuracy is at least
    ``(1 - budget) * baseline_acc``: the strongest removal a thief would accept."""
    ok = sweep[sweep[acc_column] >= (1.0 - budget) * baseline_acc]
    if ok.empty:
        raise ValueError("no attacked model keeps its test accuracy within the budget")
    return ok.loc[ok[column].idxmin()]


def worst_prune_finetune(model: nn.Module, attacker: Split, test: Split, key: Measure, cfg: TrainConfig,
                         rates=tuple(i / 10 for i in range(10)), budget: float = 0.10,
                         progress: bool = True) -> tuple[pd.DataFrame, pd.Series, nn.Module]:
    """The thief's best pruning + fine-tuning within ``budget``: the sweep over ``rates``, its
    worst row for ``key`` (:func:`worst_within_budget`) and that attacked model."""
    sweep = prune_finetune_sweep(model, attacker, test, {"key": key}, cfg, rates=rates, progress=progress)
    worst = worst_within_budget(sweep, "key", evaluate(model, test, next(model.parameters()).device), budget)
    return sweep, worst, prune_finetune(model, float(worst["rate"]), attacker, cfg)


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


def adversarial_finetune(model: nn.Module, data: Split, cfg: TrainConfig, eps: float, mix: float = 0.5,
                         monitor: dict[str, Split] | None = None) -> tuple[nn.Module, dict]:
    """GradSigns §4.3.3 (Table 4): a copy fine-tuned on a mixture of FGSM examples (with their
    correct labels) and clean samples. In every batch the first ``mix`` share is replaced by FGSM
    examples of the model as it is at that step (ε and the mixture are not given in the paper)."""
    if not 0.0 < eps <= 1.0:
        raise ValueError(f"eps must be in (0, 1] (the [0, 1] pixel scale), got {eps}")
    if not 0.0 < mix <= 1.0:
        raise ValueError(f"mix must be in (0, 1], got {mix}")

    def hook(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = max(1, int(round(mix * len(x))))
        return torch.cat([fgsm(m, x[:k], y[:k], eps), x[k:]]), y

    model = copy.deepcopy(model)
    hist = fit(model, data, cfg, monitor=monitor or {}, batch_hook=hook, progress=False, desc="adversarial fine-tune",
               device=next(model.parameters()).device)
    return model, hist.as_dict()


class NoisyOracle(Oracle):
    """Query-side attack: the thief's API adds fresh Gaussian noise (std on the [0, 1] scale) to
    every query before it reaches the model, clipped to [0, 1] unless ``clamp=False``."""

    def __init__(self, inner: Oracle, std: float, seed: int = 0, clamp: bool = True):
        if std < 0:
            raise ValueError(f"std must be >= 0, got {std}")
        self.inner, self.std, self.clamp, self.queries = inner, std, clamp, 0
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        xf = to_float(x)
        noisy = xf + self.std * torch.randn(xf.shape, generator=self.generator)
        return self.inner(noisy.clamp(0, 1) if self.clamp else noisy)


def jensen_shannon(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Row-wise Jensen-Shannon divergence (natural log) between probability vectors (Namba Eq. 9);
    scipy's ``jensenshannon`` returns its square root."""
    d = jensenshannon(p.double().numpy(), q.double().numpy(), axis=1)
    return torch.from_numpy(np.nan_to_num(d) ** 2).float()


class QueryModification(Oracle):
    """Namba & Sakuma §4.4: the thief's API runs every query through a detector; a query judged to be
    a key sample (reconstruction loss above ``tau_rec`` or JSD(f(x) || f(AE(x))) above ``tau_jsd``) is
    answered with f(AE(x)), any other with f(x). ``always=True`` modifies every query (§4.3.1)."""

    def __init__(self, inner: Oracle, ae: nn.Module, tau_rec: float, tau_jsd: float, always: bool = False):
        self.inner, self.ae, self.tau_rec, self.tau_jsd, self.always = inner, ae.eval(), tau_rec, tau_jsd, always
        self.queries, self.detected = 0, 0

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return reconstruct(self.ae, x).cpu()

    def scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per query: the reconstruction loss (Eq. 8) and JSD(f(x) || f(AE(x))) (Eq. 9)."""
        xf, rec = to_float(x), self.reconstruct(x)
        loss = (xf - rec).pow(2).flatten(1).sum(1)
        return loss, jensen_shannon(self.inner(xf), self.inner(rec))

    def flags(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per query: flagged by the reconstruction-loss rule, and by the JSD rule."""
        loss, jsd = self.scores(x)
        return loss > self.tau_rec, jsd > self.tau_jsd

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        rec, div = self.flags(x)
        return rec | div

    def detection_rates(self, x: torch.Tensor) -> dict[str, float]:
        """Namba Table 1: the share of ``x`` flagged by the reconstruction-loss rule, the JSD rule, and either."""
        rec, div = self.flags(x)
        return {"rec loss": rec.float().mean().item(), "JSD": div.float().mean().item(),
                "both": (rec | div).float().mean().item()}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        xf = to_float(x)
        flag = torch.ones(len(x), dtype=torch.bool) if self.always else self.detect(x)
        self.detected += int(flag.sum())
        if flag.any():
            xf = xf.clone()
            xf[flag] = self.reconstruct(x[flag])
        return self.inner(xf)


class AutoencoderBank:
    """What the thief prepares once, before any query (Namba & Sakuma §4.4 (2)): autoencoders for
    ``folds``-fold cross-validation on its own samples, and the one trained on all of them
    (``ae``, with its reconstruction-loss curve in ``history``). Every autoencoder goes through the
    model cache. :meth:`query_modification` then sets the thresholds for a given model."""

    def __init__(self, attacker: Split, ae_cfg: TrainConfig, folds: int = 10, device: torch.device | None = None,
                 progress: bool = True):
        if folds < 2:
            raise ValueError("cross-validation needs folds >= 2")
        from .train import default_device
        device = device or default_device()
        shape = attacker.x.shape[1:]
        self.data, self.fold_of = attacker, torch.arange(len(attacker)) % folds
        self.fold_aes = [train_autoencoder(part, shape, self.matched_steps(ae_cfg, len(attacker), len(part)), device)[0]
                         for part in (attacker.subset(self.fold_of != f) for f in
                                      tqdm(range(folds), desc="autoencoder folds", disable=not progress, leave=False))]
        self.ae, self.history = train_autoencoder(attacker, shape, ae_cfg, device)

    @staticmethod
    def matched_steps(cfg: TrainConfig, full: int, part: int) -> TrainConfig:
        """A fold's training config: as many optimiser steps as the deployed autoencoder takes on all
        ``full`` samples (more epochs over the fold's ``part``). With fewer steps, an autoencoder that
        is still improving scores held-out samples worse than the deployed one scores unseen queries,
        and the cross-validated thresholds come out loose."""
        steps = math.ceil(full / cfg.batch_size) * cfg.epochs
        return replace(cfg, epochs=max(1, round(steps / math.ceil(part / cfg.batch_size))))

    def held_out_scores(self, inner: Oracle) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction loss and JSD of every thief sample, each scored by the fold's autoencoder
        that did not see it."""
        losses, jsds = [], []
        for f, ae in enumerate(self.fold_aes):
            loss, jsd = QueryModification(inner, ae, 0.0, 0.0).scores(self.data.x[self.fold_of == f])
            losses.append(loss)
            jsds.append(jsd)
        return torch.cat(losses), torch.cat(jsds)

    def query_modification(self, inner: Oracle, percentile: float = 95.0, always: bool = False) -> QueryModification:
        """The thief's API around ``inner`` with thresholds at the ``percentile`` points (§4.2).
        ``always``: every query is modified (§4.3.1), no detection step, so no thresholds are fitted
        (its rules flag nothing)."""
        if always:
            return QueryModification(inner, self.ae, math.inf, math.inf, always=True)
        loss, jsd = self.held_out_scores(inner)
        return QueryModification(inner, self.ae, float(np.percentile(loss.numpy(), percentile)),
                                 float(np.percentile(jsd.numpy(), percentile)))


def detection_table(bank: AutoencoderBank, oracles: dict[str, Oracle], keys: dict[str, Key], test_x: torch.Tensor,
                    percentile: float = 95.0, samples: int = 1000, seed: int = 0,
                    ) -> tuple[pd.DataFrame, dict[str, QueryModification]]:
    """Namba Table 1: for each key type, the thief's query modification around that model
    (thresholds from ``bank``), the share of (up to ``samples``) key samples each rule detects, and
    the share of ordinary ``test_x`` queries either rule flags (false detections)."""
    qm, rows = {}, {}
    for k, key in keys.items():
        qm[k] = bank.query_modification(oracles[k], percentile)
        rows[k] = {**qm[k].detection_rates(key.sample(min(len(key), samples), seed=seed).x),
                   "false detections (test)": qm[k].detection_rates(test_x)["both"]}
    return pd.DataFrame(rows), qm


def invalidation_table(bank: AutoencoderBank, oracles: dict[str, Oracle], keys: dict[str, Key],
                       pruned: dict[str, nn.Module], percentile: float = 95.0) -> pd.DataFrame:
    """Namba Table 2: each key type's watermark accuracy unattacked, under query modification of
    every query (§4.3.1, thresholds from ``bank``) and on its ``pruned`` (+ fine-tuned) model."""
    return pd.DataFrame({k: {"no invalidation": key_accuracy(oracles[k], key),
                             "query mod. (autoencoder)": key_accuracy(bank.query_modification(oracles[k], percentile,
                                                                                              always=True), key),
                             "model mod. (pruning)": key_accuracy(Oracle(pruned[k]), key)} for k, key in keys.items()})


def rec_loss_detection(ae: nn.Module, x: torch.Tensor, reference: torch.Tensor, percentile: float = 95.0,
                       device: torch.device | None = None) -> float:
    """The share of ``x`` whose reconstruction loss exceeds the ``percentile`` point of the
    ``reference`` images' loss (the rec-loss rule of §4.2 with a threshold from ordinary images)."""
    tau = float(np.percentile(reconstruction_loss(ae, reference, device).cpu().numpy(), percentile))
    return float((reconstruction_loss(ae, x, device).cpu() > tau).float().mean())


def autoencoder_length_sweep(attacker: Split, ae_cfg: TrainConfig, epochs: list[int], probes: dict[str, torch.Tensor],
                             reference: torch.Tensor, percentile: float = 95.0,
                             device: torch.device | None = None) -> pd.DataFrame:
    """How the autoencoder's training length decides detection: one autoencoder per length on the
    thief's data (cached), its final reconstruction loss, its background error and the rec-loss
    detection of each probe set (e.g. a key type's samples) against ``reference`` images."""
    rows = []
    for n in epochs:
        ae, hist = train_autoencoder(attacker, attacker.x.shape[1:], replace(ae_cfg, epochs=n), device)
        base = {"AE epochs": n, "reconstruction loss": hist.loss[-1], "background": background_error(ae, reference, device)}
        rows += [{**base, "probe": name, "detection (rec loss)": rec_loss_detection(ae, x, reference, percentile, device)}
                 for name, x in probes.items()]
    return pd.DataFrame(rows)


def train_autoencoder(data: Split, shape, cfg: TrainConfig, device: torch.device,
                      tag: str = "autoencoder") -> tuple[nn.Module, History]:
    """Train-or-load the Table 4 autoencoder on ``data`` (Table 5: Adam 1e-3) with the one training
    loop; returns it (in eval mode) and its per-epoch reconstruction loss."""
    from .models import ConvAutoencoder

    config = {"model": "conv-autoencoder", "shape": list(shape), "data": tensor_digest(data.x), "train": asdict(cfg)}

    def build() -> nn.Module:
        torch.manual_seed(cfg.seed)
        return ConvAutoencoder(shape[0], shape[-1])

    ae, hist, _ = train_or_load(tag, config, build, lambda m: fit(m, data, cfg, objective="reconstruct", device=device,
                                                                  progress=False), device)
    return ae.eval(), hist


def background_error(ae: nn.Module, x: torch.Tensor, device: torch.device | None = None) -> float:
    """The autoencoder's mean output (on the [0, 1] scale) where the query is exactly black: a
    uniform grey background in ``AE(x)`` adds to every image's reconstruction loss and so hides
    a logo's share of it from the 95th-percentile threshold."""
    xf = to_float(x)
    bg = xf == 0
    if not bg.any():
        raise ValueError("the images have no black (0) pixels to measure a background error on")
    return float(reconstruct(ae, x, device).cpu()[bg].mean())


class KeyDetectorOracle(Oracle):
    """Evasion (Li et al. §6.3, Hitaj et al.): the thief's API runs a key-sample ``detector``
    (a binary classifier, class 1 = key) on every query and answers a flagged one with the
    runner-up class (the top two scores swapped), so that a trigger never gets the label it was
    trained to. The flagging threshold keeps ``fpr`` of the thief's own ordinary images
    (``reference``) flagged: the accuracy the thief is willing to give up."""

    def __init__(self, inner: Oracle, detector: nn.Module, reference: torch.Tensor, fpr: float = 0.05):
        if not 0.0 < fpr < 1.0:
            raise ValueError(f"fpr (the share of ordinary queries flagged) must be in (0, 1), got {fpr}")
        self.inner, self.detector, self.queries = inner, detector.eval(), 0
        self.threshold = float(torch.quantile(self.scores(reference).double(), 1.0 - fpr))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """The detector's probability that each image is a key sample."""
        return predict_proba(self.detector, x)[:, 1].float().cpu()

    def flags(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x) > self.threshold

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        p = self.inner(x).clone()
        flagged = self.flags(x).to(p.device)
        if flagged.any():
            top = p[flagged].topk(2, dim=1).indices
            rows = p[flagged]
            first, second = rows.gather(1, top[:, :1]), rows.gather(1, top[:, 1:])
            rows.scatter_(1, top[:, :1], second).scatter_(1, top[:, 1:], first)
            p[flagged] = rows
        return p


# --------------------------------------------------------------------------- score-side query attacks (GradSigns)

class RoundedOracle(Oracle):
    """GradSigns §4.3.3, score rounding (Fig. 4): the thief's API reports every probability rounded
    to ``decimals`` places (the authors' code: 4, 3, 2, 1), which hides the small loss differences
    that Eq. 5 divides by h."""

    def __init__(self, inner: Oracle, decimals: int):
        if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 7:
            raise ValueError(f"decimals must be an integer in 0..7 (a float32 score holds about 7), got {decimals!r}")
        self.inner, self.decimals, self.queries = inner, decimals, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        p = self.inner(x)
        return torch.round(p.double(), decimals=self.decimals).to(p.dtype)


class LowPrecisionOracle(Oracle):
    """Scores served in half precision (``torch.bfloat16`` or ``torch.float16``) and cast back: an
    API that computes or stores its answers in 16 bits. Not an attack of the paper; it shows why
    GradSigns' black-box extraction needs float32 answers (bf16 keeps about 3 significant digits)."""

    DTYPES = (torch.bfloat16, torch.float16)

    def __init__(self, inner: Oracle, dtype: torch.dtype = torch.bfloat16):
        if dtype not in self.DTYPES:
            raise ValueError(f"dtype must be one of: {', '.join(map(str, self.DTYPES))}, got {dtype}")
        self.inner, self.dtype, self.queries = inner, dtype, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        p = self.inner(x)
        return p.to(self.dtype).to(p.dtype)


class PerturbedOracle(Oracle):
    """GradSigns App. B, Algorithm 1 (score perturbation, Fig. 5), applied to every answer:

    1. ``P = H(X)``: the inner oracle's probabilities (line 2).
    2. ``τ_sp = min(P_top1 - P_top2 - ε, P_topM - P_top|P| - ε)`` (line 3): the most that can move
       from the top-1 label to the least likely one while the top-1 label stays on top and the
       least likely one stays below the top ``M`` (M-true label ordering). Ties leave τ_sp < 0:
       that answer is returned unchanged.
    3. ``φ ~ U(0, τ_sp]`` (line 4); the authors' code draws ``φ = τ_sp · U(low, 1)``, low = 0.001.
    4. ``P_top|P| += φ``, ``P_top1 -= φ`` (lines 5-6): two scores change, the sum stays 1.

    Every query gets its own φ (x and x + h e_c are perturbed independently). The paper's setting:
    M = 3, ε = 1e-5, extraction with h = 0.1, 50 attempts (one seed each)."""

    def __init__(self, inner: Oracle, M: int = 3, eps: float = 1e-5, low: float = 1e-3, seed: int = 0):
        if isinstance(M, bool) or not isinstance(M, int) or M < 1:
            raise ValueError(f"M (labels kept in order) must be a positive integer, got {M!r}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if not 0.0 <= low < 1.0:
            raise ValueError(f"low must be in [0, 1), got {low}")
        self.inner, self.M, self.eps, self.low, self.queries = inner, M, eps, low, 0
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        p = self.inner(x)
        if p.shape[1] <= self.M:
            raise ValueError(f"M must be smaller than the number of classes ({p.shape[1]}), got {self.M}")
        out = p.double()
        order = out.argsort(dim=1, descending=True, stable=True)
        top = out.gather(1, order)
        tau = (torch.minimum(top[:, 0] - top[:, 1], top[:, self.M - 1] - top[:, -1]) - self.eps).clamp(min=0)
        u = self.low + (1.0 - self.low) * torch.rand(len(p), generator=self.generator, dtype=torch.float64)
        phi = tau * u
        rows = torch.arange(len(p))
        out[rows, order[:, 0]] -= phi
        out[rows, order[:, -1]] += phi
        return out.to(p.dtype)


class FixedNoiseOracle(Oracle):
    """GradSigns §4.3.3, input noise injection (Fig. 3) as the authors' code runs it: ONE Gaussian
    pattern (``std`` on the [0, 1] scale, one image of ``shape`` C x H x W) is drawn per trial
    (``seed``) and added to every query, so x and x + h e_c carry the same noise. Compare
    :class:`NoisyOracle`, which draws fresh noise for every query. The paper superimposes the noise
    and says nothing of clipping: ``clamp`` (off by default) clips the noisy image to [0, 1]."""

    def __init__(self, inner: Oracle, std: float, shape: tuple[int, int, int], seed: int = 0, clamp: bool = False):
        if std < 0:
            raise ValueError(f"std must be >= 0, got {std}")
        shape = tuple(shape)
        if len(shape) != 3:
            raise ValueError(f"shape must be one image's C x H x W, got {shape}")
        self.inner, self.std, self.clamp, self.queries = inner, std, clamp, 0
        self.noise = std * torch.randn(shape, generator=torch.Generator().manual_seed(seed))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != tuple(self.noise.shape):
            raise ValueError(f"queries of shape {tuple(x.shape[1:])} do not fit the noise pattern {tuple(self.noise.shape)}")
        self.queries += len(x)
        noisy = to_float(x) + self.noise
        return self.inner(noisy.clamp(0, 1) if self.clamp else noisy)
