"""The owner's secret (:class:`Key`) and the image transforms that make key samples.

A Key holds uint8 key images and the labels the watermarked model should answer with, plus the
metadata that regenerates it, plus (``extras``) any further secret tensors a scheme needs: a
signature, a carrier set and an embedding matrix (GradSigns), a logo (Li et al.). For a signature
scheme the images are the queries the owner sends and the labels the class they are read out at.
It is serialisable (:meth:`Key.save` / :meth:`Key.load`), extras included.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .data import Split


@dataclass
class Key:
    """Key samples ``x`` (uint8, N x C x H x W) with target labels ``y``; ``meta`` says how they were
    made; ``extras`` holds any other secret tensors of the scheme (kept whole by :meth:`sample`)."""
    x: torch.Tensor
    y: torch.Tensor
    meta: dict = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self):
        if self.x.dtype != torch.uint8 or self.x.ndim != 4 or len(self.x) != len(self.y):
            raise ValueError("a Key needs uint8 images N x C x H x W and one label per image")
        if not all(isinstance(v, torch.Tensor) for v in self.extras.values()):
            raise ValueError("a Key's extras must be tensors")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def split(self) -> Split:
        return Split(self.x, self.y)

    def sample(self, n: int, seed: int = 0, replace: bool = False) -> "Key":
        """``n`` key samples drawn with a seeded generator (Namba's K' subsets use ``replace=True``)."""
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, len(self), (n,), generator=g) if replace else torch.randperm(len(self), generator=g)[:n]
        return Key(self.x[idx], self.y[idx], {**self.meta, "sampled": n, "sample_seed": seed}, dict(self.extras))

    def digest(self) -> str:
        from .train import tensor_digest
        return tensor_digest(self.x, self.y, *[self.extras[k] for k in sorted(self.extras)])

    def save(self, path: str | Path) -> None:
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} exists; keys are never overwritten (delete it first)")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"x": self.x, "y": self.y, "meta": json.dumps(self.meta), "extras": dict(self.extras)}, path)

    @classmethod
    def load(cls, path: str | Path) -> "Key":
        d = torch.load(path, map_location="cpu", weights_only=True)
        return cls(d["x"], d["y"], json.loads(d["meta"]), d.get("extras", {}))


@lru_cache(maxsize=32)
def text_mask(text: str, size: int, font_size: int | None = None) -> torch.Tensor:
    """An ``size x size`` float mask in [0, 1] of ``text`` drawn centred near the bottom edge.

    Rendered with Pillow's bundled default font, so the mask is the same on every machine.
    """
    font = ImageFont.load_default(size=font_size or max(6, round(size / 3)))
    img = Image.new("L", (size, size), 0)
    ImageDraw.Draw(img).text((size // 2, size - 2), text, fill=255, font=font, anchor="mb")
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)


def stamp(x: torch.Tensor, mask: torch.Tensor, color: tuple[int, ...]) -> torch.Tensor:
    """Alpha-blend a solid ``color`` (one value per channel, 0-255) into uint8 images through ``mask``."""
    c = torch.tensor(color, dtype=torch.float32).view(1, -1, 1, 1)
    if c.shape[1] not in (1, x.shape[1]):
        raise ValueError(f"color has {c.shape[1]} values for {x.shape[1]}-channel images")
    a = mask.to(torch.float32)[None, None]
    out = x.float() * (1 - a) + c * a
    return out.round().clamp(0, 255).to(torch.uint8)


def gaussian_noise(x: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """Add N(0, std^2) noise (``std`` on the [0, 1] pixel scale) to uint8 images, one draw per image."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=g) * (std * 255.0)
    return (x.float() + noise).round().clamp(0, 255).to(torch.uint8)


@lru_cache(maxsize=32)
def shape_mask(shape: str, size: int) -> torch.Tensor:
    """A ``size x size`` mask of a filled ``'heart'`` or ``'star'`` (our 'symbol') in the lower-right
    quarter, drawn with Pillow (Namba & Sakuma §3.1 superimpose a symbol or a heart)."""
    img = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(img)
    s = size / 28.0
    cx, cy, r = size - 8 * s, size - 8 * s, 6 * s
    if shape == "heart":
        d.ellipse([cx - r, cy - r, cx, cy], fill=255)
        d.ellipse([cx, cy - r, cx + r, cy], fill=255)
        d.polygon([(cx - r, cy - r / 2), (cx + r, cy - r / 2), (cx, cy + r)], fill=255)
    elif shape == "star":
        pts = []
        for i in range(10):
            rad = r if i % 2 == 0 else r * 0.45
            ang = np.pi / 2 + i * np.pi / 5
            pts.append((cx + rad * np.cos(ang), cy - rad * np.sin(ang)))
        d.polygon(pts, fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of: heart, star")
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)


def label_change(split: Split, n: int, num_classes: int, seed: int) -> tuple[Key, torch.Tensor]:
    """Namba & Sakuma §5.1: ``n`` unmodified training images, each relabelled to a different random
    class. Returns the key and the indices of the chosen images in ``split``."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(split), generator=g)[:n]
    orig = split.y[idx]
    shift = torch.randint(1, num_classes, (len(idx),), generator=g)  # never 0: the label always changes
    return Key(split.x[idx].clone(), (orig + shift) % num_classes, {"kind": "label-change", "seed": seed}), idx


def uniform_noise(n: int, shape: tuple[int, int, int], num_classes: int, seed: int) -> Key:
    """DeepSigns-style keys as Namba & Sakuma §3.1 describe them: uniform random images, random labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    return Key(x, torch.randint(0, num_classes, (n,), generator=g), {"kind": "uniform-noise", "seed": seed})


def fgsm(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Goodfellow et al.'s fast gradient sign examples of float images ``x`` in [0, 1]:
    ``clip(x + eps · sign ∇ₓ CE(f(x), y), 0, 1)``, computed with ``model`` in eval mode (its mode is
    restored afterwards)."""
    was_training = model.training
    model.eval()
    try:
        x = x.detach().requires_grad_(True)
        with torch.autocast(x.device.type, enabled=False):
            (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x).float(), y), x)
    finally:
        model.train(was_training)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def _fgsm_batches(model: torch.nn.Module, split: Split, eps: float, seed: int):
    """FGSM examples of ``model`` at ``eps`` for ``split``'s images in a seeded order, 512 at a time:
    (the images as floats, their labels, the examples as uint8, whether each fools the model)."""
    from .train import to_float
    device = next(model.parameters()).device
    perm = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    for start in range(0, len(perm), 512):
        idx = perm[start:start + 512]
        x, y = to_float(split.x[idx].to(device)), split.y[idx].to(device)
        adv_u8 = (fgsm(model, x, y, eps) * 255).round().to(torch.uint8)
        with torch.no_grad():
            fooled = model(to_float(adv_u8)).argmax(1) != y
        yield x, y, adv_u8, fooled


def fgsm_frontier(model: torch.nn.Module, split: Split, n: int, eps: float, seed: int) -> Key:
    """Adversarial-frontier-stitching keys (Le Merrer et al., as used by Namba & Sakuma §3.1):
    FGSM examples of ``model`` that it misclassifies, labelled with their *true* class."""
    picked_x, picked_y = [], []
    model.eval()
    for _, y, adv_u8, fooled in _fgsm_batches(model, split, eps, seed):
        picked_x.append(adv_u8[fooled].cpu())
        picked_y.append(y[fooled].cpu())
        if sum(len(p) for p in picked_y) >= n:
            break
    x, y = torch.cat(picked_x)[:n], torch.cat(picked_y)[:n]
    if len(y) < n:
        raise ValueError(f"only {len(y)} of {n} FGSM examples fool the model at eps={eps}")
    return Key(x, y, {"kind": "afs", "eps": eps, "seed": seed})


def abstract_images(n: int, shape: tuple[int, int, int], num_classes: int, seed: int, oversample: int = 4) -> Key:
    """Adi et al.'s trigger set, made rather than downloaded: ``n`` abstract images, each a random
    background with three to eight random shapes (ellipses, rectangles, triangles, thick strokes)
    in random colours, drawn at ``oversample`` times the size and shrunk (antialiased), with a
    random label each. Their 100 images are abstract pictures shipped with their code; ours follow
    the same idea, out of every task's distribution, from the seed alone."""
    c, h, w = shape
    if c not in (1, 3) or n < 1 or min(h, w) < 1:
        raise ValueError(f"abstract images need n >= 1 and a shape (1 or 3 channels, H, W); got n={n}, shape={shape}")
    rng = np.random.default_rng(seed)
    big = (w * oversample, h * oversample)
    images = []
    for _ in range(n):
        im = Image.new("RGB", big, tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(3, 9))):
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            x0, y0, x1, y1 = (float(v) for v in rng.uniform(-0.2, 1.2, 4) * np.array([big[0], big[1], big[0], big[1]]))
            box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
            kind = int(rng.integers(0, 4))
            if kind == 0:
                draw.ellipse(box, fill=colour)
            elif kind == 1:
                draw.rectangle(box, fill=colour)
            elif kind == 2:
                draw.polygon([tuple(p) for p in rng.uniform(0, 1, (3, 2)) * big], fill=colour)
            else:
                draw.line([tuple(p) for p in rng.uniform(0, 1, (int(rng.integers(2, 5)), 2)) * big], fill=colour,
                          width=int(rng.integers(1, 4)) * oversample)
        im = im.resize((w, h), Image.LANCZOS)
        arr = np.asarray(im.convert("L") if c == 1 else im)
        images.append(torch.from_numpy(arr.copy()).reshape(h, w, c).permute(2, 0, 1))
    y = torch.from_numpy(rng.integers(0, num_classes, n)).long()
    return Key(torch.stack(images).contiguous(), y, {"kind": "abstract", "seed": seed})


def fgsm_stitching(model: torch.nn.Module, split: Split, n: int, eps: float, seed: int, true_share: float = 0.5) -> Key:
    """Le Merrer et al.'s frontier-stitching key: FGSM examples of ``model`` at ``eps``, a
    ``true_share`` of them *true adversaries* (the model misclassifies them) and the rest *false
    adversaries* (perturbed alike, still classified right), every one labelled with its true class.
    The images are drawn in a seeded order from ``split`` among those the model classifies right."""
    n_true = int(round(true_share * n))
    want = {True: n_true, False: n - n_true}
    got = {True: ([], []), False: ([], [])}
    was_training = model.training
    model.eval()
    for x, y, adv_u8, fooled in _fgsm_batches(model, split, eps, seed):
        with torch.no_grad():
            right = model(x).argmax(1) == y
        for kind in (True, False):
            pick = right & (fooled if kind else ~fooled)
            got[kind][0].append(adv_u8[pick].cpu())
            got[kind][1].append(y[pick].cpu())
        if all(sum(len(p) for p in got[k][1]) >= want[k] for k in want):
            break
    model.train(was_training)
    parts = {k: (torch.cat(got[k][0])[:want[k]], torch.cat(got[k][1])[:want[k]]) for k in want}
    short = [f"{len(parts[k][1])} of {want[k]} {'true' if k else 'false'} adversaries" for k in want if len(parts[k][1]) < want[k]]
    if short:
        raise ValueError(f"only {' and '.join(short)} at eps={eps}: raise eps (more true) or lower it (more false)")
    x = torch.cat([parts[True][0], parts[False][0]])
    y = torch.cat([parts[True][1], parts[False][1]])
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + 1))  # true and false mixed
    return Key(x[order].contiguous(), y[order], {"kind": "frontier-stitching", "eps": eps, "true_share": true_share,
                                                  "seed": seed, "true": int(n_true)})
