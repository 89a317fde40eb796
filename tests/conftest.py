import pytest
import torch
from torch import nn

from wmlib import models
from wmlib.data import REGISTRY, Split, Splits


def blobs(n: int, channels: int = 1, size: int = 28, classes: int = 10, seed: int = 0) -> Split:
    """A learnable toy task: class c is an image whose c-th horizontal band is bright."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randint(0, 40, (n, channels, size, size), generator=g, dtype=torch.uint8)
    band = size // classes
    for c in range(classes):
        x[y == c, :, c * band:(c + 1) * band, :] = 220
    return Split(x, y)


@pytest.fixture
def toy_splits() -> Splits:
    return Splits(blobs(600), blobs(200, seed=1), blobs(300, seed=2), REGISTRY["fashion-mnist"])


@pytest.fixture
def cifar_splits() -> Splits:
    """CIFAR-10-shaped tensors (3 x 32 x 32): the paths that cannot run on real CIFAR here."""
    return Splits(blobs(256, 3, 32), blobs(64, 3, 32, seed=1), blobs(64, 3, 32, seed=2), REGISTRY["cifar10"])


def stock_pools(model: nn.Module) -> nn.Module:
    """The same model with PyTorch's own pooling modules in place of wmlib's fast paths."""
    for name, mod in list(model.named_children()):
        if isinstance(mod, models.MaxPool2d):
            setattr(model, name, nn.MaxPool2d(mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                                              ceil_mode=mod.ceil_mode))
        elif isinstance(mod, models.AdaptiveAvgPool2d):
            setattr(model, name, nn.AdaptiveAvgPool2d(mod.output_size))
        else:
            stock_pools(mod)
    return model
