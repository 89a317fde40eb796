"""The integrity chapter's machinery: the adaptive accuser, the judge's rules, class-biased
suspects and their control (wmlib.integrity)."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from tests.conftest import blobs
from wmlib import accuser, integrity, models, train
from wmlib.keys import Key
from wmlib.verify import Null, Oracle, claims_at, hits


def _model(name: str, data, seed: int):
    torch.manual_seed(seed)
    m = models.build(name, 1, 10)
    train.fit(m, data, train.TrainConfig(epochs=4, batch_size=64, optimizer="adam", lr=3e-3, seed=seed), progress=False)
    return m.eval()


@pytest.fixture(scope="module")
def parties():
    surrogates = [_model("lenet5", blobs(600, seed=20 + i), seed=i) for i in range(2)]
    public = [_model("lenet5", blobs(600, seed=40 + i), seed=10 + i) for i in range(3)]
    images = blobs(100, seed=3)
    return surrogates, public, images, accuser.random_targets(images.y, 10, seed=1)


def test_the_adaptive_objective_lowers_the_public_zoos_answers_on_its_keys(parties):
    surrogates, public, images, targets = parties
    kw = dict(eps=0.5, steps=20, alpha=0.05)
    plain = integrity.adaptive_key(surrogates, public, images.x, targets, lam=0.0, **kw)
    adaptive = integrity.adaptive_key(surrogates, public, images.x, targets, lam=2.0, **kw)
    zoo_rate = lambda key: np.mean([hits(Oracle(m), key).float().mean().item() for m in public])
    on_surrogates = lambda key: hits(Oracle(accuser.Ensemble(surrogates)), key).float().mean().item()
    assert on_surrogates(plain) > 0.8 and zoo_rate(plain) > 0.4  # the plain key transfers to the public models
    assert zoo_rate(adaptive) < zoo_rate(plain) - 0.2  # the adaptive key is answered far less often by them
    assert on_surrogates(adaptive) > 0.5  # and still by the accuser's own models
    assert (adaptive.x.int() - images.x.int()).abs().max() <= round(0.5 * 255) + 1


def test_with_lam_zero_the_adaptive_key_is_momentum_fgsm_on_the_surrogates_alone(parties):
    surrogates, public, images, targets = parties
    a = integrity.adaptive_key(surrogates, public, images.x[:20], targets[:20], eps=0.3, steps=5, lam=0.0)
    b = integrity.adaptive_key(surrogates, [], images.x[:20], targets[:20], eps=0.3, steps=5, lam=1.0)
    assert torch.equal(a.x, b.x)
    c = accuser.transfer_key(surrogates, images.x[:20], targets[:20], eps=0.3, steps=5, method="mifgsm")
    assert torch.equal(a.x, c.x)  # torchattacks' MIFGSM on the surrogates' mean logits, step for step


def test_a_rule_is_a_null_at_a_level_or_a_threshold_and_one_verification_is_one_draw():
    null = Null.binomial(0.1)
    with pytest.raises(ValueError, match="exactly one"):
        integrity.Rule("both", null=null, alpha=0.01, threshold=0.9)
    assert integrity.Rule("tau", threshold=0.9).critical(30) == 27
    assert integrity.Rule("tau", threshold=0.9).critical(100) == 90
    h = torch.zeros(100, dtype=torch.bool)
    h[:40] = True
    rule = integrity.Rule("zoo", null=null, alpha=0.01)
    once = integrity.verify_once(h, rule.critical(30), 30, seed=3)
    assert once["claimed"] == bool(claims_at(h, rule.critical(30), 30, 1, seed=3))  # the judge's one draw
    assert once["claim probability"] == pytest.approx(claims_at(h, rule.critical(30), 30, 20000, seed=4) / 20000, abs=0.01)
    tau = integrity.verify_once(h, integrity.Rule("tau", threshold=0.9).critical(30), 30, 0)
    assert not tau["claimed"] and tau["claim probability"] < 1e-9  # 27 of 30 drawn from 40 hits in 100


def test_an_accusers_claims_count_suspect_key_pairs_once_and_bound_over_the_suspects():
    h = {}
    for acc in (0, 1):
        for i in range(6):
            v = torch.zeros(30, dtype=torch.bool)
            v[:28 if i == 0 else 3] = True  # s0 answers both accusers' keys; the others at the null's rate
            h[(acc, f"s{i}")] = v
    rules = {"binomial": lambda acc, tau: integrity.Rule("binomial", null=Null.binomial(0.1), alpha=0.01)}
    t = integrity.claims_table(h, rules, {"every entry": (100, None)}).iloc[0]
    assert (t["pairs"], t["suspects"], t["keys"], t["claimed"], t["suspects claimed"]) == (12, 6, 2, 2, 1)
    assert t["queries"] == 30 and t["claim rate"] == 2 / 12 and t["bound over"] == "6 suspects"
    assert t["upper bound"] == pytest.approx(stats.binomtest(1, 6).proportion_ci(0.95, method="exact").high)
    rows = pd.DataFrame([{"suspect": s, "key": f"k{k}", "entry": "e", "claimed": s == "a" and k == 0,
                          "claim probability": 0.5} for s in "abc" for k in range(4)])
    summary = integrity.rate_summary(rows, ["entry"]).iloc[0]
    assert (summary["claimed"], summary["pairs"], summary["suspects"], summary["keys"]) == (1, 12, 3, 4)
    assert summary["expected over draws"] == 0.5


def test_a_class_biased_suspect_is_controlled_by_its_own_rate_of_the_keys_label():
    ordinary = blobs(500, seed=5)
    biased = _model("lenet1", blobs(600, seed=6), seed=1)
    with torch.no_grad():  # a clean model that answers class 0 far more often than it should
        biased[-1].bias[0] += 15.0
    rates = integrity.base_rates(Oracle(biased), ordinary, 10)
    assert rates[0] > 0.5 and rates[1:].max() < 0.2
    key = Key(blobs(100, seed=9).x, torch.zeros(100, dtype=torch.long))  # every key labelled 0
    k = int(hits(Oracle(biased), key).sum())
    null = Null(mean=0.1, spread=0.05)
    assert null.p_value(k, 100) < 1e-6  # claimed without the control
    ctl = integrity.controlled(null, key, rates)
    assert ctl.floor == pytest.approx(float(rates[0])) and ctl.p_value(k, 100) > 0.01  # not with it


def test_suspect_recipes_refuse_unknown_fields_and_bad_values():
    with pytest.raises(ValueError, match="unknown field"):
        integrity.check_suspects({"x": {"archh": "lenet5"}})
    with pytest.raises(ValueError, match="arch must be one of"):
        integrity.check_suspects({"x": {"arch": "lenet9"}})
    with pytest.raises(ValueError, match=r"prune must be a fraction in \(0, 1\)"):
        integrity.check_suspects({"x": {"prune": 1.5}})
    with pytest.raises(ValueError, match="skew must be"):
        integrity.check_suspects({"x": {"skew": {"class": 0}}})


def test_stricter_levels_are_read_off_the_recorded_p_values():
    cells = [{"entry": "a", "attack": "none", "status": "ok", "p_value": 1e-8},
             {"entry": "a", "attack": "none", "status": "ok", "p_value": 5e-3},
             {"entry": "a", "attack": "prune", "status": "n/a", "p_value": None},
             {"entry": "a", "attack": "prune", "status": "ok", "p_value": 0.2}]
    p = integrity.power_at(cells, [1e-2, 1e-3, 1e-6]).set_index(["entry", "attack"])
    assert p.loc[("a", "none")].tolist() == [1.0, 0.5, 0.5]
    assert p.loc[("a", "prune")].tolist() == [0.0, 0.0, 0.0]  # the n/a cell is not counted


def test_a_suspect_is_class_biased_only_above_every_zoo_member():
    zoo = {"z1": torch.tensor([0.05, 0.1]), "z2": torch.tensor([0.2, 0.02])}
    rates = {"fair": torch.tensor([0.19, 0.1]), "biased": torch.tensor([0.01, 0.45])}
    assert integrity.biased_suspects(rates, zoo) == ["biased"]


def test_the_chapters_knobs_are_checked_when_read():
    from wmlib import settings
    with pytest.raises(ValueError, match="at least one label-key entry"):
        settings.resolve("integrity", "smoke", entries=["gradsigns"])
    with pytest.raises(ValueError, match=r"accuser_seeds.*\[0, 99\]"):
        settings.resolve("integrity", "smoke", accuser_seeds=[0, 150])
    with pytest.raises(ValueError, match="judge_zoo.*>= 3 models"):
        settings.resolve("integrity", "smoke", judge_zoo={"lenet5": 2})
    with pytest.raises(ValueError, match="suspect 'x'.*unknown field"):
        settings.resolve("integrity", "smoke", suspects={"x": {"archh": "lenet5"}})
    assert settings.resolve("integrity", "smoke", judge_zoo={"lenet5": 3})["judge_zoo"] == {"lenet5": 3}  # replaced whole
