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
    n_queries=100, alpha=0.01, false_claim_draws=200, zoo_confidence=0.99,
    prune_rates=[i / 10 for i in range(10)], sweep_rates=[i / 10 for i in range(10)],
    finetune_epochs=10, finetune_lr=5e-4, finetune_optimizer="adam", budget=0.10,
    input_noise_std=0.1, quant_bits=8, seed=0,
)

ZHANG2018 = {
    # Fashion-MNIST subset, a few epochs: exercises every cell in about a minute on 2 CPU cores
    "smoke": dict(_ZHANG_COMMON, train_limit=6000, test_limit=2000, epochs=3, false_claim_draws=50,
                  unrelated_dataset="mnist-5k", unrelated_class=1,
                  prune_rates=[0.0, 0.5, 0.9], sweep_rates=[0.0, 0.5, 0.9], finetune_epochs=2),
    # full real Fashion-MNIST with LeNet-5; MNIST "1"s from the 5k subset that ships offline
    "default": dict(_ZHANG_COMMON, unrelated_dataset="mnist-5k", unrelated_class=1),
    # §5.1 / Appendix A.1: Carlini & Wagner's nets, SGD lr 0.01 momentum 0.9, batch 128, 50 epochs
    "paper": dict(_ZHANG_COMMON, dataset="mnist", model="cw", epochs=50, lr=0.01, weight_decay=0.0,
                  schedule="none"),
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
    ae_epochs=400, ae_lr=1e-3, ae_sweep=[50, 100, 200, 400], folds=5, percentile=95.0, detection_samples=1000,
    sweep_rates=[i / 10 for i in range(10)], finetune_epochs=10, finetune_lr=1e-3, budget=0.10,
    auc_sizes=[20, 10, 5], auc_repeats=30, n_queries=100, alpha=0.01, false_claim_draws=200, zoo_confidence=0.99,
    seed=0,
    # the digits ablation (see variant()): the chapter again on real MNIST digits (the 5k subset), with the
    # paper's thief share in images (1 % of MNIST = 600: 15 % of the subset's 4,000 training images) and longer
    # training, so that the 3,400 owner images present each key about as often as Fashion-MNIST's 59,400 do
    # (-p digits_dataset off skips it)
    digits_dataset="mnist-5k", digits_attacker_fraction=0.15, digits_unrelated_dataset="fashion-mnist",
    digits_unrelated_class=1, digits_epochs=30, digits_retrain_epochs=80,
    # AFS keys keep their true labels, and every digit model of the zoo answers them so (the gate refuses them)
    digits_kinds=["test-gray", "symbol", "heart-gray", "unrelated", "noise", "ds", "proposal", "label-change"],
)
NAMBA2019 = {
    # long enough (and 16 keys per batch) for every key type to pass the embedding gate; AFS is left out: the small smoke zoo answers
    # its (true-labelled) keys as the watermarked model does, so no claim is possible
    "smoke": dict(_NAMBA_COMMON, train_limit=6000, test_limit=2000, attacker_fraction=0.1, epochs=5,
                  kinds=["test-gray", "symbol", "heart-gray", "unrelated", "noise", "ds", "proposal", "label-change"],
                  unrelated_dataset="mnist-5k", unrelated_class=1, retrain_epochs=20, key_per_batch=16, ae_epochs=20,
                  ae_sweep=[5, 20],
                  folds=2, detection_samples=200, sweep_rates=[0.0, 0.5, 0.9], finetune_epochs=2, auc_repeats=10,
                  false_claim_draws=50, digits_epochs=5, digits_retrain_epochs=20,
                  digits_kinds=["test-gray", "unrelated", "proposal"]),
    # all of Fashion-MNIST with LeNet-5; a quarter of the non-target images become content/noise keys
    "default": dict(_NAMBA_COMMON, unrelated_dataset="mnist-5k", unrelated_class=1),
    # §6.1 / Tables 5-6: ResNet-32, SGD 0.1 (x0.1 at epochs 40, 60), 100 epochs, minibatch 100 + 4 keys;
    # autoencoder Adam 1e-3, 400 epochs; 10-fold cross-validation; every non-target image a content key
    "paper": dict(_NAMBA_COMMON, dataset="cifar10", model="resnet32", epochs=100, lr=0.1, weight_decay=1e-4,
                  schedule="step", milestones=[40, 60], augment=True, key_fraction=1.0, retrain_epochs=20,
                  ae_epochs=400, folds=10, detection_samples=5000, digits_dataset="off",
                  kinds=["test-gray", "test-blue", "symbol", "heart-gray", "heart-red", "unrelated", "noise",
                         "afs", "ds", "proposal", "label-change"]),
}

# Li et al. 2019: hosts trained jointly with the encoder and discriminator (§5.1)
_LI_COMMON = dict(
    dataset="fashion-mnist", model="lenet5", hosts=["lenet1", "lenet3", "lenet5"], attacker_fraction=0.1,
    train_limit=None, test_limit=None, key_fraction=0.01, labels="any", logo="IP",
    loss_weights=[3.0, 5.0, 0.1, 0.01], code_weights=[3.0, 5.0, 1.0, 0.1], key_batch=20, host_steps=1,
    epochs=100, batch_size=100, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="step",
    milestones=[40, 80], augment=False, t_acc=0.9,
    leak_seeds=5, detector_epochs=20, detector_lr=0.01, finetune_epochs=100, finetune_lr=0.01,
    prune_rates=[i / 10 for i in range(10)], sweep_rates=[i / 10 for i in range(10)], budget=0.10,
    n_queries=100, alpha=0.01, false_claim_draws=200, zoo_confidence=0.99, seed=0,
)
LI2019 = {
    # 8 epochs and 1 % keys: with fewer, the hosts were not claimed on their own keys (the embedding gate stops)
    "smoke": dict(_LI_COMMON, train_limit=6000, test_limit=2000, hosts=["lenet1", "lenet5"], epochs=8,
                  schedule="cosine", milestones=[], lr=0.05, key_fraction=0.01, host_steps=2, leak_seeds=2,
                  detector_epochs=3, finetune_epochs=2, prune_rates=[0.0, 0.5, 0.9], sweep_rates=[0.0, 0.5, 0.9],
                  false_claim_draws=50),
    # 2 CPU cores in <= 15 min: 20,000 owner images, 10 epochs (cosine, lr 0.05), one encoder step per
    # two host steps (k2 = 2), 3 seeds for the encoder-leak matrix, 20 fine-tuning epochs
    "default": dict(_LI_COMMON, train_limit=22222, epochs=10, schedule="cosine", milestones=[], lr=0.05,
                    host_steps=2, leak_seeds=3, finetune_epochs=20),
    # §5.1: MNIST LeNets or CIFAR-10 hosts, 100 epochs, SGD 0.1 x0.1 every 40 epochs, k1 = k2 = 1
    "paper": dict(_LI_COMMON, dataset="mnist"),
}

# GradSigns (Aramoon et al. 2021): a signature in the input gradients of class T
_GS_COMMON = dict(
    dataset="fashion-mnist", model="lenet5", train_limit=30000, test_limit=None, attacker_fraction=0.2,
    target=0, bits=32, bits_list=[16, 32, 64], carriers=None, samples=50, lam=None,
    lam_sweep=[0.01, 0.03, 0.1, 0.3, 1.0], reduction="mean", key_per_batch=10, h=1e-4,
    epochs=10, batch_size=90, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine",
    milestones=[], augment=False, alpha=3e-3, zoo_confidence=0.99,
    compare=["zhang-content", "zhang-unrelated", "zhang-noise", "afs", "ds"], unrelated_dataset="mnist-5k",
    unrelated_class=1, noise_std=0.2, n_keys=30, afs_eps=0.1, retrain_epochs=5, retrain_lr=0.01,
    thief_per_class=[25, 50, 100, 200], sweep_rates=[i / 10 for i in range(10)], finetune_epochs=10,
    finetune_lr=5e-4, patience=2, budget=0.10, quant_bits=8, fgsm_eps=0.1, fgsm_ablation=[0.01, 0.03], fgsm_mix=0.5,
    fgsm_epochs=5, sweep_test=2000, wm_samples=500,
    noise_stds=[0.001, 0.003, 0.01, 0.03, 0.1], noise_trials=5, decimals=[1, 2, 3, 4],
    h_sweep=[1e-5, 1e-4, 1e-3, 1e-2, 1e-1], perturb_attempts=50, perturb_h=0.1, perturb_M=3, perturb_eps=1e-5,
    forge_per_class=[64, 128, 256, 512], forge_lam_factors=[0.3, 1.0, 3.0], forge_epochs=None, forge_target=1,
    benchmark_steps=30, seed=0,
)
GRADSIGNS = {
    # 8 epochs on 6,400 images: N = 64 (the smoke zoo's null is too wide to claim 32 bits; measured); DS, not AFS,
    # as the rival (the smoke zoo answers 30-57 % of AFS keys correctly: 30 keys cannot be claimed)
    "smoke": dict(_GS_COMMON, train_limit=8000, test_limit=2000, epochs=8, bits=64, bits_list=[32, 64], lam_sweep=[0.3, 1.0],
                  compare=["zhang-content", "ds"], thief_per_class=[20, 40], sweep_rates=[0.0, 0.5, 0.9],
                  finetune_epochs=2, fgsm_epochs=1, fgsm_ablation=[0.03], retrain_epochs=5, retrain_lr=0.05, noise_stds=[0.001, 0.1], noise_trials=2,
                  decimals=[1, 4], h_sweep=[1e-4, 1e-1], perturb_attempts=3, forge_per_class=[20, 40],
                  forge_lam_factors=[1.0], benchmark_steps=5),
    # real Fashion-MNIST, LeNet-5, 30,000 training images of which the thief holds 20 %: 2 CPU cores in <= 12 min
    "default": dict(_GS_COMMON),
    # §4, Tables 6-8: CIFAR-10 ResNet-20 (target airplane), Adam 1e-3 over 200 epochs with step decays
    # ([code]), shift + flip augmentation; -p dataset svhn -p model svhn6conv -p target 1 for SVHN
    "paper": dict(_GS_COMMON, dataset="cifar10", model="resnet20", train_limit=None, attacker_fraction=0.1,
                  epochs=200, optimizer="adam", lr=1e-3, weight_decay=1e-4, schedule="step", milestones=[80, 120, 160],
                  augment=True, thief_per_class=[250, 500, 1000, 2000], forge_per_class=[256, 512, 1024, 2048, 4096],
                  unrelated_dataset="mnist", retrain_lr=0.001, sweep_test=None),
}

# Wen et al.: function-coupled watermarks (fusion triggers, random weight masking)
_FC_COMMON = dict(
    dataset="fashion-mnist", model="lenet5", train_limit=30000, test_limit=None, attacker_fraction=0.1,
    sources=[0, 3], target=None, key_fraction=0.01, verify_triggers=90, key_per_batch=10, r_values=[0.5, 0.7, 0.9],
    replicates=3, mask_ratio=0.05, mask_sweep=[0.0, 0.05, 0.1, 0.3], ft_lr=1e-3, ft_samples=1000,
    epochs=10, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine",
    milestones=[], augment=False,
    trials=10, thief_samples=1000, trial_epochs=5, finetune_lr=1e-5, strong_lr=1e-4,
    transfer_dataset="mnist-5k", transfer_lr=1e-4, prune_rates=[i / 10 for i in range(1, 10)], table4_prune=0.8,
    overwrite_sources=[2, 4], overwrite_target=5, overwrite_lr=1e-4, overwrite_epochs=5,
    compare=["zhang-content", "ew", "afs"], n_keys=30, afs_eps=0.1, T=2.0, retrain_epochs=10, retrain_lr=0.01,
    n_queries=90, alpha=0.01, false_claim_draws=200, zoo_confidence=0.99, benchmark_steps=30, seed=0,
)
FUNCTION_COUPLED = {
    "smoke": dict(_FC_COMMON, train_limit=8000, test_limit=2000, epochs=4, key_fraction=0.02, verify_triggers=40,
                  r_values=[0.5], replicates=1, mask_ratio=0.1, mask_sweep=[0.0, 0.1], ft_samples=200, trials=2, thief_samples=300,
                  trial_epochs=1, prune_rates=[0.5, 0.8], overwrite_epochs=1, compare=["zhang-content"],
                  retrain_epochs=2, n_queries=40, false_claim_draws=50, benchmark_steps=5),
    # real Fashion-MNIST, LeNet-5, 27,000 owner images, 10 epochs: 2 CPU cores in <= 12 min
    "default": dict(_FC_COMMON),
    # §5: MNIST LeNet-5 (-p dataset cifar10 -p model resnet18, or cifar100 / vgg16), the paper's
    # sources 0, 3 and target 1; its epochs and optimiser are not given: [code]'s SGD 0.01 over 40 epochs
    "paper": dict(_FC_COMMON, dataset="mnist", train_limit=None, target=1, epochs=40, lr=0.01, schedule="step",
                  milestones=[15, 25, 35], thief_samples=2000, trial_epochs=20, transfer_dataset="fashion-mnist"),
}

def _pick(knobs: dict, *names: str, prefix: str = "") -> dict:
    """The knobs ``names`` of a chapter's profile, renamed ``{prefix}{name}``: the comparison takes
    each scheme's settings from its chapter rather than a copy of them."""
    return {prefix + n: copy.deepcopy(knobs[n]) for n in names}


# The comparison (wmlib.compare): every scheme on ONE task (the function-coupled chapter's: 30,000 Fashion-MNIST
# training images, 10 % of them the thief's, LeNet-5, 10 epochs), each configured as in its chapter's default
_FC, _ZH, _NA, _LI, _GS = (c["default"] for c in (FUNCTION_COUPLED, ZHANG2018, NAMBA2019, LI2019, GRADSIGNS))
_CMP_COMMON = dict(
    **_pick(_FC, "dataset", "model", "train_limit", "test_limit", "attacker_fraction", "epochs", "batch_size", "optimizer",
            "lr", "momentum", "weight_decay", "schedule", "milestones", "augment"),
    entries=["zhang-content", "zhang-unrelated", "zhang-noise", "namba-proposal", "namba-afs", "namba-ds", "li2019",
             "gradsigns", "fc-direct", "fc-invisible"],
    seeds=[0, 1, 2],
    attacks=["fine-tune", "fine-tune-small", "prune", "prune-finetune", "quantize", "transfer", "overwrite",
             "input-noise", "query-modification", "key-detector", "rounding", "perturbation"],
    # Zhang et al.: class 1 -> 0, every owner image of class 1 a key
    **_pick(_ZH, "source", "target", "noise_std", "unrelated_dataset", "unrelated_class"),
    **_pick(_ZH, "key_fraction", prefix="zhang_"),
    # Namba & Sakuma: 30 keys, EW T = 2, 4 keys per batch; AFS eps 0.1; the clean model retrained at 0.01 for 10 epochs
    # (its chapter: 5 epochs of 594 steps; 10 of 211 steps here)
    **_pick(_NA, "n_keys", "T", "key_per_batch", "afs_eps", "retrain_lr"), retrain_epochs=10,
    # Li et al.: 1 % keys, logo "IP", (alpha, beta, gamma, delta) of §5.1, 20 keys per batch, k2 = 2
    **_pick(_LI, "labels", "logo", "loss_weights", "key_batch", "host_steps"), **_pick(_LI, "key_fraction", prefix="li_"),
    # GradSigns: N = 32 bits, |C| from Table 6, 50 class-0 images, 10 class-T images per batch; lambda 0.3 ([code]'s
    # default: its chapter picks lambda by a sweep)
    **_pick(_GS, "bits", "carriers", "samples", "reduction", "h"), **_pick(_GS, "key_per_batch", prefix="gs_"), lam=0.3,
    # function-coupled: sources 0 and 3; target None = the class the zoo gives least to the triggers; p = 0.05
    **_pick(_FC, "sources", "key_fraction", "key_per_batch", prefix="fc_"), fc_target=None, fc_r=_FC["r_values"][0],
    **_pick(_FC, "verify_triggers", "mask_ratio", "ft_lr", "ft_samples"),
    # the attacks
    # the prune + fine-tune sweep: Namba's 0-90 % without 10, 30 and 50 % (the budget binds at the high rates; 30 minutes)
    finetune_epochs=10, finetune_lr=5e-4, thief_small=0.1, prune_rate=0.5, sweep_rates=[0.0, 0.2, 0.4, 0.6, 0.7, 0.8, 0.9],
    budget=0.10, quant_bits=8, transfer_dataset="mnist-5k", transfer_epochs=10, transfer_lr=1e-3,
    **_pick(_FC, "overwrite_sources", "overwrite_target", "overwrite_epochs"), overwrite_key_fraction=0.01,
    overwrite_lr=1e-3, input_noise_std=0.1, ae_epochs=100, ae_lr=1e-3, folds=5, percentile=95.0,
    detector_epochs=20, detector_lr=0.01, detector_fpr=0.05, detector_ordinary=2000,
    round_decimals=2, perturb_M=3, perturb_eps=1e-5,
    # the verifier
    n_queries=100, alpha=0.01, zoo_confidence=0.99, false_claim_draws=200,
)
COMPARISON = {
    # CI: two schemes, one seed, two attacks on 6,000 images (one attack does not apply to one scheme)
    "smoke": dict(_CMP_COMMON, train_limit=6000, test_limit=2000, epochs=6, entries=["zhang-content", "namba-ds"],
                  seeds=[0], attacks=["fine-tune", "rounding"], retrain_epochs=15, key_per_batch=16, finetune_epochs=2,
                  false_claim_draws=50),
    "default": dict(_CMP_COMMON),
    # CIFAR-10 with ResNet-20 (GradSigns' and Zhang's CIFAR setting) on a GPU, 5 seeds; the chapters' paper epochs are
    # 50-200: 30 epochs of SGD 0.1 with two decays, to keep the 5 x 11 models near the hour (an estimate, see the page)
    "paper": dict(_CMP_COMMON, dataset="cifar10", model="resnet20", train_limit=None, epochs=30, lr=0.1, weight_decay=1e-4,
                  schedule="step", milestones=[15, 25], augment=True, seeds=[0, 1, 2, 3, 4], unrelated_dataset="mnist",
                  transfer_dataset="svhn", ae_epochs=400, folds=10, li_key_fraction=0.01),
}

CHAPTERS = {"zhang2018": ZHANG2018, "namba2019": NAMBA2019, "li2019": LI2019, "gradsigns": GRADSIGNS,
            "function_coupled": FUNCTION_COUPLED, "comparison": COMPARISON}

# The clean-model zoo (wmlib.zoo): architectures that fit the task, each with this many seeds, each
# member trained on its own random ``data_fraction`` of the task's training images. One recipe per
# profile and image kind, shared by every chapter: 28x28 grey (MNIST, Fashion-MNIST) and 32x32 RGB.
_ZOO_COMMON = dict(data_fraction=0.5, batch_size=128, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
                   schedule="cosine", milestones=[], augment=False)
ZOO = {
    # 8 models in seconds on 2 CPU cores (fewer leave the 99 % bounds of wmlib.verify.Null too wide to claim anything)
    "smoke": {"grey28": dict(_ZOO_COMMON, archs={"lenet1": 4, "lenet5": 4}, epochs=3, lr={"*": 0.05}),
              "rgb32": dict(_ZOO_COMMON, archs={"resnet20": 2, "vgg11": 2}, epochs=2, lr={"*": 0.05}, augment=True)},
    # >= 10 models: the LeNets Zhang and Namba use, and Carlini & Wagner's net (Zhang's own); about 5 min on 2 cores
    "default": {"grey28": dict(_ZOO_COMMON, archs={"lenet1": 4, "lenet3": 4, "lenet5": 4, "cw": 2}, epochs=8,
                               lr={"*": 0.05, "cw": 0.01}),
                "rgb32": dict(_ZOO_COMMON, archs={"resnet20": 5, "vgg11": 5}, epochs=30, lr={"*": 0.1}, augment=True)},
    # >= 20 models, on a GPU
    "paper": {"grey28": dict(_ZOO_COMMON, archs={"lenet1": 5, "lenet3": 5, "lenet5": 5, "cw": 5}, epochs=20,
                             lr={"*": 0.05, "cw": 0.01}),
              "rgb32": dict(_ZOO_COMMON, archs={"resnet20": 10, "vgg11": 10}, epochs=40, lr={"*": 0.1}, augment=True)},
}


def zoo_recipe(dataset: str, profile: str, **overrides) -> dict:
    """The zoo recipe of ``profile`` for ``dataset``'s image kind, with ``overrides`` applied."""
    from . import data

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    s = data.spec(dataset)
    kind = {(1, 28): "grey28", (3, 32): "rgb32"}.get((s.channels, s.image_size))
    if kind is None:
        raise ValueError(f"no zoo recipe for {s.channels}x{s.image_size}x{s.image_size} images ({dataset}); "
                         f"add one to wmlib.profiles.ZOO")
    recipe = copy.deepcopy(ZOO[profile][kind])
    unknown = sorted(set(overrides) - set(recipe))
    if unknown:
        raise ValueError(f"unknown zoo recipe field(s) {', '.join(unknown)}; valid: {', '.join(sorted(recipe))}")
    recipe.update(overrides)
    if not recipe["archs"] or any(int(n) < 1 for n in recipe["archs"].values()):
        raise ValueError(f"the zoo needs at least one architecture with >= 1 seed, got {recipe['archs']}")
    if sum(recipe["archs"].values()) < 3:
        raise ValueError("a zoo needs >= 3 models: leave-one-out fits each null on the others (>= 2)")
    if not 0.0 < recipe["data_fraction"] <= 1.0:
        raise ValueError(f"data_fraction must be in (0, 1], got {recipe['data_fraction']}")
    return recipe


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
    validate(chapter, cfg)
    return cfg


ABLATIONS = ("digits",)  # knob prefixes of ablation runs inside a chapter (see variant)


def variant(chapter: str, cfg: dict, prefix: str) -> dict | None:
    """The knobs of an ablation run inside a chapter: ``cfg`` with every ``{prefix}_{name}`` knob
    that is not None in place of ``name``, or None when ``{prefix}_dataset`` is ``"off"`` (the
    ablation is skipped). It is validated like a main run; a bad value names the ablation's knobs."""
    p = f"{prefix}_"
    if cfg.get(f"{p}dataset") in (None, "off"):
        return None
    out = {k: v for k, v in cfg.items() if not any(k.startswith(f"{a}_") for a in ABLATIONS)}
    out.update({k[len(p):]: v for k, v in cfg.items() if k.startswith(p) and v is not None})
    try:
        validate(chapter, out)
    except ValueError as err:
        raise ValueError(f"the {prefix} ablation (knobs {p}*, each replacing the knob without the prefix): {err}") from None
    return out


# --------------------------------------------------------------------------- knob validation

def _int(lo: int, hi: int | None = None, none: bool = False):
    def check(v):
        if v is None and none:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            return f"an integer in [{lo}, {'∞' if hi is None else hi}]" + (" or None" if none else "")
    return check


def _real(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False, none: bool = False):
    def check(v):
        if v is None and none:
            return None
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if ok:
            ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            rng = f"{'(' if lo_open else '['}{lo}, {'∞' if hi == float('inf') else hi}{')' if hi_open else ']'}"
            return f"a number in {rng}" + (" or None" if none else "")
    return check


def _choice(options, none: bool = False):
    def check(v):
        if v is None and none:
            return None
        if v not in options:
            return f"one of: {', '.join(sorted(options))}" + (" or None" if none else "")
    return check


def _list(item, nonempty: bool = True):
    def check(v):
        if not isinstance(v, (list, tuple)) or (nonempty and not v):
            return "a non-empty list"
        for x in v:
            err = item(x)
            if err:
                return f"a list whose items are each {err} (got {x!r})"
    return check


def _weights():
    inner = _list(_real(0.0, _INF))

    def check(v):
        return inner(v) or (None if len(v) == 4 else "a list of 4 loss weights (α, β, γ, δ)")
    return check


def _text():
    def check(v):
        if not isinstance(v, str) or not v.strip():
            return "a non-empty string"
    return check


_INF = float("inf")
# the rival watermarks a chapter compares with
COMPARE = {"gradsigns": ("zhang-content", "zhang-unrelated", "zhang-noise", "afs", "ds"),  # its Fig. 2
           "function_coupled": ("zhang-content", "ew", "afs")}  # its Table 4 (EW: Namba's proposal)


def _pair():
    inner = _list(_int(0))

    def check(v):
        return inner(v) or (None if len(v) == 2 and v[0] != v[1] else "a list of two different class indices")
    return check


def _rules(chapter: str) -> dict:
    from . import compare, data, models
    from .schemes import gradsigns, namba2019, zhang2018
    from .train import OPTIMIZERS, SCHEDULES

    kinds = {"zhang2018": zhang2018.KINDS, "namba2019": namba2019.KEY_KINDS}.get(chapter, ())
    pos_int, pos = _int(1), _real(0.0, _INF, lo_open=True)
    return {
        # function-coupled: target None picks the class the clean zoo gives least to the triggers
        "target": _int(0, none=chapter == "function_coupled"),
        "compare": _list(_choice(COMPARE.get(chapter, ())), nonempty=False),
        "dataset": _choice(data.REGISTRY), "model": _choice(models.REGISTRY),
        "unrelated_dataset": _choice(data.REGISTRY, none=True), "unrelated_class": _int(0, none=True),
        "kinds": _list(_choice(kinds)), "source": _int(0, none=True),
        "train_limit": _int(10, none=True), "test_limit": _int(10, none=True),
        "attacker_fraction": _real(0.0, 1.0, lo_open=True, hi_open=True), "key_fraction": _real(0.0, 1.0, lo_open=True),
        "epochs": pos_int, "batch_size": pos_int, "finetune_epochs": pos_int, "retrain_epochs": pos_int,
        "ae_epochs": pos_int, "ae_sweep": _list(pos_int), "folds": _int(2), "optimizer": _choice(OPTIMIZERS), "finetune_optimizer": _choice(OPTIMIZERS),
        "schedule": _choice(SCHEDULES), "milestones": _list(_int(1), nonempty=False),
        "lr": pos, "finetune_lr": pos, "retrain_lr": pos, "ae_lr": pos,
        "momentum": _real(0.0, 1.0, hi_open=True), "weight_decay": _real(0.0, _INF),
        "augment": _choice((True, False)), "noise_std": _real(0.0, _INF, lo_open=True),
        "input_noise_std": _real(0.0, _INF), "afs_eps": _real(0.0, 1.0, lo_open=True),
        "T": _real(0.0, _INF, lo_open=True, none=True), "n_keys": pos_int, "key_per_batch": pos_int,
        "percentile": _real(0.0, 100.0, lo_open=True, hi_open=True), "detection_samples": pos_int,
        "prune_rates": _list(_real(0.0, 1.0, hi_open=True)), "sweep_rates": _list(_real(0.0, 1.0, hi_open=True)),
        "budget": _real(0.0, 1.0, hi_open=True), "quant_bits": _int(2, 8),
        "auc_sizes": _list(pos_int), "auc_repeats": pos_int, "n_queries": pos_int,
        "alpha": _real(0.0, 1.0, lo_open=True, hi_open=True), "false_claim_draws": pos_int,
        "zoo_confidence": _real(0.5, 1.0, hi_open=True, none=True), "seed": _int(0),
        "hosts": _list(_choice(models.REGISTRY)), "labels": _choice(("any", "other")), "logo": _text(),
        "loss_weights": _weights(), "code_weights": _weights(), "key_batch": pos_int, "host_steps": pos_int,
        "t_acc": _real(0.0, 1.0, lo_open=True), "leak_seeds": _int(2), "detector_epochs": pos_int, "detector_lr": pos,
        # GradSigns
        "bits": pos_int, "bits_list": _list(pos_int), "carriers": _int(1, none=True), "samples": pos_int,
        "lam": _real(0.0, _INF, lo_open=True, none=True), "lam_sweep": _list(_real(0.0, _INF, lo_open=True)),
        "reduction": _choice(gradsigns.REDUCTIONS), "h": pos,
        "thief_per_class": _list(pos_int), "patience": _int(1, none=True), "fgsm_eps": _real(0.0, 1.0, lo_open=True),
        "fgsm_mix": _real(0.0, 1.0, lo_open=True), "fgsm_epochs": pos_int,
        "fgsm_ablation": _list(_real(0.0, 1.0, lo_open=True), nonempty=False), "sweep_test": _int(10, none=True),
        "wm_samples": pos_int, "noise_stds": _list(_real(0.0, _INF)),
        "noise_trials": pos_int, "decimals": _list(_int(0, 7)), "h_sweep": _list(pos), "perturb_attempts": pos_int,
        "perturb_h": pos, "perturb_M": pos_int, "perturb_eps": _real(0.0, _INF), "forge_per_class": _list(pos_int),
        "forge_lam_factors": _list(pos), "forge_epochs": _int(1, none=True), "forge_target": _int(0),
        "benchmark_steps": pos_int,
        # function-coupled
        "sources": _pair(), "r_values": _list(_real(0.0, 1.0, lo_open=True, hi_open=True)), "replicates": pos_int,
        "mask_ratio": _real(0.0, 1.0, hi_open=True), "mask_sweep": _list(_real(0.0, 1.0, hi_open=True)),
        "ft_lr": _real(0.0, _INF), "ft_samples": pos_int, "verify_triggers": pos_int, "trials": pos_int,
        "thief_samples": pos_int, "trial_epochs": pos_int, "strong_lr": pos, "transfer_dataset": _choice(data.REGISTRY),
        "transfer_lr": pos, "table4_prune": _real(0.0, 1.0, hi_open=True), "overwrite_sources": _pair(),
        "overwrite_target": _int(0), "overwrite_lr": pos, "overwrite_epochs": pos_int,
        # the comparison
        "entries": _list(_choice(compare.ENTRIES)), "attacks": _list(_choice(compare.ATTACKS)), "seeds": _list(_int(0)),
        "zhang_key_fraction": _real(0.0, 1.0, lo_open=True), "li_key_fraction": _real(0.0, 1.0, lo_open=True, hi_open=True),
        "fc_key_fraction": _real(0.0, 1.0, lo_open=True, hi_open=True),
        "overwrite_key_fraction": _real(0.0, 1.0, lo_open=True, hi_open=True), "gs_key_per_batch": pos_int,
        "fc_key_per_batch": pos_int, "fc_sources": _pair(), "fc_target": _int(0, none=True),
        "fc_r": _real(0.0, 1.0, lo_open=True, hi_open=True), "thief_small": _real(0.0, 1.0, lo_open=True, hi_open=True),
        "prune_rate": _real(0.0, 1.0, hi_open=True), "transfer_epochs": pos_int, "detector_fpr": _real(0.0, 1.0, lo_open=True,
                                                                                                       hi_open=True),
        "detector_ordinary": pos_int, "perturb_M": pos_int, "round_decimals": _int(0, 7),
    }


def validate(chapter: str, cfg: dict) -> None:
    """Check every knob of a resolved config (range, type, valid names) and the knobs that must
    agree with each other; the first problem raises a ValueError that says what is allowed."""
    from . import data

    for prefix in ABLATIONS:
        variant(chapter, cfg, prefix)
    rules = _rules(chapter)
    for name, value in cfg.items():
        rule = rules.get(name)
        err = rule(value) if rule else None
        if err:
            raise ValueError(f"knob {name!r} must be {err}; got {value!r}")
    k = data.spec(cfg["dataset"]).num_classes
    for name in ("source", "target", "forge_target", "overwrite_target", "fc_target"):
        if cfg.get(name) is not None and cfg[name] >= k:
            raise ValueError(f"knob {name!r} must be a class index in [0, {k - 1}] for {cfg['dataset']}; got {cfg[name]}")
    if cfg.get("source") is not None and cfg["source"] == cfg.get("target"):
        raise ValueError(f"knobs 'source' and 'target' must differ (Zhang et al. Algorithm 1); both are {cfg['source']}")
    if "bits_list" in cfg:
        _validate_gradsigns(cfg, data.spec(cfg["dataset"]))
    if chapter == "namba2019":
        from .schemes.namba2019 import CONTENT_VARIANTS
        rgb = [kind for kind in cfg["kinds"] if len(CONTENT_VARIANTS.get(kind, {}).get("color", ())) == 3]
        if rgb and data.spec(cfg["dataset"]).channels != 3:
            raise ValueError(f"knob 'kinds': {', '.join(rgb)} are coloured logos and need an RGB dataset (Namba §6.1.2 "
                             f"skip them on MNIST); {cfg['dataset']} is grey")
    if "transfer_dataset" in cfg and data.spec(cfg["transfer_dataset"]).num_classes != k:
        raise ValueError(f"knob 'transfer_dataset' must keep the class count of {cfg['dataset']} ({k}), so the thief keeps "
                         f"the head (Wen et al. §5); {cfg['transfer_dataset']} has {data.spec(cfg['transfer_dataset']).num_classes}")
    if cfg.get("transfer_dataset") == cfg["dataset"]:
        raise ValueError(f"knob 'transfer_dataset' must be another task than {cfg['dataset']!r}")
    for pair, t in (("sources", "target"), ("overwrite_sources", "overwrite_target"), ("fc_sources", "fc_target")):
        if pair in cfg:
            bad = [c for c in cfg[pair] if c >= k]
            if bad:
                raise ValueError(f"knob {pair!r} must hold class indices in [0, {k - 1}] for {cfg['dataset']}; got {cfg[pair]}")
            if cfg.get(t) is not None and cfg[t] in cfg[pair]:
                raise ValueError(f"knob {t!r} must not be one of {pair!r} (Wen et al. §4.1: t ∉ {{i, j}}); got {cfg[t]} "
                                 f"and {cfg[pair]}")
    if chapter == "comparison":  # every chosen scheme accepts its knobs (a placeholder for a target picked later)
        from . import compare
        probe = dict(cfg, fc_target=cfg["fc_target"] if cfg["fc_target"] is not None else
                     next(c for c in range(k) if c not in cfg["fc_sources"]))
        compare.entry_context({n: compare.ENTRIES[n] for n in cfg["entries"]}, probe)
    if "hosts" in cfg and cfg["model"] not in cfg["hosts"]:
        raise ValueError(f"knob 'model' ({cfg['model']!r}) is the host the attacks use: it must be one of "
                         f"'hosts' ({', '.join(cfg['hosts'])})")
    unrelated = cfg.get("unrelated_dataset")
    if unrelated is not None and data.spec(unrelated).source == data.spec(cfg["dataset"]).source:
        raise ValueError(f"unrelated_dataset {unrelated!r} is drawn from the task's own distribution "
                         f"({cfg['dataset']!r}): unrelated keys must come from another dataset, "
                         f"e.g. -p unrelated_dataset fashion-mnist -p unrelated_class 1")
    if unrelated is not None and cfg.get("unrelated_class") is not None \
            and cfg["unrelated_class"] >= data.spec(unrelated).num_classes:
        raise ValueError(f"knob 'unrelated_class' must be in [0, {data.spec(unrelated).num_classes - 1}] "
                         f"for {unrelated}; got {cfg['unrelated_class']}")


def _validate_gradsigns(cfg: dict, spec) -> None:
    """The GradSigns knobs that must agree with each other and with the task."""
    from .schemes.gradsigns import default_carriers

    positions = spec.channels * spec.image_size ** 2
    for n in sorted({cfg["bits"], *cfg["bits_list"]}):
        c = cfg["carriers"] if cfg["carriers"] is not None else default_carriers(n)
        if c is None:
            raise ValueError(f"knob 'carriers' is None, so |C| comes from Table 6 (N in 16, 32, 64); N = {n} needs "
                             f"-p carriers ...")
        if not n <= c <= positions:
            raise ValueError(f"N = {n} bits need |C| in [{n}, {positions}] (the input positions of {cfg['dataset']}); "
                             f"got |C| = {c}")
