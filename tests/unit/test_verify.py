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


def test_p0_validation_and_null_calibration():
    with pytest.raises(ValueError, match="p0 or num_classes"):
        verify.verify_key(verify.Oracle(Constant(3)), _key())
    with pytest.raises(ValueError, match="p0 must be"):
        verify.verify_key(verify.Oracle(Constant(3)), _key(), p0=1.0)
    assert verify.null_rate(np.array([0.0, 0.02]), 10) == pytest.approx(0.1)  # never below chance
    assert verify.null_rate(np.array([0.5, 0.7]), 10) == pytest.approx(0.6)
    assert verify.empirical_p_value(0.9, np.array([0.1, 0.2, 0.95])) == pytest.approx(0.5)


def test_empirical_null_from_clean_models():
    null = verify.empirical_null([verify.Oracle(Constant(3)), verify.Oracle(Constant(1))], _key())
    assert null.tolist() == [1.0, 0.0]
