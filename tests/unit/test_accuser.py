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


@pytest.fixture(scope="module")
def liu_parties():
    ensemble = [_model("lenet5", blobs(600, seed=20 + i), seed=i) for i in range(3)]  # accuser model, references
    validator = _model("lenet5", blobs(600, seed=30), seed=5)
    suspect = _model("lenet3", blobs(600, seed=99), seed=7)  # another architecture, other data: never seen
    return ensemble, validator, suspect, blobs(120, seed=3)


def test_liu_untargeted_keys_are_misread_by_the_accuser_model_labelled_with_its_answer_and_transfer(liu_parties):
    (acc, *refs), _, suspect, images = liu_parties
    key = accuser.liu_key(acc, refs, images.x, images.y, eps=0.5, keep=40, steps=20, step=0.05)
    true = key.extras["true_labels"]
    assert len(key) == 40 and key.x.dtype == torch.uint8
    assert torch.equal(true, images.y[key.extras["candidate index"]])
    assert (key.y != true).all()  # every kept example claims a false label
    assert torch.equal(key.y, Oracle(acc).predict(key.x))  # the label claimed is the accuser model's answer
    assert (key.x.int() - images.x[key.extras["candidate index"]].int()).abs().max() <= round(0.5 * 255) + 1
    assert key_accuracy(Oracle(suspect), key) > 0.3  # an unseen model gives the claimed labels: three times chance


def test_liu_keep_reject_keeps_the_candidates_that_score_highest(liu_parties):
    (acc, *refs), _, _, images = liu_parties
    kw = dict(eps=0.3, steps=10, step=0.05)
    few = accuser.liu_key(acc, refs, images.x, images.y, keep=10, **kw)
    many = accuser.liu_key(acc, refs, images.x, images.y, keep=60, **kw)
    # the 10 kept are the 10 best of the 60: the same examples, first in the ranking, and no kept score below a rejected one
    assert torch.equal(few.extras["candidate index"], many.extras["candidate index"][:10])
    assert few.extras["selection score"].min() >= many.extras["selection score"][10:].max()
    with pytest.raises(ValueError, match="too few to keep"):  # a budget too small to fool the accuser's model
        accuser.liu_key(acc, refs, images.x, images.y, keep=100, eps=1 / 255, steps=1)


def test_liu_is_iterative_fgsm_without_momentum_on_the_summed_losses(liu_parties):
    (acc, *refs), _, _, images = liu_parties
    x0 = train.to_float(images.x[:30])
    x = x0.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(acc(x), images.y[:30], reduction="sum") + torch.stack(
        [torch.nn.functional.cross_entropy(m(x), images.y[:30], reduction="none") for m in refs]).mean(0).sum()
    (g,) = torch.autograd.grad(loss, x)
    expected = ((x0 + 0.1 * g.sign()).clamp(0, 1) * 255).round().to(torch.uint8)
    key = accuser.liu_key(acc, refs, images.x[:30], images.y[:30], eps=0.2, keep=1, steps=1, step=0.1)
    i = int(key.extras["candidate index"][0])
    assert torch.equal(key.x[0], expected[i])


def test_liu_targeted_keeps_what_the_held_out_validators_are_surest_of(liu_parties):
    (acc, *refs), validator, _, images = liu_parties
    targets = accuser.random_targets(images.y, 10, seed=1)
    key = accuser.liu_key(acc, refs, images.x, images.y, eps=0.5, keep=30, steps=20, step=0.05, mode="targeted",
                          targets=targets, validators=[validator])
    idx = key.extras["candidate index"]
    assert torch.equal(key.y, targets[idx])
    everyone = accuser.liu_key(acc, refs, images.x, images.y, eps=0.5, keep=120, steps=20, step=0.05, mode="targeted",
                               targets=targets, validators=[validator])
    assert key.extras["selection score"].max() <= everyone.extras["selection score"][30:].min()
    assert key_accuracy(Oracle(validator), key) > 0.8  # the validator answers the targets of what was kept


def test_bad_liu_arguments_are_refused(liu_parties):
    (acc, *refs), validator, _, images = liu_parties
    x, y = images.x[:10], images.y[:10]
    with pytest.raises(ValueError, match="untargeted, targeted"):
        accuser.liu_key(acc, refs, x, y, eps=0.1, keep=5, mode="both")
    with pytest.raises(ValueError, match="must not exceed"):
        accuser.liu_key(acc, refs, x, y, eps=0.1, keep=11)
    with pytest.raises(ValueError, match="validator"):
        accuser.liu_key(acc, refs, x, y, eps=0.1, keep=5, mode="targeted", targets=(y + 1) % 10)
    with pytest.raises(ValueError, match="no false label"):
        accuser.liu_key(acc, refs, x, y, eps=0.1, keep=5, mode="targeted", targets=y, validators=[validator])
