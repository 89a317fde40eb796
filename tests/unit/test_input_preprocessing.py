"""The input-preprocessing attacks (the reference toolkit's): each transform does what it says, and
each attack removes a watermark built to depend on what that transform destroys."""
import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from wmlib import attacks, train
from wmlib.attacks import input_preprocessing as ip
from wmlib.data import REGISTRY as DATASETS
from wmlib.keys import Key
from wmlib.verify import Oracle, key_accuracy

FMNIST = DATASETS["fashion-mnist"]
NAMES = ("input-smoothing-gaussian", "input-smoothing-mean", "input-smoothing-median", "input-quantization",
         "feature-squeezing", "input-flip")


def _impulse(size: int = 9) -> torch.Tensor:
    x = torch.zeros(1, 1, size, size)
    x[0, 0, size // 2, size // 2] = 1.0
    return x


def test_gaussian_smoothing_spreads_an_impulse_by_the_stated_std():
    for std in (0.5, 1.0):
        out = ip.gaussian_smooth(_impulse(), std)[0, 0].double()
        g = np.exp(-np.arange(-3, 4) ** 2 / (2 * std ** 2))
        g = g[np.abs(np.arange(-3, 4)) <= int(3 * std + 0.5)]
        assert float(out.sum()) == pytest.approx(1.0, abs=1e-6)  # truncated at 3 std, normalised
        assert float(out[4, 4]) == pytest.approx((g / g.sum()).max() ** 2, rel=1e-4)
    assert not torch.equal(ip.gaussian_smooth(_impulse(), 0.5), ip.gaussian_smooth(_impulse(), 0.7))  # the std is used
    with pytest.raises(ValueError, match="> 0 pixels"):
        ip.gaussian_smooth(_impulse(), 0.0)


def test_mean_and_median_filters_use_their_window():
    mean = ip.mean_smooth(_impulse(), 3)[0, 0]
    assert torch.allclose(mean[3:6, 3:6], torch.full((3, 3), 1 / 9)) and float(mean.sum()) == pytest.approx(1.0)
    assert float(ip.mean_smooth(_impulse(), 5)[0, 0, 4, 4]) == pytest.approx(1 / 25)
    salt = torch.full((1, 1, 9, 9), 0.5)
    salt[0, 0, 2, 6] = salt[0, 0, 5, 1] = 1.0
    assert torch.equal(ip.median_smooth(salt, 3), torch.full((1, 1, 9, 9), 0.5))  # isolated salt removed
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ref = ndimage.median_filter(x.numpy(), size=(1, 1, 3, 3), mode="reflect")
    assert torch.allclose(ip.median_smooth(x, 3), torch.from_numpy(ref))  # per channel, never across images
    for bad in (2, 4, 1, True):
        with pytest.raises(ValueError, match="odd integer"):
            ip.mean_smooth(_impulse(), bad)


def test_quantization_maps_to_bin_middles_and_squeezing_rounds_to_bits():
    x = torch.tensor([0.0, 0.03, 0.5, 0.99, 1.0]).view(1, 1, 1, 5)
    assert torch.allclose(ip.quantize_inputs(x, 16).flatten(), torch.tensor([0.5, 0.5, 8.5, 15.5, 15.5]) / 16)
    assert ip.quantize_inputs(x, 10).unique().numel() == 3  # 0 and 0.03 share the first of 10 bins
    assert torch.allclose(ip.squeeze_bits(x, 4).flatten(), torch.tensor([0, 0, 8, 15, 15]) / 15)
    u8 = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert ip.squeeze_bits(u8, 4).unique().numel() == 16 and ip.quantize_inputs(u8, 12).unique().numel() == 12
    with pytest.raises(ValueError, match="1..7"):
        ip.squeeze_bits(x, 8)
    with pytest.raises(ValueError, match=">= 2"):
        ip.quantize_inputs(x, 1)


def test_flip_mirrors_left_to_right():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    assert torch.equal(ip.flip_inputs(x)[0, 0, 0], torch.tensor([3.0, 2.0, 1.0, 0.0]))
    assert torch.equal(ip.flip_inputs(ip.flip_inputs(x)), x)


class _PatternNet(nn.Module):
    """Built to be vulnerable: class 1 when the image's correlation with ``pattern`` is above half the
    key's own, else class 0. Its watermark is the pattern itself, at a small amplitude on grey."""

    def __init__(self, pattern: torch.Tensor, key: torch.Tensor):
        super().__init__()
        self.register_buffer("pattern", pattern - pattern.mean())
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.half = 0.5 * float(self.score(train.to_float(key[:1])))

    def score(self, x):
        return (x * self.pattern).flatten(1).sum(1) * self.scale

    def forward(self, x):
        s = self.score(x)
        return torch.stack([torch.full_like(s, self.half), s], 1) * 1000


def _checker() -> torch.Tensor:
    i = torch.arange(28)
    return ((i[:, None] + i[None, :]) % 2).float().view(1, 1, 28, 28)


def _dots() -> torch.Tensor:
    i = torch.arange(28)
    return ((i[:, None] % 3 == 1) & (i[None, :] % 3 == 1)).float().view(1, 1, 28, 28)


def _left() -> torch.Tensor:
    p = torch.zeros(1, 1, 28, 28)
    p[..., :14] = 1.0
    return p


def _threat(**settings) -> attacks.Threat:
    return attacks.Threat(thief=None, spec=FMNIST, seed=0, finetune=train.TrainConfig(epochs=1), budget=0.05,
                          settings=settings, model_name="lenet5", scheme=None)


@pytest.mark.parametrize("name", NAMES)
def test_each_attack_removes_a_watermark_built_on_what_it_destroys(name):
    # a fine checkerboard for the blurs; isolated dots for the median (a checkerboard is its own 3 x 3 median)
    pattern = {"input-flip": _left(), "input-smoothing-median": _dots()}.get(name, _checker())
    # the key: a grey background (in one quantisation bin and one 4-bit level) with the pattern at a small amplitude
    key = Key((135 + 3 * (pattern.repeat(20, 1, 1, 1) * 2 - 1)).to(torch.uint8), torch.ones(20, dtype=torch.long), {})
    net = _PatternNet(pattern, key.x).eval()
    assert key_accuracy(Oracle(net), key) == 1.0
    settings = dict(smoothing_std=0.5, smoothing_kernel=3, quantization_bins=16, squeeze_bits=4)
    attack = attacks.get(name)
    assert attack.side == "query" and name in attacks.REGISTRY
    suspect = attack.apply(net, _threat(**settings))
    assert key_accuracy(suspect.oracle, key) == 0.0, name
    assert suspect.oracle.queries == 20 and all(p.grad is None for p in net.parameters())  # no training, the model untouched


def test_bad_settings_are_refused_when_read():
    for name, settings, match in (("input-smoothing-mean", dict(smoothing_kernel=4), "odd integer"),
                                  ("input-smoothing-gaussian", dict(smoothing_std=-1.0), "> 0 pixels"),
                                  ("feature-squeezing", dict(squeeze_bits=9), "1..7")):
        with pytest.raises(ValueError, match=match):
            attacks.get(name).check(settings, FMNIST)


def test_input_reconstruction_replaces_each_query_by_the_thiefs_autoencoder_output():
    """Built to be vulnerable: the watermark is a fine checkerboard on grey; an autoencoder trained on the
    thief's plain grey-and-noise images cannot draw it back."""
    from wmlib.data import Split
    g = torch.Generator().manual_seed(0)
    thief = Split((135 + torch.randint(-20, 21, (300, 1, 28, 28), generator=g)).to(torch.uint8), torch.zeros(300, dtype=torch.long))
    pattern = _checker()
    key = Key((135 + 12 * (pattern.repeat(20, 1, 1, 1) * 2 - 1)).to(torch.uint8), torch.ones(20, dtype=torch.long), {})
    net = _PatternNet(pattern, key.x).eval()
    assert key_accuracy(Oracle(net), key) == 1.0
    threat = attacks.Threat(thief=thief, spec=FMNIST, seed=0, finetune=train.TrainConfig(epochs=1), budget=0.05,
                            settings=dict(ae_epochs=3, ae_lr=1e-3), model_name="lenet5", scheme=None)
    s = attacks.get("input-reconstruction").apply(net, threat)
    assert key_accuracy(s.oracle, key) == 0.0 and s.oracle.queries == 20
    assert s.report["thief_images"] == 300 and s.report["ae_final_loss"] < 1.0


def test_a_chain_of_preprocessing_steps_transforms_each_query_in_its_order():
    from wmlib.attacks import combined
    assert combined.Chain(["fine-tune", "input-flip", "input-quantization"]).query_tail == 2
    net = _PatternNet(_left(), (135 + 3 * (_left() * 2 - 1)).to(torch.uint8)).eval()
    chain = combined.Chain(["input-flip", "input-quantization"])  # no model-side part: the two steps alone
    s = chain.apply(net, _threat(quantization_bins=4))
    x = torch.zeros(1, 1, 28, 28)
    x[..., :14] = 0.3  # left-bright at 0.3: flipped to the right, then quantised to the middle of its bin (0.375)
    s.oracle(x)
    inner = s.oracle.transform(x)
    assert s.oracle.queries == 1 and torch.equal(inner, ip.quantize_inputs(ip.flip_inputs(x), 4))
    assert float(inner[0, 0, 0, 20]) == 0.375 and float(inner[0, 0, 0, 3]) == 0.125
