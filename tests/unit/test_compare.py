"""The comparison engine: cells as Ray tasks (local mode), saved results, failures named per cell."""
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

import torch

from wmlib import attacks as wm_attacks
from wmlib import cells as engine
from wmlib import compare, keys, schemes, train
from wmlib.cells import Cell
from wmlib.schemes import Scheme
from wmlib.verify import Oracle


@pytest.fixture(scope="module", autouse=True)
def _ray():
    yield
    import ray
    ray.shutdown()


def toy_cell(cell: Cell, context: dict) -> dict:
    """Runs in a Ray worker: logs the call (to count them across processes), fails on request."""
    with open(context["log"], "a") as f:
        f.write(f"{cell}\n")
    if cell.attack in context.get("fail", ()):
        raise ValueError(f"boom in {cell.attack}")
    return {"claimed": cell.seed % 2 == 0, "statistic": 0.5 + cell.seed / 10}


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_a_two_cell_sweep_runs_on_ray_and_a_rerun_is_free(tmp_path):
    log = tmp_path / "calls.txt"
    cells = [Cell("toy", 0, "none"), Cell("toy", 1, "fine-tune")]
    ctx = {"log": str(log), "profile": "smoke"}
    out = engine.run(cells, toy_cell, ctx, num_cpus=2, progress=False)
    assert out == {cells[0]: {"claimed": True, "statistic": 0.5}, cells[1]: {"claimed": False, "statistic": 0.6}}
    assert sorted(_calls(log)) == sorted(map(str, cells))
    assert json.loads(engine.result_path(cells[1], ctx).read_text()) == out[cells[1]]
    assert engine.run(cells, toy_cell, ctx, progress=False) == out and len(_calls(log)) == 2  # loaded, not rerun
    engine.run(cells[:1], toy_cell, {**ctx, "profile": "default"}, progress=False)  # another context: recomputed
    assert len(_calls(log)) == 3


def test_a_failing_cell_is_named_the_others_are_kept_and_only_it_is_retried(tmp_path):
    log = tmp_path / "calls.txt"
    cells = [Cell("toy", 0, "none"), Cell("toy", 0, "bad")]
    ctx = {"log": str(log), "fail": ["bad"]}
    with pytest.raises(engine.CellError, match=r"1 of 2 comparison cells failed .*\[toy / seed 0 / bad\] "
                                                r"ValueError: boom in bad") as err:
        engine.run(cells, toy_cell, ctx, num_cpus=2, progress=False)
    assert set(err.value.results) == {cells[0]} and set(err.value.failed) == {cells[1]}
    assert engine.load_result(cells[0], ctx) is not None and engine.load_result(cells[1], ctx) is None

    def fixed(cell, context):  # the same context (same cache key), the bug fixed
        return toy_cell(cell, {**context, "fail": []})
    engine.run(cells, fixed, ctx, progress=False)
    calls = _calls(log)  # the first two ran in parallel, in either order; the rerun ran only the failed cell
    assert sorted(calls[:2]) == sorted(map(str, cells)) and calls[2:] == [str(cells[1])]


def knob_cell(cell: Cell, context: dict) -> dict:
    """Logs the call and reads the knob its attack is named after (another attack's knob: KeyError)."""
    with open(context["log"], "a") as f:
        f.write(f"{cell}\n")
    return {"claimed": True, "statistic": float(context["knobs"][cell.attack]) if cell.attack != "none" else 0.0}


def test_a_cell_is_keyed_by_its_own_attacks_knobs_and_cannot_read_another_attacks(tmp_path):
    log = tmp_path / "calls.txt"
    cells = [Cell("toy", 0, "none"), Cell("toy", 0, "a"), Cell("toy", 0, "b")]
    ctx = {"log": str(log), "knobs": {"a": 1, "b": 2, "shared": 0}, "owned_knobs": {"a": ["a"], "b": ["b"], "none": []}}
    assert engine.cell_context(cells[1], ctx)["knobs"] == {"a": 1, "shared": 0}
    engine.run(cells, knob_cell, ctx, num_cpus=2, progress=False)
    assert len(_calls(log)) == 3
    out = engine.run(cells, knob_cell, {**ctx, "knobs": {"a": 1, "b": 5, "shared": 0}}, progress=False)
    assert _calls(log)[3:] == [str(cells[2])] and out[cells[2]]["statistic"] == 5.0  # only b's cell reran
    engine.run(cells, knob_cell, {**ctx, "knobs": {"a": 1, "b": 5, "shared": 1}}, progress=False)
    assert len(_calls(log)) == 7  # a shared knob decides every cell
    thief = {**ctx, "owned_knobs": {"a": [], "b": ["a", "b"]}}  # attack a reads knob "a", which only b owns
    with pytest.raises(engine.CellError, match=r"\[toy / seed 0 / a\] KeyError"):
        engine.run(cells[1:2], knob_cell, thief, progress=False)


def test_every_attack_owns_the_knobs_it_declares_but_the_thiefs_recipe():
    owned = wm_attacks.owned_knobs(wm_attacks.REGISTRY)
    assert set(owned) == set(wm_attacks.REGISTRY) and owned["none"] == []
    assert "prune_rate" in owned["prune"] and "finetune_epochs" not in owned["fine-tune"]
    assert all(set(v).isdisjoint(wm_attacks.THREAT_KNOBS) for v in owned.values())


def test_duplicate_cells_and_a_bad_gpu_share_are_refused(tmp_path):
    with pytest.raises(ValueError, match="twice"):
        engine.run([Cell("toy", 0, "none")] * 2, toy_cell, {}, progress=False)
    with pytest.raises(ValueError, match=r"gpus_per_cell must be in \[0, 1\]"):
        engine.run([Cell("toy", 0, "none")], toy_cell, {"log": str(tmp_path / "l")}, gpus_per_cell=2, progress=False)


def test_claim_rate_has_an_exact_95_interval():
    rate, lo, hi = engine.claim_rate([True, True, True])
    assert rate == 1.0 and hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 3))
    rate, lo, hi = engine.claim_rate([False] * 5)
    assert (rate, lo) == (0.0, 0.0) and hi == pytest.approx(1 - 0.025 ** (1 / 5))
    with pytest.raises(ValueError, match="no verifications"):
        engine.claim_rate([])


@dataclass
class ToyNoise(Scheme):
    """A toy watermark for the matrix: uniform-noise images with random labels, 32 in every batch."""
    n: int = 40
    name = "toy-noise"

    def make_key(self, splits, seed=0, clean=None):
        s = splits.spec
        shape = (s.channels, s.image_size, s.image_size)
        return keys.uniform_noise(self.n, shape, s.num_classes, seed), keys.uniform_noise(self.n, shape, s.num_classes, seed + 1)

    def train(self, model, splits, key, cfg, **fit_kw):
        return train.fit(model, splits.owner, cfg, key=key.split, key_per_batch=32, **fit_kw)


def test_a_registered_toy_scheme_runs_through_the_matrix():
    schemes.register("toy-noise-test", lambda knobs: ToyNoise())
    with pytest.raises(ValueError, match="in the catalogue already"):
        schemes.register("toy-noise-test", lambda knobs: ToyNoise())
    knobs = dict(model="lenet5", thief_fraction=0.1, train_limit=1200, test_limit=300, epochs=12, batch_size=64,
                 optimizer="adam", lr=3e-3, zoo_confidence=0.99, n_queries=40, alpha=0.01, prune_rate=0.5,
                 quant_bits=8,
                 input_noise_std=0.1, round_decimals=2, finetune_epochs=1, finetune_lr=1e-3, sweep_rates=[0.0, 0.6], budget=0.1,
                 ae_epochs=2, ae_lr=1e-3, folds=2, percentile=95.0)
    ctx = {"dataset": "fashion-mnist", "profile": "smoke", "knobs": knobs,
           "zoo": {"train_limit": 1200, "test_limit": 300, "archs": {"lenet1": 4}, "epochs": 2}}
    cells = compare.grid(["toy-noise-test"], [0], ["none", "quantize", "rounding", "prune-finetune", "query-modification"])
    ctx["entries"] = compare.entry_context({"toy-noise-test": schemes.CATALOGUE["toy-noise-test"]}, {})
    assert ctx["entries"]["toy-noise-test"]["scheme"].startswith("ToyNoise(n=40)")
    out = engine.run(cells, functools.partial(compare.run_cell, entries=schemes.CATALOGUE), ctx, num_cpus=2, progress=False)
    none, quantized, rounding, pruned, modified = (out[c] for c in cells)
    assert pruned["test_acc"] >= 0.9 * none["test_acc"] - 0.05  # within the thief's budget (on its own test split)
    assert modified["applies"] and modified["queries"] == 40 and 0 <= modified["statistic"] <= 1
    assert none["applies"] and none["claimed"] and none["statistic"] > none["threshold"] and none["queries"] == 40
    assert quantized["claimed"] and abs(quantized["test_acc"] - none["test_acc"]) < 0.05  # 8-bit weights change little
    assert not rounding["applies"] and "labels" in rounding["reason"]
    with pytest.raises(ValueError, match=r"unknown comparison attack\(s\) 'erase'; choose from: none, fine-tune"):
        compare.grid(["toy-noise-test"], [0], ["erase"])


@dataclass
class NotEmbedded(ToyNoise):
    """Makes the toy key but embeds every key image with another label: the model answers the
    owner's key wrongly, so the unattacked verification fails."""
    name = "not-embedded"

    def train(self, model, splits, key, cfg, **fit_kw):
        wrong = keys.Key(key.x, (key.y + 1) % splits.spec.num_classes, key.meta)
        return super().train(model, splits, wrong, cfg, **fit_kw)


class ConstantAnswers(Oracle):
    """An API that answers every query with class ``c``, whatever the model says."""

    def __init__(self, inner: Oracle, c: int):
        self.inner, self.c, self.queries = inner, c, 0

    def __call__(self, x):
        self.queries += len(x)
        p = torch.zeros(len(x), self.inner(x[:1]).shape[1])
        p[:, self.c] = 1.0
        return p


class Constant(wm_attacks.Attack):
    """A toy query-side attack for the matrix: one file's worth of code, no other file touched."""
    name, side, about = "toy-constant", "query", "every query answered with class 0"

    def apply(self, model, threat):
        return wm_attacks.Suspect(ConstantAnswers(Oracle(model), 0), {"answered": 0})


def test_the_two_stage_sweep_its_tables_and_a_watermark_that_did_not_embed():
    registry = {"toy": lambda knobs: ToyNoise(), "dud": lambda knobs: NotEmbedded()}
    knobs = dict(dataset="fashion-mnist", profile="smoke", entries=["toy", "dud"], seeds=[0], model="lenet5",
                 thief_fraction=0.2, train_limit=1200, test_limit=300, epochs=12, batch_size=64, optimizer="adam",
                 lr=3e-3, zoo_confidence=0.99, n_queries=40, alpha=0.01, finetune_epochs=1,
                 finetune_lr=1e-3, thief_small=0.1, transfer_dataset="mnist-5k", transfer_epochs=1, transfer_lr=1e-3,
                 overwrite_sources=[2, 4], overwrite_target=5, overwrite_key_fraction=0.05, overwrite_epochs=1,
                 overwrite_lr=1e-3, overwrite_triggers=2, detector_epochs=2, detector_lr=0.01, detector_fpr=0.05, detector_ordinary=200)
    attacks = ["fine-tune-small", "task-transfer", "overwrite", "key-detector", "rounding", "toy-constant"]
    ctx = compare.make_context(knobs, zoo={"train_limit": 1200, "test_limit": 300, "archs": {"lenet1": 4}, "epochs": 2},
                               registry=registry)
    assert set(ctx["knobs"]).isdisjoint(compare.SWEEP_KNOBS) and set(ctx["entries"]) == {"toy", "dud"}
    suite = {**wm_attacks.REGISTRY, "toy-constant": Constant()}  # a toy attack, defined in this file alone
    cells = compare.sweep(knobs["entries"], knobs["seeds"], attacks, ctx, registry=registry, suite=suite, num_cpus=2,
                          progress=False)
    assert len(cells) == 2 * (1 + len(attacks)) and list(cells.attack[:7]) == ["none", *attacks]
    toy, dud = cells[cells.entry == "toy"].set_index("attack"), cells[cells.entry == "dud"].set_index("attack")
    assert toy.loc["none", "claimed"] and not dud.loc["none", "claimed"], cells[cells.attack == "none"].T.to_string()
    assert (dud.drop(index="none").status == "n/a").all() and "did not embed" in dud.loc["task-transfer", "reason"]
    assert "bits" in dud.loc["rounding", "reason"]  # the attack's own reason comes first
    assert toy.loc["fine-tune-small", "report_thief_images"] == 24  # a tenth of the thief's 240 images
    assert 0.0 <= toy.loc["task-transfer", "report_transfer_acc"] <= 1.0
    assert toy.loc["overwrite", "report_thief_key_acc"] >= 0.0
    assert toy.loc["key-detector", "report_auc"] > 0.9  # uniform noise against clothes: trivially detected
    pairs = toy.loc["none", "false_claim_pairs"]  # each of the 4 zoo models verified once on the owner's key
    assert [p["suspect"] for p in pairs] == [f"lenet1-s{i}" for i in range(4)] and toy.loc["none", "seconds"] > 0
    assert toy.loc["none", "false_claims"] == sum(p["claimed"] for p in pairs) == 0
    # the toy attack answers every query with class 0: the key's random labels are hit by chance only
    assert toy.loc["toy-constant", "status"] == "ok" and not toy.loc["toy-constant", "claimed"]
    assert toy.loc["toy-constant", "report_answered"] == 0 and toy.loc["toy-constant", "test_acc"] < 0.2

    mat = compare.matrix(cells)
    assert mat.loc[("toy", "none"), ["claimed", "seeds"]].tolist() == [1, 1] and mat.loc[("toy", "none"), "ci low"] == pytest.approx(0.025)
    assert mat.loc[("dud", "task-transfer"), "status"] == "n/a"
    emb = compare.embedding_table(cells)
    assert emb.loc["toy", ["embedded", "seeds"]].tolist() == [1, 1] and emb.loc["dud", "embedded"] == 0
    assert emb.loc["toy", ["false claims", "pairs", "zoo models"]].tolist() == [0, 4, 4] and emb.loc["toy", "time overhead"] > 0
    assert emb.loc["toy", "fcr bound"] == pytest.approx(1 - 0.05 ** (1 / 4))  # 0 of 4 models, one key: exact, one-sided
    assert set(compare.zoo_pairs(cells).key) == {"toy / seed 0", "dud / seed 0"}
    when = compare.which_scheme_when(mat, emb).set_index("question")["answer"]
    assert when["cheapest to embed"] == "toy"  # a scheme that did not embed is never recommended
    assert when["claims an innocent (zoo) model"] == "no scheme"


def test_a_watermark_the_zoo_puts_out_of_reach_is_not_said_to_have_failed_to_embed():
    said = compare.unclaimed_reason("fs", 0, {"claimed": False, "statistic": 0.92, "threshold": 1.01, "queries": 100})
    assert said.startswith("out of reach: fs (seed 0) answers 92% of its key queries") and "threshold 101%" in said
    assert "no count of 100 queries could be claimed" in said
    assert "did not embed" in compare.unclaimed_reason("fs", 0, {"claimed": False, "statistic": 0.2, "threshold": 0.4})
    assert "cell of fs (seed 0) failed" in compare.unclaimed_reason("fs", 0, {})  # a failed cell: no verdict at all


def test_every_reference_scheme_the_book_has_is_compared_with_its_own_entry():
    from wmlib import papers, settings
    from wmlib.schemes import CATALOGUE

    entries = settings.resolve("comparison", "full")["entries"]
    assert set(papers.wrt.BOOK_ENTRY) <= set(papers.wrt.RESCALED)
    assert all(e in CATALOGUE and e in entries for e in papers.wrt.BOOK_ENTRY.values())
    assert papers.wrt.BOOK_ENTRY["Adi"] == "adi" and papers.wrt.BOOK_ENTRY["frontier stitching"] == "frontier-stitching"


def test_the_book_entries_build_their_chapters_schemes():
    from wmlib import settings
    from wmlib.schemes import CATALOGUE, Adi2018, FrontierStitching, FunctionCoupled, GradSigns, Li2019, Namba2019, Zhang2018

    knobs = settings.resolve("comparison", "full", schemes={"fc-direct": {"target": 7}, "fc-invisible": {"target": 7}})
    built = {n: make(knobs["schemes"][n]) for n, make in CATALOGUE.items() if n in knobs["entries"]}
    assert set(built) == set(knobs["entries"]) and len(built) == 13
    assert isinstance(built["adi"], Adi2018) and (built["adi"].n_keys, built["adi"].key_per_batch) == (100, 32)
    assert isinstance(built["frontier-stitching"], FrontierStitching) and built["frontier-stitching"].eps == 0.01
    assert built["frontier-stitching"].retrain_epochs == built["namba-afs"].retrain_epochs  # retrained as Namba's keys
    assert isinstance(built["zhang-noise"], Zhang2018) and built["zhang-noise"].kind == "noise"
    assert isinstance(built["namba-proposal"], Namba2019) and built["namba-proposal"].T == 2.0
    assert isinstance(built["li2019"], Li2019) and built["li2019"].key_fraction == knobs["schemes"]["li2019"]["key_fraction"] == 0.01
    assert isinstance(built["gradsigns"], GradSigns) and built["gradsigns"].trials == "bits"
    assert built["gradsigns"].key_per_batch == 10 and built["gradsigns"].carriers == 256
    assert isinstance(built["fc-invisible"], FunctionCoupled) and built["fc-invisible"].target == 7
    assert built["fc-direct"].verifies_held_out and not built["zhang-content"].verifies_held_out
    assert built["namba-afs"].retrains and built["namba-afs"].retrain_epochs == 10
    assert built["zhang-noise"].target == 0 and built["fc-invisible"].r == 0.5 and built["fc-direct"].mask_ratio == 0.05
    with pytest.raises(ValueError, match="'target' is None"):
        CATALOGUE["fc-direct"]({**knobs["schemes"]["fc-direct"], "target": None})


def test_lukas_rule_thief_cost_and_the_cheapest_removal():
    rows = []
    for seed in (0, 1):
        rows += [dict(entry="a", seed=seed, attack="none", status="ok", claimed=True, statistic=1.0, threshold=0.3,
                      test_acc=0.90, seconds=1.0, queries=40),
                 # fails the claim and keeps the accuracy: a removal
                 dict(entry="a", seed=seed, attack="cheap", status="ok", claimed=False, statistic=0.1, threshold=0.3,
                      test_acc=0.88, seconds=2.0, work_trainings=1, work_epochs=3, queries=40),
                 # fails the claim but costs the thief 20 points: not a removal
                 dict(entry="a", seed=seed, attack="ruinous", status="ok", claimed=False, statistic=0.0, threshold=0.3,
                      test_acc=0.70, seconds=1.0, work_trainings=1, work_epochs=30, report_api_queries=500, queries=40),
                 # removes in one seed only, and is slower
                 dict(entry="a", seed=seed, attack="slow", status="ok", claimed=seed == 0, statistic=0.2, threshold=0.3,
                      test_acc=0.89, seconds=9.0, work_trainings=1, work_epochs=3, queries=40, **{"report_x:api_queries": 100}),
                 dict(entry="b", seed=seed, attack="none", status="ok", claimed=True, statistic=1.0, threshold=0.3,
                      test_acc=0.90, seconds=1.0, queries=40),
                 dict(entry="b", seed=seed, attack="cheap", status="ok", claimed=True, statistic=0.9, threshold=0.3,
                      test_acc=0.90, seconds=2.0, work_trainings=1, work_epochs=3, queries=40)]
    cells = pd.DataFrame(rows)
    att = compare.attacked_cells(cells)
    assert att.set_index(["entry", "seed", "attack"]).loc[("a", 0, "ruinous"), "accuracy loss"] == pytest.approx(0.2)
    assert not att[att.attack == "ruinous"]["removed"].any() and att[(att.entry == "a") & (att.attack == "cheap")]["removed"].all()
    removed = compare.removals(cells)
    assert removed.loc["a", "cheapest removal"] == "cheap" and removed.loc["a", "removed by (every seed)"] == 1
    assert removed.loc["a", "in some seeds only"] == "slow (1 / 2)"
    assert removed.loc["b", "cheapest removal"] == "none of the suite"
    cost = compare.thief_cost(cells)
    assert cost.loc["ruinous", "API queries"] == 500 and cost.loc["slow", "API queries"] == 100  # a chain's part counts
    assert cost.loc["cheap", "epochs"] == 3 and cost.loc["ruinous", "accuracy loss"] == pytest.approx(0.2)
    mat = compare.matrix(cells)
    emb = pd.DataFrame({"embedded": [2, 2], "seeds": [2, 2], "accuracy cost": [0.0, 0.0], "time overhead": [1.0, 1.0],
                        "queries": [40, 40], "false claims": [0, 0], "pairs": [10, 10]}, index=["a", "b"])
    when = compare.which_scheme_when(mat, emb, removed=removed).set_index("question")["answer"]
    assert when["no attack of the suite removes it (Lukas et al.'s rule)"] == "b"
    chained = cells[cells.attack == "cheap"].assign(attack="cheap+slow")
    lk = compare.lukas_findings(compare.attacked_cells(pd.concat([cells, chained])))
    assert lk["unremoved"] == ["b"] and lk["removes_all"] == []
    share, why = lk["chains"]["cheap+slow"]
    assert share == 0.5 and why.startswith("not removed in every seed: b (claimed in 2 of 2 seeds")
    # the SoK's "best attack": of the removals in every seed, the least accuracy lost; slow (one seed) and ruinous
    # (20 points) are no removals, and b has none
    cheap_but_lossy = cells[cells.attack == "cheap"].assign(attack="gentle", test_acc=0.895)
    best = compare.best_removals(compare.attacked_cells(pd.concat([cells, cheap_but_lossy])))
    assert list(best.index) == ["a"] and best.loc["a", "attack"] == "gentle"
    assert best.loc["a", "accuracy loss"] == pytest.approx(0.005) and best.loc["a", "threshold"] == pytest.approx(0.3)
    assert compare.best_removals(compare.attacked_cells(cells)).loc["a", "attack"] == "cheap"
    # a family's question asks only about the family's attacks this sweep ran: here the backdoor defences, nad alone
    nad = cells[cells.attack == "cheap"].assign(attack="nad")
    when = compare.which_scheme_when(compare.matrix(pd.concat([cells, nad])), emb).set_index("question")
    assert when.loc["survives the backdoor defences (nad)", "answer"] == "b"  # names what ran: no ANP here
    assert not when.index.str.startswith("survives input preprocessing").any()  # none of that family ran


def test_no_function_coupled_entry_no_target_and_no_triggers():
    from wmlib import settings

    class Untouchable:  # a zoo that must not be asked: no trigger is made when no fc entry is chosen
        def class_shares(self, x):
            raise AssertionError("triggers were made for an entry that is not chosen")

    knobs = settings.resolve("comparison", "smoke")
    assert not any(e.startswith("fc-") for e in knobs["entries"])
    assert schemes.settle(knobs["entries"], knobs["schemes"], Untouchable(), None, 0) == {}
    assert knobs["schemes"]["fc-direct"]["target"] is None  # left to a run that chooses it


def test_precision_spread_holds_bf16_to_the_fp32_seeds_range():
    import pandas as pd
    rows = [{"entry": "e", "precision": p, "seed": s, "test accuracy": a, "key hit rate": h, "claimed": c}
            for p, s, a, h, c in [("fp32", 0, 0.80, 1.0, True), ("fp32", 1, 0.84, 0.9, True), ("fp32", 2, 0.82, 1.0, True),
                                  ("bf16", 0, 0.83, 0.5, True), ("bf16", 1, 0.85, 0.6, False), ("bf16", 2, 0.84, 0.7, True)]]
    out = compare.precision_spread(pd.DataFrame(rows)).set_index("metric")
    acc, hits = out.loc["test accuracy"], out.loc["key hit rate"]
    assert acc["fp32 spread"] == pytest.approx(0.04) and acc["bf16 - fp32 (means)"] == pytest.approx(0.02)
    assert bool(acc["within spread"]) and not bool(hits["within spread"])  # 0.6 vs 0.967: beyond a 0.1 spread
    assert hits["claimed (fp32 / bf16)"] == "3/3 / 2/3"


def test_which_scheme_when_asks_what_each_attack_declares_in_the_suites_order_families_last():
    qs = compare.questions(wm_attacks.REGISTRY)
    asked = {q: (family, names) for q, family, names in qs}
    assert asked["survives fine-tuning (both thief sizes)"] == (False, ["fine-tune", "fine-tune-small"])
    assert asked["survives model extraction (retraining, distillation, knockoff)"][1] == [
        "retrain-labels", "retrain-other-arch", "distillation", "knockoff"]
    assert asked["survives the backdoor defences"] == (True, ["nad", "anp"])
    assert len(asked["survives the reference toolkit's five chains"][1]) == 5
    assert not any("prune-finetune-oracle" in names for _, _, names in qs)  # a worst-case search is asked nothing
    kinds = [family for _, family, _ in qs]
    assert kinds == sorted(kinds) and qs[0][0] == "survives fine-tuning (both thief sizes)"
    # an attack of one's own asks its own question, after the book's
    own = dict(wm_attacks.REGISTRY)
    own["blur"] = type("Blur", (wm_attacks.Attack,), {"name": "blur", "question": "survives blurred queries",
                                                      "apply": lambda self, m, t: None})()
    assert [q for q, family, _ in compare.questions(own) if not family][-1] == "survives blurred queries"


def test_the_extraction_table_counts_thieves_that_train_their_own_model_and_says_who_survives():
    from types import SimpleNamespace as NS

    suite = {"steal": NS(extraction=True, answers="labels"), "distil": NS(extraction=True, answers="scores"),
             "tune": NS(extraction=False, answers=""), "search": NS(extraction=True, answers="labels")}
    rows = []
    outcomes = {"a": {"steal": [(False, 0.01), (False, 0.02)], "distil": [(True, 0.01), (False, 0.0)]},
                "b": {"steal": [(True, 0.01), (False, 0.10)], "distil": [(True, 0.0), (True, 0.0)]},
                "c": {"distil": [(True, 0.0, 0.9), (True, 0.0, 0.9)]},  # its untriggered twin claimed alike: a class, no key
                "d": {"steal": [(True, 0.2), (True, 0.3)]}}  # claimed, but by thieves that failed: no verdict
    for entry, per in outcomes.items():
        for attack, seeds in per.items():
            for seed, (claimed, loss, *twin) in enumerate(seeds):
                rows.append({"entry": entry, "attack": attack, "seed": seed, "claimed": claimed, "statistic": 0.5 + claimed / 4,
                             "threshold": 0.6, "accuracy loss": loss, "removed": not claimed and loss <= 0.05, "oracle": False,
                             "twin_statistic": twin[0] if twin else float("nan")})
        rows.append({"entry": entry, "attack": "tune", "seed": 0, "claimed": False, "statistic": 0.1, "threshold": 0.6,
                     "accuracy loss": 0.0, "removed": True, "oracle": False})  # no extraction: left out
        rows.append({"entry": entry, "attack": "search", "seed": 0, "claimed": False, "statistic": 0.1, "threshold": 0.6,
                     "accuracy loss": 0.0, "removed": False, "oracle": True})  # a worst-case search: no thief
    emb = pd.DataFrame({"accuracy cost": [0.01, 0.02, 0.0, 0.0], "time overhead": [1.1, 1.5, 1.0, 1.0]}, index=list("abcd"))
    table = compare.extraction_table(pd.DataFrame(rows), emb, suite)
    assert list(table.index) == [("a", "steal"), ("a", "distil"), ("b", "steal"), ("b", "distil"), ("c", "distil"),
                                 ("d", "steal")]
    assert table.loc[("a", "distil"), ["answers", "claimed", "seeds", "kept", "removed"]].tolist() == ["scores", 1, 2, 1, 1]
    assert table.loc[("b", "steal"), ["claimed", "kept", "removed", "thief failed"]].tolist() == [1, 1, 0, 1]
    assert table.loc[("c", "distil"), ["claimed", "kept", "untriggered twin"]].tolist() == [2, 0, 0.9]
    assert table.loc[("d", "steal"), ["claimed", "kept", "thief failed"]].tolist() == [2, 0, 2]
    assert table.loc[("a", "steal"), "ci high"] == pytest.approx(1 - 0.025 ** 0.5)  # 0 of 2, exact
    assert table.loc[("b", "distil"), "owner's time overhead"] == 1.5
    text = compare.extraction_text(table)
    assert text.startswith("b kept its claim in every seed under some extraction attack whose thief stayed within 5 points")
    assert ("a: kept under 0 of 2 attacks, removed by 1; b: kept under 1 of 2 attacks (distil), removed by 0; "
            "c: kept under 0 of 1 attacks, removed by 0; d: kept under 0 of 1 attacks, removed by 0, 1 thieves lost more "
            "than 5 points") in text
    gone = compare.extraction_text(table.drop(index=[("b", "steal"), ("b", "distil")]))
    assert gone.startswith("no watermark of the sweep kept its claim")
    assert compare.extraction_text(table.iloc[:0]).startswith("no extraction attack ran")


def test_every_extraction_attack_says_what_it_learns_from():
    from wmlib import attacks

    said = {n: a.answers for n, a in attacks.REGISTRY.items() if a.extraction}
    assert said and set(said.values()) <= {"labels", "scores", "none"}, said
    assert said["retrain-labels"] == "labels" and said["distillation"] == "scores" and said["transfer-learning"] == "none"
    assert all(not a.answers for a in attacks.REGISTRY.values() if not a.extraction)
