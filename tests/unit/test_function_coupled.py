from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from tests.conftest import blobs
from wmlib import models, train, verify
from wmlib.data import REGISTRY, Splits
from wmlib.schemes import FunctionCoupled
from wmlib.schemes import function_coupled as fc

CFG = train.TrainConfig(epochs=4, batch_size=64, optimizer="adam", lr=3e-3, weight_decay=5e-4)


@pytest.fixture(scope="module")
def toy() -> Splits:
    return Splits(blobs(800), blobs(200, seed=1), blobs(600, seed=2), REGISTRY["fashion-mnist"])


def test_bad_knobs():
    for kw, match in ((dict(fusion="blend"), "direct, invisible"), (dict(r=1.0), r"r must be in \(0, 1\)"),
                      (dict(sources=(2, 2)), "two different classes"), (dict(target=3), "must not be a source"),
                      (dict(key_fraction=0.0), "key_fraction"), (dict(verify_triggers=0), "verify_triggers"),
                      (dict(mask_ratio=1.0), r"mask_ratio .* \[0, 1\)"), (dict(ft_lr=-1.0), "ft_lr"),
                      (dict(mask_scope="conv"), "features, all")):
        with pytest.raises(ValueError, match=match):
            FunctionCoupled(**kw)


def test_direct_fusion_puts_the_sources_in_opposite_corners_of_a_white_canvas():
    a = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    b = torch.full((2, 1, 28, 28), 100, dtype=torch.uint8)
    out = fc.fuse_direct(a, b)
    assert out.shape == a.shape and out.dtype == torch.uint8
    # a 2x downsampling with half-pixel centres averages 2 x 2 blocks: each quarter is exact
    assert (out[..., :14, :14] == 0).all() and (out[..., 14:, 14:] == 100).all()
    assert (out[..., :14, 14:] == 255).all() and (out[..., 14:, :14] == 255).all()
    rgb = fc.fuse_direct(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    assert rgb.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="same shape"):
        fc.fuse_direct(a, b[:1])


def test_invisible_fusion_blends_with_r_on_the_first_source():
    a = torch.full((1, 1, 4, 4), 200, dtype=torch.uint8)
    b = torch.full((1, 1, 4, 4), 10, dtype=torch.uint8)
    assert int(fc.fuse_invisible(a, b, 0.7)[0, 0, 0, 0]) == 143  # floor(0.7 * 200 + 0.3 * 10)
    assert torch.equal(fc.fuse_invisible(a, b, 0.5), fc.fuse_invisible(b, a, 0.5))


def test_key_triggers_and_held_out_verification_triggers(toy):
    s = FunctionCoupled(fusion="invisible", r=0.7, sources=(0, 3), target=1, key_fraction=0.02, verify_triggers=30)
    key, held = s.make_key(toy, seed=0)
    assert len(key) == 16 and len(held) == 30 and (key.y == 1).all() and (held.y == 1).all()
    assert key.meta["part"] == "trained" and held.meta["part"] == "held-out" and key.meta["sources"] == [0, 3]
    # every held-out trigger is a blend of one class-0 and one class-3 *test* image
    t0, t3 = toy.test.where(0).x.double(), toy.test.where(3).x.double()
    blends = (0.7 * t0[:, None] + (1 - 0.7) * t3[None]).floor().to(torch.uint8).flatten(2)
    assert all((blends == h.flatten()).all(-1).any() for h in held.x)
    assert s.make_key(toy, seed=0)[0].digest() == key.digest() != s.make_key(toy, seed=1)[0].digest()
    with pytest.raises(ValueError, match="fewer than the 500 triggers"):
        replace(s, verify_triggers=500).make_key(toy)
    with pytest.raises(ValueError, match=r"classes must be in \[0, 10\)"):
        FunctionCoupled(target=10).make_key(toy)


def test_random_mask_drops_p_rescales_in_training_and_is_the_identity_in_eval():
    lin = nn.Linear(100, 100)
    fc.apply_random_masking(lin, 0.3, seed=0, scope="all")  # one layer: the classifier
    (pm,) = [p for _, p in fc.masks(lin)]
    w = lin.parametrizations.weight.original
    lin.train()
    kept = lin.weight != 0
    assert abs(1 - float(kept.float().mean()) - 0.3) < 0.02
    assert torch.allclose(lin.weight[kept], (w / 0.7)[kept])
    lin.weight.sum().backward()
    assert (w.grad[~pm.mask] == 0).all() and (w.grad[pm.mask] != 0).all()
    lin.eval()
    assert torch.equal(lin.weight, w)
    before = pm.mask.clone()
    fc.redraw_masks(lin)
    assert not torch.equal(before, pm.mask)
    fc.remove_random_masking(lin)
    assert not parametrize.is_parametrized(lin) and torch.equal(lin.weight, w)


@pytest.mark.parametrize("scope", ["features", "all"])
def test_the_mask_scope_leaves_the_classifier_whole_or_masks_it(scope):
    """[code] masks LeNet-5's conv1, conv2, fc1 and fc2, never the classifier fc3; 'all' masks every layer."""
    m = models.build("lenet5", 1, 10)
    fc.apply_random_masking(m, 0.2, seed=0, scope=scope)
    layers = models.weight_layers(m)
    masked = [parametrize.is_parametrized(x, "weight") for x in layers]
    assert masked == [True] * (len(layers) - 1) + [scope == "all"] and len(layers) == 5
    with pytest.raises(ValueError, match="features, all"):
        fc.apply_random_masking(models.build("lenet5", 1, 10), 0.2, scope="conv")
    assert FunctionCoupled(mask_ratio=0.2, mask_scope=scope).config()["mask_scope"] == scope  # a new model, a new cache key


def test_masked_weights_do_not_move_under_momentum_and_weight_decay():
    lin = nn.Linear(50, 50)
    fc.apply_random_masking(lin, 0.5, seed=1, scope="all")
    (pm,) = [p for _, p in fc.masks(lin)]
    opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    lin.train()
    with fc.frozen_masked_weights(lin):
        for _ in range(3):  # momentum carries earlier steps into later ones
            start = lin.parametrizations.weight.original.detach().clone()
            opt.zero_grad()
            lin(torch.randn(8, 50)).pow(2).sum().backward()
            opt.step()
            w = lin.parametrizations.weight.original
            assert torch.equal(w[~pm.mask], start[~pm.mask]) and not torch.equal(w[pm.mask], start[pm.mask])
            fc.redraw_masks(lin)
    w = lin.parametrizations.weight.original.detach().clone()
    opt.step()  # outside the block a step moves every weight again
    assert not torch.equal(lin.parametrizations.weight.original[~pm.mask], w[~pm.mask])


def test_fit_runs_the_epoch_hook_after_every_epoch():
    seen = []
    m = models.build("lenet1", 1, 10)
    train.fit(m, blobs(100), replace(CFG, epochs=3), epoch_hook=lambda model, e: seen.append((e, model.training)),
              progress=False)
    assert seen == [(0, True), (1, True), (2, True)]


@pytest.mark.parametrize("fusion", ["direct", "invisible"])
def test_masked_embedding_with_train_time_finetune_learns_the_triggers(toy, fusion):
    s = FunctionCoupled(fusion=fusion, key_fraction=0.05, verify_triggers=40, mask_ratio=0.2, ft_lr=0.01, ft_samples=200)
    key, held = s.make_key(toy, seed=0)
    torch.manual_seed(0)
    m = models.build("lenet5", 1, 10)
    hist = s.train(m, toy, key, replace(CFG, epochs=6), progress=False, device=torch.device("cpu"))
    assert not any(parametrize.is_parametrized(x) for x in m.modules()) and not m.training
    assert len(hist.epoch) == 6 and train.evaluate(m, toy.test) > 0.9
    assert verify.key_accuracy(verify.Oracle(m), key) > 0.9
    assert verify.key_accuracy(verify.Oracle(m), held) > 0.8  # held-out triggers: a learnt function, not memorised images


def test_train_time_finetune_steps_on_clean_images_and_redraws(toy, monkeypatch):
    s = FunctionCoupled(mask_ratio=0.3, ft_lr=0.01, ft_samples=100)
    m = models.build("lenet1", 1, 10)
    fc.apply_random_masking(m, 0.3, seed=0)
    draws = []
    monkeypatch.setattr(fc, "redraw_masks", lambda model: draws.append(1))
    w0 = [p.detach().clone() for p in m.parameters()]
    with fc.frozen_masked_weights(m):
        s._finetune_hook(toy.owner, CFG)(m, 0)
    assert draws == [1] and any(not torch.equal(a, b) for a, b in zip(w0, m.parameters()))


def test_cifar_shaped_path(cifar_splits):
    s = FunctionCoupled(key_fraction=0.05, verify_triggers=4, mask_ratio=0.1, ft_lr=1e-3, ft_samples=32)
    key, held = s.make_key(cifar_splits, seed=0)
    assert key.x.shape[1:] == (3, 32, 32) and held.x.shape == (4, 3, 32, 32)
    m = models.build("resnet18", 3, 10)
    s.train(m, cifar_splits, key, replace(CFG, epochs=1, batch_size=64), progress=False, device=torch.device("cpu"))
    assert verify.Oracle(m)(held.x).shape == (4, 10)


@pytest.mark.parametrize("kw, match", [
    (dict(sources=[1, 1]), "two different class indices"),
    (dict(target=3), r"must not be one of 'sources'"),
    (dict(overwrite_sources=[2, 11]), r"\[0, 9\]"),
    (dict(compare=["ew"]), "namba-afs, namba-proposal, zhang-content"),  # catalogue names only
    (dict(mask_ratio=1.0), r"\[0.0, 1.0\)"),
    (dict(transfer_dataset="emnist-letters"), "must keep the class count"),
    (dict(transfer_dataset="fashion-mnist"), "another task"),
    (dict(code_epochs_r_values=[1.0]), r"\(0.0, 1.0\)"),
    (dict(curve_shares=[0.0]), r"\(0.0, 1.0\]"),
])
def test_chapter_knobs_are_checked_when_read(kw, match):
    from wmlib import settings
    with pytest.raises(ValueError, match=match):
        settings.resolve("function_coupled", "smoke", **kw)
    assert settings.resolve("function_coupled", "smoke")["target"] is None  # None: chosen from the zoo


def test_finetune_trials_chain_and_draw_fresh_samples(monkeypatch):
    from wmlib import attacks
    m = models.build("lenet1", 1, 10)
    seen = []
    real_fit = attacks.model.fit_cached  # each trial's fine-tuning, through the model cache
    monkeypatch.setattr(attacks.model, "fit_cached",
                        lambda model, d, c, **kw: seen.append((id(model), d.x[:1].clone())) or real_fit(model, d, c, **kw))
    held = fc.FunctionCoupled(key_fraction=0.05, verify_triggers=20).make_key(Splits(blobs(400), blobs(10), blobs(300, seed=2),
                                                                 REGISTRY["fashion-mnist"]), seed=0)[1]
    last, df = attacks.finetune_trials(m, blobs(300, seed=3), replace(CFG, epochs=1), 3, 50, {"ASR": held}, blobs(100, seed=4))
    assert list(df["trial"]) == [0, 1, 2, 3] and {"ASR", "test_acc"} <= set(df)
    assert len({i for i, _ in seen}) == 1 and id(last) == seen[0][0] and last is not m  # one copy, chained
    assert not torch.equal(seen[0][1], seen[1][1])  # a new draw each trial
    with pytest.raises(ValueError, match=r"samples must be in 1\.\.300"):
        attacks.finetune_trials(m, blobs(300, seed=3), CFG, 1, 301, {}, blobs(10))


def test_the_target_is_the_class_the_probe_gives_least_and_the_probe_stays_out_of_the_false_claims():
    import pandas as pd

    from wmlib.keys import Key
    from wmlib.zoo import Zoo

    class Fixed(torch.nn.Module):  # answers class c to everything
        def __init__(self, c):
            super().__init__()
            self.c, self.w = c, torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((len(x),), self.c), 10).float() + 0 * self.w

    # the probe (the first half of each architecture's seeds, rounded up) answers 2; the others answer 3: on the whole
    # zoo the least given non-source class would be 4, on the probe it is 3, and the others then claim t = 3 out of sample
    names = {"lenet1-s0": 2, "lenet1-s1": 2, "lenet1-s2": 3, "lenet1-s3": 3, "lenet5-s0": 2, "lenet5-s1": 2, "lenet5-s2": 3}
    summary = pd.DataFrame({"model": list(names), "architecture": [n.split("-")[0] for n in names]}).set_index("model")
    z = Zoo("fashion-mnist", "smoke", {n: Fixed(c) for n, c in names.items()}, summary)
    x = torch.zeros(8, 1, 28, 28, dtype=torch.uint8)
    t, shares, probe = fc.least_answered_target(z, {"direct": x}, (0, 1))
    assert probe == ["lenet1-s0", "lenet1-s1", "lenet5-s0", "lenet5-s1"] and t == 3 and shares.loc["direct", 2] == 1.0
    scheme = fc.FunctionCoupled(sources=(0, 1), target=t, target_chosen_on=probe)
    assert scheme.chosen_on() == tuple(probe) and "target_chosen_on" not in scheme.config()
    table = z.claims(Key(x, torch.full((8,), t)), {}, 8, 0.01, scheme=scheme, confidence=None)
    assert set(table.loc[table["role"] == "clean (in sample)", "suspect"]) == set(probe)
    pairs = verify.false_claim_pairs({"k": table})
    assert sorted(pairs["suspect"]) == ["lenet1-s2", "lenet1-s3", "lenet5-s2"]
    with pytest.raises(ValueError, match="outside the zoo: nobody"):
        verify.claim_table(z.hits(Key(x, torch.full((8,), t))), {}, 8, in_sample=["nobody"])
    with pytest.raises(ValueError, match="names clean models"):
        fc.FunctionCoupled(target=1, target_chosen_on="lenet1-s0")


class _FlatZoo:
    """A stand-in for the clean zoo: every clean model hits a held-out trigger at ``rate``."""
    def __init__(self, rate: float):
        self.rate = rate

    def null(self, key, confidence=None):
        return verify.Null(self.rate, floor=0.1)


CHAPTER = dict(sources=[0, 3], key_fraction=0.05, verify_triggers=40, selected_triggers=20, key_per_batch=10, mask_ratio=0.1, ft_lr=0.01,
               ft_samples=100, replicates=2, r_values=[0.5], seed=0, model="lenet5", epochs=6, batch_size=64, optimizer="adam",
               lr=3e-3, momentum=0.9, weight_decay=5e-4, schedule="none", milestones=[], augment=False, zoo_confidence=None,
               n_queries=40, alpha=0.01, mask_scope="features", embed_from="scratch", embed_lr=0.01, embed_epochs=None,
               table4_prune=0.8)


def test_the_chapter_pipeline_embeds_every_watermark_and_gates_it(toy):
    variants = fc.chapter_variants(CHAPTER, target=1)
    assert list(variants) == ["direct #1", "direct #2", "invisible r = 0.5"]
    assert [seed for _, seed in variants.values()] == [0, 1, 0]  # one trigger set per direct replicate
    assert variants["invisible r = 0.5"][0].fusion == "invisible" and variants["direct #2"][0].mask_ratio == 0.1
    keys = {name: s.make_key(toy, seed=kseed) for name, (s, kseed) in variants.items()}
    out = fc.embed_variants(CHAPTER, toy, variants, keys, _FlatZoo(0.1), torch.device("cpu"), progress=False)
    assert list(out.table.index) == list(variants) and out.table["claimed"].all()
    assert out.table["change vs clean"].tolist() == pytest.approx((out.table["test accuracy"] - out.clean_accuracy).tolist())
    assert set(out.marked) == set(variants) == set(out.nulls) == set(out.selected) and out.clean_accuracy > 0.9
    # the ASR read three ways: the selection (the code's protocol) is at least the embedded triggers'
    assert (out.table["ASR (selected triggers)"] >= out.table["ASR (embedded triggers)"]).all()
    assert all(len(out.selected[n]) == 20 for n in variants)
    # a zoo whose clean models already answer the triggers with t leaves nothing to claim: the gate stops the run
    with pytest.raises(RuntimeError, match=r"raise -p epochs \(now 6\)"):
        fc.embed_variants(CHAPTER, toy, variants, keys, _FlatZoo(0.99), torch.device("cpu"), progress=False)


def test_the_embedding_schedule_is_the_codes_scaled_to_the_epochs():
    knobs = dict(CHAPTER, embed_from="clean", epochs=10, lr=0.05, schedule="cosine")
    e = fc.embed_config(knobs)
    assert (e.epochs, e.optimizer, e.lr, e.schedule, e.milestones) == (10, "sgd", 0.01, "step", (4, 6, 9))
    assert fc.embed_config(dict(knobs, embed_epochs=40)).milestones == (15, 25, 35)  # [code]: 40 epochs, x0.1 at 15 / 25 / 35
    scratch = fc.embed_config(dict(knobs, embed_from="scratch"))
    assert (scratch.epochs, scratch.lr, scratch.schedule) == (10, 0.05, "cosine")


def test_a_watermark_embedded_from_the_clean_model_starts_at_its_weights(toy):
    clean = train.train_classifier("fc-test-clean", "lenet1", toy, replace(CFG, epochs=2), progress=False)[0]
    s = FunctionCoupled(key_fraction=0.05, verify_triggers=40)
    key, _ = s.make_key(toy, seed=0)
    knobs = dict(CHAPTER, model="lenet1", embed_from="clean", embed_lr=1e-6, embed_epochs=1)
    near = fc.embed_one(knobs, toy, s, key, clean, "fc-test-from-clean", progress=False)[0]
    far = fc.embed_one(dict(knobs, embed_from="scratch", epochs=1), toy, s, key, clean, "fc-test-scratch", progress=False)[0]
    gap = lambda m: max(float((a - b).abs().max()) for a, b in zip(m.state_dict().values(), clean.state_dict().values()))
    assert gap(near) < 1e-3 < gap(far)


def test_each_ablation_changes_one_thing_back(toy, monkeypatch):
    import pandas as pd

    knobs = dict(CHAPTER, embed_from="clean", epochs=2, key_fraction=0.02)
    variants = fc.chapter_variants(knobs, target=1)
    keys = {name: s.make_key(toy, seed=kseed) for name, (s, kseed) in variants.items()}
    out = fc.embed_variants(knobs, toy, {"direct #1": variants["direct #1"]}, keys, _FlatZoo(0.1), progress=False)
    calls = []

    def embed_one(k, splits, scheme, key, clean, tag, device=None, progress=True):
        calls.append((k["embed_from"], scheme.key_fraction, scheme.mask_scope, len(key), clean is out.clean))
        return out.marked["direct #1"], None
    monkeypatch.setattr(fc, "embed_one", embed_one)
    prune = lambda m: m
    frame = fc.ablate(knobs, toy, variants, keys, out, ["direct #1"], prune, device=torch.device("cpu"))
    n = len(keys["direct #1"][0])
    assert calls == [("scratch", 0.02, "features", n, True), ("clean", 0.05, "features", 40, True),
                     ("clean", 0.02, "all", n, True)] and n == 16
    assert list(frame.index) == [("direct #1", t) for t in ("protocol", *fc.ABLATIONS)]
    calls.clear()
    fc.ablate(knobs, toy, variants, keys, out, ["direct #1"], prune, {"10 % triggers": ({"key_fraction": 0.1}, "")})
    assert calls == [("clean", 0.1, "features", 80, True)]
    with pytest.raises(ValueError, match="unknown knobs: epoch"):
        fc.ablate(knobs, toy, variants, keys, out, ["direct #1"], prune, {"typo": ({"epoch": 3}, "")})
    text = fc.ablation_text(pd.DataFrame({"x": [0.5, 0.9]}, index=pd.MultiIndex.from_tuples(
        [("w", "protocol"), ("w", "from scratch")])), "w", "x", paper=1.0)
    assert text == "50.0% under the protocol; 90.0% from scratch (closest to the paper's: from scratch)"


def test_overwriting_table_reports_both_watermarks_on_a_copy(toy, trained):
    from wmlib import attacks
    owner = FunctionCoupled(key_fraction=0.05, verify_triggers=40)
    _, held = owner.make_key(toy, seed=0)
    thief = replace(owner, sources=(2, 4), target=5)
    w0 = [p.detach().clone() for p in trained.parameters()]
    emb, _ = owner.make_key(toy, seed=0)
    models_, table = attacks.overwrite_table({"m": (trained, held, verify.Null(0.1), thief)}, toy.thief_task(),
                                             replace(CFG, epochs=2), 100, toy.test, 40, 0.01, also={"m": {"embedded": emb}})
    assert list(table.index) == ["m"] and list(table.columns) == ["original ASR", "original ASR (embedded)", "new ASR",
                                                                  "owner still claimed", "test accuracy"]
    assert table.loc["m", "original ASR (embedded)"] == verify.key_accuracy(verify.Oracle(models_["m"]), emb)
    assert models_["m"] is not trained and all(torch.equal(a, b) for a, b in zip(w0, trained.parameters()))
    assert table.loc["m", "new ASR"] > table.loc["m", "original ASR"]  # the thief's own triggers took


def test_the_digits_run_is_the_chapter_on_mnist_5k():
    from wmlib import settings
    cfg = settings.resolve("function_coupled", "default")
    d = settings.variant("function_coupled", cfg, "digits")
    # 1 % of the 3,000 owner digits: the code's 30 triggers
    assert (d["dataset"], d["key_fraction"], d["verify_triggers"], d["transfer_dataset"]) == ("mnist-5k", 0.01, 80, "fashion-mnist")
    assert d["sources"] == cfg["sources"] and d["mask_ratio"] == cfg["mask_ratio"]  # the method is unchanged
    assert settings.variant("function_coupled", settings.resolve("function_coupled", "default", digits_dataset="off"),
                            "digits") is None
    assert settings.variant("function_coupled", settings.resolve("function_coupled", "paper"), "digits") is None
    with pytest.raises(ValueError, match="the digits ablation"):
        settings.resolve("function_coupled", "default", digits_verify_triggers=0)


def test_the_mnist_rows_name_each_number_by_its_paper_vs_ours_row():
    import pandas as pd

    table = pd.DataFrame({"change vs clean": [-0.01, -0.03], "ASR (held-out triggers)": [0.7, 0.6],
                          "ASR (selected triggers)": [1.0, 0.9]}, index=["direct #1", "invisible r = 0.5"])
    overwritten = pd.DataFrame({"original ASR": [0.1, 0.3], "original ASR (selected)": [0.2, 0.4], "new ASR": [1.0, 0.5]},
                               index=table.index)
    rows = fc.mnist_rows(0.97, table, {"direct #1": 0.95}, {"invisible r = 0.5": 0.8}, overwritten, 10, 0.8)
    assert rows["Table 1: clean test accuracy"] == 0.97
    assert rows["Table 2: test-accuracy change, invisible r = 0.5"] == -0.03
    assert rows["Table 2: ASR, direct #1 (selected triggers)"] == 1.0  # the paper's protocol, not the held-out 0.7
    assert rows["Table 3: original ASR after overwriting, direct #1"] == 0.2
    assert rows["Figs. 5-6: ASR after 10 fine-tuning trials, direct #1 (code's thief)"] == 0.95
    assert rows["Figs. 8-9: ASR at 80% pruning, invisible r = 0.5"] == 0.8
    assert rows["Table 3: the thief's new ASR, invisible r = 0.5"] == 0.5 and len(rows) == 1 + 2 * 2 + 1 + 1 + 2 * 2
    # fine-tuned into the clean model, the cost is read against the control fine-tuned alike
    controlled = table.assign(**{"change vs control": [0.002, -0.004]})
    rows = fc.mnist_rows(0.97, controlled, {}, {}, overwritten, 10, 0.8)
    assert rows["Table 2: test-accuracy change, invisible r = 0.5"] == -0.004


def test_the_selected_triggers_are_the_ones_the_model_is_surest_of(toy, trained):
    """The code's validation set (select_wm_images.py): the k triggers the watermarked model gives t with the highest
    probability, in the key's order; a selection, so its ASR is at least the embedded triggers'."""
    from wmlib.train import predict_proba
    key, _ = FunctionCoupled(key_fraction=0.05, verify_triggers=40).make_key(toy, seed=0)
    sel = fc.most_confident(trained, key, 10)
    p = predict_proba(trained, key.x)[torch.arange(len(key)), key.y]
    top = set(torch.argsort(p, descending=True)[:10].tolist())
    rows = {tuple(x.flatten().tolist()): i for i, x in enumerate(key.x)}
    picked = [rows[tuple(x.flatten().tolist())] for x in sel.x]
    assert set(picked) == top and picked == sorted(picked) and len(sel) == 10 and sel.meta["selected"] == 10
    assert verify.key_accuracy(verify.Oracle(trained), sel) >= verify.key_accuracy(verify.Oracle(trained), key)
    assert len(fc.most_confident(trained, key, 10_000)) == len(key)  # asking for more than there are gives them all
    with pytest.raises(ValueError, match="at least one"):
        fc.most_confident(trained, key, 0)


def test_the_trigger_alone_thief_fine_tunes_on_its_triggers_and_nothing_else(toy, trained, monkeypatch):
    """§5.3's "fine-tune the watermarked models with the selected watermark samples": ``data='triggers'`` trains on
    the thief's own key alone (every image a trigger labelled with its target) for as many steps as the mixed thief
    takes; ``'mixed'`` as the thief's scheme embeds (its clean data with the triggers appended)."""
    from wmlib import attacks
    from wmlib.attacks import model as attack_model
    thief = FunctionCoupled(sources=(2, 4), target=5, key_fraction=0.05, verify_triggers=40)
    key = thief.make_key(toy.thief_task(), seed=100)[0]
    seen = []
    monkeypatch.setattr(attack_model, "fit", lambda m, split, cfg, **kw: seen.append(("fit", split, cfg)))
    monkeypatch.setattr(FunctionCoupled, "train", lambda self, m, task, k, cfg, **kw: seen.append(("scheme", task.owner, cfg)))
    cfg = replace(CFG, epochs=3, batch_size=64, lr=1e-4)
    attacks.overwrite(trained, thief, toy.thief_task(), cfg, 100, data="triggers")
    (how, split, used), = seen
    assert how == "fit" and torch.equal(split.x, key.x) and (split.y == 5).all() and len(split) == len(toy.thief) // 20 == 10
    # the mixed thief: 200 images in batches of 64 = 4 steps an epoch, 12 in 3 epochs; its 10 triggers are one step
    assert used == replace(cfg, epochs=12)
    seen.clear()
    attacks.overwrite(trained, thief, toy.thief_task(), replace(cfg, batch_size=4), 100, data="triggers")
    assert seen[0][2].epochs == 50  # 50 steps of 4 images an epoch, 150 in 3; 10 triggers are 3 steps: 50 epochs
    seen.clear()
    attacks.overwrite(trained, thief, toy.thief_task(), cfg, 100)
    assert [(h, len(x), c) for h, x, c in seen] == [("scheme", len(toy.thief), cfg)]
    with pytest.raises(ValueError, match="mixed, triggers"):
        attacks.overwrite(trained, thief, toy.thief_task(), CFG, 100, data="trigger")


def test_the_learning_curve_gives_every_share_the_same_steps(toy, monkeypatch):
    import pandas as pd
    sizes = []

    def train_classifier(tag, model, splits, cfg, **kw):
        sizes.append((len(splits.owner), torch.equal(splits.owner.x, toy.owner.x[:len(splits.owner)]), cfg.epochs, cfg.milestones))
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(10)).eval(), None, False
    monkeypatch.setattr(train, "train_classifier", train_classifier)
    knobs = dict(CHAPTER, epochs=3, schedule="step", milestones=[2])
    curve = fc.learning_curve(knobs, toy, [1.0, 0.25, 0.2501], device=torch.device("cpu"))  # 0.2501 is 200 images too
    assert sizes == [(200, True, 12, (8,)), (800, True, 3, (2,))]
    assert list(curve["owner images"]) == [200, 800] and list(curve["epochs"]) == [12, 3]
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        fc.learning_curve(CHAPTER, toy, [1.5])
    # a power law through the curve: error 0.1 at 100 images falling as n^-1/2 gives 0.01 at 10,000
    law = pd.DataFrame({"owner images": [100, 400, 1600], "test accuracy": [0.9, 0.95, 0.975]})
    assert fc.extrapolate_accuracy(law, 10_000) == pytest.approx(0.99)
    assert fc.curve_text(law, 10_000, "digits") == (
        "at equal steps the clean model gets 90.00% / 95.00% / 97.50% on 100 / 400 / 1,600 digits (one seed each): accuracy "
        "rises over 100–1,600 digits; a power law through them, without an error floor, gives 99.00% at 10,000 (an "
        "optimistic model, not a measurement)")
    flat = law.assign(**{"test accuracy": [0.9, 0.95, 0.94]})
    assert fc.curve_text(flat, 10_000).endswith("does not rise with every size, so the size is not shown to matter here")
    assert "power law" not in fc.curve_text(law.iloc[1:], 10_000)  # two points: nothing to fit
    assert fc.extrapolate_accuracy(law.iloc[1:], 10_000) != fc.extrapolate_accuracy(law.iloc[1:], 10_000)  # NaN
    assert fc.extrapolate_accuracy(law.assign(**{"test accuracy": [0.95, 0.9, 0.85]}), 10_000) != 1  # error rising: NaN
    assert fc.curve_text(law.iloc[:1], 10_000, "digits") == "the training-set size untested (one size: 100 digits, 90.00%)"


def test_the_enhancement_gain_compares_each_watermark_with_its_plain_twin_both_ways(toy, monkeypatch):
    knobs = dict(CHAPTER, embed_from="clean")
    variants = fc.chapter_variants(knobs, target=1)
    keys = {name: s.make_key(toy, seed=kseed) for name, (s, kseed) in variants.items()}
    models_ = {}

    def embed_one(k, splits, scheme, key, clean, tag, device=None, progress=True):
        assert torch.equal(key.x, keys["direct #1"][0].x) and clean is embedded.clean  # the same triggers, the same start
        label = (k["embed_from"], (scheme.mask_ratio, scheme.ft_lr), scheme.fusion)
        assert scheme == replace(variants["direct #1"][0], mask_ratio=label[1][0], ft_lr=label[1][1])  # nothing else differs
        models_[label] = nn.Identity()
        return models_[label], None
    monkeypatch.setattr(fc, "embed_one", embed_one)
    protocol = nn.Identity()
    embedded = fc.Embedded(nn.Identity(), 0.9, 0.9, None, {"direct #1": protocol}, {}, {}, None, {})
    asr = {}

    def attack(m, k):
        assert k is keys["direct #1"][1]  # the owner's held-out triggers
        return asr.setdefault(id(m), 0.1 * (len(asr) + 1))
    frame = fc.enhancement_gain(knobs, toy, variants, keys, embedded, ["direct #1"], {"thief": attack})
    # the protocol's enhanced model is the chapter's own, not embedded again; its plain twin (p = 0, no train-time
    # fine-tune) and both from scratch are
    enhanced = (CHAPTER["mask_ratio"], CHAPTER["ft_lr"])
    assert set(models_) == {("clean", (0.0, 0.0), "direct"), ("scratch", enhanced, "direct"), ("scratch", (0.0, 0.0), "direct")}
    assert list(frame.index) == [("direct #1", "fine-tuned into the clean model", "thief"),
                                 ("direct #1", "trained from scratch", "thief")]
    assert frame["with masking + fine-tune"].iloc[0] == asr[id(protocol)]
    assert frame["without"].iloc[0] == asr[id(models_[("clean", (0.0, 0.0), "direct")])]
    assert frame["with masking + fine-tune"].iloc[1] == asr[id(models_[("scratch", enhanced, "direct")])]
    assert frame["gain"].tolist() == pytest.approx((frame["with masking + fine-tune"] - frame["without"]).tolist())


def test_the_code_epochs_ablation_names_watermarks_the_run_has_and_only_where_it_changes_something(toy, monkeypatch):
    clean = dict(CHAPTER, r_values=[0.5, 0.9], code_epochs_r_values=[0.9], embed_from="clean", embed_epochs=None, epochs=10)
    assert fc.code_epochs_names(clean) == ["invisible r = 0.9"]
    assert fc.code_epochs_names(dict(clean, code_epochs_r_values=[])) == []
    assert fc.code_epochs_names(dict(clean, embed_from="scratch")) == []  # the code's epochs are its fine-tuning's
    assert fc.code_epochs_names(dict(clean, epochs=40)) == []  # the paper profile fine-tunes 40 epochs already
    with pytest.raises(ValueError, match=r"\[0.7\] are not among r_values"):
        fc.code_epochs_names(dict(clean, code_epochs_r_values=[0.7]))
    # through ablate: in a run that trains from scratch, embed_epochs changes nothing, so nothing is embedded again
    knobs = dict(CHAPTER, epochs=2, key_fraction=0.02)
    variants = fc.chapter_variants(knobs, target=1)
    keys = {name: s.make_key(toy, seed=kseed) for name, (s, kseed) in variants.items()}
    out = fc.embed_variants(knobs, toy, {"direct #1": variants["direct #1"]}, keys, _FlatZoo(0.1), progress=False)
    calls = []
    monkeypatch.setattr(fc, "embed_one", lambda k, *a, **kw: calls.append(fc.embed_config(k).epochs) or (out.marked["direct #1"], None))
    frame = fc.ablate(knobs, toy, variants, keys, out, ["direct #1"], lambda m: m, fc.CODE_EPOCHS_ABLATION)
    assert calls == [] and list(frame.index) == [("direct #1", "protocol")]
    fc.ablate(dict(knobs, embed_from="clean"), toy, variants, keys, out, ["direct #1"], lambda m: m, fc.CODE_EPOCHS_ABLATION)
    assert calls == [40]


def test_the_enhancement_grid_embeds_every_p_and_eta_pair_with_the_same_triggers(toy, monkeypatch):
    knobs = dict(CHAPTER, enhance_ps=[0.3], enhance_lrs=[0.05])  # 0 and the run's own (0.1, 0.01) are added
    variants = fc.chapter_variants(knobs, target=1)
    keys = {name: s.make_key(toy, seed=kseed) for name, (s, kseed) in variants.items()}
    made = {}

    def embed_one(k, splits, scheme, key, clean, tag, device=None, progress=True):
        assert torch.equal(key.x, keys["direct #1"][0].x) and clean is embedded.clean  # the same triggers, the same start
        pair = (scheme.mask_ratio, scheme.ft_lr)
        assert scheme == replace(variants["direct #1"][0], mask_ratio=pair[0], ft_lr=pair[1])  # nothing else differs
        made[pair] = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        return made[pair], None
    monkeypatch.setattr(fc, "embed_one", embed_one)
    own = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    embedded = fc.Embedded(nn.Identity(), 0.9, 0.9, None, {"direct #1": own}, {}, {}, None, {})
    asr = {}

    def attack(m, k):
        assert k is keys["direct #1"][1]  # the owner's held-out triggers
        return asr.setdefault(id(m), 0.9 - 0.05 * len(asr))  # falling: the plain twin, drawn first, is not the lowest
    frame = fc.enhancement_grid(knobs, toy, variants, keys, embedded, "direct #1", {"thief": attack})
    pairs = [(p, lr) for p in (0.0, 0.1, 0.3) for lr in (0.0, 0.01, 0.05)]
    assert list(frame.index) == pairs
    assert set(made) == set(pairs) - {(0.1, 0.01)}  # the run's own model is not embedded again
    assert frame.loc[(0.1, 0.01), "ASR, thief"] == asr[id(own)]
    assert frame.loc[(0.3, 0.05), "ASR, thief"] == asr[id(made[(0.3, 0.05)])]
    plain = asr[id(made[(0.0, 0.0)])]
    assert frame["gain, thief"].tolist() == pytest.approx([a - plain for a in frame["ASR, thief"]])
    assert frame.loc[(0.0, 0.0), "gain, thief"] == 0.0
    assert len(fc.enhancement_grid(dict(knobs, enhance_lrs=[]), toy, variants, keys, embedded, "direct #1", {"thief": attack})) == 0


def test_the_enhancement_text_bounds_the_gain_by_what_the_thief_takes_from_the_plain_twin():
    import pandas as pd

    grid = pd.DataFrame({"p": [0.0, 0.0, 0.05, 0.05], "η′": [0.0, 1e-3, 0.0, 1e-3], "ASR, no attack": [1.0, 1.0, 1.0, 1.0],
                         "ASR, code": [0.97, 0.99, 1.0, 0.98], "ASR, strong": [0.4, 0.5, 0.55, 0.6]}).set_index(["p", "η′"])
    for col in ("code", "strong"):
        grid[f"gain, {col}"] = grid[f"ASR, {col}"] - grid.loc[(0.0, 0.0), f"ASR, {col}"]
    # the row: the code's thief takes 2 points from the plain twins (0.83 -> 0.81): the paper's +10 % cannot show
    text = fc.enhancement_text({"w": grid, "skipped": pd.DataFrame()}, "code", 0.10, (0.83, 0.81), (-0.03, -0.04), {"w": 80})
    assert "takes +2.0% from the plain twins' held-out ASR here (83.0% before, 81.0% after)" in text
    assert "so the headroom explains the row; -4.0% of the row's -3.0% is there before any attack" in text
    # the grid: the code's thief takes 3 points from the plain twin (too little); the strong one 60, and the largest gain
    # of the other pairs, not the plain twin's own 0, is reported with its standard error (sqrt(0.5 / 80) = 7.9 %)
    assert "; w: the code takes +3.0% from the plain twin, too little to test the paper's +10%" in text and "skipped" not in text
    assert "the strong takes +60.0% from the plain twin, the largest gain of the other pairs is +20.0% (p = 0.05, η′ = 0.001" in text
    assert "standard error up to 7.9%), reaching the paper's +10%" in text
    short = fc.enhancement_text({"w": grid.assign(**{"gain, strong": [0.0, -0.02, 0.05, 0.01]})}, "code", 0.10, (0.9, 0.6),
                                (0.0, 0.0), {"w": 80})
    assert "the headroom does not explain the row" in short and "is +5.0% (p = 0.05, η′ = 0;" in short
    assert "short of the paper's +10%" in short
    assert "not ablated" in fc.enhancement_text({"w": pd.DataFrame()}, "code", 0.10, (1.0, 1.0), (0.0, 0.0), {})
