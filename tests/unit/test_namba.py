"""Namba & Sakuma 2019 building blocks: EW, label-change / AFS / DS keys, the autoencoder query
modification, verification AUC."""
import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from tests.conftest import blobs
from wmlib import attacks, data, keys, models, settings, train, verify
from wmlib.data import Split
from wmlib.schemes import namba2019
from wmlib.schemes.namba2019 import ExponentialWeighting, apply_exponential_weighting, fold_exponential_weighting


def test_ew_matches_equation_11_and_is_differentiable():
    w = torch.randn(5, 7, dtype=torch.float64)
    T = 2.0
    expected = torch.exp(w.abs() * T) / torch.exp(w.abs() * T).max() * w
    assert torch.allclose(ExponentialWeighting(T)(w), expected)
    assert torch.autograd.gradcheck(ExponentialWeighting(T), (w.clone().requires_grad_(True),))


def test_ew_parametrizes_every_layer_and_folds_without_changing_the_function(trained):
    m = apply_exponential_weighting(copy.deepcopy(trained), T=2.0)
    layers = [l for l in m.modules() if isinstance(l, (nn.Conv2d, nn.Linear))]
    assert all(parametrize.is_parametrized(l, "weight") for l in layers)
    x = blobs(32, seed=4).x
    with_ew = train.predict_proba(m, x)
    fold_exponential_weighting(m)
    assert not any(parametrize.is_parametrized(l) for l in m.modules())
    assert torch.allclose(train.predict_proba(m, x), with_ew, atol=1e-6)  # folding keeps the function
    # the raw weights (EW switched off) compute another function
    assert not torch.allclose(train.predict_proba(trained, x), with_ew, atol=1e-3)
    with pytest.raises(ValueError, match="already"):
        apply_exponential_weighting(apply_exponential_weighting(copy.deepcopy(trained)))


def test_ew_training_updates_the_raw_weights(trained):
    m = copy.deepcopy(trained)
    before = m[0].weight.detach().clone()
    train.fit(m, blobs(128), train.TrainConfig(epochs=1, batch_size=64), progress=False,
              weight_transform=lambda mm: apply_exponential_weighting(mm, 2.0))
    assert not torch.equal(m[0].parametrizations.weight.original.detach(), before)


def test_label_change_keys_always_change_the_label():
    split = blobs(200)
    key, idx = keys.label_change(split, 30, 10, seed=1)
    assert len(key) == 30 and (key.y != split.y[idx]).all() and torch.equal(key.x, split.x[idx])
    again, _ = keys.label_change(split, 30, 10, seed=1)
    assert torch.equal(again.y, key.y)


def test_uniform_noise_and_fgsm_frontier_keys(trained):
    ds = keys.uniform_noise(30, (3, 32, 32), 10, seed=0)
    assert ds.x.shape == (30, 3, 32, 32) and ds.y.max() < 10
    afs = keys.fgsm_frontier(trained, blobs(400, seed=3), 10, eps=0.3, seed=0)
    assert len(afs) == 10
    assert (train.predict_proba(trained, afs.x).argmax(1) != afs.y).all()  # adversarial, labelled with the truth
    with pytest.raises(ValueError, match="fool"):
        keys.fgsm_frontier(trained, blobs(50, seed=3), 10, eps=0.0, seed=0)


def test_shape_masks():
    for shape in ("heart", "star"):
        m = keys.shape_mask(shape, 28)
        assert m[14:, 14:].sum() > 10 and m[:10, :10].sum() == 0
    with pytest.raises(ValueError, match="heart, star"):
        keys.shape_mask("circle", 28)


def test_proposal_embeds_label_change_keys_with_ew():
    # label-change keys must be memorised against real images of their class: a real F-MNIST subset
    sp = data.owner_thief_split("fashion-mnist", 0.1, seed=0, train_limit=3000, test_limit=500)
    torch.manual_seed(0)
    clean = models.build("lenet5", 1, 10)
    train.fit(clean, sp.owner, train.TrainConfig(epochs=3, batch_size=64, optimizer="adam", lr=3e-3), progress=False)
    scheme = namba2019.Namba2019(n_keys=10, key_per_batch=8)
    key, new = scheme.make_key(sp, seed=0)
    assert len(key.meta["owner_indices"]) == 10 and new.meta["part"] == "new"
    m = copy.deepcopy(clean)
    scheme.train(m, sp, key, train.TrainConfig(epochs=8, batch_size=64, optimizer="adam", lr=2e-3), progress=False)
    assert not any(parametrize.is_parametrized(l) for l in m.modules())  # EW folded in
    assert verify.key_accuracy(verify.Oracle(m), key) >= 0.8
    assert verify.key_accuracy(verify.Oracle(clean), key) <= 0.1
    assert train.evaluate(m, sp.test) >= train.evaluate(clean, sp.test) - 0.03  # fidelity


def test_key_scheme_names_and_colour_check():
    knobs = settings.resolve("namba2019", "smoke")
    assert isinstance(namba2019.key_scheme("proposal", knobs, 1), namba2019.Namba2019)
    assert namba2019.key_scheme("label-change", knobs, 1).T is None  # the EW-off ablation
    z = namba2019.key_scheme("heart-gray", knobs, 1)
    assert z.logo == "heart" and z.source is None
    with pytest.raises(ValueError, match="RGB"):
        namba2019.key_scheme("test-blue", knobs, 1)
    with pytest.raises(ValueError, match="proposal"):
        namba2019.key_scheme("logo", knobs, 1)
    with pytest.raises(ValueError, match="clean="):
        namba2019.FineTuneKeys(kind="afs").make_key(data.Splits(blobs(10), blobs(10), blobs(10), data.REGISTRY["mnist"]))


def test_jensen_shannon_values():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    q = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    assert torch.allclose(attacks.jensen_shannon(p, q), torch.tensor([math.log(2), 0.0]), atol=1e-6)


class Identity(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x + 0 * self.w


def test_query_modification_detects_and_rewrites(trained):
    inner = verify.Oracle(trained)
    qm = attacks.QueryModification(inner, Identity(), tau_rec=0.5, tau_jsd=0.5)
    x = blobs(20, seed=6).x
    loss, jsd = qm.scores(x)
    assert torch.allclose(loss, torch.zeros(20), atol=1e-8) and (jsd < 1e-6).all()
    assert not qm.detect(x).any()
    assert torch.allclose(qm(x), verify.Oracle(trained)(x), atol=1e-6) and qm.queries == 20 and qm.detected == 0
    always = attacks.QueryModification(inner, Identity(), 0.5, 0.5, always=True)
    always(x)
    assert always.detected == 20


def test_autoencoder_bank_thresholds_are_cross_validated_percentiles(trained):
    thief = blobs(200, seed=7)
    cfg = train.TrainConfig(epochs=3, batch_size=50, optimizer="adam", lr=1e-3)
    bank = attacks.AutoencoderBank(thief, cfg, folds=4, device=torch.device("cpu"), progress=False)
    assert len(bank.fold_aes) == 4
    qm = bank.query_modification(verify.Oracle(trained), percentile=90.0)
    loss, jsd = bank.held_out_scores(verify.Oracle(trained))
    assert (loss > qm.tau_rec).float().mean().item() == pytest.approx(0.10, abs=0.02)
    assert (jsd > qm.tau_jsd).float().mean().item() <= 0.11
    rec = qm.reconstruct(thief.x[:5])
    assert rec.shape == (5, 1, 28, 28) and rec.min() >= 0 and rec.max() <= 1
    with pytest.raises(ValueError, match="folds"):
        attacks.AutoencoderBank(thief, cfg, folds=1)


def test_autoencoder_training_reduces_reconstruction_loss():
    ae = models.ConvAutoencoder(3, 32)
    x = blobs(64, 3, 32).x
    before = train.reconstruction_loss(ae, x).mean().item()
    h = train.fit(ae, Split(x, torch.zeros(64, dtype=torch.int64)),
                  train.TrainConfig(epochs=5, batch_size=32, optimizer="adam", lr=3e-3), objective="reconstruct",
                  monitor={"val": Split(x, torch.zeros(64, dtype=torch.int64))}, progress=False)
    assert train.reconstruction_loss(ae, x).mean().item() < before and math.isnan(h.train_acc[0])
    with pytest.raises(ValueError, match="classify, reconstruct"):
        train.fit(ae, Split(x, torch.zeros(64, dtype=torch.int64)), train.TrainConfig(epochs=1), objective="denoise")


def test_verification_auc_separates_or_not(trained):
    key = keys.Key(blobs(40, seed=8).x, torch.full((40,), 3))
    ones, zeros = torch.ones(40, dtype=torch.bool), torch.zeros(40, dtype=torch.bool)
    assert verify.verification_auc(ones, [zeros, zeros], sizes=(5,), repeats=10) == {5: 1.0}
    same = verify.hits(verify.Oracle(trained), key)
    assert verify.verification_auc(same, [same], sizes=(5,), repeats=10) == {5: 0.5}
    with pytest.raises(ValueError, match="negative"):
        verify.verification_auc(ones, [], sizes=(5,))


def test_per_dataset_knobs():
    assert settings.resolve("namba2019", "full")["thief_fraction"] == 0.01  # Table 6: 1 % of MNIST
    # default cuts the task to a quarter and keeps the thief's images: 4 % of 15,000 = 1 % of 60,000
    default = settings.resolve("namba2019", "default")
    assert default["thief_fraction"] * default["train_limit"] == pytest.approx(0.01 * 60000)
    assert settings.resolve("namba2019", "paper", dataset="gtsrb")["thief_fraction"] == 0.05
    with pytest.raises(ValueError, match="no value for dataset"):
        settings.resolve("namba2019", "default", dataset="emnist-letters")


def test_step_seconds_is_positive(trained):
    s = train.step_seconds(copy.deepcopy(trained), blobs(400), train.TrainConfig(batch_size=32), steps=5, warmup=2)
    assert 0 < s < 5


def test_gtsrb_images_are_resized_to_32(tmp_path, monkeypatch):
    from PIL import Image

    samples = []
    for i, size in enumerate([(40, 35), (29, 31)]):
        path = tmp_path / f"{i}.ppm"
        Image.fromarray(np.full((size[1], size[0], 3), 50 * i, dtype=np.uint8)).save(path)
        samples.append((str(path), i))

    class Fake:
        _samples = samples

    monkeypatch.setattr(data, "_torchvision", lambda *a, **k: Fake())
    x, y = data._load_gtsrb(tmp_path, True)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.uint8 and y.tolist() == [0, 1]


def test_cifar_shaped_paths_of_the_paper_profile(cifar_splits):
    """What the `paper` profile runs on CIFAR-10 / GTSRB, on tensors of the right shape."""
    knobs = settings.resolve("namba2019", "paper")
    assert knobs["model"] == "resnet32" and knobs["thief_fraction"] == 0.1
    for kind in ("test-blue", "heart-red"):
        key, new = namba2019.key_scheme(kind, knobs, 3).make_key(cifar_splits)
        assert key.x.shape[1:] == (3, 32, 32) and (key.y == 0).all() and len(new) > 0
    m = models.build("resnet32", 3, 10).eval()
    x = cifar_splits.test.x[:8]
    ref = train.predict_proba(m, x)
    apply_exponential_weighting(m, 2.0)
    ew = train.predict_proba(m, x)
    fold_exponential_weighting(m)
    assert torch.allclose(train.predict_proba(m, x), ew, atol=1e-5) and not torch.allclose(ew, ref, atol=1e-4)
    bank = attacks.AutoencoderBank(cifar_splits.thief, train.TrainConfig(epochs=1, batch_size=32, optimizer="adam",
                                   lr=1e-3), folds=2, device=torch.device("cpu"), progress=False)
    qm = bank.query_modification(verify.Oracle(m))
    assert qm(x).shape == (8, 10) and qm.queries == 8


class _Constant(nn.Module):
    """An 'autoencoder' that paints every pixel ``value``."""

    def __init__(self, value: float):
        super().__init__()
        self.value, self.w = value, nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.full_like(x, self.value) + 0 * self.w


def test_background_error_is_the_reconstruction_where_the_query_is_black():
    x = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 10:14, 10:14] = 255
    assert attacks.background_error(_Constant(0.17), x) == pytest.approx(0.17)
    with pytest.raises(ValueError, match="no black"):
        attacks.background_error(_Constant(0.1), torch.full((2, 1, 28, 28), 9, dtype=torch.uint8))


def test_rec_loss_detection_thresholds_at_the_reference_percentile():
    ref = torch.zeros(100, 1, 28, 28, dtype=torch.uint8)
    ref[:, :, :2] = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1)  # a spread of losses against AE = 0
    far = torch.full((10, 1, 28, 28), 200, dtype=torch.uint8)
    assert attacks.rec_loss_detection(_Constant(0.0), far, ref, 95.0) == 1.0
    assert attacks.rec_loss_detection(_Constant(0.0), ref[:10], ref, 95.0) == 0.0


def test_autoencoders_are_cached_deterministic_and_keep_their_loss_curve(tmp_path, monkeypatch):
    thief = blobs(120, seed=3)
    cfg = train.TrainConfig(epochs=3, batch_size=40, optimizer="adam", lr=1e-3, seed=5)
    runs = []
    for d in ("a", "b"):  # two cold caches: two trainings from scratch
        monkeypatch.setenv("WMLIB_CACHE", str(tmp_path / d))
        runs.append(attacks.train_autoencoder(thief, thief.x.shape[1:], cfg, torch.device("cpu")))
    (a, ha), (b, hb) = runs
    assert ha.loss == hb.loss and len(ha.loss) == 3 and ha.loss[-1] < ha.loss[0]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert len(list((tmp_path / "b").glob("autoencoder-*.pt"))) == 1
    c, hc = attacks.train_autoencoder(thief, thief.x.shape[1:], cfg, torch.device("cpu"))  # loaded, not retrained
    assert hc.loss == hb.loss and len(list((tmp_path / "b").glob("autoencoder-*.pt"))) == 1


def test_autoencoder_length_sweep_and_detection_table(trained):
    thief, test = blobs(100, seed=7), blobs(60, seed=8)
    cfg = train.TrainConfig(epochs=1, batch_size=50, optimizer="adam", lr=1e-3)
    noise = keys.uniform_noise(20, (1, 28, 28), 10, seed=0)
    sweep = attacks.autoencoder_length_sweep(thief, cfg, [1, 2], {"noise": noise.x, "ordinary": test.x[:20]}, test.x)
    assert list(sweep["AE epochs"]) == [1, 1, 2, 2] and set(sweep["probe"]) == {"noise", "ordinary"}
    assert sweep["detection (rec loss)"].between(0, 1).all() and (sweep["background"] >= 0).all()
    bank = attacks.AutoencoderBank(thief, cfg, folds=2, device=torch.device("cpu"), progress=False)
    assert bank.history.epoch == [1]
    table, qm = attacks.detection_table(bank, {"noise": verify.Oracle(trained)}, {"noise": noise}, test.x, samples=10)
    assert list(table.index) == ["rec loss", "JSD", "both", "false detections (test)"] and set(qm) == {"noise"}
    assert table.loc["both", "noise"] >= max(table.loc["rec loss", "noise"], table.loc["JSD", "noise"])
    t2 = attacks.invalidation_table(bank, {"noise": verify.Oracle(trained)}, {"noise": noise}, {"noise": trained})
    assert list(t2.index) == ["no invalidation", "query mod. (autoencoder)", "model mod. (pruning)"]
    assert t2.loc["no invalidation", "noise"] == t2.loc["model mod. (pruning)", "noise"]  # the same model twice


def test_embed_key_types_gives_one_model_per_kind_and_a_remedy(toy_splits):
    knobs = settings.resolve("namba2019", "smoke", kinds=["noise", "proposal"])
    knobs.update(epochs=1, retrain_epochs=1, train_limit=None)
    km = namba2019.embed_key_types(knobs, toy_splits, torch.device("cpu"), progress=False)
    assert set(km.models) == set(km.keys) == set(km.held_out) == {"noise", "proposal"}
    assert not any(parametrize.is_parametrized(m) for m in models.weight_layers(km.models["proposal"]))  # EW folded
    clean_w = next(km.clean.parameters())
    assert not torch.equal(clean_w, next(km.models["proposal"].parameters()))  # retrained from the clean model
    assert "retrain_epochs (now 1)" in namba2019.embedding_remedy(knobs)


def test_fold_autoencoders_take_as_many_steps_as_the_deployed_one():
    cfg = train.TrainConfig(epochs=400, batch_size=100)
    assert attacks.AutoencoderBank.matched_steps(cfg, 600, 480).epochs == 480  # 6 x 400 steps = 5 x 480
    assert attacks.AutoencoderBank.matched_steps(cfg, 600, 600).epochs == 400
    assert attacks.AutoencoderBank.matched_steps(train.TrainConfig(epochs=1, batch_size=100), 50, 40).epochs == 1
