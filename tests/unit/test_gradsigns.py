import copy
from dataclasses import replace

import pandas as pd
import pytest
import torch
from torch import nn

from tests.conftest import blobs, stock_pools
from wmlib import attacks, models, train
from wmlib.data import REGISTRY, Splits
from wmlib.keys import Key
from wmlib.schemes import GradSigns
from wmlib.schemes import gradsigns
from wmlib.schemes.gradsigns import float32_queries, input_gradient, secret
from wmlib.verify import Null, Oracle, Verdict, model_digest
from wmlib.zoo import Zoo

# the toy task saturates fast: the sum over bits (λ = 0.3 x 16 on the mean's scale) embeds before
# the class-T outputs turn one-hot and their input gradients vanish
SCHEME = GradSigns(bits=16, carriers=64, samples=20, target=3, lam=0.3, reduction="sum")
CFG = train.TrainConfig(epochs=10, batch_size=64, optimizer="adam", lr=3e-3)


@pytest.fixture(scope="module")
def toy() -> Splits:
    return Splits(blobs(600), blobs(200, seed=1), blobs(300, seed=2), REGISTRY["fashion-mnist"])


@pytest.fixture(scope="module")
def keys(toy):
    return SCHEME.make_key(toy, seed=0)


def _embed(scheme: GradSigns, toy: Splits, key: Key, seed: int = 0, epochs: int = CFG.epochs) -> nn.Module:
    torch.manual_seed(seed)
    m = models.build("lenet1", 1, 10)
    scheme.train(m, toy, key, replace(CFG, seed=seed, epochs=epochs), progress=False, device=torch.device("cpu"))
    return m


@pytest.fixture(scope="module")
def marked(toy, keys):
    return _embed(SCHEME, toy, keys[0])


@pytest.fixture(scope="module")
def clean(toy, keys):
    """The same training without the regulariser (λ = 0)."""
    return _embed(replace(SCHEME, lam=0.0), toy, keys[0])


def test_the_trial_is_a_signature_bit():
    assert GradSigns.trials == "bits" and GradSigns().chance(10) == 0.5 and GradSigns(bits=16, carriers=64).trial_count(None, 100) == 16


@pytest.mark.parametrize("kw, match", [
    (dict(bits=0), "bits must be a positive integer"),
    (dict(bits=65, carriers=64), r"bits must be in 1\.\.carriers \(64\)"),
    (dict(carriers=0), "carriers must be a positive integer"),
    (dict(samples=0), "samples must be a positive integer"),
    (dict(target=-1), r"target must be a class index in \[0, classes\)"),
    (dict(lam=-0.1), "lam"),
    (dict(reduction="max"), "mean, sum"),
    (dict(key_per_batch=-1), "key_per_batch"),
    (dict(h=0.0), "h must be > 0"),
    (dict(clip=0.5), r"clip must be in \(0, 0.5\)"),
    (dict(query_batch=0), "query_batch"),
])
def test_bad_knobs(kw, match):
    with pytest.raises(ValueError, match=match):
        GradSigns(**kw)


def test_bad_knobs_that_need_the_task(toy):
    with pytest.raises(ValueError, match=r"target must be in \[0, 10\)"):
        GradSigns(bits=16, carriers=64, target=10).make_key(toy)
    with pytest.raises(ValueError, match=r"carriers must be in 1\.\.784"):
        GradSigns(bits=16, carriers=785).make_key(toy)
    n_test = int((toy.test.y == 3).sum())
    with pytest.raises(ValueError, match=rf"samples must be in 1\.\.{n_test}"):
        replace(SCHEME, samples=n_test + 1).make_key(toy)
    with pytest.raises(ValueError, match="h must be > 0"):
        SCHEME.gradient(Oracle(nn.Linear(1, 1)), SCHEME.make_key(toy)[0], h=-1e-4)
    with pytest.raises(ValueError, match="not a GradSigns key"):
        secret(Key(toy.test.x[:2], torch.zeros(2, dtype=torch.int64)))


def test_table6():
    s = GradSigns.table6("cifar10", 64, lam=0.1)
    assert (s.bits, s.carriers, s.samples, s.lam) == (64, 384, 50, 0.1)
    assert GradSigns.table6("svhn", 16).carriers == 256
    with pytest.raises(ValueError, match="cifar10, svhn, ytf"):
        GradSigns.table6("mnist", 16)
    with pytest.raises(ValueError, match="16, 32, 64"):
        GradSigns.table6("cifar10", 8)


def test_key_holds_the_secret_and_class_t_images(toy, keys):
    key, new = keys
    b, c, k, t = secret(key)
    assert b.dtype == torch.bool and b.shape == (16,) and 0 < int(b.sum()) < 16
    assert c.shape == (64,) and len(c.unique()) == 64 and 0 <= int(c.min()) and int(c.max()) < 784
    assert k.shape == (16, 64) and float(k.min()) >= -1 and float(k.max()) < 1 and float(k.std()) > 0.4
    assert t == 3 and len(key) == 20 and (key.y == 3).all() and key.x.dtype == torch.uint8
    owner_t = {bytes(im.numpy()) for im in toy.owner.where(3).x}
    test_t = {bytes(im.numpy()) for im in toy.test.where(3).x}
    assert all(bytes(im.numpy()) in owner_t for im in key.x)
    assert all(bytes(im.numpy()) in test_t for im in new.x)
    assert all(torch.equal(key.extras[n], new.extras[n]) for n in ("bits", "carriers", "matrix"))
    assert key.meta["part"] == "trained" and new.meta["part"] == "new" and key.meta["lam"] == 0.3
    again, _ = SCHEME.make_key(toy, seed=0)
    other, _ = SCHEME.make_key(toy, seed=1)
    assert again.digest() == key.digest() and other.digest() != key.digest()


def test_key_round_trip_keeps_the_secret(tmp_path, keys, marked):
    key = keys[0]
    key.save(tmp_path / "gradsigns.pt")
    loaded = Key.load(tmp_path / "gradsigns.pt")
    assert loaded.digest() == key.digest() and loaded.meta == key.meta
    assert set(loaded.extras) == {"bits", "carriers", "matrix"}
    assert torch.equal(SCHEME.extract_whitebox(marked, loaded), SCHEME.extract_whitebox(marked, key))


@pytest.mark.parametrize("n, matching, p", [(16, 14, 2.09e-3), (32, 25, 1.05e-3), (64, 44, 1.84e-3)])
def test_paper_thresholds(n, matching, p):
    """§4.2: P(<= η errors | p = 1/2) < 3e-3 needs 14/16, 25/32 and 44/64 matching bits."""
    null = Null.binomial(0.5)
    assert null.critical(n, 3e-3) == matching
    assert null.p_value(matching, n) == pytest.approx(p, rel=0.01)


def test_embedding_writes_the_signature(toy, keys, marked, clean):
    key, new = keys
    assert int(SCHEME.hits_whitebox(marked, key).sum()) == 16
    assert int(SCHEME.hits_whitebox(marked, new).sum()) >= 14  # class-T test images: still claimed
    assert train.evaluate(marked, toy.test) > 0.8
    assert 3 <= int(SCHEME.hits_whitebox(clean, key).sum()) <= 13  # about half: a coin per bit
    assert train.evaluate(clean, toy.test) > 0.95


def test_blackbox_agrees_with_whitebox_and_counts_queries(keys, marked):
    key = keys[0]
    oracle = Oracle(marked)
    g_white, g_black = SCHEME.gradient_whitebox(marked, key), SCHEME.gradient(oracle, key)
    assert oracle.queries == 20 * (64 + 1)
    assert g_black.dtype == torch.float64 and float((g_black - g_white).norm() / g_white.norm()) < 0.05
    assert torch.equal(SCHEME.extract(Oracle(marked), key), SCHEME.extract_whitebox(marked, key))


def test_low_precision_scores_break_the_estimate(keys, marked):
    """bf16 keeps ~3 digits: at h = 1e-4 the loss differences drown (why extraction runs in float32)."""
    key = keys[0]
    g_white = SCHEME.gradient_whitebox(marked, key)
    err32 = float((SCHEME.gradient(Oracle(marked), key) - g_white).norm())
    bf16 = attacks.LowPrecisionOracle(Oracle(marked), torch.bfloat16)
    err16 = float((SCHEME.gradient(bf16, key) - g_white).norm())
    assert err16 > 20 * err32
    assert not torch.equal(SCHEME.extract(bf16, key), SCHEME.extract_whitebox(marked, key))


def test_rounding_to_one_decimal_hides_the_gradient(keys, marked):
    key = keys[0]
    verdict = SCHEME.verify(attacks.RoundedOracle(Oracle(marked), 1), key)
    assert not verdict.claimed and verdict.hits < 14
    assert SCHEME.verify(attacks.RoundedOracle(Oracle(marked), 4), key).claimed


def test_a_bit_without_signal_is_a_mismatch(keys):
    key = keys[0]
    assert not SCHEME.matches(key, torch.zeros(64)).any()  # not the zeros of b
    assert not SCHEME.decode(key, torch.zeros(64)).any()


def test_verify_claims_the_marked_model_and_records_the_null(keys, marked, clean):
    key = keys[0]
    verdict = SCHEME.verify(Oracle(marked), key)
    assert isinstance(verdict, Verdict) and verdict.claimed and verdict.hits == 16 and verdict.n == 16
    assert verdict.queries == 20 * 65 and verdict.alpha == 3e-3 and verdict.threshold == 14 / 16
    assert verdict.null["mean"] == 0.5 and verdict.null["models"] == 0
    assert not SCHEME.verify(Oracle(clean), key).claimed


def test_zoo_null_through_hits(toy, keys, marked, clean):
    key = keys[0]
    other = _embed(replace(SCHEME, lam=0.0), toy, key, seed=1, epochs=3)
    zoo = Zoo("fashion-mnist", "smoke", {"clean": clean, "other": other}, pd.DataFrame(),
              {"clean": model_digest(clean), "other": model_digest(other)})
    null = zoo.null(key, SCHEME)
    rates = tuple(float(SCHEME.hits(Oracle(m), key).float().mean()) for m in (clean, other))
    assert null.models == 2 and null.floor == 0.5 and null.members == ("clean", "other") and null.rates == rates
    verdict = SCHEME.verify(Oracle(marked), key, null=null)
    assert verdict.null["models"] == 2 and verdict.null["members"] == ["clean", "other"]
    with pytest.raises(ValueError, match="clean models its null"):
        SCHEME.verify(Oracle(clean), key, null=null)


def test_regularizer_scale_and_side_effects(keys):
    key = keys[0]
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    x, y = train.to_float(key.x[:6]), key.y[:6].clone()
    y[3:] = 0  # three class-T images, three others
    m.train()
    stats = m[1].running_mean.clone()
    logits = torch.zeros(6, 10)
    mean = GradSigns(bits=16, carriers=64, target=3, lam=0.5).regularizer(key)(m, x, y, logits)
    total = GradSigns(bits=16, carriers=64, target=3, lam=0.5, reduction="sum").regularizer(key)(m, x, y, logits)
    assert total.item() == pytest.approx(16 * mean.item(), rel=1e-5)
    b, c, k, _ = secret(key)
    m.eval()
    g = input_gradient(m, x[:3], 3)[:, c].mean(0)  # Eq. 4 by hand: G the mean over the class-T images
    m.train()
    by_hand = 0.5 * nn.functional.binary_cross_entropy_with_logits(k @ g, b.float())
    assert mean.item() == pytest.approx(by_hand.item(), rel=1e-4)
    assert m.training and torch.equal(m[1].running_mean, stats)  # eval-mode pass: BN statistics untouched
    mean.backward()
    assert float(m[0].weight.grad.abs().sum()) > 0  # double backprop reaches the weights
    assert float(SCHEME.regularizer(key)(m, x[3:], y[3:], torch.zeros(3, 10))) == 0.0  # no class-T image
    assert float(replace(SCHEME, lam=0.0).regularizer(key)(m, x, y, torch.zeros(6, 10))) == 0.0


def test_float32_queries_switch_off_tf32_and_autocast():
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        assert not train._FLOAT32["on"]  # bf16 for label queries on a GPU
        with float32_queries():
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
            assert train._FLOAT32["on"] and train._autocast(torch.device("cpu"))._enabled is False
        assert not train._FLOAT32["on"]
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def test_cifar_shaped_resnet20_path():
    """3 x 32 x 32 with |C| = 256 (Table 6, N = 32) on ResNet-20: key, one epoch of embedding, both
    extractions, on tiny tensors."""
    splits = Splits(blobs(48, 3, 32), blobs(8, 3, 32, seed=1), blobs(40, 3, 32, seed=2), REGISTRY["cifar10"])
    s = GradSigns(bits=32, carriers=256, samples=2, target=0, key_per_batch=4)
    key, new = s.make_key(splits, seed=0)
    assert key.x.shape == (2, 3, 32, 32) and int(secret(key)[1].max()) < 3 * 32 * 32
    torch.manual_seed(0)
    m = models.build("resnet20", 3, 10)
    hist = s.train(m, splits, key, train.TrainConfig(epochs=1, batch_size=24, optimizer="adam", lr=1e-3),
                   progress=False, device=torch.device("cpu"))
    assert len(hist.loss) == 1 and torch.isfinite(torch.tensor(hist.loss)).all()
    oracle = Oracle(m)
    verdict = s.verify(oracle, key)
    assert verdict.n == 32 and verdict.queries == oracle.queries == 2 * 257
    assert s.hits_whitebox(m, key).shape == (32,) and s.extract(Oracle(m), new).dtype == torch.bool


def test_probabilities_are_clipped_before_the_log(keys):
    """A label the API scores 0 would give -log 0 = inf and inf - inf = NaN; [code] clips at 1e-7."""
    class Zero(Oracle):
        def __init__(self):
            self.queries = 0

        def __call__(self, x):
            self.queries += len(x)
            p = torch.full((len(x), 10), 1 / 9)
            p[:, 3] = 0.0
            return p

    g = SCHEME.gradient(Zero(), keys[0])
    assert torch.isfinite(g).all() and not g.any()


def test_from_knobs_takes_table6_carriers_when_none():
    from wmlib import settings
    knobs = settings.resolve("gradsigns", "default")
    assert knobs["carriers"] is None
    assert [GradSigns.from_knobs(knobs, bits=n).carriers for n in (16, 32, 64)] == [128, 256, 384]
    assert GradSigns.from_knobs(knobs, bits=8, carriers=20).carriers == 20
    assert GradSigns.from_knobs(knobs, lam=None).lam == GradSigns.lam  # None keeps the default
    with pytest.raises(ValueError, match="N = 8 needs an explicit carriers"):
        GradSigns.from_knobs(knobs, bits=8)


@pytest.mark.parametrize("kw, match", [
    (dict(bits=128), r"N = 128 needs -p carriers"),
    (dict(bits=64, carriers=40), r"N = 64 bits need \|C\| in \[64, 784\]"),
    (dict(compare=["afs"]), "namba-afs, namba-ds, zhang-content"),  # catalogue names only
    (dict(lam_sweep=[0.0]), r"\(0.0, ∞\]"),
    (dict(decimals=[9]), r"\[0, 7\]"),
    (dict(forge_target=10), r"\[0, 9\]"),
    (dict(thief_per_class=[]), "non-empty list"),
])
def test_chapter_knobs_are_checked_when_read(kw, match):
    from wmlib import settings
    with pytest.raises(ValueError, match=match):
        settings.resolve("gradsigns", "smoke", **kw)


def test_carrier_image_marks_exactly_the_carriers(keys):
    img = gradsigns.carrier_image(keys[0])
    assert img.shape == (1, 1, 28, 28) and img.dtype == torch.uint8
    assert torch.equal(img.flatten().nonzero().flatten().sort().values, secret(keys[0])[1].sort().values)


def test_bit_accuracy_is_the_white_box_share(keys, marked, clean):
    assert SCHEME.bit_accuracy(marked, keys[0]) == 1.0
    assert SCHEME.bit_accuracy(clean, keys[0]) == pytest.approx(float(SCHEME.hits_whitebox(clean, keys[0]).double().mean()))


def test_forging_embeds_the_thiefs_own_secret(toy, keys):
    # a briefly trained model: the toy task's fully trained ones answer one-hot, and a saturated
    # softmax has no input gradient left to sign (the forging chapter runs on a real task)
    stolen = _embed(SCHEME, toy, keys[0], epochs=2)
    thief = blobs(300, seed=7)
    forger = replace(SCHEME, target=5, samples=500)  # asks for more class-5 images than the thief holds
    before = [p.clone() for p in stolen.parameters()]
    forged, fkey, hist = forger.forge(stolen, thief, toy.spec, replace(CFG, epochs=10), seed=9)
    b, c, _, t = secret(fkey)
    assert t == 5 and len(fkey) == int((thief.y == 5).sum()) and not torch.equal(c, secret(keys[0])[1])
    assert forged is not stolen and len(hist.epoch) == 10
    assert all(torch.equal(a, b) for a, b in zip(before, stolen.parameters()))  # the stolen model is left alone
    # the forger's bits took hold: claimed by the paper's rule (14 of 16), which the stolen model is not
    assert forger.bit_accuracy(forged, fkey) >= 14 / 16 > forger.bit_accuracy(stolen, fkey)


def test_embedding_with_the_fast_pools_gives_pytorchs_weights_bit_for_bit(toy, keys):
    """The regulariser is differentiated twice: where a gradient flows, models.MaxPool2d is PyTorch's
    kernel, so the embedded weights are those of nn.MaxPool2d, not merely within float rounding of them."""
    torch.manual_seed(0)
    ours = models.build("lenet5", 1, 10)
    theirs = stock_pools(copy.deepcopy(ours))
    for m in (ours, theirs):
        SCHEME.train(m, toy, keys[0], replace(CFG, epochs=2), progress=False, device=torch.device("cpu"))
    a, b = ours.state_dict(), theirs.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_zoo_reads_a_key_once_for_every_lambda(keys):
    """λ, the reduction and key_per_batch shape embedding only: readers that differ in them read the same
    bits (the zoo caches its reads under hits_id), readers that differ in h or |C| do not."""
    same = replace(SCHEME, lam=3.0, reduction="mean", key_per_batch=20)
    assert same.hits_id() == SCHEME.hits_id()
    assert replace(SCHEME, h=1e-2).hits_id() != SCHEME.hits_id()
    assert replace(SCHEME, carriers=128).hits_id() != SCHEME.hits_id()
    toy_zoo = Zoo("fashion-mnist", "smoke", {"m": models.build("lenet1", 1, 10)}, pd.DataFrame())
    first = toy_zoo.hits(keys[0], SCHEME)
    assert toy_zoo.hits(keys[0], same) is first and len(toy_zoo._hits) == 1
