"""Model modification as the reference toolkit runs it: each attack changes what it says (which layers,
which labels, which weights) and reads its own knobs; each is shown to do its job on a model built to
be vulnerable to it."""
import copy

import pytest
import torch
from torch import nn

from tests.conftest import blobs
from wmlib import attacks, models, train
from wmlib.attacks import modification as mod
from wmlib.data import REGISTRY as DATASETS
from wmlib.data import Split
from wmlib.verify import Oracle, oracle_accuracy

FMNIST = DATASETS["fashion-mnist"]
SETTINGS = dict(ftll_epochs=2, rtll_epochs=3, rtal_epochs=2, shift_lambda=1.5, shift_noise=1.0, shift_epochs=1,
                label_smoothing_eps=0.3, label_smoothing_epochs=2, label_noise_eps=0.3, label_noising_epochs=2, wq_bits=5, wq_epochs=1, l2_decay=0.1, l2_epochs=2,
                l2_recovery_epochs=1)


# the task's public recipe the extraction attacks read (wmlib.attacks.extraction._recipe)
_RECIPE = dict(batch_size=64, optimizer="adam", momentum=0.9, weight_decay=0.0, schedule="none", milestones=[],
               augment=False, precision="fp32")


def _threat(thief: Split, **settings) -> attacks.Threat:
    return attacks.Threat(thief=thief, spec=FMNIST, seed=3,
                          finetune=train.TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=1e-3, seed=3),
                          budget=0.05, settings={**SETTINGS, **settings}, model_name="lenet5", scheme=None)


def _same(a: nn.Module, b: nn.Module) -> list[bool]:
    return [torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters())]


def test_every_modification_is_registered_with_knobs_the_comparison_has():
    from wmlib import profiles
    for a in mod.MODIFICATIONS:
        assert attacks.get(a.name) is a and a.side == "model" and not a.oracle
        assert all(k in profiles.COMPARISON["full"] for k in a.knobs), a.name


def test_ftll_trains_only_the_last_layer_on_true_labels(trained):
    before = copy.deepcopy(trained)
    s = attacks.get("ftll").apply(trained, _threat(blobs(300, seed=5)))
    same = _same(s.oracle.model, before)
    assert same[:-2] == [True] * (len(same) - 2) and same[-2:] == [False, False]  # the classifier's weight and bias
    assert all(_same(trained, before)) and "api_queries" not in s.report  # a copy; no query spent on labels


def test_rtll_and_rtal_reset_the_head_and_learn_the_apis_labels(trained):
    thief = blobs(400, seed=5)
    wrong = Split(thief.x, (thief.y + 1) % 10)  # the thief's own labels all wrong: only the API's are right
    before = copy.deepcopy(trained)
    reset = mod.reset_last_layer(trained, 3)
    assert not torch.equal(models.classifier(reset).weight, models.classifier(trained).weight)
    assert torch.equal(models.classifier(reset).weight, models.classifier(mod.reset_last_layer(trained, 3)).weight)  # seeded
    rtll = attacks.get("rtll").apply(trained, _threat(wrong, rtll_epochs=20))  # the head alone learns slowly at Adam 1e-3
    same = _same(rtll.oracle.model, before)
    assert same[:-2] == [True] * (len(same) - 2) and rtll.report["api_queries"] == len(thief)
    rtal = attacks.get("rtal").apply(trained, _threat(wrong))
    assert not any(_same(rtal.oracle.model, before))  # every layer trained
    for s in (rtll, rtal):  # trained on the API's answers, not on the thief's (wrong) labels
        assert oracle_accuracy(s.oracle, Split(thief.x, Oracle(trained).predict(thief.x))) > 0.5
        assert oracle_accuracy(s.oracle, wrong) < 0.2


def test_the_epochs_knob_is_read(trained):
    thief = blobs(200, seed=5)
    one = attacks.get("rtal").apply(trained, _threat(thief, rtal_epochs=1)).oracle.model
    two = attacks.get("rtal").apply(trained, _threat(thief, rtal_epochs=2)).oracle.model
    assert not all(_same(one, two))


def test_weight_shifting_subtracts_the_mean_filter_and_adds_the_layers_noise():
    conv = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    shifted = mod.shift_weights(conv, 1.0, 0.0, seed=0)
    w = shifted[0].weight
    assert torch.allclose(w.mean(0), torch.zeros_like(w[0]), atol=1e-6)  # lambda 1: every filter minus the mean filter
    assert torch.equal(shifted[2].weight, conv[2].weight)  # conv layers only
    noisy = mod.shift_weights(conv, 1.0, 1.0, seed=0)
    spread = float((noisy[0].weight - w).std())
    assert spread == pytest.approx(float(conv[0].weight.std()), rel=0.3)
    assert torch.equal(noisy[0].weight, mod.shift_weights(conv, 1.0, 1.0, seed=0)[0].weight)  # seeded


def test_weight_shifting_moves_the_filters_and_fine_tuning_keeps_the_task(trained):
    thief = blobs(600, seed=5)
    conv = lambda m: next(x for x in m.modules() if isinstance(x, nn.Conv2d)).weight
    shift = float((conv(mod.shift_weights(trained, 1.5, 1.0, seed=3)) - conv(trained)).norm())
    s = attacks.get("weight-shifting").apply(trained, _threat(thief, shift_epochs=2))
    plain = attacks.get("rtal").apply(trained, _threat(thief, rtal_epochs=2)).oracle.model
    assert float((conv(s.oracle.model) - conv(trained)).norm()) > 0.5 * shift > float((conv(plain) - conv(trained)).norm())
    assert oracle_accuracy(s.oracle, thief) > 0.8 and s.report["api_queries"] == len(thief)


def test_quantized_weights_sit_in_bin_middles():
    lin = nn.Linear(50, 40)
    q = mod.quantize_bins(lin, 3)
    w, w0 = q.weight, lin.weight
    assert w.unique().numel() <= 8 and float((w - w0).abs().max()) <= float(w0.max() - w0.min()) / 16 + 1e-6
    assert mod.quantize_bins(lin, 5).weight.unique().numel() > 8  # the bits are read
    with pytest.raises(ValueError, match="1..16"):
        mod.quantize_bins(lin, 0)


def test_label_smoothing_targets_and_the_softer_model():
    t = mod.smoothed(torch.tensor([2, 0]), 10, 0.3)
    assert torch.allclose(t.sum(1), torch.ones(2)) and float(t[0, 2]) == pytest.approx(0.73)
    thief = blobs(400, seed=5)
    torch.manual_seed(0)
    m = models.build("lenet1", 1, 10)
    train.fit(m, blobs(600), train.TrainConfig(epochs=6, batch_size=64, optimizer="adam", lr=3e-3), progress=False)
    confident = float(Oracle(m)(thief.x).max(1).values.mean())
    soft = attacks.get("label-smoothing").apply(m, _threat(thief, label_smoothing_epochs=3)).oracle
    hard = attacks.get("label-smoothing").apply(m, _threat(thief, label_smoothing_epochs=3, label_smoothing_eps=0.0)).oracle
    assert float(soft(thief.x).max(1).values.mean()) < min(0.85, confident - 0.05)
    assert float(hard(thief.x).max(1).values.mean()) > 0.9  # epsilon is what softens it


def test_label_noising_mixes_random_rows_by_epsilon(trained):
    y = torch.tensor([3, 1, 3])
    t = mod.noised(y, 10, 0.3, seed=0)
    assert torch.allclose(t.sum(1), torch.ones(3)) and (t.argmax(1) == y).all() and (t[:, 3][[0, 2]] >= 0.7).all()
    assert torch.equal(t, mod.noised(y, 10, 0.3, seed=0)) and not torch.equal(t, mod.noised(y, 10, 0.3, seed=1))
    assert torch.equal(mod.noised(y, 10, 0.0, seed=0), nn.functional.one_hot(y, 10).float())
    thief = blobs(300, seed=5)
    a = attacks.get("label-noising").apply(trained, _threat(thief)).oracle.model
    b = attacks.get("label-noising").apply(trained, _threat(thief, label_noise_eps=0.9)).oracle.model
    assert not all(_same(a, b))  # epsilon is read


def test_regularization_shrinks_the_weights_then_recovers(trained):
    thief = blobs(400, seed=5)
    norm = lambda m: float(sum(p.pow(2).sum() for p in m.parameters()))
    strong = attacks.get("regularization").apply(trained, _threat(thief, l2_decay=1.0, l2_epochs=3)).oracle.model
    weak = attacks.get("regularization").apply(trained, _threat(thief, l2_decay=1e-6, l2_epochs=3)).oracle.model
    assert norm(strong) < 0.8 * norm(weak)


# --------------------------------------------------------------------------- the reference's extraction variants

class _FlippingAPI(Oracle):
    """DAWN-like: the API answers a wrong class for a keyed share of the exact images it is sent."""

    def __init__(self, model, flipped: set):
        super().__init__(model)
        self.flipped = flipped

    def __call__(self, x):
        p = super().__call__(x)
        for i, img in enumerate(x):
            if hash(bytes(img.to(torch.uint8).flatten().tolist()) if img.dtype == torch.uint8 else None) in self.flipped:
                p[i] = p[i].roll(1)
        return p


def test_averaged_labels_dilute_answers_given_to_exact_images_only(trained):
    from wmlib.attacks import extraction
    x = blobs(60, seed=7).x
    flipped = {hash(bytes(img.flatten().tolist())) for img in x[:20]}
    api = _FlippingAPI(trained, flipped)
    top1 = extraction.stolen_labels(api, x)
    truth = Oracle(trained).predict(x)
    assert (top1[:20] != truth[:20]).all() and torch.equal(top1[20:], truth[20:])  # plain retraining inherits the flips
    avg = extraction.averaged_labels(api, x, 3, seed=0)
    # augmented queries are never the exact images: the averages are the honest API's, flips and all left out
    assert torch.allclose(avg.sum(1), torch.ones(60)) and torch.allclose(avg, extraction.averaged_labels(Oracle(trained), x, 3, 0))
    assert api.queries == 60 + 3 * 60
    assert torch.equal(avg, extraction.averaged_labels(api, x, 3, seed=0))  # seeded
    assert not torch.equal(avg, extraction.averaged_labels(api, x, 1, seed=0))  # the number of queries is read
    with pytest.raises(ValueError, match="positive integer"):
        extraction.averaged_labels(api, x, 0, seed=0)


def test_smooth_retraining_trains_a_fresh_model_on_averaged_scores(trained, monkeypatch):
    from wmlib.attacks import extraction
    thief = blobs(400, seed=5)
    calls, real = [], extraction.averaged_labels

    def averaged(oracle, x, n, seed):  # the toy's bands move under the reference's crop: read the wiring, then the fit
        calls.append((n, seed, len(x)))
        real(oracle, x, n, seed)
        return nn.functional.one_hot(Oracle(trained).predict(x), 10).float()
    monkeypatch.setattr(extraction, "averaged_labels", averaged)
    s = attacks.get("smooth-retraining").apply(trained, _threat(thief, smooth_queries=2, extract_epochs=4, extract_lr=3e-3,
                                                                 **_RECIPE))
    assert calls == [(2, 3, len(thief))] and s.report["api_queries"] == 2 * len(thief)
    assert s.oracle.model is not trained and not any(_same(s.oracle.model, trained))  # a fresh model
    assert oracle_accuracy(s.oracle, Split(thief.x, Oracle(trained).predict(thief.x))) > 0.8


def test_the_ensemble_trains_on_disjoint_shares_and_serves_the_average(trained):
    from wmlib.attacks import extraction
    thief = blobs(300, seed=5)
    s = attacks.get("ensemble-extraction").apply(trained, _threat(thief, ensemble_size=3, extract_epochs=10,
                                                                  extract_lr=3e-3, **_RECIPE))
    ens = s.oracle.model
    assert isinstance(ens, extraction.Ensemble) and len(ens.members) == 3 and s.report["api_queries"] == len(thief)
    a, b = ens.members[0], ens.members[1]
    assert not all(_same(a, b))
    x = blobs(20, seed=8).x
    mean = torch.stack([Oracle(m)(x) for m in ens.members]).mean(0)
    assert torch.allclose(s.oracle(x), mean, atol=1e-5)
    assert oracle_accuracy(s.oracle, Split(x, Oracle(trained).predict(x))) > 0.8


def test_adversarial_extraction_trains_a_fresh_model_on_the_apis_labels_with_pgd(trained, monkeypatch):
    from wmlib.attacks import adversarial_training as adv
    thief = blobs(300, seed=5)
    wrong = Split(thief.x, (thief.y + 1) % 10)  # the thief's own labels all wrong: only the API's are right
    seen = []
    real = adv.pgd_finetune
    monkeypatch.setattr(adv, "pgd_finetune", lambda *a, **kw: seen.append(a[3:7]) or real(*a, **kw))
    s = attacks.get("adversarial-extraction").apply(trained, _threat(
        wrong, extract_epochs=6, extract_lr=3e-3, advtrain_eps=0.05, advtrain_alpha=0.02, advtrain_steps=2, advtrain_mix=0.5,
        **_RECIPE))
    assert seen == [(0.05, 0.02, 2, 0.5)] and s.report["api_queries"] == len(thief)
    assert not any(_same(s.oracle.model, trained))  # a fresh model, not the stolen one fine-tuned
    api = Split(thief.x, Oracle(trained).predict(thief.x))
    assert oracle_accuracy(s.oracle, api) > 0.6 and oracle_accuracy(s.oracle, wrong) < 0.2


def test_transfer_learning_uses_no_stolen_weight_and_a_backbone_pretrained_elsewhere(trained):
    from wmlib.attacks import extraction
    thief = blobs(400, seed=5)
    knobs = dict(pretrain_dataset="mnist-5k", pretrain_epochs=1, pretrain_lr=3e-3, tl_epochs=4, **_RECIPE)
    s = attacks.get("transfer-learning").apply(trained, _threat(thief, **knobs))
    net = s.oracle.model
    pre = extraction.pretrained_backbone("lenet5", FMNIST, "mnist-5k", train.TrainConfig.from_knobs(
        knobs, epochs=1, lr=3e-3, seed=3))
    first = lambda m: next(x for x in m.modules() if isinstance(x, nn.Conv2d)).weight
    # fine-tuned from the pretrained backbone (close to it), never from the stolen model (far from it)
    assert float((first(net) - first(pre)).norm()) < float((first(net) - first(trained)).norm())
    assert s.report["pretrained_on"] == "mnist-5k" and oracle_accuracy(s.oracle, thief) > 0.7  # the thief's true labels
    with pytest.raises(ValueError, match="task's own distribution"):
        attacks.get("transfer-learning").check(dict(knobs, pretrain_dataset="fashion-mnist"), FMNIST)
    assert attacks.get("transfer-learning").public_images(knobs, FMNIST) == [("mnist-5k", True, "thief")]
