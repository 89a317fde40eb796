"""What a false-claim rate counts: (suspect, key) pairs, each verified once, bounded over
independent units (wmlib.verify.pair_rate), never over repeated query draws of one pair."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from wmlib import verify


def _pairs(claimed: set[tuple[int, int]], suspects: int, keys: int, p: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame([{"suspect": f"s{i}", "key": f"k{j}", "claimed": (i, j) in claimed, "claim probability": p}
                         for i in range(suspects) for j in range(keys)])


def test_claim_probability_is_the_exact_hypergeometric_tail_and_a_whole_key_is_one_outcome():
    h = torch.zeros(200, dtype=torch.bool)
    h[:40] = True
    assert verify.claim_probability(h, 15, 50) == pytest.approx(stats.hypergeom.sf(14, 200, 40, 50))
    draws = np.random.default_rng(0).hypergeometric(40, 160, 50, size=40000)
    assert verify.claim_probability(h, 15, 50) == pytest.approx(float((draws >= 15).mean()), abs=0.01)
    whole = h[:30]  # 30 hits of 30: every draw of 50 queries is the whole key
    assert verify.claim_probability(whole, 30, 50) == 1.0 and verify.claim_probability(whole, 31, 50) == 0.0
    assert verify.claim_probability(h, 51, 50) == 0.0


def test_no_claim_among_14_models_and_3_keys_bounds_at_most_what_14_independent_models_can():
    r = verify.pair_rate(_pairs(set(), 14, 3))
    assert (r.pairs, r.suspects, r.keys, r.claimed, r.rate) == (42, 14, 3, 0, 0.0)
    # the bound is the exact one over the 14 models, at 97.5 % (the other half of 5 % goes to the keys)
    assert r.bound == pytest.approx(1 - 0.025 ** (1 / 14)) and r.bound_over == "suspect"
    assert r.bound > 0.2  # not the 0.09 that 42 independent pairs would give, nor the 0.0 of a bootstrap
    assert r.bound > stats.binomtest(0, 42).proportion_ci(0.95, method="exact").high
    assert (r.boot_low, r.boot_high) == (0.0, 0.0)
    assert "0 of 42 (suspect, key) pairs claimed (14 suspects × 3 keys" in r.text()
    assert "95% upper bound 23.2%, exact over the 14 suspects" in r.text()
    # a grid with pairs left out (e.g. in sample) does not read as a full one
    assert verify.pairs_text(0, 40, 14, 3, 0.23, "14 suspects").startswith("0 of 40 (suspect, key) pairs (14 suspects and 3 keys, "
                                                                          "not every pair of them,")


def test_repeated_draws_are_not_new_pairs():
    twice = pd.concat([_pairs(set(), 5, 2), _pairs(set(), 5, 2)])
    with pytest.raises(ValueError, match="appears twice"):
        verify.pair_rate(twice)


def test_one_key_bounds_over_the_suspects_at_the_full_level():
    r = verify.pair_rate(_pairs({(0, 0)}, 20, 1))
    assert r.bound == pytest.approx(stats.binomtest(1, 20).proportion_ci(0.90, method="exact").high)  # one-sided 95 %
    assert r.bound_keys == 1.0 and r.family_rate == 1 / 20


def test_claims_on_one_suspect_count_once_in_the_bound_over_suspects():
    one = verify.pair_rate(_pairs({(0, 0), (0, 1), (0, 2)}, 10, 3))  # one biased suspect claimed by every key
    spread = verify.pair_rate(_pairs({(0, 0), (1, 1), (2, 2)}, 10, 3))  # three suspects, one claim each
    assert one.claimed == spread.claimed == 3 and one.rate == spread.rate
    assert one.suspects_claimed == 1 and spread.suspects_claimed == 3
    assert one.bound_suspects < spread.bound_suspects
    # and by key: every key claims someone in both, so the key bound cannot tell them apart
    assert one.keys_claiming == spread.keys_claiming == 3 and one.bound_keys == 1.0


def test_the_two_way_bootstrap_is_wider_than_an_independent_count_when_claims_cluster():
    clustered = verify.pair_rate(_pairs({(0, j) for j in range(10)} | {(1, j) for j in range(10)}, 20, 10), boot=4000)
    lo, hi = stats.binomtest(20, 200).proportion_ci(0.95, method="exact")
    assert clustered.rate == 0.1 and clustered.boot_low <= 0.1 <= clustered.boot_high
    assert clustered.boot_high - clustered.boot_low > hi - lo  # two suspects carry every claim


def test_a_leave_one_out_table_verifies_each_model_once_and_false_claim_rate_counts_models_and_keys():
    rng = np.random.default_rng(2)
    zoo = {f"m{i}": torch.from_numpy(rng.random(300) < p) for i, p in enumerate([0.05, 0.1, 0.2, 0.12, 0.08, 0.03])}
    tables = {k: verify.claim_table(zoo, {"watermarked": torch.ones(300, dtype=torch.bool)}, n_queries=50,
                                    seed=s) for s, k in enumerate(("a", "b"))}
    t = tables["a"].set_index("suspect")
    assert t.loc["watermarked", "claimed"] and t.loc["watermarked", "claim probability"] == 1.0
    pairs = verify.false_claim_pairs(tables)
    assert len(pairs) == 12 and set(pairs.key) == {"a", "b"} and "watermarked" not in set(pairs.suspect)
    r = verify.false_claim_rate(tables)
    assert (r.pairs, r.suspects, r.keys) == (12, 6, 2)
    summary = verify.claim_summary(tables)
    assert summary.loc["a", "zoo models claimed"] == f"{int(tables['a'].claimed[:6].sum())} / 6"
    assert summary.loc["a", "claimed: watermarked"] == 1.0
    assert set(verify.summary_formats(summary)) >= {"claimed: watermarked", "95% bound (exact)"}


def test_a_pair_verified_once_is_its_first_query_draw():
    rng = np.random.default_rng(5)
    zoo = {f"m{i}": torch.from_numpy(rng.random(200) < p) for i, p in enumerate([0.2] * 8 + [0.35])}
    seen = set()
    for seed in range(20):  # the last model's pair is claimed in about two draws of three (plain binomial null)
        t = verify.claim_table(zoo, {}, n_queries=40, seed=seed, confidence=None, overdispersion=False)
        for i, row in t.iterrows():
            crit = round(row["threshold"] * row["queries"])
            assert row["claim probability"] == pytest.approx(verify.claim_probability(zoo[row["suspect"]], crit, 40))
            assert row["claimed"] == bool(verify.claims_at(zoo[row["suspect"]], crit, 40, 1, seed + i))
            if 0.0 < row["claim probability"] < 1.0:
                seen.add(bool(row["claimed"]))
    assert seen == {True, False}  # a borderline pair: its one verification depends on the draw


def test_a_short_key_is_as_many_trials_as_it_holds_so_a_fixed_threshold_reads_27_of_30():
    from wmlib import integrity
    from wmlib.keys import Key

    key = Key(torch.zeros(30, 1, 28, 28, dtype=torch.uint8), torch.zeros(30, dtype=torch.long))
    assert verify.LABELS.trial_count(key, 100) == 30 and verify.LABELS.trial_count(key, 20) == 20
    assert integrity.Rule("tau", threshold=0.9).critical(verify.LABELS.trial_count(key, 100)) == 27


def test_holm_holds_a_suspect_facing_many_keys_to_the_family_level():
    null = verify.Null.binomial(0.1)

    def v(hits):
        return verify.verify_counts(hits, 100, null, 0.01)
    # p = 1.3e-5 (25 hits of 100 at p0 = 0.1) and 4.6e-3 (19 hits): each claimed alone at 1 %
    verdicts = {"a": v(25), "b": v(19), "c": v(19), "d": v(19)}
    assert all(x.claimed for x in verdicts.values())
    # Holm: 1.3e-5 <= 0.01 / 4, then 4.6e-3 > 0.01 / 3 stops the step-down
    assert verify.holm(verdicts, 0.01) == {"a": True, "b": False, "c": False, "d": False}
    assert verify.holm({"a": v(25), "b": v(19), "c": v(19)}, 0.01) == {"a": True, "b": True, "c": True}  # 4.6e-3 <= 0.01/2
    assert verify.holm({"only": v(19)}, 0.01) == {"only": True}  # one key: the plain test
    assert list(verify.holm({"z": v(10), "y": v(25)}, 0.01)) == ["z", "y"]  # the caller's order kept
    # innocent keys: the chance that any of 20 is claimed stays near alpha (1,000 families of uniform p-values)
    rng = np.random.default_rng(0)
    fams = [{str(j): _verdict(p) for j, p in enumerate(rng.random(20))} for _ in range(1000)]
    assert sum(any(verify.holm(f, 0.05).values()) for f in fams) / 1000 <= 0.05 + 0.02
    assert sum(any(x.claimed for x in f.values()) for f in fams) / 1000 > 0.5  # each at 5 % alone: 1 - 0.95^20


def _verdict(p: float) -> verify.Verdict:
    return verify.Verdict(0.0, 1.0, float(p), 0, 0, 1, 0.05, bool(p <= 0.05), 0.0, {})


def test_drawn_hits_are_the_hits_of_the_one_draw_that_verify_once_judges():
    h = torch.zeros(300, dtype=torch.bool)
    h[::4] = True  # 75 hits
    for seed in range(40):
        k = verify.drawn_hits(h, 100, seed)
        for critical in (20, 25, 30):
            assert verify.verify_once(h, critical, 100, seed)["claimed"] == (k >= critical)
    assert verify.drawn_hits(h[:60], 100, 3) == 15  # the whole key: every draw is all of it


def test_the_family_table_counts_suspects_claimed_by_any_key_and_holm_holds_them_to_alpha():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(200):  # innocent suspects facing 20 keys each, uniform p-values under the null
        for j in range(20):
            p = float(rng.uniform())
            rows.append({"suspect": f"s{i}", "key": f"k{j}", "claimed": p <= 0.05, "claim probability": 0.05, "p-value": p})
    t = verify.family_table(pd.DataFrame(rows), 0.05).set_index("rule")
    each, holm = t.loc["each key at α"], t.loc["Holm over the keys"]
    assert each["suspects"] == 200 and each["keys each"] == 20
    assert each["share"] > 0.5  # 1 - 0.95^20 = 64 % of innocent models claimed by some key
    assert each["any claim over draws"] == pytest.approx(1 - 0.95 ** 20)
    assert holm["share"] <= 0.05 + 0.04  # held to the family level
    assert holm["upper bound"] == pytest.approx(stats.binomtest(int(holm["claimed by any key"]), 200)
                                                .proportion_ci(0.90, method="exact").high)
    assert np.isnan(holm["any claim over draws"])
    assert verify.holm({"a": 0.001, "b": 0.02}, 0.05) == {"a": True, "b": True}  # p-values, not only verdicts
    assert verify.holm({"a": 0.001, "b": 0.03}, 0.05) == {"a": True, "b": True}
    assert verify.holm({"a": 0.03, "b": 0.03}, 0.05) == {"a": False, "b": False}
