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
    # large enough for every book entry's smoke settings (GradSigns: 50 class-0 images; function-coupled: 90 triggers;
    # EWE: 100 images of its source class 8, of which 1,000 owner images held 87)
    return Splits(blobs(1400), blobs(10, seed=1), blobs(1200, seed=2), REGISTRY["fashion-mnist"])


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
        ledger.check(key, "mallory", released=9.0)
    ledger.commit(key, "alice", time=1.0)
    with pytest.raises(cm.UncommittedKeyError, match="committed by 'alice', not by the claimant"):
        ledger.check(key, "mallory", released=9.0)


def test_a_claim_without_the_suspects_release_time_is_refused():
    ledger, key = cm.Ledger(), _key()
    ledger.commit(key, "alice", time=1.0)
    with pytest.raises(cm.MissingReleaseError, match="names no release time"):
        ledger.check(key, "alice", released=None)
    with pytest.raises(TypeError):  # there is no default: a caller must say when the suspect was released
        ledger.check(key, "alice")


def test_keys_per_claimant_are_capped_and_the_level_divided_among_them():
    ledger = cm.Ledger(keys_per_claimant=2)
    ledger.commit(_key(seed=0), "mallory", time=1.0)
    ledger.commit(_key(seed=1), "mallory", time=2.0)
    with pytest.raises(cm.KeyCapError, match="keys_per_claimant = 2"):
        ledger.commit(_key(seed=2), "mallory", time=3.0)
    ledger.commit(_key(seed=2), "alice", time=3.0)  # the cap is per claimant
    assert [c.owner for c in ledger] == ["mallory", "mallory", "alice"] and len(ledger.keys_of("mallory")) == 2
    assert ledger.level(0.01) == pytest.approx(0.005) and cm.Ledger().level(0.01) == 0.01
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="keys_per_claimant"):
            cm.Ledger(keys_per_claimant=bad)


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


def test_verify_committed_verifies_at_the_ledgers_level_on_the_judges_draw():
    torch.manual_seed(0)
    model = models.build("lenet1", 1, 10).eval()
    key, null = _key(60), verify.Null(0.2, 0.1, models=5, floor=0.1)
    ledger = cm.Ledger(keys_per_claimant=4)
    record = ledger.commit(key, "alice", time=0.0)
    for n_queries in (None, 25):  # the whole committed key, and queries drawn from it
        ours = cm.verify_committed(verify.Oracle(model), key, verify.LABELS, null, ledger, "alice", released=1.0,
                                   suspect="suspect-a", n_queries=n_queries)
        plain = verify.verify_trials(verify.Oracle(model), key, verify.LABELS, null, alpha=0.01 / 4, n_queries=n_queries,
                                     seed=cm.query_seed(record, "suspect-a"))
        assert ours == plain and ours.n == (n_queries or 60) and ours.alpha == pytest.approx(0.0025)
    # the claimant cannot pick the draw: there is no seed to pass
    with pytest.raises(TypeError):
        cm.verify_committed(verify.Oracle(model), key, verify.LABELS, null, ledger, "alice", released=1.0,
                            suspect="suspect-a", seed=4)
    # a sample of the committed key is not the committed key: the verifier draws the sample itself
    with pytest.raises(cm.UncommittedKeyError, match="sample"):
        cm.verify_committed(verify.Oracle(model), key.sample(25, seed=4), verify.LABELS, null, ledger, "alice",
                            released=1.0, suspect="suspect-a")


def test_the_query_seed_is_public_and_changes_with_the_suspect_and_the_commitment():
    ledger = cm.Ledger(keys_per_claimant=2)
    a, b = ledger.commit(_key(seed=0), "alice", time=0.0), ledger.commit(_key(seed=1), "alice", time=1.0)
    seeds = {cm.query_seed(r, s) for r in (a, b) for s in ("suspect-a", "suspect-b")}
    assert len(seeds) == 4 and cm.query_seed(a, "suspect-a") == cm.query_seed(a, "suspect-a")
    with pytest.raises(ValueError, match="suspect must be named"):
        cm.query_seed(a, "")


def test_key_cost_raises_the_bar_with_the_keys_and_says_the_undivided_risk():
    null = verify.Null(0.2, 0.1, models=20, floor=0.1)
    cost = cm.key_cost(null, 100, 0.01, counts=(1, 10, 100), hits=40)
    needed = [int(h.split()[0]) for h in cost["hits needed"]]
    assert needed[0] == null.critical(100, 0.01) and needed[0] < needed[1] < needed[2]
    assert cost["level per key"].tolist() == pytest.approx([0.01, 0.001, 0.0001])
    assert cost["innocent's risk, each key at α (independent keys)"].tolist() == pytest.approx([0.01, 1 - 0.99 ** 10, 1 - 0.99 ** 100])
    assert cost["innocent's risk, each key at α (at most)"].tolist() == pytest.approx([0.01, 0.1, 1.0])
    assert cost["the owner's key claimed at α / K"].tolist() == [40 >= n for n in needed]
    with pytest.raises(ValueError, match="key counts"):
        cm.key_cost(null, 100, 0.01, counts=(0,))


def _committed(key, scheme, splits, seed, owner="alice", ledger=None):
    ledger = ledger or cm.Ledger()
    return ledger.commit(key, owner, time=0.0, seed=seed, generator=cm.key_generator(scheme, splits))


def test_rederive_accepts_the_owners_zhang_key_and_refuses_a_perturbed_or_adversarial_one(splits):
    scheme = Zhang2018(kind="content", source=1, target=0)
    key, _ = scheme.make_key(splits, seed=7)
    assert cm.rederive(scheme, splits, seed=7).digest() == key.digest()
    cm.check_generated(scheme, key, splits, _committed(key, scheme, splits, 7))
    torch.manual_seed(0)
    adv = (fgsm(models.build("lenet1", 1, 10), to_float(key.x), key.y, 8 / 255) * 255).round().to(torch.uint8)
    for forged in (_one_pixel(key), Key(adv, key.y.clone())):  # each committed with the owner's seed and generator
        with pytest.raises(cm.KeyNotGeneratedError, match=cm.short(forged.digest())):
            cm.check_generated(scheme, forged, splits, _committed(forged, scheme, splits, 7))
    with pytest.raises(cm.KeyNotGeneratedError, match="seed 8"):
        cm.check_generated(scheme, key, splits, _committed(key, scheme, splits, 8))
    with pytest.raises(cm.KeyNotGeneratedError, match="not the key of this commitment"):
        cm.check_generated(scheme, _one_pixel(key), splits, _committed(key, scheme, splits, 7))


def test_check_generated_needs_the_committed_seed_and_data(splits):
    scheme = Zhang2018(kind="content", source=1, target=0)
    key, _ = scheme.make_key(splits, seed=7)
    ledger = cm.Ledger(keys_per_claimant=3)
    bare = ledger.commit(key, "alice", time=0.0)
    with pytest.raises(cm.KeyNotGeneratedError, match="holds no seed"):
        cm.check_generated(scheme, key, splits, bare)
    other = Splits(blobs(1000, seed=5), splits.thief, splits.test, splits.spec)
    crafted, _ = scheme.make_key(other, seed=7)  # "owner data" other than the committed data
    record = ledger.commit(crafted, "alice", time=1.0, seed=7, generator=cm.key_generator(scheme, splits))
    with pytest.raises(cm.KeyNotGeneratedError, match="owner"):
        cm.check_generated(scheme, crafted, other, record)
    no_generator = ledger.commit(_one_pixel(key), "alice", time=2.0, seed=7)
    with pytest.raises(cm.KeyNotGeneratedError, match="holds no generator"):
        cm.check_generated(scheme, _one_pixel(key), splits, no_generator)


def test_the_verifiability_table_holds_for_every_book_entry(splits):
    from wmlib.schemes import CATALOGUE as ENTRIES
    from wmlib.profiles import COMPARISON

    table = cm.verifiability(ENTRIES).set_index("entry")
    assert set(table.index) == set(ENTRIES) and table["reason"].str.len().gt(20).all()
    assert not table.loc[["namba-afs", "li2019"], "verifiable from seed + data"].any()
    settings = COMPARISON["smoke"]["schemes"]
    for name in table.index[table["verifiable from seed + data"]]:
        scheme = ENTRIES[name]({**settings[name], **({"target": 1} if settings[name].get("target", 0) is None else {})})
        first = cm.rederive(scheme, splits, seed=3)  # no clean model: seed and data (zhang-unrelated: MNIST-5k) alone
        cm.check_generated(scheme, first, splits, _committed(first, scheme, splits, 3))
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
    record = _committed(key, afs, splits, 0)
    cm.check_generated(afs, key, splits, record, clean=a)
    with pytest.raises(cm.KeyNotGeneratedError, match="clean model"):  # another model: another key
        cm.check_generated(afs, key, splits, record, clean=b)
    li = Li2019()
    torch.manual_seed(0)
    encoded = li.watermark(cm.rederive(li, splits, seed=0), LiEncoder(1, 28).eval())
    with pytest.raises(cm.KeyNotGeneratedError, match="encoder"):
        cm.check_generated(li, encoded, splits, _committed(encoded, li, splits, 0))
