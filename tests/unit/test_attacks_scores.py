import pytest
import torch

from tests.conftest import blobs
from wmlib import attacks
from wmlib.verify import Oracle, oracle_accuracy


class Fixed(Oracle):
    """An API that answers every query with the same rows of scores and records what it was asked."""

    def __init__(self, scores: torch.Tensor):
        self.scores, self.queries, self.seen = scores, 0, []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        self.seen.append(x.clone())
        return self.scores[torch.arange(len(x)) % len(self.scores)].clone()


P = torch.tensor([[0.70, 0.15, 0.10, 0.04, 0.01],
                  [0.30, 0.30, 0.20, 0.15, 0.05],   # tie at the top: Algorithm 1 leaves it alone
                  [0.50, 0.20, 0.10, 0.10, 0.10],   # the least likely tie the M-th: nothing to move
                  [0.26, 0.25, 0.24, 0.15, 0.10]])


@pytest.mark.parametrize("decimals", [1, 2, 4])
def test_rounded_scores_are_multiples_of_the_last_place(decimals):
    inner = Fixed(torch.softmax(torch.randn(8, 10), 1))
    o = attacks.RoundedOracle(inner, decimals)
    p = o(torch.zeros(8, 1, 4, 4))
    scaled = p.double() * 10 ** decimals
    assert torch.allclose(scaled, scaled.round(), atol=1e-3)
    assert (p - inner.scores).abs().max() <= 0.5 * 10 ** -decimals + 1e-6
    assert o.queries == inner.queries == 8


@pytest.mark.parametrize("decimals", [-1, 8, 1.5, True])
def test_bad_rounding(decimals):
    with pytest.raises(ValueError, match="0..7"):
        attacks.RoundedOracle(Fixed(P), decimals)


def test_low_precision_scores():
    inner = Fixed(torch.softmax(torch.randn(8, 10), 1))
    p = attacks.LowPrecisionOracle(inner)(torch.zeros(8, 1, 4, 4))
    assert torch.equal(p, p.to(torch.bfloat16).float()) and not torch.equal(p, inner.scores)
    with pytest.raises(ValueError, match="bfloat16"):
        attacks.LowPrecisionOracle(inner, torch.float64)


def test_score_perturbation_follows_algorithm_1():
    inner = Fixed(P)
    o = attacks.PerturbedOracle(inner, M=3, eps=1e-5, seed=0)
    out = o(torch.zeros(4, 1, 2, 2)).double()
    p = P.double()
    delta = out - p
    # row 0: τ = min(0.70 - 0.15, 0.10 - 0.01) - ε; only the top-1 and the least likely labels move
    tau = min(0.70 - 0.15, 0.10 - 0.01) - 1e-5
    phi = -float(delta[0, 0])
    assert 1e-3 * tau - 1e-7 <= phi <= tau + 1e-7 and float(delta[0, 4]) == pytest.approx(phi, abs=1e-7)
    assert delta[0, 1:4].abs().max() < 1e-7
    assert torch.equal(out[0].argsort(descending=True)[:3], p[0].argsort(descending=True)[:3])  # 3-true label ordering
    assert out[0, 4] < out[0, 2]
    assert delta[1:3].abs().max() < 1e-7  # ties: τ_sp <= 0, returned unchanged
    assert torch.allclose(out.sum(1), p.sum(1), atol=1e-6)
    assert o.queries == inner.queries == 4


def test_score_perturbation_draws_a_fresh_phi_per_query_and_is_seeded():
    x = torch.zeros(4, 1, 2, 2)
    a, b = attacks.PerturbedOracle(Fixed(P), seed=1), attacks.PerturbedOracle(Fixed(P), seed=1)
    first = a(x)
    assert torch.equal(first, b(x)) and not torch.equal(first, a(x))
    assert not torch.equal(first, attacks.PerturbedOracle(Fixed(P), seed=2)(x))


def test_score_perturbation_keeps_the_label(trained):
    data = blobs(200, seed=3)
    assert oracle_accuracy(attacks.PerturbedOracle(Oracle(trained)), data) == oracle_accuracy(Oracle(trained), data)


@pytest.mark.parametrize("kw, match", [(dict(M=0), "M"), (dict(eps=-1.0), "eps"), (dict(low=1.0), "low")])
def test_bad_perturbation(kw, match):
    with pytest.raises(ValueError, match=match):
        attacks.PerturbedOracle(Fixed(P), **kw)


def test_perturbation_needs_more_classes_than_m():
    with pytest.raises(ValueError, match="smaller than the number of classes"):
        attacks.PerturbedOracle(Fixed(P), M=5)(torch.zeros(1, 1, 2, 2))


def test_fixed_noise_is_one_pattern_for_every_query():
    inner = Fixed(P)
    o = attacks.FixedNoiseOracle(inner, std=0.05, shape=(1, 8, 8), seed=0)
    x = torch.rand(3, 1, 8, 8)
    o(x)
    o(x + 1e-4)  # Eq. 5's shifted query carries the same noise
    first, second = inner.seen[0] - x, inner.seen[1] - (x + 1e-4)
    assert torch.allclose(first, second, atol=1e-6) and torch.allclose(first[0], first[2], atol=1e-6)
    assert float(first[0].std()) == pytest.approx(0.05, rel=0.3)
    assert o.queries == inner.queries == 6
    other = Fixed(P)
    attacks.FixedNoiseOracle(other, std=0.05, shape=(1, 8, 8), seed=1)(x)
    assert not torch.allclose(other.seen[0], inner.seen[0])
    fresh = Fixed(P)
    noisy = attacks.NoisyOracle(fresh, 0.05)  # the contrast: a new draw per query
    noisy(x)
    noisy(x)
    assert not torch.allclose(fresh.seen[0], fresh.seen[1])


def test_fixed_noise_clamp_and_bad_input():
    inner = Fixed(P)
    x = torch.full((2, 1, 4, 4), 255, dtype=torch.uint8)
    attacks.FixedNoiseOracle(inner, 0.5, (1, 4, 4), clamp=True)(x)
    attacks.FixedNoiseOracle(inner, 0.5, (1, 4, 4))(x)
    assert float(inner.seen[0].max()) <= 1.0 and float(inner.seen[1].max()) > 1.0
    with pytest.raises(ValueError, match="std"):
        attacks.FixedNoiseOracle(inner, -0.1, (1, 4, 4))
    with pytest.raises(ValueError, match="C x H x W"):
        attacks.FixedNoiseOracle(inner, 0.1, (4, 4))
    with pytest.raises(ValueError, match="do not fit"):
        attacks.FixedNoiseOracle(inner, 0.1, (1, 4, 4))(torch.zeros(1, 3, 4, 4))


def test_the_key_detector_answers_flagged_queries_with_the_runner_up_and_flags_its_share_of_ordinary_images():
    from wmlib import detector, train

    ordinary, keys = blobs(300, seed=1).x, torch.full((300, 1, 28, 28), 255, dtype=torch.uint8)  # white squares
    det = detector.pixel_detector(1, 28)
    detector.train_detector(det, ordinary, keys, train.TrainConfig(epochs=3, batch_size=64, lr=0.01))
    inner = Fixed(P[:1])  # class 0 first, class 1 runner-up
    o = attacks.KeyDetectorOracle(inner, det, ordinary, fpr=0.05)
    assert 0.0 < o.flags(ordinary).float().mean() <= 0.1 and o.flags(keys).all()
    out = o(torch.cat([keys[:3], ordinary[:0]]))
    assert torch.equal(out.argmax(1), torch.ones(3, dtype=torch.int64)) and torch.allclose(out.sum(1), torch.ones(3))
    assert o.queries == 3 and sorted(out[0].tolist()) == sorted(P[0].tolist())  # the scores are swapped, not changed
    with pytest.raises(ValueError, match=r"fpr .* in \(0, 1\)"):
        attacks.KeyDetectorOracle(inner, det, ordinary, fpr=0.0)
