"""The Scheme contract, for every registered watermark: make_key -> embed -> hits -> verify, through
the one helper the chapters and the comparison use (schemes.watermark), smoke-sized on real data."""
import pytest
import torch

from wmlib import data, settings
from wmlib.keys import Key
from wmlib.schemes import CATALOGUE, Scheme, build, watermark
from wmlib.schemes.base import Watermarked
from wmlib.train import TrainConfig
from wmlib.verify import Null, Oracle, Verdict

CFG = TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=3e-3)


@pytest.fixture(scope="module")
def splits():
    return data.owner_thief_split("fashion-mnist", 0.1, seed=0, train_limit=1500, test_limit=2000)


def _settings(name: str) -> dict:
    s = dict(settings.resolve("comparison", "smoke")["schemes"].get(name, {}))
    if "target" in s and s["target"] is None:  # the function-coupled target is picked from the zoo in the chapter
        s["target"] = 7
    if "retrain_epochs" in s:
        s["retrain_epochs"] = 1
    return s


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_registered_scheme_keeps_the_contract(name, splits):
    scheme = build(name, _settings(name))
    assert isinstance(scheme, Scheme) and scheme.trials in ("labels", "bits")
    assert scheme.config()["scheme"] == scheme.name  # what the model cache hashes
    scheme.check(splits.spec)
    wm, clean, _ = watermark(scheme, f"contract-{name}", "lenet5", splits, CFG, seed=0, progress=False)
    assert isinstance(wm, Watermarked) and isinstance(wm.key, Key) and isinstance(wm.held_out, Key)
    assert wm.key.x.shape[1:] == splits.owner.x.shape[1:] and wm.seconds > 0 and not wm.loaded
    assert wm.verify_key is (wm.held_out if scheme.verifies_held_out else wm.key)
    oracle = Oracle(wm.model)
    q = scheme.queries(wm.verify_key, 20, seed=0)
    hits = scheme.hits(oracle, q)
    assert hits.dtype == torch.bool and hits.ndim == 1 and len(hits) == scheme.trial_count(q, len(q))
    chance = scheme.chance(splits.spec.num_classes)
    assert 0.0 < chance < 1.0
    before = oracle.queries
    verdict = scheme.verify(oracle, wm.verify_key, Null.binomial(chance), 0.01, n_queries=20, seed=0)
    assert isinstance(verdict, Verdict) and verdict.n == len(hits) and verdict.queries == oracle.queries - before > 0
    # the same scheme, key and data give the same model: a second call loads it from the cache
    again, _, _ = watermark(scheme, f"contract-{name}-again", "lenet5", splits, CFG, seed=0, progress=False)
    assert again.loaded and torch.equal(again.key.x, wm.key.x)
    trained, loaded = wm.model.state_dict(), again.model.state_dict()  # by name: folding EW or masks reorders them
    assert trained.keys() == loaded.keys() and all(torch.equal(trained[k], loaded[k]) for k in trained)
