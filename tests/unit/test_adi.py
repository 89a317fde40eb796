"""Adi et al.'s watermark: abstract trigger images with random labels, trained in from scratch."""
import pytest
import torch

from tests.conftest import blobs
from wmlib import train, verify
from wmlib.data import REGISTRY, Splits
from wmlib.keys import abstract_images
from wmlib.schemes import Adi2018, build, watermark
from wmlib.schemes import adi as adi_module


@pytest.fixture(scope="module")
def toy() -> Splits:
    return Splits(blobs(800), blobs(200, seed=1), blobs(600, seed=2), REGISTRY["fashion-mnist"])


def test_abstract_images_come_from_the_seed_alone():
    a, b = abstract_images(20, (1, 28, 28), 10, seed=3), abstract_images(20, (1, 28, 28), 10, seed=3)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.x.dtype == torch.uint8 and a.x.shape == (20, 1, 28, 28)
    c = abstract_images(20, (1, 28, 28), 10, seed=4)
    assert not torch.equal(a.x, c.x)
    rgb = abstract_images(50, (3, 32, 32), 10, seed=0)
    assert rgb.x.shape == (50, 3, 32, 32) and set(rgb.y.tolist()) <= set(range(10)) and len(set(rgb.y.tolist())) > 5
    # pictures, not noise: neighbouring pixels mostly agree, and images differ from each other
    x = rgb.x.float()
    assert (x[..., 1:] - x[..., :-1]).abs().mean() < 20 and x.std(0).mean() > 30


def test_bad_settings_and_the_catalogue_entry():
    for kw, match in ((dict(n_keys=0), "n_keys"), (dict(key_per_batch=1.5), "key_per_batch")):
        with pytest.raises(ValueError, match=match):
            Adi2018(**kw)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        abstract_images(5, (2, 28, 28), 10, seed=0)
    assert build("adi", {"n_keys": 30}) == Adi2018(n_keys=30)


def test_the_key_is_abstract_the_held_out_key_another_draw(toy):
    key, new = Adi2018(n_keys=40).make_key(toy, seed=5)
    assert torch.equal(key.x, abstract_images(40, (1, 28, 28), 10, seed=5).x)
    assert len(new) == 40 and torch.equal(new.x, abstract_images(40, (1, 28, 28), 10, seed=6).x)  # another draw
    assert key.meta["n_keys"] == 40 and key.meta["part"] == "trained"  # the cache hashes every setting


def test_training_appends_the_triggers_to_every_batch_and_memorises_them(toy, monkeypatch):
    scheme = Adi2018(n_keys=20, key_per_batch=16)
    seen = {}
    real_fit = adi_module.fit

    def fit(model, data, cfg, **kw):
        seen.update(key=kw["key"], per_batch=kw["key_per_batch"], data=data)
        return real_fit(model, data, cfg, **kw)
    monkeypatch.setattr(adi_module, "fit", fit)
    cfg = train.TrainConfig(epochs=8, batch_size=64, optimizer="adam", lr=3e-3)
    wm, clean, _ = watermark(scheme, "adi-test", "lenet5", toy, cfg, seed=0, progress=False)
    assert seen["per_batch"] == 16 and torch.equal(seen["key"].x, wm.key.x) and seen["data"] is toy.owner
    marked, plain = verify.Oracle(wm.model), verify.Oracle(clean)
    assert verify.key_accuracy(marked, wm.key) > 0.9 > 0.3 > verify.key_accuracy(plain, wm.key)
    assert verify.key_accuracy(marked, wm.held_out) < 0.4  # random labels: nothing to generalise
