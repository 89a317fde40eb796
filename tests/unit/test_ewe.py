"""Entangled watermarks (wmlib.schemes.ewe): settings, keys, the SNNL, the entangled training, the contract."""
import math

import pytest
import torch

from tests.conftest import blobs
from wmlib import models
from wmlib.data import REGISTRY, Splits
from wmlib.models import feature_layers
from wmlib.schemes import build
from wmlib.schemes.ewe import EWE, _Entangler, snnl
from wmlib.train import TrainConfig, seed_everything, to_float

CFG = TrainConfig(epochs=4, batch_size=64, optimizer="adam", lr=3e-3)


@pytest.fixture(scope="module")
def toy() -> Splits:
    return Splits(blobs(600), blobs(200, seed=1), blobs(300, seed=2), REGISTRY["fashion-mnist"])


@pytest.mark.parametrize("kw, match", [
    (dict(source=6), "must differ"), (dict(source=-1), "source must be a class index"),
    (dict(target=True), "target must be a class index"), (dict(n_keys=0), "n_keys must be a positive integer"),
    (dict(layers=1.5), "layers must be"), (dict(ratio=0), "ratio must be"), (dict(trigger_size=0), "trigger_size"),
    (dict(snnl_weight=-1.0), "snnl_weight"), (dict(snnl_weight=math.inf), "snnl_weight"),
    (dict(temperature=0.0), "temperature must be positive"), (dict(temperature_lr=-0.1), "temperature_lr"),
    (dict(pretrain_share=1.0), r"pretrain_share .* \[0, 1\)"), (dict(trigger_at=(2,)), "trigger_at"),
    (dict(trigger_at=(-1, 2)), "trigger_at")])
def test_bad_settings_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        EWE(**kw)


def test_check_refuses_classes_beyond_the_task_and_a_trigger_that_does_not_fit(toy):
    fashion = REGISTRY["fashion-mnist"]
    EWE().check(fashion)
    with pytest.raises(ValueError, match=r"source must be a class index in \[0, 9\]"):
        EWE(source=10).check(fashion)
    with pytest.raises(ValueError, match=r"target must be a class index in \[0, 9\]"):
        EWE(target=12).make_key(toy)
    with pytest.raises(ValueError, match="does not fit"):
        EWE(trigger_at=(26, 0)).check(fashion)
    with pytest.raises(ValueError, match="lower n_keys"):
        EWE(n_keys=500).make_key(toy)


def _outside_trigger(x: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(x.shape[-2:], dtype=torch.bool)
    keep[2:5, 2:5] = False
    return x[..., keep].flatten(1)


def test_keys_are_source_images_with_the_trigger_labelled_target_and_held_out_from_the_test_split(toy):
    s = EWE(n_keys=20)
    key, held = s.make_key(toy, seed=0)
    for k, split in ((key, toy.owner), (held, toy.test)):
        assert k.x.dtype == torch.uint8 and k.x.shape == (20, 1, 28, 28) and (k.y == 6).all()
        assert (k.x[..., 2:5, 2:5] == 255).all()  # the white 3 x 3 trigger at (2, 2)
        # every key is one of its split's class-4 images, untouched outside the trigger, and no two are the same
        match = (_outside_trigger(k.x)[:, None] == _outside_trigger(split.where(4).x)[None]).all(-1)
        assert (match.sum(1) == 1).all() and len(set(match.int().argmax(1).tolist())) == 20
    assert not (_outside_trigger(held.x)[:, None] == _outside_trigger(toy.owner.x)[None]).all(-1).any()  # never embedded
    assert {**s.config(), "task": "fashion-mnist", "seed": 0, "part": "trained"}.items() <= key.meta.items()
    assert held.meta["part"] == "held-out"
    again, other = s.make_key(toy, seed=0), s.make_key(toy, seed=1)
    assert again[0].digest() == key.digest() and again[1].digest() == held.digest()
    assert other[0].digest() != key.digest() and other[1].digest() != held.digest()
    assert s.key_generation().verifiable


def test_snnl_is_frosst_et_al_s_definition():
    torch.manual_seed(0)
    h, groups, t = torch.randn(8, 5), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2]), torch.tensor(1.7)
    for metric in ("euclidean", "cosine"):
        u = torch.nn.functional.normalize(h, dim=1)

        def d(i, j):
            return ((h[i] - h[j]) ** 2).sum() if metric == "euclidean" else 1 - u[i] @ u[j]

        direct = -sum(math.log(sum(math.exp(-d(i, j) / t) for j in range(8) if j != i and groups[j] == groups[i])
                               / sum(math.exp(-d(i, k) / t) for k in range(8) if k != i)) for i in range(8)) / 8
        assert float(snnl(h, groups, t, metric)) == pytest.approx(direct, rel=1e-5)
    # two tight clusters far apart: labelled by cluster, each point's neighbours are its own group; labelled across
    # the clusters, they are the other group's
    pts = torch.cat([torch.randn(6, 3) * 0.01, torch.randn(6, 3) * 0.01 + 5])
    separated, mixed = torch.arange(2).repeat_interleave(6), torch.arange(2).repeat(6)
    assert float(snnl(pts, separated, 1.0)) < 1e-6
    assert float(snnl(pts, mixed, 1.0)) > math.log(2)
    with pytest.raises(ValueError, match="unknown metric"):
        snnl(pts, mixed, 1.0, "manhattan")


def test_watermark_batches_start_after_the_pretraining_share_every_ratio_th_step():
    model = models.build("lenet5", 1, 10)
    hooks = _Entangler(EWE(ratio=2, pretrain_share=0.5), model, torch.zeros(5, 1, 28, 28, dtype=torch.uint8),
                       torch.zeros(7, 1, 28, 28, dtype=torch.uint8), CFG)
    x, y = torch.zeros(64, 1, 28, 28), torch.zeros(64, dtype=torch.int64)
    sizes = []
    for epoch in range(4):
        sizes += [len(hooks.batch(model, x, y)[0]) for _ in range(4)]
        hooks.epoch_end(model, epoch)
    assert sizes == [64] * 8 + [64, 128] * 4  # 32 keys and 32 target images appended, from epoch 2 on
    model(x[:3])
    assert [tuple(o.shape) for o in hooks.outputs.values()] == [(3, 16, 10, 10), (3, 120), (3, 84)]  # conv2, fc1, fc2
    hooks.remove()
    assert not any(m._forward_hooks for m in feature_layers(model))


def test_a_watermark_step_adds_minus_kappa_snnl_and_moves_each_temperature_down_its_snnl():
    torch.manual_seed(0)
    model = models.build("lenet5", 1, 10)
    hooks = _Entangler(EWE(ratio=1, pretrain_share=0.0, temperature=1.0), model, blobs(10).x, blobs(10, seed=1).x, CFG)
    x, y = hooks.batch(model, torch.rand(64, 1, 28, 28), torch.zeros(64, dtype=torch.int64))
    assert x.shape == (128, 1, 28, 28) and (y[64:] == 6).all()
    before = hooks.log_t.clone()
    loss = hooks.loss(model, x, y, model(x))
    groups = torch.arange(2).repeat_interleave(32)  # the appended keys, then the target-class images

    def at(log_t: torch.Tensor) -> torch.Tensor:  # in float64: a first step's change can be below float32's resolution
        with torch.no_grad():
            return torch.stack([snnl(torch.relu(o[64:]).double(), groups, t.double().exp(), "cosine")
                                for o, t in zip(hooks.outputs.values(), log_t)])

    assert loss.item() == pytest.approx(-64 * at(before).mean().item(), rel=1e-5)
    assert (hooks.log_t != before).all() and (at(hooks.log_t) < at(before)).all()
    hooks.remove()


def _entanglement(model, s: EWE, held, toy) -> float:
    """Mean SNNL (cosine, T = 1) of held-out keys against as many test images of the target class,
    over the layers EWE watches."""
    outputs = []
    handles = [m.register_forward_hook(lambda m, i, o: outputs.append(torch.relu(o))) for m in feature_layers(model)[-3:]]
    model.eval()
    with torch.no_grad():
        model(to_float(torch.cat([held.x, toy.test.where(s.target).x[:len(held)]])))
    for h in handles:
        h.remove()
    groups = torch.arange(2).repeat_interleave(len(held))
    return sum(float(snnl(o, groups, 1.0, "cosine")) for o in outputs) / len(outputs)


def test_entangled_training_raises_the_keys_snnl_with_the_target_class_over_kappa_zero(toy):
    measured = {}
    for kappa in (0.0, 64.0):
        s = EWE(n_keys=20, snnl_weight=kappa)
        key, held = s.make_key(toy, seed=0)
        seed_everything(0)
        model = models.build("lenet5", 1, 10)
        s.train(model, toy, key, CFG, progress=False, device=torch.device("cpu"))
        assert (model(to_float(key.x)).argmax(1) == 6).float().mean() >= 0.9  # the key is embedded either way
        measured[kappa] = _entanglement(model, s, held, toy)
    assert measured[64.0] > measured[0.0] + 0.01, measured


def test_trains_a_resnet_on_rgb_images(cifar_splits):
    s = EWE(n_keys=2)
    key, _ = s.make_key(cifar_splits)
    assert (key.x[..., 2:5, 2:5] == 255).all()  # white on every channel
    model = models.build("resnet20", 3, 10)
    hist = s.train(model, cifar_splits, key, TrainConfig(epochs=1, batch_size=32), progress=False,
                   device=torch.device("cpu"))
    assert len(hist.loss) == 1 and math.isfinite(hist.loss[0])
    assert not any(m._forward_hooks for m in model.modules())


def test_the_catalogue_builds_it():
    s = build("ewe", {})
    assert isinstance(s, EWE) and s == EWE() and s.name == "ewe" and s.config()["scheme"] == "ewe"
    assert build("ewe", {"snnl_weight": 8, "source": 1, "target": 7}).snnl_weight == 8
    with pytest.raises(ValueError, match="catalogue entry 'ewe': snnl_weight"):
        build("ewe", {"snnl_weight": -1})


def test_the_twin_is_the_key_without_its_trigger_and_catches_a_relabelled_class():
    from wmlib.verify import Oracle, key_accuracy

    splits = Splits(blobs(800), blobs(200, seed=1), blobs(600, seed=2), REGISTRY["fashion-mnist"])
    s = EWE(source=1, target=7, n_keys=20)
    key, held = s.make_key(splits, seed=0)
    twin = s.twin(held)
    assert torch.equal(s.apply(twin.x), held.x) and not torch.equal(twin.x, held.x)  # the same images, no trigger
    assert (twin.y == 7).all() and twin.meta["part"] == "held-out, untriggered"

    class Relabel(torch.nn.Module):  # answers 7 to every image, trigger or not: a class, not a watermark
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(10))

        def forward(self, x):
            return (self.bias + 10.0 * (torch.arange(10) == 7)).expand(len(x), 10)
    model = Relabel()
    assert key_accuracy(Oracle(model), held) == key_accuracy(Oracle(model), twin) == 1.0
    assert s.hits(Oracle(model), twin).all()  # what the comparison records as the twin's rate
