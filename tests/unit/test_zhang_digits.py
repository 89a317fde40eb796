"""Zhang et al.'s owner side as one call (the chapter's main run and its digits run share it), and
the digits run's knobs."""
import torch

from wmlib import settings, verify
from wmlib.schemes import Zhang2018, zhang2018
from wmlib.train import TrainConfig, train_classifier


def test_embed_kinds_trains_the_clean_and_one_watermarked_model_per_kind(toy_splits):
    knobs = settings.resolve("zhang2018", "smoke", kinds=["content", "noise"], epochs=6, batch_size=64,
                             optimizer="adam", lr=3e-3)
    keys, held_out = zhang2018.make_keys(knobs, toy_splits)
    assert list(keys) == ["content", "noise"] and all(len(held_out[k]) > 0 for k in keys)
    direct = Zhang2018.from_knobs("noise", knobs).make_key(toy_splits, seed=knobs["seed"])[0]
    assert torch.equal(keys["noise"].x, direct.x)  # the same key the scheme makes
    models, histories = zhang2018.embed_kinds(knobs, toy_splits, keys, held_out, progress=False)
    assert list(models) == ["none", "content", "noise"]
    assert set(histories["none"]["monitors"]) == {"val", "new:content", "new:noise"}
    table = zhang2018.key_accuracy_table({k: verify.Oracle(m) for k, m in models.items()}, keys, held_out)
    assert list(table.columns) == ["content", "noise"]
    assert table.loc["watermarks (trained)", "content"] > 0.9
    assert table.loc["clean model, trained keys", "content"] < 0.2
    # the clean model is the one the chapter trained with this config before: the cache holds it under any tag
    monitor = {"val": toy_splits.test, **{f"new:{k}": held_out[k].split for k in keys}}
    again, _, loaded = train_classifier("elsewhere", knobs["model"], toy_splits, TrainConfig.from_knobs(knobs),
                                        monitor=monitor)
    assert loaded
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), models["none"].state_dict().values()))


def test_the_digits_run_is_the_main_run_on_mnist_5k_with_its_prefixed_knobs():
    cfg = settings.resolve("zhang2018", "default")
    d = settings.variant("zhang2018", cfg, "digits")
    assert d["dataset"] == "mnist-5k" and d["epochs"] == cfg["digits_epochs"] != cfg["epochs"]
    # the unrelated keys are Fashion-MNIST trousers: MNIST "1"s are the task's own images now
    assert (d["unrelated_dataset"], d["unrelated_class"]) == ("fashion-mnist", 1)
    same = ("model", "kinds", "lr", "source", "target", "thief_fraction", "key_fraction")
    assert {k: d[k] for k in same} == {k: cfg[k] for k in same}
    assert not any(k.startswith("digits_") for k in d)
    off = settings.resolve("zhang2018", "default", digits_dataset="off")
    assert settings.variant("zhang2018", off, "digits") is None
    assert settings.variant("zhang2018", settings.resolve("zhang2018", "paper"), "digits") is None  # it runs MNIST
    smoke = settings.variant("zhang2018", settings.resolve("zhang2018", "smoke"), "digits")
    assert smoke["dataset"] == "mnist-5k" and smoke["epochs"] < d["epochs"]
