"""Input preprocessing: the thief's API changes every query before the model sees it, with no
training (the Watermark-Robustness-Toolbox's input-preprocessing attacks; JPEG is :mod:`.jpeg`,
input noise :mod:`.query`). Each is cheap and needs only the stolen model; each costs the thief some
test accuracy, which the comparison reads on the thief's own validation split.

* ``input-smoothing-gaussian``: a Gaussian blur of each image, standard deviation
  ``smoothing_std`` pixels (the reference: 0.5, 0.6, 0.7 on CIFAR-10), truncated at 3 standard
  deviations, zero padding at the border, as the reference pads;
* ``input-smoothing-mean`` / ``input-smoothing-median``: the mean / the median of each
  ``smoothing_kernel`` x ``smoothing_kernel`` window (the reference: 3; mean with zero padding,
  median reflecting the border, as the reference does). The reference's mean and median configs
  also fine-tune 20 epochs with the filter in place; here that is a chain of ``fine-tune`` and
  the filter (:mod:`.combined`);
* ``input-quantization``: [0, 1] cut into ``quantization_bins`` equal bins, each value replaced by
  its bin's middle (the reference: 16, 12, 10; its loop leaves the last bin's values as they are,
  this maps every bin);
* ``feature-squeezing``: each value rounded to ``squeeze_bits`` bits (Xu et al., NDSS 2018; the
  reference: 4);
* ``input-flip``: every query mirrored left to right (the reference's horizontal flip);
* ``input-reconstruction``: every query replaced by its reconstruction through an autoencoder the
  thief trains on its own images (Namba & Sakuma's Table 4 autoencoder, ``ae_epochs`` of Adam at
  ``ae_lr``), always on; the reference loads a pretrained CIFAR-10 autoencoder. Namba & Sakuma's
  query modification, which sends only the queries its detector flags, is :mod:`.query_modification`.

SciPy's ``ndimage`` filters do the smoothing (``gaussian_filter``, ``uniform_filter``,
``median_filter``), over the two spatial axes only.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from scipy import ndimage

from .. import rules
from ..train import to_float
from ..verify import Oracle
from .base import Attack, Suspect, Threat, register


def _odd_kernel(size) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 3 or size % 2 == 0:
        raise ValueError(f"the smoothing kernel must be an odd integer >= 3, got {size!r}")
    return size


def _spatial(x: torch.Tensor, f: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    """``f`` on the [0, 1] float images as an N x C x H x W array, back as float32 in [0, 1]."""
    if x.dim() != 4:
        raise ValueError(f"images must be N x C x H x W, got {tuple(x.shape)}")
    out = f(to_float(x).cpu().numpy().astype(np.float64))
    return torch.from_numpy(np.clip(out, 0.0, 1.0)).float()


def gaussian_smooth(x: torch.Tensor, std: float) -> torch.Tensor:
    """Each image blurred by a Gaussian of ``std`` pixels (truncated at 3 std, zero padding)."""
    if not std > 0:
        raise ValueError(f"the smoothing std must be > 0 pixels, got {std!r}")
    return _spatial(x, lambda a: ndimage.gaussian_filter(a, sigma=(0, 0, std, std), truncate=3.0, mode="constant", cval=0.0))


def mean_smooth(x: torch.Tensor, size: int) -> torch.Tensor:
    """Each pixel replaced by the mean of its ``size`` x ``size`` window (zero padding)."""
    k = _odd_kernel(size)
    return _spatial(x, lambda a: ndimage.uniform_filter(a, size=(1, 1, k, k), mode="constant", cval=0.0))


def median_smooth(x: torch.Tensor, size: int) -> torch.Tensor:
    """Each pixel replaced by the median of its ``size`` x ``size`` window (the border reflected)."""
    k = _odd_kernel(size)
    return _spatial(x, lambda a: ndimage.median_filter(a, size=(1, 1, k, k), mode="reflect"))


def quantize_inputs(x: torch.Tensor, bins: int) -> torch.Tensor:
    """[0, 1] cut into ``bins`` equal bins; each value becomes the middle of its bin (1.0 falls in the last)."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"the number of bins must be an integer >= 2, got {bins!r}")
    xf = to_float(x).cpu()
    idx = torch.clamp(torch.floor(xf * bins), max=bins - 1)
    return (idx + 0.5) / bins


def squeeze_bits(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Each value rounded to ``bits`` bits: ``round(x (2^bits - 1)) / (2^bits - 1)``."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 7:
        raise ValueError(f"bit depth must be an integer in 1..7 (8 bits is the image itself), got {bits!r}")
    top = 2 ** bits - 1
    return torch.round(to_float(x).cpu() * top) / top


def flip_inputs(x: torch.Tensor) -> torch.Tensor:
    """Every image mirrored left to right."""
    return torch.flip(x, dims=(-1,))


class PreprocessedOracle(Oracle):
    """Query-side attack: every query passes through ``transform`` before it reaches the model."""

    def __init__(self, inner: Oracle, transform: Callable[[torch.Tensor], torch.Tensor], name: str):
        self.inner, self.transform, self.name, self.queries = inner, transform, name, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        return self.inner(self.transform(x))


class InputPreprocessing(Attack):
    """One input-preprocessing attack: ``make(settings)`` gives the transform (its knobs are read
    and checked there, before any query)."""
    question, family = "survives input preprocessing of the queries", True
    side = "query"

    def __init__(self, name: str, about: str, knobs: dict, make: Callable[[dict], Callable[[torch.Tensor], torch.Tensor]]):
        self.name, self.about, self.knobs, self.make = name, about, knobs, make

    def check(self, settings: dict, spec) -> None:
        self.make(settings)

    def apply(self, model, threat: Threat) -> Suspect:
        transform = self.make(threat.settings)
        return Suspect(PreprocessedOracle(Oracle(model), transform, self.name))


def _checked(f: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    f(torch.zeros(1, 1, 3, 3))  # a bad setting fails when the knobs are read, not at the first query
    return f


_STD = {"smoothing_std": rules.number(0.0, rules.INF, lo_open=True)}
_KERNEL = {"smoothing_kernel": rules.integer(3)}
PREPROCESSING = (
    InputPreprocessing("input-smoothing-gaussian", "every query blurred by a Gaussian (std in pixels, no training)", _STD,
                       lambda s: _checked(lambda x: gaussian_smooth(x, s["smoothing_std"]))),
    InputPreprocessing("input-smoothing-mean", "every query mean-filtered (k x k window, no training)", _KERNEL,
                       lambda s: _checked(lambda x: mean_smooth(x, s["smoothing_kernel"]))),
    InputPreprocessing("input-smoothing-median", "every query median-filtered (k x k window, no training)", _KERNEL,
                       lambda s: _checked(lambda x: median_smooth(x, s["smoothing_kernel"]))),
    InputPreprocessing("input-quantization", "every query's pixels mapped to the middles of equal bins (no training)",
                       {"quantization_bins": rules.integer(2)},
                       lambda s: _checked(lambda x: quantize_inputs(x, s["quantization_bins"]))),
    InputPreprocessing("feature-squeezing", "every query's pixels rounded to a few bits (Xu et al.; no training)",
                       {"squeeze_bits": rules.integer(1, 7)}, lambda s: _checked(lambda x: squeeze_bits(x, s["squeeze_bits"]))),
    InputPreprocessing("input-flip", "every query mirrored left to right (no training)", {}, lambda s: flip_inputs),
)
class InputReconstruction(Attack):
    question, family = "survives input preprocessing of the queries", True
    name, side = "input-reconstruction", "query"
    about = "every query replaced by its reconstruction through the thief's autoencoder (always on)"
    knobs = {"ae_epochs": rules.integer(1), "ae_lr": rules.number(0.0, rules.INF, lo_open=True)}

    def apply(self, model, threat: Threat) -> Suspect:
        from ..train import TrainConfig, reconstruct
        from .query_modification import train_autoencoder

        k = threat.settings
        cfg = TrainConfig(epochs=k["ae_epochs"], batch_size=100, optimizer="adam", lr=k["ae_lr"], seed=threat.seed)
        device = next(model.parameters()).device
        ae, hist = train_autoencoder(threat.thief, tuple(threat.thief.x.shape[1:]), cfg, device, tag=f"{threat.tag}-{self.name}")
        oracle = PreprocessedOracle(Oracle(model), lambda x: reconstruct(ae, x, device).cpu(), self.name)
        return Suspect(oracle, {"thief_images": len(threat.thief), "ae_final_loss": hist.loss[-1] if hist.loss else float("nan")})


for _attack in (*PREPROCESSING, InputReconstruction()):
    register(_attack)
