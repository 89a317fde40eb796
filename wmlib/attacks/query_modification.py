"""Namba & Sakuma §4.4: query modification. The thief's API runs every query through an
autoencoder trained on its own data and answers a query it flags as a key sample on the
reconstruction; the detection and invalidation tables, the autoencoder length sweep, and the
suite's query-modification attack."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from scipy.spatial.distance import jensenshannon
from torch import nn
from tqdm.auto import tqdm

from .. import rules
from ..data import Split
from ..keys import Key
from ..train import History, TrainConfig, fit, reconstruct, reconstruction_loss, tensor_digest, to_float, train_or_load
from ..verify import Oracle, key_accuracy
from .base import Attack, Suspect, Threat, register


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

    def __init__(self, thief: Split, ae_cfg: TrainConfig, folds: int = 10, device: torch.device | None = None,
                 progress: bool = True):
        if folds < 2:
            raise ValueError("cross-validation needs folds >= 2")
        from ..train import default_device
        device = device or default_device()
        shape = thief.x.shape[1:]
        self.data, self.fold_of = thief, torch.arange(len(thief)) % folds
        self.fold_aes = [train_autoencoder(part, shape, self.matched_steps(ae_cfg, len(thief), len(part)), device)[0]
                         for part in (thief.subset(self.fold_of != f) for f in
                                      tqdm(range(folds), desc="autoencoder folds", disable=not progress, leave=False))]
        self.ae, self.history = train_autoencoder(thief, shape, ae_cfg, device)

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


def autoencoder_length_sweep(thief: Split, ae_cfg: TrainConfig, epochs: list[int], probes: dict[str, torch.Tensor],
                             reference: torch.Tensor, percentile: float = 95.0,
                             device: torch.device | None = None) -> pd.DataFrame:
    """How the autoencoder's training length decides detection: one autoencoder per length on the
    thief's data (cached), its final reconstruction loss, its background error and the rec-loss
    detection of each probe set (e.g. a key type's samples) against ``reference`` images."""
    rows = []
    for n in epochs:
        ae, hist = train_autoencoder(thief, thief.x.shape[1:], replace(ae_cfg, epochs=n), device)
        base = {"AE epochs": n, "reconstruction loss": hist.loss[-1], "background": background_error(ae, reference, device)}
        rows += [{**base, "probe": name, "detection (rec loss)": rec_loss_detection(ae, x, reference, percentile, device)}
                 for name, x in probes.items()]
    return pd.DataFrame(rows)


def train_autoencoder(data: Split, shape, cfg: TrainConfig, device: torch.device,
                      tag: str = "autoencoder") -> tuple[nn.Module, History]:
    """Train-or-load the Table 4 autoencoder on ``data`` (Table 5: Adam 1e-3) with the one training
    loop; returns it (in eval mode) and its per-epoch reconstruction loss."""
    from ..models import ConvAutoencoder

    config = {"model": "conv-autoencoder", "shape": list(shape), "data": tensor_digest(data.x), "train": cfg.cache_fields()}

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


class QueryModificationAttack(Attack):
    """Namba & Sakuma's autoencoder in front of the API, detection on; the paper's always-on variant
    (every key query through the autoencoder, its Table 2) is reported beside it."""
    question = "survives the autoencoder query modification"
    name, side = "query-modification", "query"
    about = "Namba & Sakuma's autoencoder: queries it flags are answered on their reconstruction"
    knobs = {"ae_epochs": rules.integer(1), "ae_lr": rules.number(0.0, rules.INF, lo_open=True), "folds": rules.integer(2),
             "percentile": rules.number(0.0, 100.0, lo_open=True, hi_open=True)}

    def apply(self, model: nn.Module, threat: Threat) -> Suspect:
        k = threat.settings
        ae_cfg = TrainConfig(epochs=k["ae_epochs"], batch_size=100, optimizer="adam", lr=k["ae_lr"], seed=threat.seed)
        bank = AutoencoderBank(threat.thief, ae_cfg, folds=k["folds"], progress=False)
        out = bank.query_modification(Oracle(model), k["percentile"])
        return Suspect(out, {}, {"bank": bank, "model": model})

    def owner_report(self, suspect: Suspect, threat: Threat, owner) -> dict:
        """The share of the owner's key each detector flags, and the owner's statistic had every key
        query gone through the autoencoder (the paper's always-on variant, its Table 2)."""
        always = suspect.parts["bank"].query_modification(Oracle(suspect.parts["model"]), threat.settings["percentile"],
                                                          always=True)
        return {**{f"flagged_{n}": v for n, v in suspect.oracle.detection_rates(owner.key.x).items()},
                "statistic_always": owner.hit_rate(always)}


register(QueryModificationAttack())
