"""What a thief has and what it does not: the threat holds nothing of the owner's, a worst-case search
is labelled and never a removal, no attack holds a key image, the thief decides on its own
validation split, and the extraction attacks train what they say (fresh weights, Hinton's loss,
no task data for the knockoff)."""
import dataclasses

import pandas as pd
import pytest
import torch
from torch import nn

from tests.conftest import blobs
from wmlib import attacks, compare, data, models, schemes, train
from wmlib.attacks import extraction
from wmlib.attacks import model as model_attacks
from wmlib.data import REGISTRY as DATASETS
from wmlib.data import Split
from wmlib.verify import Oracle

FMNIST = DATASETS["fashion-mnist"]


def _threat(thief: Split, **settings) -> attacks.Threat:
    return attacks.Threat(thief=thief, spec=FMNIST, seed=0,
                          finetune=train.TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=1e-3, seed=0),
                          budget=0.05, settings=settings, model_name="lenet5", scheme=None)


# --------------------------------------------------------------------------- the threat

def test_the_threat_holds_nothing_of_the_owners():
    names = {f.name for f in dataclasses.fields(attacks.Threat)}
    assert not names & {"verify_key", "hit_rate", "key", "held_out"}
    assert not any("key" in n or "hit" in n for n in names)


def test_a_worst_case_search_is_labelled_and_refuses_a_thiefs_threat(trained):
    worst = attacks.REGISTRY["prune-finetune-oracle"]
    assert worst.oracle and not attacks.REGISTRY["prune-finetune"].oracle
    assert [a for a, x in attacks.REGISTRY.items() if x.oracle] == ["prune-finetune-oracle"]
    with pytest.raises(TypeError, match="worst-case search"):
        worst.apply(trained, _threat(blobs(100), sweep_rates=[0.0]))


def test_the_thiefs_prune_finetune_takes_the_highest_rate_its_own_validation_split_affords(trained):
    """Decided on the thief's validation split alone: the owner's key and the test split never enter."""
    thief = blobs(300, seed=4)
    cfg = train.TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=1e-3, seed=0)
    sweep, rate, _ = attacks.thief_prune_finetune(trained, thief, cfg, [0.0, 0.5, 0.99], budget=0.05)
    base = train.evaluate(trained, thief.subset(slice(0, 90)))
    assert sweep["affordable"].tolist() == (sweep["val_acc"] >= base - 0.05).tolist()
    assert rate == sweep[sweep["affordable"]]["rate"].max()
    assert not sweep.loc[sweep.rate == 0.99, "affordable"].item()  # 99 % pruned loses more than 5 points
    # the worst case takes the affordable rate the owner's statistic scores lowest, whatever its rate
    # (here the owner's statistic is made to score the unpruned model lowest)
    _, worst_rate, _ = attacks.thief_prune_finetune(trained, thief, cfg, [0.0, 0.5], budget=1.0,
                                                    measure=lambda m: 0.2 if model_attacks.sparsity(m) < 0.25 else 0.9)
    assert worst_rate == 0.0


def test_the_budget_is_absolute_points_on_the_thiefs_validation_split(trained, monkeypatch):
    """Scripted validation accuracies: the stolen model 0.50; rates 0, 0.5, 0.9 give 0.50, 0.46, 0.44. Five points
    afford 0 and 0.5 (0.46 >= 0.45); 5 % of 0.50 would afford only 0 (0.46 < 0.475)."""
    acc = {None: 0.50, 0.0: 0.50, 0.5: 0.46, 0.9: 0.44}
    seen = []

    def pf(model, rate, thief, cfg, val_fraction=0.3):
        m = nn.Linear(1, 1)
        m.rate = rate
        return m

    def evaluate(model, split, device=None):
        seen.append(len(split))
        return acc[getattr(model, "rate", None)]
    monkeypatch.setattr(model_attacks, "prune_finetune", pf)
    monkeypatch.setattr(model_attacks, "evaluate", evaluate)
    sweep, rate, _ = attacks.thief_prune_finetune(trained, blobs(300), None, [0.0, 0.5, 0.9], budget=0.05)
    assert sweep["affordable"].tolist() == [True, True, False] and rate == 0.5
    assert set(seen) == {90}  # every accuracy it decides on is the validation split's (30 % of 300)


# --------------------------------------------------------------------------- no attack holds a key image

def test_the_public_shares_are_disjoint_halves_and_fixed():
    for train_split in (True, False):
        xo, _ = data.public_share("mnist-5k", train_split, "owner")
        xt, _ = data.public_share("mnist-5k", train_split, "thief")
        x, _ = data.load("mnist-5k", train_split)
        assert len(xo) + len(xt) == len(x) and abs(len(xo) - len(xt)) <= 1
        assert not compare.image_digests(xo) & compare.image_digests(xt)
    assert torch.equal(data.public_share("mnist-5k", True, "thief")[0], data.public_share("mnist-5k", True, "thief")[0])
    with pytest.raises(ValueError, match="owner, thief"):
        data.public_share("mnist-5k", True, "both")


def test_overlap_is_decided_by_images_not_names():
    assert data.may_overlap(("mnist-5k", True, "thief"), ("mnist-5k", True, "thief"))
    assert not data.may_overlap(("mnist-5k", True, "thief"), ("mnist-5k", True, "owner"))
    assert not data.may_overlap(("mnist-5k", True, "thief"), ("mnist-5k", False, "thief"))
    assert data.may_overlap(("mnist5k-rgb32-standin", True, "owner"), ("mnist-5k", True, "owner"))  # the same images
    assert data.may_overlap(("mnist", False, "thief"), ("mnist-5k", True, "owner"))  # a subset of MNIST: cannot tell


def test_zhangs_unrelated_keys_come_from_the_owners_half_and_the_knockoff_from_the_thieves(toy_splits):
    from wmlib.schemes import Zhang2018

    z = Zhang2018(kind="unrelated", unrelated_dataset="mnist-5k", unrelated_class=1)
    key, held_out = z.make_key(toy_splits, seed=0)
    owner = compare.image_digests(torch.cat([data.public_share("mnist-5k", t, "owner")[0] for t in (True, False)]))
    assert compare.image_digests(key.x) <= owner and compare.image_digests(held_out.x) <= owner
    queries = extraction.knockoff_queries("mnist-5k", 2000, FMNIST, seed=0)
    assert not compare.image_digests(queries) & (compare.image_digests(key.x) | compare.image_digests(held_out.x))
    with pytest.raises(ValueError, match=r"knockoff_budget must be in \[1, 2000\]"):
        extraction.knockoff_queries("mnist-5k", 2001, FMNIST, seed=0)


def test_an_attack_on_a_keys_images_is_refused_when_the_knobs_are_read():
    from wmlib.schemes import Zhang2018

    entries = {"zhang-unrelated": Zhang2018(kind="unrelated", unrelated_dataset="mnist-5k", unrelated_class=1)}
    suite = {"knockoff": attacks.REGISTRY["knockoff"], "task-transfer": attacks.REGISTRY["task-transfer"]}
    compare.check_public_images(entries, suite, {"knockoff_dataset": "mnist-5k", "transfer_dataset": "mnist-5k"},
                                "fashion-mnist")  # the thieves' half: fine
    with pytest.raises(ValueError, match="knockoff.*may share images with entry 'zhang-unrelated'"):
        compare.check_public_images(entries, suite, {"knockoff_dataset": "mnist", "transfer_dataset": "mnist-5k"},
                                    "fashion-mnist")  # the whole of MNIST holds the 5,000 digits: it may hold a key


def test_the_run_time_check_finds_a_key_image_in_the_thiefs_data():
    from wmlib.keys import Key

    images = blobs(20, seed=3)
    key = Key(images.x, images.y)

    class Holds(attacks.Attack):
        name = "holds"

        def images(self, threat):
            return key.x[:1]

        def apply(self, model, threat):
            raise AssertionError("not run")

    own, keyed = blobs(50, seed=4), compare.image_digests(key.x)
    compare.check_disjoint(keyed, compare.cell_images(attacks.REGISTRY["fine-tune"], _threat(own)))  # disjoint: passes
    with pytest.raises(RuntimeError, match="holds's public images share 1 image"):
        compare.check_disjoint(keyed, compare.cell_images(Holds(), _threat(own)))
    leaked = Split(torch.cat([own.x, key.x[5:7]]), torch.cat([own.y, key.y[5:7]]))
    with pytest.raises(RuntimeError, match="the thief's own images share 2 image"):
        compare.check_disjoint(keyed, compare.cell_images(attacks.REGISTRY["fine-tune"], _threat(leaked)))


# --------------------------------------------------------------------------- extraction trains what it says

class _NoTaskData(Split):
    """A thief split that fails when read: the knockoff has no task data."""

    def __getattribute__(self, name):
        if name in ("x", "y"):
            raise AssertionError("the knockoff read the thief's task data")
        return object.__getattribute__(self, name)


def test_the_knockoff_never_reads_the_thiefs_task_data(trained):
    thief = _NoTaskData(torch.zeros(0, 1, 28, 28, dtype=torch.uint8), torch.zeros(0).long())
    t = _threat(thief, extract_epochs=1, extract_lr=1e-3, knockoff_dataset="mnist-5k", knockoff_budget=150,
                optimizer="adam", batch_size=64, schedule="none", milestones=[], momentum=0.9, weight_decay=0.0,
                augment=False, epochs=1)
    out = attacks.REGISTRY["knockoff"].apply(trained, t)
    assert out.report["api_queries"] == 150  # its budget, not the size of any task split


def _capture(monkeypatch):
    got = {}

    def spy(net, split, cfg, **kw):
        got.update(net=net, split=split, kw=kw, init={k: v.clone() for k, v in net.state_dict().items()})
        return train.History()
    monkeypatch.setattr(extraction, "fit_cached", spy)
    return got


def test_an_extracted_student_starts_from_fresh_weights_not_the_stolen_ones(trained, monkeypatch):
    got = _capture(monkeypatch)
    cfg = train.TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=1e-3, seed=5)
    extraction.extract(Oracle(trained), blobs(64).x, "lenet5", FMNIST, cfg)
    torch.manual_seed(5)
    fresh = models.build("lenet5", 1, 10).state_dict()
    assert all(torch.equal(got["init"][k], fresh[k]) for k in fresh)  # the seed's initial weights, exactly
    assert not any(torch.equal(got["init"][k], v) for k, v in trained.state_dict().items() if v.is_floating_point())


@pytest.mark.parametrize("T", [1.0, 3.0])
def test_distillation_minimises_t_squared_times_the_cross_entropy_at_t(trained, monkeypatch, T):
    got = _capture(monkeypatch)
    x = blobs(64).x
    cfg = train.TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=1e-3, seed=5)
    student, _ = extraction.extract(Oracle(trained), x, "lenet5", FMNIST, cfg, labels="scores", T=T)
    net, soft = got["net"], got["split"].y
    with torch.no_grad():
        teacher = trained(train.to_float(x))
    assert torch.allclose(soft, torch.softmax(teacher.double() / T, 1).float(), atol=1e-5)  # the teacher's scores at T
    xf = train.to_float(x)
    logits = net(xf)
    loss = nn.functional.cross_entropy(logits, soft)
    if "extra_loss" in got["kw"]:
        loss = loss + got["kw"]["extra_loss"](net, xf, soft, logits)
    want = T * T * nn.functional.cross_entropy(student(xf) / T, soft)
    assert torch.allclose(loss, want, rtol=1e-5)


# --------------------------------------------------------------------------- what the matrix counts

def _cells(rows):
    base = dict(seed=0, status="ok", claimed=True, statistic=1.0, threshold=0.5, test_acc=0.9, queries=10, reason="",
                seconds=1.0, oracle=False)
    return pd.DataFrame([{**base, **r} for r in rows])


def test_a_worst_case_search_is_an_upper_bound_never_a_removal():
    cells = _cells([dict(entry="w", attack="none"), dict(entry="w", attack="prune-finetune-oracle", claimed=False, oracle=True),
                    dict(entry="w", attack="fine-tune", claimed=True)])
    att = compare.attacked_cells(cells)
    assert not att["removed"].any()
    assert compare.removals(cells).loc["w", "cheapest removal"] == "none of the suite"
    mat = compare.matrix(cells)
    assert bool(mat.loc[("w", "prune-finetune-oracle"), "oracle"]) and not bool(mat.loc[("w", "fine-tune"), "oracle"])
    cells.loc[1, "oracle"] = False  # the same cell from a thief: a removal
    assert compare.removals(cells).loc["w", "cheapest removal"] == "prune-finetune-oracle"


def test_nothing_to_act_on_is_not_a_survival():
    cells = _cells([dict(entry="w", attack="none"), dict(entry="w", attack="neural-cleanse", status="no action", seed=0),
                    dict(entry="w", attack="neural-cleanse", seed=1, claimed=True), dict(entry="w", attack="none", seed=1)])
    mat = compare.matrix(cells)
    row = mat.loc[("w", "neural-cleanse")]
    assert row["seeds"] == 1 and row["claimed"] == 1 and "1 seed(s) with nothing to act on" in row["reason"]
    only_idle = compare.matrix(cells[cells.seed == 0])
    assert only_idle.loc[("w", "neural-cleanse"), "status"] == "no action"


def _run_toy_cell(attack: attacks.Attack) -> dict:
    """The comparison's cell of owner 0 on a toy noise watermark (its key drawn from seed 0) under ``attack``."""
    from tests.unit.test_compare import ToyNoise
    from wmlib.cells import Cell

    knobs = dict(model="lenet5", thief_fraction=0.1, train_limit=600, test_limit=200, epochs=2, batch_size=64,
                 optimizer="adam", lr=3e-3, zoo_confidence=0.99, n_queries=40, alpha=0.01,
                 finetune_epochs=1, finetune_lr=1e-3, budget=0.05)
    ctx = {"dataset": "fashion-mnist", "profile": "smoke", "knobs": knobs,
           "zoo": {"train_limit": 600, "test_limit": 200, "archs": {"lenet1": 3}, "epochs": 1, "dead_below": 0.0},  # not meant to learn
           "entries": {"toy": {"settings": {}, "scheme": "ToyNoise"}}}
    return compare.run_cell(Cell("toy", 0, attack.name), ctx, {"toy": lambda s: ToyNoise()}, {attack.name: attack})


def test_a_cell_whose_attack_holds_a_key_image_is_refused():
    """The run-time check of the comparison's cells: an attack whose public images happen to include the owner's
    key (here the toy scheme's noise key, regenerated from owner 0's seed) stops the cell before it runs."""
    from wmlib import keys

    class Holds(attacks.Attack):
        name = "holds"

        def images(self, threat):
            return keys.uniform_noise(40, (1, 28, 28), 10, 0).x  # owner 0's key, as if it were public

        def apply(self, model, threat):
            raise AssertionError("the cell must stop before the attack runs")

    with pytest.raises(RuntimeError, match="holds's public images share 40 image"):
        _run_toy_cell(Holds())


# --------------------------------------------------------------------------- the thief's own seed, keys and held-out data

def test_the_thief_has_its_own_seed_and_it_regenerates_no_owners_key(toy_splits):
    from wmlib.schemes import FineTuneKeys

    seeds = [compare.thief_seed(s) for s in range(5)]
    assert len(set(seeds)) == 5 and not set(seeds) & set(range(100_000))  # far from every owner seed
    ds = FineTuneKeys(kind="ds")  # a key drawn from its seed alone (uniform noise with random labels)
    owner, _ = ds.make_key(toy_splits, seed=0)
    theirs, _ = ds.make_key(toy_splits, seed=compare.thief_seed(0))
    assert not compare.image_digests(owner.x) & compare.image_digests(theirs.x)


def test_the_thiefs_own_task_holds_out_its_own_images_not_the_test_split():
    names = {f.name for f in dataclasses.fields(attacks.Threat)}
    assert "test" not in names  # the owners' held-out keys are made from the test split
    t = _threat(blobs(100, seed=4))
    own = t.splits
    assert len(own.owner) == 80 and len(own.test) == 20 and len(own.thief) == 0
    assert compare.image_digests(torch.cat([own.owner.x, own.test.x])) == compare.image_digests(t.thief.x)


def test_a_thiefs_unrelated_keys_come_from_the_thieves_half(toy_splits):
    from wmlib.schemes import Zhang2018

    z = Zhang2018(kind="unrelated", unrelated_dataset="mnist-5k", unrelated_class=1)
    owner, held_out = z.make_key(toy_splits, seed=0)
    theirs = z.thief_key(toy_splits, compare.thief_seed(0), None, "lenet5", None, "t")
    assert len(theirs) > 0 and (theirs.y == z.target).all()
    assert not compare.image_digests(theirs.x) & (compare.image_digests(owner.x) | compare.image_digests(held_out.x))


def test_lis_thief_trains_an_encoder_from_its_own_seed(monkeypatch, toy_splits):
    from wmlib.schemes import Li2019

    seen = {}

    def spy(self, tag, model_name, splits, key, cfg, **kw):
        seen["seed"] = self.seed
        raise RuntimeError("stop")
    monkeypatch.setattr(Li2019, "train_or_load", spy)
    with pytest.raises(RuntimeError, match="stop"):
        Li2019(seed=0).thief_key(toy_splits, 12345, None, "lenet5", None, "t")
    assert seen["seed"] == 12345


def test_a_cell_whose_attack_makes_a_key_image_is_refused_after_it_runs():
    from wmlib import keys

    class Makes(attacks.Attack):
        name = "makes"

        def apply(self, model, threat):
            return attacks.Suspect(Oracle(model), {}, {"images": keys.uniform_noise(40, (1, 28, 28), 10, 0).x[:3]})

    with pytest.raises(RuntimeError, match="the images makes made share 3 image"):
        _run_toy_cell(Makes())


# --------------------------------------------------------------------------- a seed left alone is no evidence

def test_a_seed_the_attack_left_alone_is_neither_a_removal_nor_a_survival():
    rows = [dict(entry="w", attack="none", seed=s) for s in range(3)]
    rows += [dict(entry="w", attack="neural-cleanse", seed=0, claimed=False),  # removed in seed 0
             dict(entry="w", attack="neural-cleanse", seed=1, status="no action", claimed=True),
             dict(entry="w", attack="neural-cleanse", seed=2, status="no action", claimed=True)]
    cells = _cells(rows)
    assert compare.removals(cells).loc["w", "cheapest removal"] == "none of the suite"
    att = compare.attacked_cells(cells)
    assert compare.lukas_findings(att)["removes_all"] == []
    survived = _cells([dict(entry="w", attack="none", seed=s) for s in range(2)]
                      + [dict(entry="w", attack="neural-cleanse", seed=0, claimed=True),
                         dict(entry="w", attack="neural-cleanse", seed=1, status="no action", claimed=True)])
    mat = compare.matrix(survived)
    emb = pd.DataFrame({"embedded": [2], "seeds": [2], "accuracy cost": [0.0], "time overhead": [1.0], "queries": [10],
                        "false claims": [0], "pairs": [10]}, index=["w"])
    when = compare.which_scheme_when(mat, emb).set_index("question")["answer"]
    assert when.get("survives fine-pruning and Neural Cleanse", "no scheme") != "w"  # one acted seed is not every seed


def test_a_chain_hands_the_next_part_the_model_the_one_before_left(trained, monkeypatch):
    from wmlib.attacks import combined

    handed = {}

    class First(attacks.Attack):
        name = "first"

        def apply(self, model, threat):
            made = nn.Sequential(model)  # a new model object
            return attacks.Suspect(Oracle(made), {"acted": False})

    class Second(attacks.Attack):
        name = "second"

        def apply(self, model, threat):
            handed["model"] = model
            return attacks.Suspect(Oracle(model), {})

    monkeypatch.setitem(attacks.REGISTRY, "first", First())
    monkeypatch.setitem(attacks.REGISTRY, "second", Second())
    out = combined.Chain(["first", "second"]).apply(trained, _threat(blobs(10)))
    assert isinstance(handed["model"], nn.Sequential) and handed["model"][0] is trained
    assert out.report["acted"] is True  # the second part acted (on what the first handed on)


@pytest.mark.parametrize("entry", ["zhang-content", "zhang-unrelated", "zhang-noise", "namba-ds", "gradsigns",
                                   "fc-direct", "fc-invisible"])
def test_the_key_detectors_thief_can_make_its_keys_at_the_default_thiefs_size(entry):
    """The default comparison's thief holds 1,500 images: every entry's make_key (the held-out part included, which
    the thief discards) must find its images in the thief's task (the function-coupled schemes ask 90 triggers of
    each source class, GradSigns 50 images of its carrier class)."""
    from wmlib import settings

    cfg = settings.resolve("comparison", "default")
    s = dict(cfg["schemes"].get(entry, {}))
    if "sources" in s and s.get("target") is None:
        s["target"] = next(c for c in range(10) if c not in s["sources"])
    scheme = schemes.build(entry, s)
    t = dataclasses.replace(_threat(blobs(1500, seed=4)), scheme=scheme)
    key, _ = scheme.make_key(attacks.KeyDetector.task(t), seed=t.seed)
    assert len(key) > 0


def test_lis_thief_encoder_trains_on_the_thiefs_images_only(monkeypatch, toy_splits):
    """The chapter's detector (Figs. 6-7): the thief's encoder is trained on the thief's task, from its seed."""
    from wmlib.schemes import Li2019

    seen = {}

    def spy(self, tag, model_name, splits, key, cfg, **kw):
        seen.update(seed=self.seed, owner=splits.owner.x, key=key.x)
        raise RuntimeError("stop")
    monkeypatch.setattr(Li2019, "train_or_load", spy)
    task = toy_splits.thief_task()
    with pytest.raises(RuntimeError, match="stop"):
        Li2019(seed=0).thief_encoder(task, 777, "lenet5", None, "t")
    assert seen["seed"] == 777 and seen["owner"] is task.owner.x
    assert compare.image_digests(seen["key"]) <= compare.image_digests(toy_splits.thief.x)
    assert not compare.image_digests(seen["key"]) & compare.image_digests(toy_splits.owner.x)


# --------------------------------------------------------------------------- the reference toolkit's thief

def test_the_reference_thief_fine_tunes_on_a_third_extracts_on_everything_and_never_holds_a_key(toy_splits):
    from wmlib.cells import Cell

    owner = compare.Owner(toy_splits, None, 0.0, None)
    keys = compare.image_digests(toy_splits.owner.x[:30])  # a key made of training images (Namba & Sakuma's relabelled)
    pool = len(toy_splits.owner) + len(toy_splits.thief) - 30
    third = compare.reference_thief(owner, False, keys)
    everything = compare.reference_thief(owner, True, keys)
    assert len(third) == pool // 3 and len(everything) == pool
    assert not (compare.image_digests(everything.x) & keys)
    assert compare.image_digests(toy_splits.owner.x[30:]) <= compare.image_digests(everything.x)  # the owner's images too
    assert torch.equal(third.x, everything.x[:pool // 3])  # the first third, in the split's order
    knobs = {"model": "lenet5", "finetune_epochs": 1, "finetune_lr": 1e-3, "batch_size": 64, "budget": 0.05}
    cell = Cell("toy", 0, "fine-tune")
    book = compare.threat(cell, owner, None, knobs, attacks.get("fine-tune"))
    assert book.thief is toy_splits.thief and "refthief" not in book.tag
    ref = {**knobs, "thief_view": "reference"}
    tuned = compare.threat(cell, owner, None, ref, attacks.get("fine-tune"), key_images=keys)
    stolen = compare.threat(cell, owner, None, ref, attacks.get("retrain-labels"), key_images=keys)
    chained = compare.threat(cell, owner, None, ref, attacks.get("transfer-learning+input-smoothing-gaussian"), key_images=keys)
    assert len(tuned.thief) == pool // 3 and len(stolen.thief) == len(chained.thief) == pool and "refthief" in tuned.tag
    with pytest.raises(ValueError, match="give key_images"):
        compare.threat(cell, owner, None, ref, attacks.get("fine-tune"))
    with pytest.raises(ValueError, match="thief_view must be one of"):
        compare.threat(cell, owner, None, {**knobs, "thief_view": "wrt"}, attacks.get("fine-tune"), key_images=keys)


def test_the_two_thieves_side_by_side_and_the_knob_that_chooses_the_attacks():
    from wmlib import settings

    def cells(claimed_after):
        rows = []
        for entry in ("a", "b"):
            rows.append(dict(entry=entry, seed=0, attack="none", status="ok", claimed=True, statistic=1.0, threshold=0.3,
                             test_acc=0.90, seconds=1.0, queries=40))
            rows.append(dict(entry=entry, seed=0, attack="fine-tune", status="ok", claimed=claimed_after[entry],
                             statistic=0.9 if claimed_after[entry] else 0.1, threshold=0.3, test_acc=0.89, seconds=1.0,
                             queries=40))
        return pd.DataFrame(rows)
    views = compare.thief_views(cells({"a": True, "b": True}), cells({"a": False, "b": True})).set_index("thief")
    assert views.loc["book", "removed (every seed)"] == 0 and views.loc["reference", "removed (every seed)"] == 1
    assert views.loc["reference", "claim rate"] == 0.5 and views.loc["book", "watermarks"] == 2
    text = compare.thief_views_text(views.reset_index())
    assert text.startswith("fine-tune: 0 of 2 removed by the book's thief, 1 by the reference's")
    assert "did not run" in compare.thief_views_text(pd.DataFrame())
    with pytest.raises(ValueError, match="reference_thief_attacks.*query-side"):
        settings.resolve("comparison", "smoke", reference_thief_attacks=["rounding"])
    with pytest.raises(ValueError, match="reference_thief_attacks.*worst-case search"):
        settings.resolve("comparison", "smoke", reference_thief_attacks=["prune-finetune-oracle"])
