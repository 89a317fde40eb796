"""Adi et al., "Turning Your Weakness Into a Strength: Watermarking Deep Neural Networks by
Backdooring", USENIX Security 2018 (the reference toolkit's ``Adi``).

The key (the trigger set) is ``n_keys`` abstract images, each with a label drawn at random; the
model is trained from scratch with ``key_per_batch`` of them appended to every batch, as the authors'
code does (``train.py``: 2 per batch of 100, 100 images, ResNet-18 for 60 epochs; the toolkit instead
fine-tunes a pretrained model with each image repeated 100 times). Their images are 100 abstract
pictures shipped with the code; ours are drawn from the seed (:func:`wmlib.keys.abstract_images`),
out of every task's distribution, so no thief's data holds one. The held-out key is another draw,
never embedded: a watermarked model answers it as by chance.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..data import Splits
from ..keys import Key, abstract_images
from ..train import History, TrainConfig, fit
from .base import Generation, Scheme, require_positive_integers
from .catalogue import register


@dataclass
class Adi2018(Scheme):
    n_keys: int = 100        # the authors' trigger set: 100 images
    key_per_batch: int = 2   # [code] train.py: wm_batch_size 2 with batches of 100

    name = "adi2018"
    paper_rule = "Verify: the trigger set classified with its committed labels, but for a small share ε of it (ε not fixed)"
    accuracy_threshold = True

    def __post_init__(self):
        require_positive_integers(self, "n_keys", "key_per_batch")

    def key_generation(self) -> Generation:
        return Generation("nothing but the image shape and the number of classes", True,
                          "keys.abstract_images: abstract pictures and random labels drawn from the seed alone")

    def make_key(self, splits: Splits, seed: int = 0, clean: nn.Module | None = None) -> tuple[Key, Key]:
        s = splits.spec
        shape = (s.channels, s.image_size, s.image_size)
        key = abstract_images(self.n_keys, shape, s.num_classes, seed)
        new = abstract_images(self.n_keys, shape, s.num_classes, seed + 1)
        for k, part in ((key, "trained"), (new, "new")):
            k.meta.update({**self.config(), "task": s.name, "part": part})
        return key, new

    def train(self, model: nn.Module, splits: Splits, key: Key, cfg: TrainConfig, **fit_kw) -> History:
        """From scratch on the owner's data, ``key_per_batch`` trigger images appended to every batch."""
        return fit(model, splits.owner, cfg, key=key.split, key_per_batch=self.key_per_batch, **fit_kw)


register("adi", lambda s: Adi2018(**s))
