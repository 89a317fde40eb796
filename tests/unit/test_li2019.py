import pytest
import torch

from tests.conftest import blobs
from wmlib import models
from wmlib.data import REGISTRY, Splits
from wmlib.schemes.li2019 import Li2019, LiDiscriminator, LiEncoder, logo_image, quantize
from wmlib.train import TrainConfig, evaluate
from wmlib.verify import Oracle, key_accuracy


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_encoder_and_discriminator_shapes(channels, size):
    enc, disc = LiEncoder(channels, size), LiDiscriminator(channels, size)
    x, logo = torch.rand(4, channels, size, size), torch.rand(1, channels, size, size)
    out = enc(x, logo)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert disc(out).shape == (4,)


def test_unet_needs_a_multiple_of_32_and_bad_knobs_are_refused():
    with pytest.raises(ValueError, match="multiple of 32"):
        LiEncoder(3, 28)
    with pytest.raises(ValueError, match="any, other"):
        Li2019(labels="true")
    with pytest.raises(ValueError, match="host_steps"):
        Li2019(host_steps=0)
    with pytest.raises(ValueError, match="key_fraction"):
        Li2019(key_fraction=1.5)


def test_quantize_rounds_forward_and_passes_gradients():
    x = torch.tensor([0.1, 0.5004, 0.9], requires_grad=True)
    y = quantize(x)
    assert torch.allclose(y * 255, (x * 255).round())
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(3))


def test_keys_are_one_percent_of_the_owner_data_with_the_label_rule(toy_splits):
    key, new = Li2019(key_fraction=0.05).make_key(toy_splits, seed=3)
    assert len(key) == 30 and len(new) == 30 and key.meta["images"] == "sources"
    assert key.extras["logo"].shape == (1, 28, 28) and key.extras["logo"].max() == 255
    big = Splits(blobs(4000), blobs(10), blobs(4000, seed=2), REGISTRY["fashion-mnist"])
    any_rule, _ = Li2019(key_fraction=0.25).make_key(big)
    other, _ = Li2019(key_fraction=0.25, labels="other").make_key(big)
    assert 0.05 < (any_rule.y == any_rule.extras["true_labels"]).float().mean() < 0.16  # the code: all classes
    assert not (other.y == other.extras["true_labels"]).any()


def test_logo_is_drawn_at_the_input_resolution():
    logo = logo_image("IP", 32, 3)
    assert logo.shape == (3, 32, 32) and logo.dtype == torch.uint8 and 0.05 < (logo > 0).float().mean() < 0.6


def test_joint_training_embeds_blind_keys_and_is_cached(toy_splits):
    scheme = Li2019(key_fraction=0.02, w_key=0.5)  # 12 keys; δ (w_key) above the paper's 0.01 so that a toy run embeds
    key, _ = scheme.make_key(toy_splits)
    cfg = TrainConfig(epochs=20, batch_size=50, optimizer="adam", lr=3e-3)
    bundle, hist, loaded = scheme.train_or_load("li-test", "lenet5", toy_splits, key, cfg, progress=False)
    assert not loaded and len(hist.monitors["joint:ssim"]) == cfg.epochs
    wm = scheme.watermark(key, bundle.encoder)
    assert wm.x.dtype == torch.uint8 and not torch.equal(wm.x, key.x)
    assert (wm.x.float() - key.x.float()).abs().mean() < 15  # close to the sources (blind)
    assert hist.monitors["joint:ssim"][-1] > 0.9
    assert key_accuracy(Oracle(bundle.host), wm) >= 0.9
    assert evaluate(bundle.host, toy_splits.test) >= 0.9
    clean = models.build("lenet5", 1, 10)
    from wmlib.train import fit
    fit(clean, toy_splits.owner, cfg, progress=False)
    assert key_accuracy(Oracle(clean), wm) < 0.5
    again, _, loaded = scheme.train_or_load("li-test", "lenet5", toy_splits, key, cfg, progress=False)
    assert loaded and torch.equal(scheme.watermark(key, again.encoder).x, wm.x)


def test_host_steps_between_encoder_steps(toy_splits):
    scheme = Li2019(key_fraction=0.1, host_steps=3)
    key, _ = scheme.make_key(toy_splits)
    cfg = TrainConfig(epochs=1, batch_size=50, optimizer="adam", lr=3e-3)
    _, hist, _ = scheme.train_or_load("li-k2", "lenet1", toy_splits, key, cfg, progress=False)
    assert len(hist.monitors["joint:mse"]) == 1


def test_cifar_shaped_u_net_encoder_with_resnet18_host(cifar_splits):
    scheme = Li2019(key_fraction=0.1)
    key, _ = scheme.make_key(cifar_splits)
    bundle, _, _ = scheme.train_or_load("li-rgb", "resnet18", cifar_splits, key,
                                        TrainConfig(epochs=1, batch_size=64, lr=0.01), progress=False)
    wm = scheme.watermark(key, bundle.encoder)
    assert wm.x.shape == (26, 3, 32, 32) and key.extras["logo"].shape == (3, 32, 32)
