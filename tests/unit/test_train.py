import copy
import warnings

import pytest
import torch

from tests.conftest import blobs
from wmlib import models, train
from wmlib.data import Split
from wmlib.train import TrainConfig, fit


def test_augment_batch_is_a_shifted_or_flipped_crop():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = train.augment_batch(x, pad=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        found = any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1))
                    for dy in range(5) for dx in range(5) for c in [xp[i, :, dy:dy + 8, dx:dx + 8]])
        assert found


def test_fit_learns_a_learnable_task_and_records_history():
    m = models.build("lenet1", 1, 10)
    cfg = train.TrainConfig(epochs=3, batch_size=64, optimizer="adam", lr=3e-3)
    h = train.fit(m, blobs(600), cfg, monitor={"val": blobs(200, seed=1)}, progress=False)
    assert h.epoch == [1, 2, 3] and len(h.train_acc) == 3 and len(h.seconds) == 3
    assert h.monitors["val"][-1] > 0.9


def test_key_batch_is_mixed_into_every_step():
    data = blobs(256)
    key = Split(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.full((4,), 7))
    m = models.build("lenet1", 1, 10)
    cfg = train.TrainConfig(epochs=4, batch_size=64, optimizer="adam", lr=3e-3)
    train.fit(m, data, cfg, key=key, key_per_batch=8, progress=False)
    assert (train.predict_proba(m, key.x).argmax(1) == 7).all()


def test_extra_loss_and_weight_transform_hooks_run():
    calls = {"loss": 0, "transform": 0}

    def extra(model, x, y, logits):
        calls["loss"] += 1
        return logits.new_zeros(())

    def transform(model):
        calls["transform"] += 1

    train.fit(models.build("lenet1", 1, 10), blobs(128), train.TrainConfig(epochs=1, batch_size=64),
              extra_loss=extra, weight_transform=transform, progress=False)
    assert calls == {"loss": 2, "transform": 1}


def test_cifar_shaped_training_with_augmentation(cifar_splits):
    m = models.build("resnet20", 3, 10)
    h = train.fit(m, cifar_splits.owner, train.TrainConfig(epochs=1, batch_size=64, augment=True,
                  schedule="step", milestones=(1,)), progress=False)
    assert h.lr == [0.01] and 0.0 <= h.train_acc[0] <= 1.0


def test_keep_best_restores_the_best_validation_epoch():
    m = models.build("lenet1", 1, 10)
    cfg = train.TrainConfig(epochs=3, batch_size=64, optimizer="adam", lr=3e-3, keep_best=True)
    val = blobs(200, seed=1)
    h = train.fit(m, blobs(400), cfg, monitor={"val": val}, progress=False)
    assert train.evaluate(m, val) == pytest.approx(max(h.monitors["val"]))


def test_bad_training_config_names_the_choices():
    with pytest.raises(ValueError, match="sgd, adam"):
        train.TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="none, step, cosine"):
        train.TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="keep_best"):
        train.fit(models.build("lenet1", 1, 10), blobs(64), train.TrainConfig(epochs=1, keep_best=True), progress=False)


def _cached(tag="t", epochs=1):
    cfg = train.TrainConfig(epochs=epochs, batch_size=64)
    calls = []

    def run(m):
        calls.append(1)
        return train.fit(m, blobs(128), cfg, progress=False)
    model, hist, loaded = train.train_or_load(tag, {"cfg": epochs}, lambda: models.build("lenet1", 1, 10), run)
    return model, loaded, calls


def test_train_or_load_trains_once_then_loads_the_same_weights():
    m1, loaded1, calls1 = _cached()
    m2, loaded2, calls2 = _cached()
    assert (loaded1, loaded2, len(calls1), len(calls2)) == (False, True, 1, 0)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    _, loaded3, _ = _cached(epochs=2)  # another config is another file
    assert not loaded3


def test_the_same_config_under_another_tag_is_the_same_model_and_parallel_workers_train_it_once():
    """The comparison's Ray workers (and a chapter before them) name models their own way: the
    config decides. Two processes asking for one untrained model: one trains, the other waits and loads."""
    import multiprocessing as mp

    m1, _, calls1 = _cached(tag="chapter-name")
    m2, loaded2, calls2 = _cached(tag="compare-name")
    assert loaded2 and len(calls2) == 0 and len(calls1) == 1
    assert all(torch.equal(a.cpu(), b.cpu()) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert not list(train.cache_dir().glob("compare-name-*.pt"))  # loaded in place, not copied
    with mp.get_context("spawn").Pool(2) as pool:
        loaded = pool.map(_cached_loaded, [3, 3])
    assert sorted(loaded) == [False, True]


def _cached_loaded(epochs):
    return _cached(tag="parallel", epochs=epochs)[1]


def test_what_runs_after_train_or_load_does_not_depend_on_a_warm_cache():
    """Training (a cache miss) and loading (a hit) leave the caller's random state alike: a model
    built next starts from the same weights either way."""
    import random

    import numpy as np
    after = []
    for _ in range(2):  # a miss, then a hit
        torch.manual_seed(7), random.seed(7), np.random.seed(7)
        _, loaded, _ = _cached(tag="rng")
        after.append((loaded, torch.rand(3), random.random(), np.random.rand()))
    (miss, *state_miss), (hit, *state_hit) = after
    assert (miss, hit) == (False, True)
    assert torch.equal(state_miss[0], state_hit[0]) and state_miss[1:] == state_hit[1:]
    torch.manual_seed(7)
    assert torch.equal(state_miss[0], torch.rand(3))  # as if nothing had run at all


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_corrupted_cache_file_is_moved_aside_and_retrained(damage):
    _cached()
    path = next(train.cache_dir().glob("t-*.pt"))
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    else:  # same size, different weights: the digest catches it
        payload = torch.load(path, weights_only=True)
        first = next(iter(payload["state_dict"]))
        payload["state_dict"][first] += 1.0
        torch.save(payload, path)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        _, loaded, calls = _cached()
    assert not loaded and len(calls) == 1
    assert any("unreadable" in str(x.message) for x in w)
    assert len(list(train.cache_dir().glob("t-*.corrupt-*"))) == 1  # kept, not deleted


def test_tensor_digest_changes_with_content_and_dtype():
    a = torch.zeros(3, dtype=torch.uint8)
    assert train.tensor_digest(a) == train.tensor_digest(a.clone())
    assert train.tensor_digest(a) != train.tensor_digest(a.to(torch.int16))
    b = a.clone()
    b[0] = 1
    assert train.tensor_digest(a) != train.tensor_digest(b)


def test_patience_stops_once_validation_stalls():
    m = models.build("lenet1", 1, 10)
    cfg = train.TrainConfig(epochs=30, batch_size=64, optimizer="adam", lr=3e-3, keep_best=True)
    h = train.fit(m, blobs(200), cfg, monitor={"val": blobs(100, seed=1)}, patience=2, progress=False)
    best = max(range(len(h.epoch)), key=lambda i: (h.monitors["val"][i], -i))
    assert len(h.epoch) < 30 and len(h.epoch) - 1 - best == 2  # stopped 2 epochs after the best one
    with pytest.raises(ValueError, match="patience"):
        train.fit(m, blobs(50), train.TrainConfig(epochs=1), patience=2, progress=False)


def test_a_cached_fit_stands_in_for_an_uncached_one_weights_history_and_random_state(tmp_path, monkeypatch):
    """fit_cached trains in place or loads, and leaves the random state as fit leaves it: what runs
    next (here a dropout net's next draw) does not depend on whether the cache was warm."""
    import random
    monkeypatch.setenv("WMLIB_CACHE", str(tmp_path))
    split = Split(torch.randint(0, 256, (120, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (120,)))
    torch.manual_seed(3)
    stolen = models.build("cw", 1, 10)  # dropout: fit draws from the global generator
    cfg = TrainConfig(epochs=1, batch_size=40, lr=0.01, seed=5)
    runs = []
    for how in ("fit", "cold", "warm"):
        m = copy.deepcopy(stolen)
        torch.manual_seed(99)
        hist = fit(m, split, cfg, device=torch.device("cpu"), progress=False) if how == "fit" else \
            train.fit_cached(m, split, cfg, device=torch.device("cpu"))
        runs.append((m.state_dict(), hist.loss, torch.rand(3), random.random()))
    ref = runs[0]
    for state, loss, after, py in runs[1:]:
        assert all(torch.equal(state[k], ref[0][k]) for k in state) and loss == ref[1]
        assert torch.equal(after, ref[2]) and py == ref[3]
    assert len(list(tmp_path.glob("fit-*.pt"))) == 1
    with pytest.raises(ValueError, match="describe the hook"):
        train.fit_cached(copy.deepcopy(stolen), split, cfg, batch_hook=lambda m, x, y: (x, y))


def test_bf16_precision_trains_in_bfloat16_where_the_cpu_has_it_and_keys_its_cache_apart(monkeypatch):
    if not train.native_bf16():
        pytest.skip("this CPU has no native bfloat16 matmul (the refusal is tested below)")
    data = blobs(600)
    weights = {}
    for precision in train.PRECISIONS:
        m = models.build("lenet1", 1, 10)
        torch.manual_seed(0)
        dtypes = set()  # what the first convolution computes in, in training steps (evaluation stays float32)
        conv = next(mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d))
        conv.register_forward_hook(lambda mod, inp, out: dtypes.add(out.dtype) if mod.training else None)
        cfg = train.TrainConfig(epochs=2, batch_size=64, optimizer="adam", lr=3e-3, precision=precision)
        h = train.fit(m, data, cfg, monitor={"val": blobs(200, seed=1)}, progress=False)
        assert h.monitors["val"][-1] > 0.9  # bf16 still learns the task
        assert dtypes == {torch.bfloat16 if precision == "bf16" else torch.float32}
        assert train.predict_proba(m, data.x[:8]).dtype == torch.float32
        weights[precision] = [p.detach().clone() for p in m.parameters()]
    # bf16 arithmetic moved the weights (a loop that ignored the knob would give fp32's bit for bit)
    assert any(not torch.equal(a, b) for a, b in zip(weights["fp32"], weights["bf16"]))
    fp32, bf16 = train.TrainConfig(), train.TrainConfig(precision="bf16")
    assert "precision" not in fp32.cache_fields() and bf16.cache_fields()["precision"] == "bf16"  # fp32 keys unchanged
    assert train.config_hash({"t": fp32.cache_fields()}) != train.config_hash({"t": bf16.cache_fields()})


def test_bf16_is_refused_when_the_knob_is_read_on_a_cpu_without_native_bf16(monkeypatch):
    from wmlib import settings

    monkeypatch.setattr(train, "native_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="'precision' must be fp32 on this machine: .*no native bfloat16"):
        settings.resolve("zhang2018", "smoke", precision="bf16")
    with pytest.raises(ValueError, match="precision must be fp32 on this machine"):
        train.fit(models.build("lenet1", 1, 10), blobs(64), train.TrainConfig(epochs=1, precision="bf16"), progress=False)
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        train.TrainConfig(precision="fp16")
    assert settings.resolve("zhang2018", "smoke")["precision"] == "fp32"
