"""Key commitment and verifiable key generation (wmlib.commitment): the two checks that refuse a
dishonest accuser's key (Liu et al., USENIX Security 2024) before the one verifier counts hits."""
import pytest
import torch

from tests.conftest import blobs
from wmlib import commitment as cm
from wmlib import models, verify
from wmlib.data import REGISTRY, Splits
from wmlib.keys import Key, fgsm
from wmlib.schemes import Li2019, Zhang2018
from wmlib.schemes.li2019 import LiEncoder
from wmlib.train import to_float


def _key(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Key(torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8),
               torch.randint(0, 10, (n,), generator=g))


def _one_pixel(key: Key) -> Key:
    x = key.x.clone()
    x[0, 0, 0, 0] ^= 1
    return Key(x, key.y.clone(), dict(key.meta), dict(key.extras))


@pytest.fixture
def splits() -> Splits:
    # large enough for every book entry's smoke settings (GradSigns: 50 class-0 images; function-coupled: 90 triggers)
    return Splits(blobs(1000), blobs(10, seed=1), blobs(1200, seed=2), REGISTRY["fashion-mnist"])


def test_a_committed_key_passes_the_check():
    ledger, key = cm.Ledger(), _key()
    made = ledger.commit(key, "alice", time=10.0, seed=3)
    assert ledger.check(key, "alice", released=11.0) == made == ledger.lookup(key.digest())
    assert (made.owner, made.time, made.seed, len(ledger)) == ("alice", 10.0, 3, 1)


def test_an_altered_key_is_refused_and_the_error_names_its_digest():
    ledger, key = cm.Ledger(), _key()
    ledger.commit(key, "alice", time=10.0)
    altered = _one_pixel(key)
    with pytest.raises(cm.UncommittedKeyError, match=cm.short(altered.digest())) as err:
        ledger.check(altered, "alice", released=11.0)
    assert "never committed" in str(err.value) and "'alice'" in str(err.value)


def test_a_missing_commitment_or_another_owners_key_is_refused():
    ledger, key = cm.Ledger(), _key()
    with pytest.raises(cm.UncommittedKeyError, match="never committed"):
        ledger.check(key, "mallory")
    ledger.commit(key, "alice", time=1.0)
    with pytest.raises(cm.UncommittedKeyError, match="committed by 'alice', not by the claimant"):
        ledger.check(key, "mallory")


def test_a_commitment_at_or_after_the_suspects_release_is_refused():
    ledger, key = cm.Ledger(), _key()
    ledger.commit(key, "mallory", time=20.0)
    for released in (20.0, 15.0):
        with pytest.raises(cm.LateCommitmentError, match=rf"committed at 20.*release at {released:g}"):
            ledger.check(key, "mallory", released=released)
    assert ledger.check(key, "mallory", released=20.5).time == 20.0


def test_committing_twice_or_backdating_raises():
    ledger, key = cm.Ledger(), _key()
    ledger.commit(key, "alice", time=5.0)
    for owner in ("alice", "bob"):
        with pytest.raises(cm.DuplicateCommitmentError, match="append-only"):
            ledger.commit(key, owner, time=6.0)
    with pytest.raises(ValueError, match="backwards"):
        ledger.commit(_key(seed=1), "bob", time=4.0)
    assert len(ledger) == 1 and ledger.lookup(key.digest()).owner == "alice"


def test_verify_committed_gives_the_verdict_of_verify_trials():
    torch.manual_seed(0)
    model = models.build("lenet1", 1, 10).eval()
    key, null = _key(60), verify.Null(0.2, 0.1, models=5, floor=0.1)
    ledger = cm.Ledger()
    ledger.commit(key, "alice", time=0.0)
    for n_queries in (None, 25):  # the whole committed key, and queries drawn from it
        ours = cm.verify_committed(verify.Oracle(model), key, verify.LABELS, null, ledger, "alice", released=1.0,
                                   n_queries=n_queries, seed=4)
        plain = verify.verify_trials(verify.Oracle(model), key, verify.LABELS, null, n_queries=n_queries, seed=4)
        assert ours == plain and ours.n == (n_queries or 60)
    # a sample of the committed key is not the committed key: the verifier draws the sample itself
    with pytest.raises(cm.UncommittedKeyError, match="sample"):
        cm.verify_committed(verify.Oracle(model), key.sample(25, seed=4), verify.LABELS, null, ledger, "alice")


def test_rederive_accepts_the_owners_zhang_key_and_refuses_a_perturbed_or_adversarial_one(splits):
    scheme = Zhang2018(kind="content", source=1, target=0)
    key, _ = scheme.make_key(splits, seed=7)
    assert cm.rederive(scheme, splits, seed=7).digest() == key.digest()
    cm.check_generated(scheme, key, splits, seed=7, generator=cm.key_generator(scheme, splits))
    torch.manual_seed(0)
    adv = (fgsm(models.build("lenet1", 1, 10), to_float(key.x), key.y, 8 / 255) * 255).round().to(torch.uint8)
    for forged in (_one_pixel(key), Key(adv, key.y.clone())):
        with pytest.raises(cm.KeyNotGeneratedError, match=cm.short(forged.digest())):
            cm.check_generated(scheme, forged, splits, seed=7)
    with pytest.raises(cm.KeyNotGeneratedError, match="seed 8"):
        cm.check_generated(scheme, key, splits, seed=8)


def test_check_generated_refuses_other_data_than_committed(splits):
    scheme = Zhang2018(kind="content", source=1, target=0)
    committed = cm.key_generator(scheme, splits)
    other = Splits(blobs(1000, seed=5), splits.thief, splits.test, splits.spec)
    key, _ = scheme.make_key(other, seed=7)
    with pytest.raises(cm.KeyNotGeneratedError, match="owner"):
        cm.check_generated(scheme, key, other, seed=7, generator=committed)


def test_the_verifiability_table_holds_for_every_book_entry(splits):
    from wmlib.compare import ENTRIES
    from wmlib.profiles import COMPARISON

    table = cm.verifiability(ENTRIES).set_index("entry")
    assert set(table.index) == set(ENTRIES) and table["reason"].str.len().gt(20).all()
    assert not table.loc[["namba-afs", "li2019"], "verifiable from seed + data"].any()
    settings = COMPARISON["smoke"]["schemes"]
    for name in table.index[table["verifiable from seed + data"]]:
        scheme = ENTRIES[name]({**settings[name], **({"target": 1} if settings[name].get("target", 0) is None else {})})
        first = cm.rederive(scheme, splits, seed=3)  # no clean model: seed and data (zhang-unrelated: MNIST-5k) alone
        cm.check_generated(scheme, first, splits, seed=3)
        assert (first.meta["part"] != "trained") == scheme.verifies_held_out, name  # function-coupled: held-out triggers
        assert cm.rederive(scheme, splits, seed=4).digest() != first.digest(), name


def test_afs_keys_need_the_owners_model_and_li_keys_its_encoder(splits):
    from wmlib.schemes import FineTuneKeys

    afs = FineTuneKeys(kind="afs", n_keys=10)
    with pytest.raises(ValueError, match="pass clean="):
        cm.rederive(afs, splits, seed=0)
    torch.manual_seed(0)
    a, b = models.build("lenet1", 1, 10).eval(), models.build("lenet1", 1, 10).eval()
    key = cm.rederive(afs, splits, seed=0, clean=a)
    cm.check_generated(afs, key, splits, seed=0, clean=a)
    with pytest.raises(cm.KeyNotGeneratedError, match="clean model"):  # another model: another key
        cm.check_generated(afs, key, splits, seed=0, clean=b)
    li = Li2019()
    torch.manual_seed(0)
    encoded = li.watermark(cm.rederive(li, splits, seed=0), LiEncoder(1, 28).eval())
    with pytest.raises(cm.KeyNotGeneratedError, match="encoder"):
        cm.check_generated(li, encoded, splits, seed=0)
