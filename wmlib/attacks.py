"""What a thief does to dodge the proof.

Model-side attacks map a model to a new model (the input is never modified): fine-tuning, magnitude
pruning, prune-then-fine-tune sweeps, 8-bit weight quantisation. Query-side attacks wrap an
:class:`~wmlib.verify.Oracle` (here: input noise).
"""
from __future__ import annotations

import copy
from dataclasses import replace

import pandas as pd
import torch
from torch import nn
from torch.ao.quantization.observer import MinMaxObserver
from torch.nn.utils import prune
from tqdm.auto import tqdm

from .data import Split
from .keys import Key
from .train import TrainConfig, evaluate, fit
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
        xf = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        noisy = (xf + self.std * torch.randn(xf.shape, generator=self.generator)).clamp(0, 1)
        return self.inner(noisy)
