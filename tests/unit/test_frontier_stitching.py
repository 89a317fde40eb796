"""Le Merrer et al.'s frontier stitching: true and false FGSM adversaries of the clean model, labelled
with their true class, fine-tuned in."""
import copy
from dataclasses import replace

import pytest
import torch

from wmlib import data, train, verify
from wmlib.keys import fgsm_stitching
from wmlib.schemes import FrontierStitching, build, watermark
from wmlib.train import to_float

CFG = train.TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=3e-3)


@pytest.fixture(scope="module")
def task():
    splits = data.owner_thief_split("fashion-mnist", 0.1, seed=0, train_limit=3000, test_limit=2000)
    clean, hist, _ = train.train_classifier("fs-test-clean", "lenet5", splits, CFG, progress=False)
    other = train.train_classifier("fs-test-other", "lenet5", splits, replace(CFG, seed=1), progress=False)[0]
    return splits, clean, hist, other


def test_bad_settings_and_the_catalogue_entry():
    for kw, match in ((dict(eps=0.0), "eps"), (dict(true_share=0.0), "true_share"), (dict(n_keys=0), "n_keys")):
        with pytest.raises(ValueError, match=match):
            FrontierStitching(**kw)
    assert build("frontier-stitching", {"eps": 0.02}) == FrontierStitching(eps=0.02)
    with pytest.raises(ValueError, match="null fitted to clean models"):  # no paper null: its 1/2 holds for one model only
        FrontierStitching().paper_null(None)


def test_the_key_holds_true_and_false_adversaries_labelled_with_their_class(task):
    splits, clean, hist, other = task
    key = fgsm_stitching(clean, splits.owner, 40, 0.02, seed=0)
    with torch.no_grad():
        right = clean(to_float(key.x)).argmax(1) == key.y
    assert len(key) == 40 and int((~right).sum()) == 20 == int(right.sum())  # half true (fooled), half false
    assert key.meta["true"] == 20
    # the paper's "right with probability 1/2" holds for the key's own model; another clean model is not fooled alike
    with torch.no_grad():
        assert float((other(to_float(key.x)).argmax(1) == key.y).float().mean()) > 0.6
    # every key image is a perturbed owner image of its label's class, within eps
    owner = to_float(splits.owner.x)
    for x, y in zip(to_float(key.x[:5]), key.y[:5]):
        dist = (owner - x).abs().flatten(1).amax(1)
        nearest = int(dist.argmin())
        assert dist[nearest] <= 0.02 + 1 / 255 and splits.owner.y[nearest] == y
    third = fgsm_stitching(clean, splits.owner, 30, 0.02, seed=0, true_share=1 / 3)
    with torch.no_grad():
        assert int((clean(to_float(third.x)).argmax(1) != third.y).sum()) == 10
    with pytest.raises(ValueError, match="true adversaries at eps=1e-05"):
        fgsm_stitching(clean, splits.owner, 40, 1e-5, seed=0)


def test_embedding_stitches_the_true_adversaries_back(task):
    splits, clean, hist, other = task
    scheme = FrontierStitching(n_keys=40, eps=0.02, key_per_batch=8, retrain_epochs=4, retrain_lr=0.01)
    with pytest.raises(ValueError, match="pass clean="):
        scheme.make_key(splits, seed=0)
    wm, clean_again, _ = watermark(scheme, "fs-test", "lenet5", splits, CFG, seed=0, clean=(clean, hist), progress=False)
    assert wm.key.meta["part"] == "trained" and wm.held_out.meta["part"] == "new"
    test = to_float(splits.test.x).flatten(1)  # the new key is made from test images, never the owner's
    assert all(float((test - x).abs().amax(1).min()) <= 0.02 + 1 / 255 for x in to_float(wm.held_out.x[:5]).flatten(1))
    before = verify.key_accuracy(verify.Oracle(clean), wm.key)
    assert before == pytest.approx(0.5)  # the clean model: wrong on the true half, right on the false half
    # the same retraining without the key: what the extra epochs alone give
    twin = copy.deepcopy(clean)
    train.fit(twin, splits.owner, scheme.train_config(CFG), progress=False)
    assert verify.key_accuracy(verify.Oracle(wm.model), wm.key) > verify.key_accuracy(verify.Oracle(twin), wm.key) + 0.1
