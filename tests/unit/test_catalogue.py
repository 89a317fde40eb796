"""The one catalogue of watermarks (wmlib.schemes.catalogue): names, building, and the settle hook."""
import pandas as pd
import pytest

from wmlib import data, schemes, settings
from wmlib.schemes import catalogue


@pytest.fixture
def scratch(monkeypatch):
    """A catalogue of its own, so that the test's entries do not leak into the book's."""
    monkeypatch.setattr(catalogue, "CATALOGUE", {})
    monkeypatch.setattr(catalogue, "_SETTLE", {})
    return catalogue


def test_the_book_catalogue_holds_each_watermark_once_in_the_books_order():
    assert list(schemes.CATALOGUE)[:10] == ["zhang-content", "zhang-unrelated", "zhang-noise", "namba-proposal",
                                            "namba-afs", "namba-ds", "li2019", "gradsigns", "fc-direct", "fc-invisible"]
    with pytest.raises(ValueError, match="unknown watermark 'contnet'; the catalogue holds: zhang-content"):
        schemes.build("contnet")
    with pytest.raises(ValueError, match="catalogue entry .gradsigns.: carriers is None"):
        schemes.build("gradsigns", {"bits": 7})


def test_settle_calls_each_hook_once_for_the_chosen_entries_that_share_it(scratch):
    calls = []

    def hook(group, zoo, splits, seed):
        calls.append(sorted(group))
        for s in group.values():
            s["target"] = seed + len(group)

    for name in ("a", "b", "c"):
        scratch.register(name, dict, settle=hook, unsettled=lambda s, k: dict(s, target=0))
    scratch.register("plain", dict)
    with pytest.raises(ValueError, match="needs both settle= and unsettled="):
        scratch.register("half", dict, settle=hook)
    knobs = {"a": {"target": None}, "b": {"target": None, "other": 1}, "c": {"target": None}}
    settled = scratch.settle(["a", "b", "plain"], knobs, zoo=None, splits=None, seed=5)
    assert calls == [["a", "b"]]  # once, with the chosen entries only
    assert settled == {"a": {"target": 7}, "b": {"target": 7}}  # what the hook set, nothing else
    assert knobs["a"]["target"] == 7 and knobs["c"]["target"] is None and "plain" not in knobs
    assert scratch.settle(["plain"], knobs, None, None, 0) == {}


class ProbeZoo:
    """A clean zoo whose probe answers the triggers with fixed class shares."""
    def __init__(self, shares):
        self.shares = shares

    def probe(self):
        return ["zoo-0", "zoo-1"]

    def subset(self, names):
        assert names == ["zoo-0", "zoo-1"]
        return self

    def class_shares(self, x):
        return pd.Series(self.shares)


def test_the_function_coupled_target_is_settled_once_for_both_fusions_from_the_zoo():
    knobs = settings.resolve("comparison", "smoke")
    fc = {n: dict(knobs["schemes"][n]) for n in ("fc-direct", "fc-invisible")}
    i, j = fc["fc-direct"]["sources"]
    shares = {c: 0.3 for c in range(10)}
    shares.update({i: 0.0, j: 0.0, 6: 0.01})  # the sources are never the target; class 6 is the least answered
    splits = data.owner_thief_split("fashion-mnist", 0.1, seed=0, train_limit=2000, test_limit=1000)
    settled = schemes.settle(["fc-direct", "fc-invisible"], fc, ProbeZoo(shares), splits, seed=0)
    assert settled == {n: {"target": 6, "target_chosen_on": ["zoo-0", "zoo-1"]} for n in fc}
    assert schemes.build("fc-invisible", fc["fc-invisible"]).chosen_on() == ("zoo-0", "zoo-1")
    given = {n: dict(s, target=2) for n, s in fc.items() if n == "fc-direct"}
    assert schemes.settle(["fc-direct"], given, ProbeZoo(shares), splits, seed=0) == {}  # a target given stays


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_the_chapters_rivals_are_catalogue_entries_with_the_settings_their_chapters_gave_them(profile):
    """The GradSigns and function-coupled chapters embed their rivals through the catalogue; each rival is the scheme
    the chapter built by hand before (the same fields: only how it is embedded changed, through schemes.watermark)."""
    from wmlib.schemes import FineTuneKeys, Namba2019, Zhang2018
    from wmlib.schemes import function_coupled as fc
    from wmlib.schemes import gradsigns

    cfg = settings.resolve("gradsigns", profile)
    for name, s in gradsigns.rival_settings(cfg).items():
        before = (Zhang2018.from_knobs(name.split("-")[1], cfg) if name.startswith("zhang-") else
                  FineTuneKeys(kind=name.split("-")[1], n_keys=cfg["n_keys"], eps=cfg["afs_eps"], key_per_batch=4,
                               retrain_epochs=cfg["retrain_epochs"], retrain_lr=cfg["retrain_lr"]))
        assert schemes.build(name, s) == before, name
    cfg = settings.resolve("function_coupled", profile)
    retrain = dict(n_keys=cfg["n_keys"], retrain_epochs=cfg["retrain_epochs"], retrain_lr=cfg["retrain_lr"])
    before = {"zhang-content": Zhang2018(kind="content"), "namba-proposal": Namba2019(T=cfg["T"], **retrain),
              "namba-afs": FineTuneKeys(kind="afs", eps=cfg["afs_eps"], **retrain)}
    for name, s in fc.rival_settings(cfg).items():
        assert schemes.build(name, s) == before[name], name


def test_the_function_coupled_entries_share_one_target_and_a_stand_in_until_the_zoo_settles_it():
    knobs = settings.resolve("comparison", "smoke")
    fc = {n: dict(knobs["schemes"][n]) for n in ("fc-direct", "fc-invisible")}
    i, j = fc["fc-direct"]["sources"]
    stand_in = schemes.build_unsettled("fc-invisible", fc["fc-invisible"], 10)
    assert stand_in.target not in (i, j) and fc["fc-invisible"]["target"] is None  # the settings are left as they were
    assert schemes.build_unsettled("zhang-content", {}, 10) == schemes.build("zhang-content")
    mixed = {"fc-invisible": dict(fc["fc-invisible"]), "fc-direct": dict(fc["fc-direct"], target=2)}
    with pytest.raises(ValueError, match="share one target"):  # the zoo would overwrite the given 2
        schemes.settle(["fc-invisible", "fc-direct"], mixed, ProbeZoo({}), None, seed=0)
    assert mixed["fc-direct"]["target"] == 2 and mixed["fc-invisible"]["target"] is None
