"""The strongest attacks of the suite (model extraction, fine-pruning, Neural Cleanse, adversarial
training, JPEG, chained attacks; fine-pruning and Neural Cleanse have files of their own), each shown to work on a model built to be vulnerable."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import blobs
from wmlib import attacks, compare, train
from wmlib.attacks import combined, extraction, neural_cleanse
from wmlib.data import REGISTRY as DATASETS
from wmlib.verify import Oracle

FMNIST = DATASETS["fashion-mnist"]


# --------------------------------------------------------------------------- extraction

def test_stolen_labels_are_the_apis_top1_or_its_softened_scores(trained):
    x = blobs(50, seed=3).x
    o = Oracle(trained)
    assert torch.equal(extraction.stolen_labels(o, x), o.predict(x))
    p1, p3 = extraction.stolen_labels(o, x, "scores"), extraction.stolen_labels(o, x, "scores", T=3.0)
    assert torch.allclose(p1, o(x), atol=1e-6) and torch.allclose(p3.sum(1), torch.ones(50))
    assert torch.allclose(p3, torch.softmax(o(x).double().log() / 3.0, 1).float(), atol=1e-6)  # softmax(z / T)
    assert (p3.max(1).values < p1.max(1).values - 1e-3).all()  # a higher temperature softens every answer
    assert torch.equal(p3.argmax(1), p1.argmax(1))
    with pytest.raises(ValueError, match="top-1, scores"):
        extraction.stolen_labels(o, x, "logits")
    with pytest.raises(ValueError, match="> 0"):
        extraction.stolen_labels(o, x, "scores", T=0)


@pytest.mark.parametrize("labels,T", [("top-1", 1.0), ("scores", 3.0)])
def test_an_extracted_model_reaches_the_stolen_models_accuracy_and_is_cached(trained, labels, T):
    from wmlib import timing

    test = blobs(300, seed=2)
    cfg = train.TrainConfig(epochs=6, batch_size=64, optimizer="adam", lr=3e-3, seed=1)
    student, rep = extraction.extract(Oracle(trained), blobs(600, seed=7).x, "lenet5", FMNIST, cfg, labels=labels, T=T)
    assert rep["api_queries"] == 600 and rep["epochs"] == 6
    assert train.evaluate(student, test) >= train.evaluate(trained, test) - 0.05
    assert not any(torch.equal(a, b) for a, b in zip(student.parameters(), trained.parameters()))  # from scratch
    snap = timing.snapshot()
    again, _ = extraction.extract(Oracle(trained), blobs(600, seed=7).x, "lenet5", FMNIST, cfg, labels=labels, T=T)
    assert timing.since(snap)["trainings"] == 0  # loaded from the cache
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), again.state_dict().values()))


def test_knockoff_queries_another_dataset_within_its_size():
    x = extraction.knockoff_queries("mnist-5k", 100, FMNIST, seed=0)
    assert x.shape == (100, 1, 28, 28) and x.dtype == torch.uint8
    with pytest.raises(ValueError, match=r"knockoff_budget must be in \[1, 2000\] \(the thieves' half"):
        extraction.knockoff_queries("mnist-5k", 2001, FMNIST, seed=0)


# --------------------------------------------------------------------------- Neural Cleanse

def test_anomaly_index_flags_a_small_outlier_only():
    norms = [40, 42, 39, 41, 43, 5, 40, 44, 38, 41]
    idx = neural_cleanse.anomaly_index(norms)
    assert idx[5] > 2 and neural_cleanse.flagged(norms) == [5]
    assert neural_cleanse.flagged([40, 42, 39, 41, 90, 40]) == []  # a large norm is not a trigger


# --------------------------------------------------------------------------- adversarial training

def test_pgd_fine_tuning_makes_the_model_more_robust_to_pgd(trained):
    import torchattacks

    test = blobs(200, seed=2)
    cfg = train.TrainConfig(epochs=3, batch_size=64, optimizer="adam", lr=1e-3, seed=0)
    tuned = attacks.pgd_finetune(trained, blobs(600, seed=1), cfg, eps=0.3, alpha=0.05, steps=5)

    def robust(m):
        x = train.to_float(test.x)
        adv = torchattacks.PGD(m, eps=0.3, alpha=0.05, steps=5)(x, test.y)
        return (m(adv).argmax(1) == test.y).float().mean().item()

    assert robust(tuned) > robust(trained) + 0.2
    with pytest.raises(ValueError, match=r"alpha \(the step\) must be in \(0, eps\]"):
        attacks.pgd_finetune(trained, blobs(10), cfg, eps=0.1, alpha=0.2, steps=5)


# --------------------------------------------------------------------------- JPEG

def test_jpeg_is_pillows_encoder_and_decoder():
    x = blobs(4).x
    out = attacks.jpeg_compress(x, 30)
    buf = io.BytesIO()
    Image.fromarray(x[2, 0].numpy(), "L").save(buf, format="JPEG", quality=30)
    assert torch.equal(out[2, 0], torch.from_numpy(np.array(Image.open(io.BytesIO(buf.getvalue())))))
    assert out.dtype == torch.uint8 and out.shape == x.shape and not torch.equal(out, x)
    assert (attacks.jpeg_compress(x, 95).float() - x.float()).abs().mean() < (out.float() - x.float()).abs().mean()
    rgb = blobs(2, channels=3, size=32).x
    assert attacks.jpeg_compress(rgb, 50).shape == rgb.shape
    assert torch.equal(attacks.jpeg_compress(train.to_float(x), 30), out)  # floats are rounded to the same 8 bits


def test_jpeg_quality_out_of_range_gives_the_range(trained):
    with pytest.raises(ValueError, match=r"quality must be an integer in \[1, 95\], got 100"):
        attacks.JpegOracle(Oracle(trained), 100)


# --------------------------------------------------------------------------- chains and the suite

def test_a_chain_hands_each_part_the_model_the_one_before_left():
    chain = combined.Chain(["prune-finetune", "key-detector"])
    assert chain.side == "query" and set(chain.knobs) >= {"sweep_rates", "budget", "detector_fpr", "detector_epochs"}
    both = attacks.REGISTRY["fine-pruning+distillation"]
    assert both.name == "fine-pruning+distillation" and both.side == "model" and "distill_T" in both.knobs
    assert [a for a in attacks.REGISTRY if "+" in a] == [  # fixed in advance: ours, then the reference's five
        "fine-pruning+distillation", "transfer-learning+input-smoothing-gaussian", "weight-shifting+input-smoothing-gaussian",
        "weight-shifting+fine-pruning+input-smoothing-gaussian", "weight-shifting+input-flip+input-smoothing-gaussian",
        "adversarial-training+rtal"]
    assert combined.Chain(["prune-finetune-oracle", "jpeg"]).oracle and not both.oracle  # a chain with a search is one
    with pytest.raises(ValueError, match="jpeg is not model-side"):
        combined.Chain(["jpeg", "fine-tune"])
    with pytest.raises(ValueError, match="jpeg is not model-side"):
        combined.Chain(["jpeg", "input-flip"])  # only input preprocessing may follow a query-side part
    with pytest.raises(ValueError, match="unknown attack"):
        combined.Chain(["fine-tune", "erase"])


def test_every_new_attack_runs_through_the_matrix_on_the_toy_scheme():
    from tests.unit.test_compare import ToyNoise

    new = ["retrain-labels", "retrain-other-arch", "distillation", "knockoff", "fine-pruning", "neural-cleanse",
           "adversarial-training", "jpeg", "prune-finetune", "prune-finetune-oracle", "key-detector",
           "fine-pruning+distillation"]
    registry = {"toy": lambda knobs: ToyNoise()}
    knobs = dict(dataset="fashion-mnist", profile="smoke", entries=["toy"], seeds=[0], model="lenet5",
                 thief_fraction=0.25, train_limit=1200, test_limit=300, epochs=12, batch_size=64, optimizer="adam",
                 lr=3e-3, momentum=0.9, weight_decay=0.0, schedule="none", milestones=[], augment=False,
                 zoo_confidence=0.99, n_queries=40, alpha=0.01, finetune_epochs=1,
                 finetune_lr=1e-3, budget=0.05, extract_epochs=3, extract_lr=3e-3, extract_other_model="lenet1",
                 distill_T=3.0, distill_lr=3e-3, knockoff_dataset="mnist-5k", knockoff_budget=170, fineprune_max=1.0, nc_schedule_epochs=6, nc_unlearn_epochs=1,
                 nc_samples=100, nc_share=0.2, advtrain_eps=0.1, advtrain_alpha=0.05, advtrain_steps=2, advtrain_mix=0.5,
                 advtrain_epochs=1, jpeg_quality=45, sweep_rates=[0.0, 0.5], detector_epochs=2, detector_lr=0.01,
                 detector_fpr=0.05, detector_ordinary=200)
    ctx = compare.make_context(knobs, zoo={"train_limit": 1200, "test_limit": 300, "archs": {"lenet1": 4}, "epochs": 2},
                               registry=registry)
    cells = compare.sweep(["toy"], [0], new, ctx, registry=registry, num_cpus=2, progress=False).set_index("attack")
    nc = cells.loc["neural-cleanse"]
    assert nc["report_outcome"] in neural_cleanse.OUTCOMES
    assert nc["status"] == ("ok" if nc["report_outcome"] == "unlearned" else "no action")  # nothing flagged: no survival
    assert (cells.drop(index="neural-cleanse").status == "ok").all(), cells[cells.status != "ok"].T.to_string()
    for a in new:
        assert 0.0 <= cells.loc[a, "statistic"] <= 1.0 and cells.loc[a, "queries"] == 40
    assert cells.loc["neural-cleanse", "report_key_target"] in range(10)  # the owner's reading, after the attack
    assert cells.loc["retrain-labels", "report_api_queries"] == 300  # the thief's 300 images, each asked once
    assert cells.loc["knockoff", "report_api_queries"] == 170 and cells.loc["knockoff", "report_dataset"] == "mnist-5k"
    assert cells.loc["retrain-other-arch", "report_student"] == "lenet1"
    # the owner's view, computed after the attack: the detector's AUC on the owner's key
    assert cells.loc["key-detector", "report_auc"] == cells.loc["key-detector", "report_auc"]  # present, not NaN
    # the worst case picks among the thief's affordable rates the one the owner's statistic scores lowest
    assert cells.loc["prune-finetune-oracle", "oracle"] and not cells.loc["prune-finetune", "oracle"]
    assert cells.loc["prune-finetune-oracle", "statistic"] <= cells.loc["prune-finetune", "statistic"]
    assert "report_fine-pruning:pruned" in cells.columns and "report_distillation:api_queries" in cells.columns
    assert cells.loc["jpeg", "test_acc"] > 0.5
    # an extracted model is a fresh one: the toy key's random labels are not learnt from the thief's images
    assert not cells.loc["retrain-labels", "claimed"]


def test_bad_attack_settings_are_refused_when_the_knobs_are_read():
    from wmlib import settings

    with pytest.raises(ValueError, match=r"knob 'jpeg_quality' must be an integer in \[1, 95\]; got 100"):
        settings.resolve("comparison", "smoke", jpeg_quality=100)
    with pytest.raises(ValueError, match=r"knob 'knockoff_budget' must be an integer in \[1, ∞\]; got 0"):
        settings.resolve("comparison", "smoke", knockoff_budget=0)
    with pytest.raises(ValueError, match="comparison attack 'knockoff': .* the task's own distribution"):
        settings.resolve("comparison", "smoke", knockoff_dataset="fashion-mnist")
    with pytest.raises(ValueError, match="one of: .*lenet5"):
        settings.resolve("comparison", "smoke", extract_other_model="lenet7")
    with pytest.raises(ValueError, match="unknown attack 'erase'; choose one of: none, fine-tune"):
        attacks.get("erase")


def test_every_reference_toolkit_attack_runs_through_the_matrix_on_the_toy_scheme():
    """The reference toolkit's attacks (issue: every attack of WRT) each run as a comparison cell, at toy sizes."""
    from tests.unit.test_compare import ToyNoise

    new = ["input-smoothing-gaussian", "input-smoothing-mean", "input-smoothing-median", "input-quantization",
           "feature-squeezing", "input-flip", "input-reconstruction", "ftll", "rtll", "rtal", "weight-shifting",
           "label-smoothing", "label-noising", "weight-quantization", "regularization", "transfer-learning",
           "smooth-retraining", "ensemble-extraction", "adversarial-extraction", "nc-pruning", "nad",
           "anp", "neural-laundering", *["+".join(c) for c in combined.REFERENCE_CHAINS]]
    registry = {"toy": lambda knobs: ToyNoise()}
    knobs = dict(dataset="fashion-mnist", profile="smoke", entries=["toy"], seeds=[0], model="lenet5",
                 thief_fraction=0.25, train_limit=1200, test_limit=300, epochs=12, batch_size=64, optimizer="adam",
                 lr=3e-3, momentum=0.9, weight_decay=0.0, schedule="none", milestones=[], augment=False,
                 zoo_confidence=0.99, n_queries=40, alpha=0.01, finetune_epochs=1, finetune_lr=1e-3, budget=0.05,
                 extract_epochs=1, extract_lr=3e-3, fineprune_max=1.0, nc_schedule_epochs=2, nc_samples=100,
                 advtrain_eps=0.1, advtrain_alpha=0.05, advtrain_steps=1, advtrain_mix=0.5, advtrain_epochs=1,
                 smoothing_std=0.5, smoothing_kernel=3, quantization_bins=16, squeeze_bits=4, ae_epochs=1, ae_lr=1e-3,
                 ftll_epochs=1, rtll_epochs=1, rtal_epochs=1, shift_lambda=1.5, shift_noise=1.0, shift_epochs=1,
                 label_smoothing_eps=0.3, label_smoothing_epochs=1, label_noise_eps=0.3, label_noising_epochs=1, wq_bits=5,
                 wq_epochs=1, l2_decay=0.1, l2_epochs=1, l2_recovery_epochs=1, pretrain_dataset="mnist-5k",
                 pretrain_epochs=1, pretrain_lr=0.01, tl_epochs=1, smooth_queries=2, ensemble_size=2, ncprune_ratio=0.25,
                 ncprune_epochs=1, nad_teacher_epochs=1, nad_epochs=1, nad_lr=0.01, nad_beta=5000.0, anp_eps=0.4,
                 anp_alpha=0.2, anp_iterations=20, anp_lr=0.2, anp_samples=200, anp_threshold=0.2,
                 launder_conv_threshold=0.5, launder_dense_threshold=0.2, launder_epochs=1)
    ctx = compare.make_context(knobs, zoo={"train_limit": 1200, "test_limit": 300, "archs": {"lenet1": 4}, "epochs": 2},
                               registry=registry)
    cells = compare.sweep(["toy"], [0], new, ctx, registry=registry, num_cpus=2, progress=False).set_index("attack")
    assert set(cells.index) >= set(new)
    # nc-pruning with nothing flagged, ANP with no mask below its threshold, hand the model on: no action
    acted = cells.drop(index=["nc-pruning", "anp"])
    assert (acted.status == "ok").all(), acted[acted.status != "ok"].T.to_string()
    assert cells.loc["nc-pruning", "status"] in ("ok", "no action") and cells.loc["anp", "status"] in ("ok", "no action")
    for a in new:
        assert 0.0 <= cells.loc[a, "statistic"] <= 1.0 and cells.loc[a, "queries"] == 40, a
    assert cells.loc["rtal", "report_api_queries"] == 300 and cells.loc["transfer-learning", "report_pretrained_on"] == "mnist-5k"
