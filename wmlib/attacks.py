"""What a thief does to dodge the proof.

Model-side attacks map a model to a new model (the input is never modified): fine-tuning, magnitude
pruning, prune-then-fine-tune sweeps, 8-bit weight quantisation. Query-side attacks wrap an
:class:`~wmlib.verify.Oracle` (here: input noise).
"""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from scipy.spatial.distance import jensenshannon
from torch import nn
from torch.ao.quantization.observer import MinMaxObserver
from torch.nn.utils import prune
from tqdm.auto import tqdm

from .data import Split
from .keys import Key
from .train import TrainConfig, evaluate, fit, reconstruct, to_float
from .verify import Oracle, key_accuracy

PRUNE_SCOPES = ("global", "layer")


def _weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


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


def prune_sweep(model: nn.Module, test: Split, keys: dict[str, Key], rates, scope: str = "global") -> pd.DataFrame:
    """Magnitude pruning alone (no fine-tuning) at each rate: sparsity, test and key accuracy."""
    device = next(model.parameters()).device
    rows = []
    for rate in rates:
        pruned = prune_magnitude(model, rate, scope)
        row = {"rate": rate, "sparsity": sparsity(pruned), "test_acc": evaluate(pruned, test, device)}
        row.update({name: key_accuracy(Oracle(pruned), key) for name, key in keys.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def prune_finetune(model: nn.Module, rate: float, attacker: Split, cfg: TrainConfig, scope: str = "global",
                   val_fraction: float = 0.3, keep_sparse: bool = True) -> nn.Module:
    """Prune ``rate`` of the weights, then fine-tune on the thief's data (GradSigns §4.3.1, Namba
    §4.3.1): 70 % of it trains, 30 % validates, and the best validation epoch is kept (early
    stopping). ``keep_sparse`` keeps pruned weights at zero while fine-tuning (GradSigns: pruned
    weights are "removed from the computation graph")."""
    n_val = int(round(val_fraction * len(attacker)))
    val, tr = attacker.subset(slice(0, n_val)), attacker.subset(slice(n_val, None))
    tuned = prune_magnitude(model, rate, scope, permanent=not keep_sparse)
    fit(tuned, tr, replace(cfg, keep_best=True), monitor={"val": val}, device=next(model.parameters()).device,
        progress=False)
    return make_permanent(tuned)


def prune_finetune_sweep(model: nn.Module, attacker: Split, test: Split, keys: dict[str, Key],
                         cfg: TrainConfig, rates=tuple(i / 10 for i in range(10)), progress: bool = True,
                         **kw) -> pd.DataFrame:
    """:func:`prune_finetune` at each rate in ``rates``; one row per rate with test and key accuracy
    after pruning alone and after fine-tuning. Pick the thief's best with :func:`worst_within_budget`."""
    device = next(model.parameters()).device
    rows = []
    for rate in tqdm(rates, desc="prune+fine-tune", disable=not progress, leave=False):
        pruned = prune_magnitude(model, rate, kw.get("scope", "global"))
        row = {"rate": rate, "test_acc_pruned": evaluate(pruned, test, device)}
        row.update({f"{name}_pruned": key_accuracy(Oracle(pruned), key) for name, key in keys.items()})
        tuned = prune_finetune(model, rate, attacker, cfg, **kw)
        row.update({"sparsity": sparsity(tuned), "test_acc": evaluate(tuned, test, device)})
        row.update({name: key_accuracy(Oracle(tuned), key) for name, key in keys.items()})
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


class NoisyOracle(Oracle):
    """Query-side attack: the thief's API adds Gaussian noise (std on the [0, 1] scale) to every
    query before it reaches the model."""

    def __init__(self, inner: Oracle, std: float, seed: int = 0):
        self.inner, self.std, self.queries = inner, std, 0
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        xf = to_float(x)
        noisy = (xf + self.std * torch.randn(xf.shape, generator=self.generator)).clamp(0, 1)
        return self.inner(noisy)


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

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        loss, jsd = self.scores(x)
        return (loss > self.tau_rec) | (jsd > self.tau_jsd)

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
    ``folds``-fold cross-validation on its own samples, and the one trained on all of them.
    :meth:`query_modification` then sets the thresholds for a given model."""

    def __init__(self, attacker: Split, ae_cfg: TrainConfig, folds: int = 10, device: torch.device | None = None,
                 progress: bool = True):
        if folds < 2:
            raise ValueError("cross-validation needs folds >= 2")
        from .train import default_device
        device = device or default_device()
        shape = attacker.x.shape[1:]
        self.data, self.fold_of = attacker, torch.arange(len(attacker)) % folds
        self.fold_aes = [train_autoencoder(attacker.subset(self.fold_of != f), shape, ae_cfg, device)
                         for f in tqdm(range(folds), desc="autoencoder folds", disable=not progress, leave=False)]
        self.ae = train_autoencoder(attacker, shape, ae_cfg, device)

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
        """The thief's API around ``inner`` with thresholds at the ``percentile`` points (§4.2)."""
        loss, jsd = self.held_out_scores(inner)
        return QueryModification(inner, self.ae, float(np.percentile(loss.numpy(), percentile)),
                                 float(np.percentile(jsd.numpy(), percentile)), always)


def train_autoencoder(data: Split, shape, cfg: TrainConfig, device: torch.device) -> nn.Module:
    """The Table 4 autoencoder trained on ``data`` (Table 5: Adam 1e-3) with the one training loop."""
    from .models import ConvAutoencoder
    torch.manual_seed(cfg.seed)
    ae = ConvAutoencoder(shape[0], shape[-1])
    fit(ae, data, cfg, objective="reconstruct", device=device, progress=False)
    return ae.eval()
