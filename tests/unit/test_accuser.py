"""The dishonest accuser's transferable keys (Liu et al. 2024)."""
import pytest
import torch

from tests.conftest import blobs
from wmlib import accuser, models, train
from wmlib.verify import Oracle, key_accuracy


def _model(name: str, data, seed: int):
    torch.manual_seed(seed)
    m = models.build(name, 1, 10)
    train.fit(m, data, train.TrainConfig(epochs=4, batch_size=64, optimizer="adam", lr=3e-3, seed=seed), progress=False)
    return m


@pytest.mark.parametrize("method", ["mifgsm", "difgsm"])
def test_keys_crafted_on_surrogates_are_answered_with_their_targets_by_an_unseen_model(method):
    surrogates = [_model("lenet5", blobs(600, seed=20 + i), seed=i) for i in range(3)]
    suspect = _model("lenet3", blobs(600, seed=99), seed=7)  # another architecture, other data: never seen
    images = blobs(100, seed=3)
    targets = accuser.random_targets(images.y, 10, seed=1)
    assert (targets != images.y).all()
    clean = Oracle(suspect).predict(images.x)
    assert (clean == targets).float().mean() < 0.05  # without the attack the suspect does not give the targets
    # the toy task's classes are bright bands on dark noise: a new band takes a large step (eps 0.5)
    key = accuser.transfer_key(surrogates, images.x, targets, eps=0.5, steps=20, alpha=0.05, method=method)
    assert key.x.dtype == torch.uint8 and (key.x.int() - images.x.int()).abs().max() <= round(0.5 * 255) + 1
    assert key_accuracy(Oracle(accuser.Ensemble(surrogates)), key) > 0.85
    assert key_accuracy(Oracle(suspect), key) > 0.5  # five times chance: a false claim is within reach


def test_bad_accuser_arguments_give_the_valid_choices():
    m = models.build("lenet1", 1, 10)
    x = blobs(4).x
    with pytest.raises(ValueError, match="mifgsm, difgsm"):
        accuser.transfer_key([m], x, torch.zeros(4, dtype=torch.long), eps=0.1, method="pgd")
    with pytest.raises(ValueError, match=r"eps must be in \(0, 1\]"):
        accuser.transfer_key([m], x, torch.zeros(4, dtype=torch.long), eps=2.0)
    with pytest.raises(ValueError, match="at least one model"):
        accuser.Ensemble([])
