"""Profiles: ``smoke`` (CI on CPU), ``default`` (the rendered book, real Fashion-MNIST), ``paper``
(the paper's dataset, model and epochs; a GPU). A notebook's parameters cell names the profile
(papermill ``-p profile ...`` or the ``WMLIB_PROFILE`` environment variable) and may override any
knob; knobs left at ``None`` come from the profile.
"""
from __future__ import annotations

import copy
import os

PROFILES = ("smoke", "default", "paper")
ENV_VAR = "WMLIB_PROFILE"

_ZHANG_COMMON = dict(
    dataset="fashion-mnist", model="lenet5", attacker_fraction=0.1, train_limit=None, test_limit=None,
    kinds=["content", "unrelated", "noise"], source=1, target=0, key_fraction=1.0, noise_std=0.2,
    unrelated_dataset=None, unrelated_class=None,
    epochs=10, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4,
    schedule="cosine", augment=False,
    null_models=3, n_queries=100, alpha=0.01,
    prune_rates=[i / 10 for i in range(10)], sweep_rates=[i / 10 for i in range(10)],
    finetune_epochs=10, finetune_lr=5e-4, finetune_optimizer="adam", budget=0.10,
    input_noise_std=0.1, quant_bits=8, seed=0,
)

ZHANG2018 = {
    # Fashion-MNIST subset, a few epochs: exercises every cell in about a minute on 2 CPU cores
    "smoke": dict(_ZHANG_COMMON, train_limit=6000, test_limit=2000, epochs=3, null_models=2,
                  unrelated_dataset="mnist-5k", unrelated_class=1,
                  prune_rates=[0.0, 0.5, 0.9], sweep_rates=[0.0, 0.5, 0.9], finetune_epochs=2),
    # full real Fashion-MNIST with LeNet-5; MNIST "1"s from the 5k subset that ships offline
    "default": dict(_ZHANG_COMMON, unrelated_dataset="mnist-5k", unrelated_class=1),
    # §5.1 / Appendix A.1: Carlini & Wagner's nets, SGD lr 0.01 momentum 0.9, batch 128, 50 epochs
    "paper": dict(_ZHANG_COMMON, dataset="mnist", model="cw", epochs=50, lr=0.01, weight_decay=0.0,
                  schedule="none", null_models=5),
}

# thief's share per dataset: Namba & Sakuma Table 6 (1 % MNIST, 5 % GTSRB, 10 % CIFAR)
_NAMBA_ATTACKER = {"mnist": 0.01, "fashion-mnist": 0.01, "gtsrb": 0.05, "cifar10": 0.1, "cifar100": 0.1, "svhn": 0.05}
_NAMBA_COMMON = dict(
    dataset="fashion-mnist", model="lenet5", attacker_fraction=_NAMBA_ATTACKER, train_limit=None, test_limit=None,
    kinds=["test-gray", "symbol", "heart-gray", "unrelated", "noise", "afs", "ds", "proposal", "label-change"],
    target=0, key_fraction=0.25, noise_std=0.2, unrelated_dataset=None, unrelated_class=None,
    n_keys=30, T=2.0, key_per_batch=4, afs_eps=0.1,
    epochs=8, batch_size=100, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine",
    milestones=[], augment=False, retrain_epochs=5, retrain_lr=0.01,
    ae_epochs=200, ae_lr=1e-3, folds=5, percentile=95.0, detection_samples=1000,
    sweep_rates=[i / 10 for i in range(10)], finetune_epochs=10, finetune_lr=1e-3, budget=0.10,
    auc_sizes=[20, 10, 5], auc_repeats=30, seed=0,
)
NAMBA2019 = {
    "smoke": dict(_NAMBA_COMMON, train_limit=6000, test_limit=2000, attacker_fraction=0.1, epochs=3,
                  unrelated_dataset="mnist-5k", unrelated_class=1, retrain_epochs=2, ae_epochs=20, folds=2,
                  detection_samples=200, sweep_rates=[0.0, 0.5, 0.9], finetune_epochs=2, auc_repeats=10),
    # all of Fashion-MNIST with LeNet-5; a quarter of the non-target images become content/noise keys
    "default": dict(_NAMBA_COMMON, unrelated_dataset="mnist-5k", unrelated_class=1),
    # §6.1 / Tables 5-6: ResNet-32, SGD 0.1 (x0.1 at epochs 40, 60), 100 epochs, minibatch 100 + 4 keys;
    # autoencoder Adam 1e-3, 400 epochs; 10-fold cross-validation; every non-target image a content key
    "paper": dict(_NAMBA_COMMON, dataset="cifar10", model="resnet32", epochs=100, lr=0.1, weight_decay=1e-4,
                  schedule="step", milestones=[40, 60], augment=True, key_fraction=1.0, retrain_epochs=20,
                  ae_epochs=400, folds=10, detection_samples=5000,
                  kinds=["test-gray", "test-blue", "symbol", "heart-gray", "heart-red", "unrelated", "noise",
                         "afs", "ds", "proposal", "label-change"]),
}

CHAPTERS = {"zhang2018": ZHANG2018, "namba2019": NAMBA2019}


def knobs(chapter: str) -> list[str]:
    """The knob names of ``chapter`` (any of them can be set with papermill ``-p``)."""
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; choose one of: {', '.join(CHAPTERS)}")
    return sorted(CHAPTERS[chapter]["default"])


def resolve(chapter: str, profile: str | None = None, **overrides) -> dict:
    """The knobs of ``chapter`` under ``profile`` (default: ``$WMLIB_PROFILE`` or ``default``),
    with every non-None override applied. Unknown chapters, profiles or knobs list the valid ones."""
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; choose one of: {', '.join(CHAPTERS)}")
    profile = profile or os.environ.get(ENV_VAR) or "default"
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    cfg = copy.deepcopy(CHAPTERS[chapter][profile])
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise ValueError(f"unknown knob(s) {', '.join(unknown)} for {chapter}; valid: {', '.join(sorted(cfg))}")
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    for k, v in cfg.items():  # a knob given per dataset takes the chosen dataset's value
        if isinstance(v, dict) and cfg["dataset"] in v:
            cfg[k] = v[cfg["dataset"]]
        elif isinstance(v, dict):
            raise ValueError(f"knob {k!r} has no value for dataset {cfg['dataset']!r}; give it with -p {k} ...")
    cfg["profile"] = profile
    return cfg
