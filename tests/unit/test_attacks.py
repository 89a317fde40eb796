import pandas as pd
import pytest
import torch

from tests.conftest import blobs
from wmlib import attacks, keys, train, verify
from wmlib.keys import Key


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("amount", [0.3, 0.9])
def test_prune_magnitude_reaches_the_requested_sparsity(trained, scope, amount):
    before = [p.clone() for p in trained.parameters()]
    pruned = attacks.prune_magnitude(trained, amount, scope)
    assert attacks.sparsity(pruned) == pytest.approx(amount, abs=0.01)
    assert all(torch.equal(a, b) for a, b in zip(before, trained.parameters()))  # the original is untouched
    assert not any(hasattr(m, "weight_mask") for m in pruned.modules())  # permanent


def test_global_pruning_removes_the_smallest_weights(trained):
    pruned = attacks.prune_magnitude(trained, 0.5)
    kept = torch.cat([m.weight.abs().flatten() for m, _ in attacks.model._weights(pruned)])
    orig = torch.cat([m.weight.abs().flatten() for m, _ in attacks.model._weights(trained)])
    assert kept[kept > 0].min() >= orig.kthvalue(int(0.5 * len(orig))).values - 1e-7


def test_feature_pruning_ranks_every_weight_but_the_classifiers_together_as_wen_et_als_code(trained):
    layers = attacks.model._weights(trained)
    pruned = attacks.prune_magnitude(trained, 0.5, "features")
    after = attacks.model._weights(pruned)
    assert torch.equal(after[-1][0].weight, layers[-1][0].weight)  # the classifier is whole
    kept = torch.cat([m.weight.flatten() for m, _ in after[:-1]])
    orig = torch.cat([m.weight.abs().flatten() for m, _ in layers[:-1]])
    assert float((kept == 0).float().mean()) == pytest.approx(0.5, abs=1e-3)  # half of the rest, ranked together
    assert kept[kept != 0].abs().min() >= orig.kthvalue(int(0.5 * len(orig))).values - 1e-7
    shares = [float((m.weight == 0).float().mean()) for m, _ in after[:-1]]
    assert max(shares) - min(shares) > 0.05  # global, not layer by layer


def test_bad_prune_arguments(trained):
    with pytest.raises(ValueError, match="global, layer, features"):
        attacks.prune_magnitude(trained, 0.5, "channel")
    with pytest.raises(ValueError, match="amount"):
        attacks.prune_magnitude(trained, 1.0)


def test_prune_finetune_keeps_pruned_weights_at_zero_and_recovers(trained):
    test = blobs(300, seed=2)
    tuned = attacks.prune_finetune(trained, 0.8, blobs(300, seed=1), train.TrainConfig(epochs=2, optimizer="adam", lr=1e-3))
    assert attacks.sparsity(tuned) >= 0.79
    assert train.evaluate(tuned, test) > 0.8


def test_sweep_and_worst_within_budget(trained):
    key = Key(blobs(20, seed=5).x, torch.full((20,), 3))
    cfg = train.TrainConfig(epochs=1, optimizer="adam", lr=1e-3)
    df = attacks.prune_finetune_sweep(trained, blobs(200, seed=1), blobs(200, seed=2), {"key": key}, cfg,
                                      rates=[0.0, 0.5], progress=False)
    assert list(df["rate"]) == [0.0, 0.5] and {"test_acc", "key", "key_pruned", "sparsity"} <= set(df)
    fake = pd.DataFrame({"rate": [0, 0.5, 0.9], "test_acc": [0.9, 0.85, 0.5], "key": [1.0, 0.6, 0.0]})
    assert attacks.worst_within_budget(fake, "key", 0.9, 0.10)["rate"] == 0.5
    with pytest.raises(ValueError, match="budget"):
        attacks.worst_within_budget(fake, "key", 1.0, 0.01)


def test_finetune_returns_a_copy_with_monitored_history(trained):
    key = Key(blobs(20, seed=5).x, torch.full((20,), 3))
    tuned, hist = attacks.finetune(trained, blobs(200, seed=1), train.TrainConfig(epochs=2), monitor={"key": key.split})
    assert tuned is not trained and len(hist["monitors"]["key"]) == 2


def test_quantize_weights_uses_at_most_2_to_the_bits_levels(trained):
    q = attacks.quantize_weights(trained, 4)
    for (m, _), (o, _) in zip(attacks.model._weights(q), attacks.model._weights(trained)):
        assert len(m.weight.unique()) <= 15
        step = o.weight.abs().max() / 7
        assert (m.weight - o.weight).abs().max() <= step / 2 + 1e-6
    q8 = attacks.quantize_weights(trained, 8)
    test = blobs(300, seed=2)
    assert abs(train.evaluate(q8, test) - train.evaluate(trained, test)) < 0.02
    with pytest.raises(ValueError, match="bits"):
        attacks.quantize_weights(trained, 16)


def test_noisy_oracle_perturbs_queries_and_counts_them(trained):
    x = blobs(50, seed=3).x
    clean, noisy = verify.Oracle(trained), attacks.NoisyOracle(verify.Oracle(trained), std=0.5, seed=0)
    p_clean, p_noisy = clean(x), noisy(x)
    assert noisy.queries == 50 and noisy.inner.queries == 50
    assert not torch.allclose(p_clean, p_noisy)
    assert torch.allclose(attacks.NoisyOracle(verify.Oracle(trained), std=0.0)(x), p_clean, atol=1e-5)


def test_sweeps_take_a_key_or_any_model_score(trained):
    key = Key(blobs(20, seed=5).x, torch.full((20,), 3))
    calls = []

    def score(m):
        calls.append(m)
        return 0.25

    assert attacks.measure(trained, key) == verify.key_accuracy(verify.Oracle(trained), key)
    df = attacks.prune_sweep(trained, blobs(100, seed=2), {"key": key, "score": score}, [0.0, 0.5])
    assert list(df["score"]) == [0.25, 0.25] and len(calls) == 2 and calls[0] is not trained


def test_prune_finetune_stops_early_with_patience(trained):
    cfg = train.TrainConfig(epochs=8, optimizer="adam", lr=1e-2)
    m = attacks.prune_finetune(trained, 0.5, blobs(200, seed=1), cfg, patience=1)
    assert attacks.sparsity(m) == pytest.approx(0.5, abs=0.01)  # the mask survives early stopping


def test_fgsm_raises_the_loss_and_stays_in_range(trained):
    split = blobs(64, seed=4)
    x, y = train.to_float(split.x), split.y
    adv = keys.fgsm(trained, x, y, 0.1)
    loss = lambda z: torch.nn.functional.cross_entropy(trained(z), y).item()  # noqa: E731
    assert 0.0 <= float(adv.min()) and float(adv.max()) <= 1.0
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and loss(adv) > loss(x)
    assert not trained.training


def test_adversarial_finetune_mixes_fgsm_examples_into_every_batch(trained, monkeypatch):
    seen = []
    real = keys.fgsm
    monkeypatch.setattr(attacks.model, "fgsm", lambda m, x, y, eps: seen.append(len(x)) or real(m, x, y, eps))
    cfg = train.TrainConfig(epochs=1, batch_size=50, optimizer="adam", lr=1e-3)
    tuned, hist = attacks.adversarial_finetune(trained, blobs(200, seed=1), cfg, eps=0.1, mix=0.5)
    assert tuned is not trained and seen == [25, 25, 25, 25] and len(hist["epoch"]) == 1
    assert any((a != b).any() for a, b in zip(tuned.parameters(), trained.parameters()))
    for kw, match in ((dict(eps=0.0), "eps"), (dict(eps=0.1, mix=1.5), "mix")):
        with pytest.raises(ValueError, match=match):
            attacks.adversarial_finetune(trained, blobs(20), cfg, **kw)


def test_noisy_oracle_clips_only_when_asked(trained):
    seen = []
    inner = verify.Oracle(trained)
    spy = lambda x: seen.append(x) or inner(x)  # noqa: E731
    x = blobs(10, seed=3).x
    attacks.NoisyOracle(spy, std=2.0, seed=0)(x)
    attacks.NoisyOracle(spy, std=2.0, seed=0, clamp=False)(x)
    assert 0.0 <= float(seen[0].min()) and float(seen[0].max()) <= 1.0
    assert float(seen[1].min()) < 0.0 and float(seen[1].max()) > 1.0
    with pytest.raises(ValueError, match="std"):
        attacks.NoisyOracle(inner, std=-1.0)
