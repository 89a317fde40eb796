"""Evasion by detection (Li et al. 2019, §6.3): the thief trains a binary classifier that tells key
samples from ordinary queries, so that its API can refuse or falsify the answers to flagged queries.

Two detectors, as in the paper: a 3-layer fully connected net on the pixels (512 - 256 - 1,
Fig. 6) and a head on the *stolen host's* own features (Fig. 7, the paper's ResNet-18: "the former
layers" as a frozen feature extractor, then one fully connected layer). Both train with the one
training loop (two-way cross-entropy, which is the logistic loss of Eq. 16 written with two logits)
and are scored by the ROC AUC of the key-sample probability on held-out images.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from .data import Split
from .train import History, TrainConfig, fit_cached, predict_proba


def pixel_detector(channels: int, image_size: int, widths=(512, 256)) -> nn.Sequential:
    """§6.3: fully connected 512 - 256 - 1 on the flattened image (ReLU between; the paper names no
    activation); the one output is written as two logits."""
    d = channels * image_size * image_size
    return nn.Sequential(nn.Flatten(), nn.Linear(d, widths[0]), nn.ReLU(inplace=True),
                         nn.Linear(widths[0], widths[1]), nn.ReLU(inplace=True), nn.Linear(widths[1], 2))


def penultimate(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without its last linear layer: its "former layers" (§6.3) as features."""
    model = copy.deepcopy(model)
    if isinstance(model, nn.Sequential) and isinstance(model[-1], nn.Linear):
        return model[:-1]
    for name in ("head", "linear", "fc", "classifier"):  # wmlib's ResNets end in head = pool, flatten, linear
        last = getattr(model, name, None)
        if isinstance(last, nn.Linear):
            setattr(model, name, nn.Identity())
            return model
        if isinstance(last, nn.Sequential) and isinstance(last[-1], nn.Linear):
            setattr(model, name, last[:-1])
            return model
    raise ValueError(f"cannot find the last linear layer of {type(model).__name__}")


class FeatureDetector(nn.Module):
    """§6.3, Fig. 7: the stolen host's frozen former layers, then one linear layer (two logits)."""

    def __init__(self, host: nn.Module, example: torch.Tensor):
        super().__init__()
        self.features = penultimate(host).eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            d = self.features(example[:1].float()).flatten(1).shape[1]
        self.head = nn.Linear(d, 2)

    def train(self, mode: bool = True):
        super().train(mode)
        self.features.eval()  # frozen: batch-norm statistics never move
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def detector_data(ordinary: torch.Tensor, keys: torch.Tensor, seed: int = 0) -> Split:
    """Ordinary images (label 0) and as many key samples (label 1; drawn with replacement when there
    are fewer), as §6.3's thief holds them."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(keys), (len(ordinary),), generator=g) if len(keys) < len(ordinary) else \
        torch.randperm(len(keys), generator=g)[:len(ordinary)]
    x = torch.cat([ordinary, keys[idx]])
    y = torch.cat([torch.zeros(len(ordinary), dtype=torch.int64), torch.ones(len(idx), dtype=torch.int64)])
    return Split(x, y)


def train_detector(detector: nn.Module, ordinary: torch.Tensor, keys: torch.Tensor, cfg: TrainConfig,
                   device: torch.device | None = None) -> History:
    """Train ``detector`` (in place) to flag ``keys`` among ``ordinary`` images (§6.3: SGD 0.01, 20 epochs)."""
    return fit_cached(detector, detector_data(ordinary, keys, cfg.seed), cfg, tag="detector", device=device, desc="detector")


def detection_roc(detector: nn.Module, ordinary: torch.Tensor, keys: torch.Tensor,
                  device: torch.device | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC curve (false / true positive rates) and AUC of flagging ``keys`` among ``ordinary`` images."""
    score = predict_proba(detector, torch.cat([ordinary, keys]), device)[:, 1].float().cpu().numpy()
    label = np.r_[np.zeros(len(ordinary)), np.ones(len(keys))]
    fpr, tpr, _ = roc_curve(label, score)
    return fpr, tpr, float(roc_auc_score(label, score))
