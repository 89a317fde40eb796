import gzip
import urllib.error

import pytest
import torch

from wmlib import data


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="fashion-mnist.*mnist"):
        data.load("imagenet")


def test_fashion_mnist_is_real_and_complete():
    x, y = data.load("fashion-mnist", train=True)
    xt, yt = data.load("fashion-mnist", train=False)
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.uint8
    assert xt.shape == (10000, 1, 28, 28)
    assert torch.bincount(y).tolist() == [6000] * 10  # the real dataset is balanced
    assert x.float().mean() > 50  # not blank


def test_mnist_5k_subset_splits_without_overlap():
    x, y = data.load("mnist-5k", train=True)
    xt, _ = data.load("mnist-5k", train=False)
    assert len(x) == 4000 and len(xt) == 1000 and len(y.unique()) == 10
    flat = {bytes(im.numpy()) for im in x}
    assert not any(bytes(im.numpy()) in flat for im in xt)


def test_owner_thief_split_is_disjoint_and_sized():
    s = data.owner_thief_split("fashion-mnist", thief_fraction=0.1, seed=3, train_limit=2000, test_limit=500)
    assert len(s.owner) == 1800 and len(s.thief) == 200 and len(s.test) == 500
    own = {bytes(im.numpy()) for im in s.owner.x}
    assert sum(bytes(im.numpy()) in own for im in s.thief.x) <= 2  # Fashion-MNIST has a few duplicates
    again = data.owner_thief_split("fashion-mnist", thief_fraction=0.1, seed=3, train_limit=2000, test_limit=500)
    assert torch.equal(s.thief.x, again.thief.x)


@pytest.mark.parametrize("frac", [-0.1, 1.0])
def test_bad_thief_fraction(frac):
    with pytest.raises(ValueError, match="thief_fraction"):
        data.owner_thief_split("mnist-5k", thief_fraction=frac)


def test_offline_without_a_copy_says_how_to_get_it(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def refuse(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tvd, "CIFAR10", refuse)
    monkeypatch.setenv("WMLIB_DATA", str(tmp_path))
    data._load_cached.cache_clear()
    with pytest.raises(data.DataUnavailableError, match="To obtain 'cifar10'.*torchvision downloads it"):
        data.load("cifar10")


def test_debian_idx_files_are_decompressed_into_torchvision_layout(tmp_path, monkeypatch):
    deb = tmp_path / "deb"
    deb.mkdir()
    for f in data._FMNIST_FILES:
        with gzip.open(deb / f"{f}.gz", "wb") as fh:
            fh.write(f"payload of {f}".encode())
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", deb)
    assert data._decompress_debian_fashion_mnist(tmp_path / "root")
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == b"payload of t10k-labels-idx1-ubyte"
    assert not list(raw.glob("*.part"))


def test_to_shape_maps_grey_28_to_rgb_32_and_back():
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    rgb = data.to_shape(x, 3, 32)
    assert rgb.shape == (4, 3, 32, 32) and rgb.dtype == torch.uint8
    assert torch.equal(rgb[:, 0], rgb[:, 2])
    grey = data.to_shape(rgb, 1, 32)
    assert grey.shape == (4, 1, 32, 32)
    assert (grey.int() - rgb[:, :1].int()).abs().max() <= 1


def test_cli_reports_unknown_dataset(capsys):
    assert data.main(["fetch", "nope"]) == 2
    assert "choose one of" in capsys.readouterr().err


def test_per_class_draws_n_of_every_class_shuffled():
    from tests.conftest import blobs
    s = blobs(500)
    sub = data.per_class(s, 5, seed=1)
    assert torch.bincount(sub.y, minlength=10).tolist() == [5] * 10
    assert sub.y[:10].tolist() != sorted(sub.y[:10].tolist())  # classes mixed, so a 70/30 split keeps all
    assert torch.equal(data.per_class(s, 5, seed=1).x, sub.x)
    with pytest.raises(ValueError, match=r"n must be in 1\.\."):
        data.per_class(s, 400)


@pytest.mark.parametrize("name,base", [("fashion-rgb32-standin", "fashion-mnist"), ("mnist5k-rgb32-standin", "mnist-5k")])
def test_the_cifar_shaped_standins_are_the_real_images_padded_and_named_as_standins(name, base):
    x, y = data.load(name, train=False)
    xb, yb = data.load(base, train=False)
    s = data.spec(name)
    assert (s.channels, s.image_size, s.num_classes) == (3, 32, 10) and data.is_standin(name) and "standin" in name
    assert s.source == data.spec(base).source  # the same distribution: never an "unrelated" dataset for its base
    assert x.shape == (len(xb), 3, 32, 32) and x.dtype == torch.uint8 and torch.equal(y, yb)
    assert torch.equal(x[:, 1, 2:30, 2:30], xb[:, 0]) and torch.equal(x[:, 0], x[:, 2])  # pixels unchanged, grey
    assert x[:, :, :2].max() == 0 and x[:, :, :, 30:].max() == 0  # a black border
    assert not data.is_standin("cifar10")


@pytest.mark.parametrize("name, cls, want", [("emnist-letters", "EMNIST", {"split": "letters", "train": False}),
                                             ("svhn", "SVHN", {"split": "test"}), ("cifar10", "CIFAR10", {"train": False})])
def test_torchvision_datasets_are_asked_for_the_right_part(name, cls, want, tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    seen = {}

    class Fake:  # records what the loader asks torchvision for, then stops before any download
        def __init__(self, root, download, **kw):
            seen.update(kw)
            raise urllib.error.URLError("offline")

    monkeypatch.setattr(tvd, cls, Fake)
    monkeypatch.setenv("WMLIB_DATA", str(tmp_path))
    data._load_cached.cache_clear()
    assert not data.present(name)  # offline and no copy: absent, with no exception
    assert seen == want
    data._load_cached.cache_clear()
    assert data.present("mnist-5k")
