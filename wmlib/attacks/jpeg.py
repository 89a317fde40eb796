"""JPEG compression of every query (the Watermark-Robustness-Toolbox's input-preprocessing attack):
the thief's API encodes each incoming image as a JPEG at a stated quality and decodes it before the
model sees it, as a real service that stores or forwards JPEGs would. No training.

Real JPEG, not an approximation: Pillow's libjpeg encoder and decoder (``Image.save(..., "JPEG",
quality=q)``), as WRT and the Adversarial Robustness Toolbox's ``JpegCompression`` preprocessor use
it; images are rounded (not truncated) to 8 bits first and grey images are encoded as such (mode
"L"). torchvision's ``encode_jpeg`` / ``decode_jpeg`` do the same with the same library but are
deprecated from torchvision 0.29 on; DiffJPEG-style modules are differentiable approximations.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from .. import rules
from ..train import to_float
from ..verify import Oracle
from .base import Attack, Suspect, Threat, register


def _check_quality(quality) -> None:
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
        raise ValueError(f"quality must be an integer in [1, 95], got {quality!r}")


def jpeg_compress(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Images ``x`` (N x C x H x W, uint8 or floats in [0, 1]; C = 1 or 3) through a JPEG encode and
    decode at ``quality`` (1-95, Pillow's useful range); uint8 out."""
    _check_quality(quality)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be N x C x H x W with 1 or 3 channels, got {tuple(x.shape)}")
    u8 = x if x.dtype == torch.uint8 else (to_float(x).clamp(0, 1) * 255).round().to(torch.uint8)
    arr = u8.cpu().permute(0, 2, 3, 1).numpy()
    out = np.empty_like(arr)
    for i, img in enumerate(arr):
        buf = io.BytesIO()
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img, "L" if img.shape[-1] == 1 else "RGB") \
            .save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        dec = np.asarray(Image.open(buf))
        out[i] = dec[..., None] if dec.ndim == 2 else dec
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


class JpegOracle(Oracle):
    """Query-side attack: every query is JPEG-compressed at ``quality`` before it reaches the model."""

    def __init__(self, inner: Oracle, quality: int):
        _check_quality(quality)  # when it is set, not at the first query
        self.inner, self.quality, self.queries = inner, quality, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        return self.inner(jpeg_compress(x, self.quality))


class Jpeg(Attack):
    question = "survives JPEG-compressed queries"
    name, side, about = "jpeg", "query", "every query JPEG-compressed at a stated quality (Pillow's libjpeg)"
    knobs = {"jpeg_quality": rules.integer(1, 95)}

    def apply(self, model, threat: Threat) -> Suspect:
        return Suspect(JpegOracle(Oracle(model), threat.settings["jpeg_quality"]))


register(Jpeg())
