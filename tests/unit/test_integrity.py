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


def test_lambda_is_chosen_on_the_accusers_own_held_out_models_and_never_reads_the_public_zoo(parties, monkeypatch):
    """choose_lam crafts on all its surrogates and copy models but the last of each, reads only those
    two held-out models, and takes the λ with the largest margin (the smaller on a tie)."""
    surrogates, public, images, targets = parties
    from wmlib.zoo import Zoo

    own = lambda ms, tag: Zoo("blobs", "smoke", {f"{tag}{i}": m for i, m in enumerate(ms)}, pd.DataFrame())
    accusers, copies = {0: own(surrogates, "s"), }, {0: own(public[:2], "c")}
    monkeypatch.setattr(integrity, "accuser_images", lambda knobs, a: (images.x[:30], targets[:30]))
    crafted, read = [], []
    real_key = integrity.adaptive_key

    def spy_key(up, down, *a, **kw):
        crafted.append(([id(m) for m in up], [id(m) for m in down], kw["lam"]))
        return real_key(up, down, *a, **kw)

    def spy_acc(oracle, key):  # scripted answers: λ = 0 is the surrogate's best, λ = 1 the best margin
        read.append(id(oracle.model))
        held_out_surrogate = oracle.model is surrogates[1]
        return ({0.0: 0.9, 1.0: 0.8, 3.0: 0.5} if held_out_surrogate else {0.0: 0.8, 1.0: 0.3, 3.0: 0.25})[key.meta["lam"]]

    monkeypatch.setattr(integrity, "adaptive_key", spy_key)
    monkeypatch.setattr(integrity, "key_accuracy", spy_acc)
    knobs = dict(adaptive_lam=None, adaptive_lams=[1.0, 0.0, 3.0], accuser_steps=10)
    choice = integrity.choose_lam(knobs, accusers, copies, {0: 0.5})
    assert list(choice["λ"]) == [0.0, 1.0, 3.0] and choice["chosen"].sum() == 1
    assert all(up == [id(surrogates[0])] and down == [id(public[0])] for up, down, _ in crafted)
    assert set(read) == {id(surrogates[1]), id(public[1])}  # the held-out two, never the public zoo's third model
    assert choice["margin"].round(6).tolist() == [0.1, 0.5, 0.25] and integrity.chosen_lam(choice) == {0: 1.0}
    assert choice.loc[choice["chosen"], "margin"].item() == pytest.approx(
        choice.loc[choice["chosen"], "held-out surrogate"].item() - choice.loc[choice["chosen"], "held-out copy"].item())
    assert integrity.choose_lam(dict(knobs, adaptive_lam=0.2), accusers, copies, {0: 0.5})["λ"].tolist() == [0.2]
    with pytest.raises(ValueError, match="holds one of each out"):
        integrity.choose_lam(knobs, accusers, {0: own(public[:1], "c")}, {0: 0.5})
    with pytest.raises(ValueError, match="needs a weight λ for every accuser"):
        integrity.false_keys(dict(knobs, accuser_key_size=30), accusers, {0: 0.5}, down=copies)


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
    rules = {"binomial": lambda acc, p: integrity.Rule("binomial", null=Null.binomial(0.1), alpha=0.01)}
    t = integrity.claims_table(h, rules, {"every entry": integrity.Protocol(100, None, 0.5)}).iloc[0]
    assert (t["pairs"], t["suspects"], t["keys"], t["claimed"], t["suspects claimed"]) == (12, 6, 2, 2, 1)
    assert t["queries"] == 30 and t["claim rate"] == 2 / 12 and t["bound over"] == "6 suspects"
    assert t["upper bound"] == pytest.approx(stats.binomtest(1, 6).proportion_ci(0.95, method="exact").high)
    rows = pd.DataFrame([{"suspect": s, "key": f"k{k}", "entry": "e", "claimed": s == "a" and k == 0,
                          "claim probability": 0.5} for s in "abc" for k in range(4)])
    summary = integrity.rate_summary(rows, ["entry"]).iloc[0]
    assert (summary["claimed"], summary["pairs"], summary["suspects"], summary["keys"]) == (1, 12, 3, 4)
    assert summary["expected over draws"] == 0.5


def test_entries_share_a_row_where_their_rule_agrees_and_a_rules_summary_is_its_most_lenient_protocol():
    h = {}
    for acc in (0, 1):
        for i in range(5):
            v = torch.zeros(100, dtype=torch.bool)
            v[:[60, 30, 20, 15, 10][i]] = True
            h[(acc, f"s{i}")] = v
    protos = {"zhang": integrity.Protocol(100, None, 0.19), "li": integrity.Protocol(100, 0.9, 0.19),
              "namba": integrity.Protocol(100, 0.9, 0.5)}
    rules = {"paper": lambda a, p: None if p.paper_threshold is None else integrity.Rule("paper", threshold=p.paper_threshold),
             "liu": lambda a, p: integrity.Rule("liu", threshold=p.owner_threshold),
             "binomial": lambda a, p: integrity.Rule("binomial", null=Null.binomial(0.1), alpha=0.01)}
    t = integrity.claims_table(h, rules, protos)
    assert t[["rule", "entries"]].values.tolist() == [["paper", "li, namba"], ["liu", "zhang, li"], ["liu", "namba"],
                                                      ["binomial", "every label-key entry"]]
    assert t["pairs"].tolist() == [10] * 4  # each row: the same 10 (suspect, key) pairs
    assert t.loc[1, "claimed"] == 6 and t.loc[2, "claimed"] == 2  # >= 19 % hits: s0, s1, s2; >= 50 %: s0 (both keys)
    row = integrity.rule_row(t, "liu")  # not 8 of 20 pairs: the protocols judge the same pairs
    assert (row["claimed"], row["pairs"], row["entries"], row["protocols"]) == (6, 10, "zhang, li", 2)
    assert "under the protocol of zhang, li where it claims most of 2" in integrity.pair_text(row)
    # the book's one phrasing of a count: its pairs, the suspects and keys behind them, its rate and exact bound
    assert integrity.pair_text(row).startswith("6 of 10 (suspect, key) pairs (5 suspects × 2 keys, each pair verified "
                                               "once; 60.0%, 95% upper bound ")
    assert integrity.pair_text(row, " claimed").startswith("6 of 10 (suspect, key) pairs claimed (5 suspects")
    with pytest.raises(ValueError, match="above 0"):
        integrity.Rule("liu", threshold=0.0)
    assert integrity.Rule("liu", threshold=101 / 100).critical(100) == 101  # above 1: nothing is claimed


def test_the_judges_five_rules_read_liu_et_als_threshold_off_the_owners_protocol(parties):
    surrogates, public, images, targets = parties
    zoo = integrity.Zoo("fashion-mnist", "smoke", {f"p{i}": m for i, m in enumerate(public)}, pd.DataFrame(), {})
    judge = integrity.Zoo("fashion-mnist", "smoke", {f"s{i}": m for i, m in enumerate(surrogates + public[:1])}, pd.DataFrame(), {})
    rules = integrity.judge_rules({0: Key(images.x, targets)}, zoo, judge, 10, 0.01, 0.99)
    assert list(rules) == ["paper: key accuracy ≥ τ", "Liu et al.: the owner's threshold", "binomial at chance",
                           "public zoo null", "judge's private zoo null"]
    liu, paper = rules["Liu et al.: the owner's threshold"], rules["paper: key accuracy ≥ τ"]
    assert liu(0, integrity.Protocol(100, None, 0.37)).critical(100) == 37
    assert liu(0, integrity.Protocol(100, None, 0.37)) != liu(0, integrity.Protocol(100, None, 0.5))
    assert paper(0, integrity.Protocol(100, None, 0.37)) is None and paper(0, integrity.Protocol(100, 0.9, 0.37)).critical(30) == 27


def test_each_accuser_chooses_its_budget_on_its_own_held_out_surrogate(monkeypatch):
    models_ = [_model("lenet1", blobs(300, seed=50 + i), seed=i) for i in range(3)]
    accusers = {a: integrity.Zoo("toy", "smoke", {f"m{i}": m for i, m in enumerate(models_)}, pd.DataFrame(), {})
                for a in (0, 1)}
    images, tried = blobs(40, seed=8), []

    def craft(knobs, kind, a, crafting, eps):  # a key the held-out model answers more often the larger eps is
        tried.append((a, len(crafting), eps))
        held = Oracle(models_[-1]).predict(images.x)
        share = {1: 0.2, 2: 0.6, 3: 0.9}[round(eps * 10)] if a == 0 else 0.1
        wrong = (held + 1) % 10
        n = int(share * len(images))
        return Key(images.x, torch.cat([held[:n], wrong[n:]]))

    monkeypatch.setattr(integrity, "_craft", craft)
    knobs = {"accuser_eps": None, "liu_eps": 0.25, "accuser_eps_sweep": [0.3, 0.1, 0.2], "accuser_goal": 0.5}
    choice = integrity.choose_eps(knobs, accusers, "transfer")
    assert integrity.chosen(choice) == {0: 0.2, 1: 0.3}  # the smallest reaching half; none reached: the largest
    assert tried == [(0, 2, 0.1), (0, 2, 0.2), (1, 2, 0.1), (1, 2, 0.2), (1, 2, 0.3)]  # ascending, stops at the first
    assert choice.loc[choice["chosen"], "how"].str.contains("none reached").tolist() == [False, True]
    assert integrity.chosen(integrity.choose_eps(knobs, accusers, "liu")) == {0: 0.25, 1: 0.25}  # the reader's
    with pytest.raises(ValueError, match="unknown key kind"):
        integrity.choose_eps(knobs, accusers, "pgd")


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
    assert settings.resolve("integrity", "smoke", judge_zoo={"lenet5": 3}, judge_sizes=[3])["judge_zoo"] == {"lenet5": 3}
    with pytest.raises(ValueError, match="judge_sizes.*more models than judge_zoo trains"):
        settings.resolve("integrity", "smoke", judge_zoo={"lenet5": 3})  # the profile's sizes ask for 4


def test_honest_keys_verify_every_clean_model_once_a_key_and_count_a_repeated_key_once():
    from types import SimpleNamespace

    from wmlib.data import REGISTRY, Splits
    from wmlib.schemes import Zhang2018
    from wmlib.zoo import Zoo

    splits = Splits(blobs(400, seed=11), blobs(10, seed=12), blobs(300, seed=13), REGISTRY["fashion-mnist"])
    members = {f"z{i}": _model("lenet1", blobs(300, seed=60 + i), seed=i) for i in range(4)}
    zoo = Zoo("fashion-mnist", "smoke", members, pd.DataFrame(), {n: train.model_digest(m) for n, m in members.items()})
    fair, biased = _model("lenet1", blobs(300, seed=70), seed=9), _model("lenet1", blobs(300, seed=71), seed=8)
    with torch.no_grad():
        biased[-1].bias[0] += 15.0  # answers class 0, the keys' label, to most images
    suspects = Zoo("fashion-mnist", "smoke", {"fair": fair, "biased": biased}, pd.DataFrame(), {})
    owner = SimpleNamespace(marked=None, splits=splits, clean=None)
    owners = {("noise", 0): (Zhang2018(kind="noise", source=1, target=0), owner),
              ("content", 0): (Zhang2018(kind="content", source=1, target=0), owner)}
    knobs = {"seeds": [0], "honest_keys": 4, "n_queries": 30, "zoo_confidence": 0.99}
    keys = integrity.honest_keys(owners, knobs)
    assert [len(v[1]) for v in keys.values()] == [4, 1]  # the content key is the same whatever the seed: one unit
    ordinary = blobs(300, seed=14)
    rates = {n: integrity.base_rates(Oracle(m), ordinary, 10) for n, m in suspects.models.items()}
    rows = integrity.honest_pairs(keys, zoo, suspects, knobs, 0.01, biased=["biased"], rates=rates)
    assert len(rows) == 5 * (4 + 2 * 2)  # per key: 4 members (leave-one-out) + 2 suspects under two rules
    assert set(rows["population"]) == {"zoo (leave-one-out)", "independent", "class-biased"}
    assert not rows.duplicated(["rule", "suspect", "key"]).any()
    b = rows[rows["suspect"] == "biased"].set_index(["rule", "key"])["claimed"]
    assert b.xs("zoo null").sum() >= 4 and b.xs("zoo null + control").sum() == 0  # the bias claimed, then controlled
    pops, entries = integrity.level_tables(rows)
    every = integrity.level_row(pops, "every clean model", "zoo null")
    assert (every["pairs"], every["keys"], every["suspects"]) == (5 * 6, 5, 6)
    assert integrity.level_row(pops, "class-biased", "zoo null")["pairs"] == 5
    assert set(entries["entry"]) == {"noise", "content"} and entries["pairs"].sum() == 2 * 5 * 6
    owner_power = pd.DataFrame([{"entry": "noise", "owners": 1, "claimed": 1, "claimed with control": 1,
                                 "mean own rate of the key's labels": 0.1}])
    assert "favours it" in integrity.control_text(pops, owner_power)
    assert "costs owners" in integrity.control_text(pops, owner_power.assign(**{"claimed with control": 0}))


def test_the_chapters_conclusions_follow_the_numbers():
    def row(claimed, pairs, bound, **kw):
        return {"claimed": claimed, "pairs": pairs, "suspects": 9, "keys": pairs // 9, "upper bound": bound,
                "bound over": "9 suspects", **kw}

    assert integrity.standing(row(0, 400, 0.009), 0.01).startswith("meets α = 0.01, measured")
    assert integrity.standing(row(0, 27, 0.336), 0.01).startswith("stays within α = 0.01 only by the null model")
    assert integrity.standing(row(20, 460, 0.22), 0.01).startswith("exceeds α = 0.01 (4.3%)")
    entries = pd.DataFrame([row(0, 460, 0.15, entry="a", rule="zoo null", **{"claim rate": 0.0}),
                            row(20, 460, 0.22, entry="b", rule="zoo null", **{"claim rate": 20 / 460}),
                            row(30, 460, 0.3, entry="c", rule="other", **{"claim rate": 30 / 460})])
    assert integrity.worst_entry(entries, "zoo null")["entry"] == "b" and integrity.worst_text(entries).startswith("b, 20 of 460")
    pairs = pd.DataFrame([{"rule": "zoo null", "suspect": s, "population": "independent", "entry": "b", "key": f"b/{k}",
                           "claimed": s == "svhn" and k < 3} for s in ("svhn", "lenet") for k in range(5)])
    assert integrity.claimed_by_text(pairs) == "The honest keys claimed svhn (independent) on 3 of the 5 honest keys of b."
    assert integrity.claimed_by_text(pairs.assign(claimed=False)) == "No honest key claimed any clean model."
    claims = pd.DataFrame([{"rule": r, "entries": "e", "claim rate": c / 27, **row(c, 27, b)}
                           for r, c, b in (("public zoo null", 9, 0.6), ("judge's private zoo null", 0, 0.336))])
    assert integrity.adaptive_text(claims, "X").startswith("Pushed down on X, the adaptive key is claimed more often against the public null")
    assert "claimed equally often" in integrity.adaptive_text(claims.assign(claimed=0, **{"claim rate": 0.0}))
    text = integrity.promise_text(row(0, 400, 0.009), row(20, 460, 0.22, entry="b"), {"k": claims}, 0.01)
    assert "which meets α = 0.01, measured" in text and "b, 20 of 460" in text and "exceeds α = 0.01 (4.3%)" in text
    assert "exceeds α = 0.01 (33.3%) against k" in text  # the public null's 9 of 27
    power = pd.DataFrame([{"judge's models": 3, "owners claimed": "8 of 9", "power": 8 / 9, "false claims: claimed": 1,
                           "false claims: pairs": 90},
                          {"judge's models": 7, "owners claimed": "9 of 9", "power": 1.0, "false claims: claimed": 0,
                           "false claims: pairs": 90}])
    assert integrity.judge_size_text(power).startswith("7 models are the fewest that claim at least 95% of the owners (9 of 9)")
    assert integrity.judge_size_text(power.iloc[:1]).startswith("no size tried reaches 95% power")
