import math

import numpy as np
import pytest
import torch
from torch import nn

from wmlib import verify
from wmlib.keys import Key


class Constant(nn.Module):
    """Always answers class ``c`` (or uniformly at random when c is None)."""

    def __init__(self, c, classes=10):
        super().__init__()
        self.c, self.classes, self.w = c, classes, nn.Parameter(torch.zeros(1))

    def forward(self, x):
        if self.c is None:
            return torch.randn(len(x), self.classes)
        out = torch.zeros(len(x), self.classes)
        out[:, self.c] = 10.0
        return out + self.w


def _key(n=100, target=3):
    return Key(torch.zeros(n, 1, 28, 28, dtype=torch.uint8), torch.full((n,), target))


def test_binomial_p_value_matches_the_definition():
    n, p0, k = 20, 0.1, 5
    direct = sum(math.comb(n, i) * p0 ** i * (1 - p0) ** (n - i) for i in range(k, n + 1))
    assert verify.binomial_p_value(k, n, p0) == pytest.approx(direct)
    assert verify.binomial_p_value(0, n, p0) == pytest.approx(1.0)


@pytest.mark.parametrize("n,p0,alpha", [(20, 0.1, 0.01), (100, 0.3, 0.001), (5, 0.5, 0.05)])
def test_critical_hits_is_the_smallest_significant_count(n, p0, alpha):
    k = verify.critical_hits(n, p0, alpha)
    assert verify.binomial_p_value(k, n, p0) <= alpha or k > n
    assert verify.binomial_p_value(k - 1, n, p0) > alpha


def test_watermarked_model_is_claimed_and_queries_counted():
    o = verify.Oracle(Constant(3))
    v = verify.verify_key(o, _key(), n_queries=30, num_classes=10)
    assert v.claimed and v.statistic == 1.0 and v.queries == 30 and o.queries == 30


def test_model_answering_another_class_is_not_claimed():
    v = verify.verify_key(verify.Oracle(Constant(4)), _key(), num_classes=10)
    assert not v.claimed and v.statistic == 0.0 and v.p_value == pytest.approx(1.0)


def test_random_model_is_rarely_claimed():
    torch.manual_seed(0)
    claims = [verify.verify_key(verify.Oracle(Constant(None)), _key(50), num_classes=10, alpha=0.01).claimed
              for _ in range(100)]
    assert sum(claims) <= 5  # alpha = 1 %: a handful at most


def test_p0_validation():
    with pytest.raises(ValueError, match="null, p0 or num_classes"):
        verify.verify_key(verify.Oracle(Constant(3)), _key())
    with pytest.raises(ValueError, match="p0 must be"):
        verify.verify_key(verify.Oracle(Constant(3)), _key(), p0=1.0)


def _zoo_counts(rng, models, trials, a=2.0, b=8.0):
    rates = rng.beta(a, b, models)
    return rng.binomial(trials, rates), np.full(models, trials)


def test_overdispersed_null_keeps_false_claims_below_alpha_where_the_binomial_does_not():
    """Clean models whose hit rates differ (Beta(2, 8): mean 0.2, sd 0.12). A fresh clean model is
    verified with 100 queries against a null fitted on a 12-model zoo, over many zoos and models."""
    rng, alpha, n = np.random.default_rng(0), 0.01, 100
    beta_claims = binomial_claims = trials = 0
    for _ in range(150):
        k, m = _zoo_counts(rng, 12, 2000)
        beta = verify.Null.fit(k, m)
        plain = verify.Null.binomial(k.sum() / m.sum())  # one common p0: the old test
        suspects = rng.binomial(n, rng.beta(2.0, 8.0, 20))
        beta_claims += int((suspects >= beta.critical(n, alpha)).sum())
        binomial_claims += int((suspects >= plain.critical(n, alpha)).sum())
        trials += len(suspects)
    assert beta_claims / trials <= alpha
    assert binomial_claims / trials > 10 * alpha


def test_point_estimate_null_is_calibrated_on_average():
    """Without the confidence bounds, the fitted beta-binomial's false-claim rate is near alpha
    (a large zoo), and the bounds only make it more conservative."""
    rng, alpha, n = np.random.default_rng(1), 0.05, 100
    k, m = _zoo_counts(rng, 400, 5000)
    point, bound = verify.Null.fit(k, m, confidence=None), verify.Null.fit(k, m)
    suspects = rng.binomial(n, rng.beta(2.0, 8.0, 20000))
    rate = (suspects >= point.critical(n, alpha)).mean()
    assert 0.5 * alpha <= rate <= 1.5 * alpha
    assert bound.critical(n, alpha) >= point.critical(n, alpha)


def test_moment_fit_recovers_the_spread_at_few_trials_per_model():
    """The method of moments with the small-sample factor: at 5 trials a model, the binomial
    sampling variance is E[p (1 - p)] / 5, smaller than mean (1 - mean) / 5 by the between-model
    variance; forgetting that reads the spread (here ρ = 1 / (a + b + 1) = 0.2) as 0.16."""
    rng = np.random.default_rng(2)
    for trials in (5, np.tile([4, 6], 20000)):
        k, m = _zoo_counts(rng, 40000, trials, a=1.2, b=2.8)
        assert verify.Null.fit(k, m, confidence=None).spread == pytest.approx(0.2, abs=0.01)


def test_zero_spread_reduces_to_the_binomial():
    k, m = np.array([100, 100, 100, 100]), np.array([1000, 1000, 1000, 1000])
    null = verify.Null.fit(k, m, confidence=None)
    assert null.spread == 0.0 and null.mean == pytest.approx(0.1)
    plain = verify.Null.binomial(0.1)
    for hits in (5, 15, 25):
        assert null.p_value(hits, 60) == pytest.approx(verify.binomial_p_value(hits, 60, 0.1))
    assert null.critical(60, 0.01) == plain.critical(60, 0.01) == verify.critical_hits(60, 0.1, 0.01)
    # a tiny spread gives (nearly) the binomial's answer through the beta-binomial path
    near = verify.Null(0.1, 1e-9)
    assert near.p_value(15, 60) == pytest.approx(plain.p_value(15, 60), rel=0.02)  # scipy betabinom at a, b ~ 1e8


def test_null_fit_floors_and_validation():
    null = verify.Null.fit([0, 0, 0], [500, 500, 500], floor=0.1)
    assert null.spread == 0.0 and 0 < null.mean < 0.01  # Jeffreys: a hit is never impossible
    for k in (5, 12, 20):  # ... and no claim is easier than against a random guesser
        assert null.p_value(k, 100) == pytest.approx(verify.binomial_p_value(k, 100, 0.1))
    assert null.critical(100, 0.01) == verify.critical_hits(100, 0.1, 0.01)
    with pytest.raises(ValueError, match="floor"):
        verify.Null.fit([3, 4], [10, 10], floor=1.0)
    with pytest.raises(ValueError, match="at least 2"):
        verify.Null.fit([3], [10])
    with pytest.raises(ValueError, match="confidence"):
        verify.Null.fit([3, 4], [10, 10], confidence=0.3)
    v = verify.verify_counts(30, 32, verify.Null.binomial(0.5))
    assert v.claimed and v.null["models"] == 0 and v.expected_false_claim_rate <= 0.01


def test_leave_one_out_never_puts_a_suspect_in_its_own_null():
    rng = np.random.default_rng(2)
    rates = [0.05, 0.1, 0.2, 0.12, 0.08, 0.03, 0.15, 0.1]
    zoo = {f"m{i}": torch.from_numpy(rng.random(300) < p) for i, p in enumerate(rates)}
    wm = {"watermarked": torch.ones(300, dtype=torch.bool)}
    table = verify.claim_table(zoo, wm, n_queries=50)
    clean = table[table.role == "clean (leave-one-out)"]
    assert list(clean.suspect) == list(zoo) and (clean["null models"] == 7).all()
    assert table.set_index("suspect").loc["watermarked", "null models"] == 8
    assert table.set_index("suspect").loc["watermarked", "claim probability"] == 1.0
    for name in zoo:
        null = verify.Null.from_hits(zoo, exclude=name)
        assert name not in null.members and len(null.members) == 7
    assert len(verify.false_claim_pairs({"k": table})) == 8  # each zoo model once, however many draws one could make


def test_verify_key_refuses_a_suspect_that_is_in_its_null():
    zoo_models = {"a": Constant(3), "b": Constant(4), "c": Constant(5)}
    key = _key()
    hits = {n: verify.hits(verify.Oracle(m), key) for n, m in zoo_models.items()}
    digests = {n: verify.model_digest(m) for n, m in zoo_models.items()}
    with torch.no_grad():
        zoo_models["b"].w += 1.0  # a different model with b's answers
    digests["b"] = verify.model_digest(zoo_models["b"])
    null = verify.Null.from_hits(hits, digests=digests, floor=0.1)
    with pytest.raises(ValueError, match="clean models its null was fitted on"):
        verify.verify_key(verify.Oracle(zoo_models["a"]), key, null=null)
    outsider = Constant(6)
    with torch.no_grad():
        outsider.w += 5.0  # its own weights: not a member
    other = verify.verify_key(verify.Oracle(outsider), key, null=null)
    assert not other.claimed and other.null["models"] == 3


def test_claims_at_draws_match_the_hypergeometric():
    from scipy import stats
    h = torch.zeros(200, dtype=torch.bool)
    h[:40] = True  # a suspect that hits 20 % of the key
    crit = verify.Null.binomial(0.1).critical(50, 0.01)
    claims = verify.claims_at(h, crit, 50, draws=20000, seed=0)
    assert claims / 20000 == pytest.approx(stats.hypergeom.sf(crit - 1, 200, 40, 50), abs=0.015)
    assert verify.claims_at(h[:30], crit, 50, draws=7) in (0, 7)  # the whole key, every draw


def test_the_embedding_gate_names_the_models_and_the_knobs():
    verify.require_claimed({"a": True, "b": True}, "raise -p epochs")
    with pytest.raises(RuntimeError, match=r"does not claim b on their own keys\): raise -p epochs"):
        verify.require_claimed({"a": True, "b": False}, "raise -p epochs")
