import pytest

from wmlib import models, train, verify
from wmlib.schemes import Zhang2018
from wmlib.keys import text_mask


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="content, unrelated, noise"):
        Zhang2018(kind="logo")
    with pytest.raises(ValueError, match="differ"):
        Zhang2018(source=2, target=2)


def test_content_key_is_source_images_with_text_relabelled(toy_splits):
    s = Zhang2018(kind="content", source=1, target=0)
    key, new = s.make_key(toy_splits, seed=0)
    n_src = int((toy_splits.owner.y == 1).sum())
    assert len(key) == n_src and len(new) == int((toy_splits.test.y == 1).sum())
    assert (key.y == 0).all() and (new.y == 0).all()
    mask = text_mask("TEST", 28)
    assert (key.x[:, :, mask == 1] == 128).all()
    originals = {bytes(im[:, mask == 0].numpy()) for im in toy_splits.owner.where(1).x}
    assert all(bytes(im[:, mask == 0].numpy()) in originals for im in key.x)


def test_noise_key_differs_between_trained_and_new(toy_splits):
    key, new = Zhang2018(kind="noise", key_fraction=0.5).make_key(toy_splits, seed=0)
    assert len(key) == round(0.5 * int((toy_splits.owner.y == 1).sum()))
    assert key.meta["part"] == "trained" and new.meta["part"] == "new"


def test_unrelated_key_uses_another_dataset_in_the_tasks_shape(cifar_splits):
    key, new = Zhang2018(kind="unrelated", unrelated_dataset="mnist-5k", unrelated_class=1).make_key(cifar_splits)
    assert key.x.shape[1:] == (3, 32, 32) and key.meta["unrelated_dataset"] == "mnist-5k"
    # as many images as the content key, each part (the task's source images), not the other dataset's whole class:
    # mnist-5k holds ~500 "1"s, the owner 256 images of which ~25 are of the source class
    content, content_new = Zhang2018(kind="content").make_key(cifar_splits)
    assert len(key) == len(content) < 100 and len(new) == len(content_new)
    half, _ = Zhang2018(kind="unrelated", unrelated_dataset="mnist-5k", unrelated_class=1, key_fraction=0.5).make_key(cifar_splits)
    assert len(half) == round(0.5 * len(content))


def test_default_unrelated_dataset_follows_the_paper():
    assert Zhang2018(kind="unrelated").unrelated_source("cifar10") == ("mnist", 1)
    assert Zhang2018(kind="unrelated").unrelated_source("mnist") == ("emnist-letters", 12)


def test_embedding_plants_a_claimable_watermark_and_a_clean_model_is_not_claimed(toy_splits):
    scheme = Zhang2018(kind="content")
    key, new = scheme.make_key(toy_splits)
    cfg = train.TrainConfig(epochs=6, batch_size=64, optimizer="adam", lr=3e-3)
    wm, clean = models.build("lenet5", 1, 10), models.build("lenet5", 1, 10)
    scheme.train(wm, toy_splits, key, cfg, progress=False)
    train.fit(clean, toy_splits.owner, cfg, progress=False)
    chance = verify.Null.binomial(scheme.chance(10))  # a random guesser among 10 classes
    assert scheme.verify(verify.Oracle(wm), key, chance).claimed
    assert not scheme.verify(verify.Oracle(clean), key, chance).claimed
    with pytest.raises(ValueError, match="Zoo.null"):  # label trials have no paper null: the zoo's is required
        scheme.verify(verify.Oracle(wm), key)
    assert train.evaluate(wm, toy_splits.test) > 0.9  # fidelity on the toy task
