import pytest
import torch

from wmlib import keys


def test_text_mask_draws_test_near_the_bottom_and_is_deterministic():
    m = keys.text_mask("TEST", 28)
    assert m.shape == (28, 28) and 0 < m.sum() < 28 * 28 / 3
    rows = m.sum(1).nonzero().flatten()
    assert rows.min() >= 14  # lower half
    keys.text_mask.cache_clear()
    assert torch.equal(m, keys.text_mask("TEST", 28))


def test_stamp_only_changes_masked_pixels():
    x = torch.full((2, 3, 32, 32), 10, dtype=torch.uint8)
    mask = keys.text_mask("TEST", 32)
    out = keys.stamp(x, mask, (128, 128, 128))
    assert torch.equal(out[:, :, mask == 0], x[:, :, mask == 0])
    assert (out[:, :, mask == 1] == 128).all()
    with pytest.raises(ValueError, match="color"):
        keys.stamp(x, mask, (1, 2))


def test_gaussian_noise_is_seeded_and_scaled():
    x = torch.full((64, 1, 28, 28), 128, dtype=torch.uint8)
    a, b = keys.gaussian_noise(x, 0.1, seed=1), keys.gaussian_noise(x, 0.1, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, keys.gaussian_noise(x, 0.1, seed=2))
    assert (a.float() - 128).std().item() == pytest.approx(25.5, rel=0.05)


def test_key_roundtrip_and_no_overwrite(tmp_path):
    k = keys.Key(torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.tensor([1, 1, 1]), {"kind": "content"})
    k.save(tmp_path / "k.pt")
    back = keys.Key.load(tmp_path / "k.pt")
    assert torch.equal(back.x, k.x) and back.meta == {"kind": "content"} and back.digest() == k.digest()
    with pytest.raises(FileExistsError):
        k.save(tmp_path / "k.pt")


def test_key_validates_and_samples():
    with pytest.raises(ValueError):
        keys.Key(torch.zeros(3, 4, 4), torch.zeros(3, dtype=torch.int64))
    k = keys.Key(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), torch.zeros(10, dtype=torch.int64))
    assert len(k.sample(4, seed=0)) == 4 and len(k.sample(20, seed=0, replace=True)) == 20
    assert len(set(k.sample(10, seed=0).x.flatten().tolist())) == 10


def test_key_extras_travel_with_save_sample_and_digest(tmp_path):
    """A signature scheme's secret (bits, carriers, embedding matrix) lives in ``extras``."""
    extras = {"bits": torch.tensor([1, 0, 1, 1]), "matrix": torch.rand(4, 6)}
    k = keys.Key(torch.zeros(5, 1, 4, 4, dtype=torch.uint8), torch.full((5,), 2), {"kind": "signature"}, extras)
    k.save(tmp_path / "sig.pt")
    back = keys.Key.load(tmp_path / "sig.pt")
    assert torch.equal(back.extras["matrix"], extras["matrix"]) and back.digest() == k.digest()
    assert torch.equal(k.sample(3, seed=1).extras["bits"], extras["bits"])
    other = keys.Key(k.x, k.y, k.meta, {**extras, "bits": torch.tensor([0, 0, 1, 1])})
    assert other.digest() != k.digest()  # another signature is another key
    with pytest.raises(ValueError, match="extras must be tensors"):
        keys.Key(k.x, k.y, {}, {"bits": [1, 0]})
