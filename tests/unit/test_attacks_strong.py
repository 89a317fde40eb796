"""The strongest attacks of the suite (model extraction, fine-pruning, Neural Cleanse, adversarial
training, JPEG, chained attacks), each shown to work on a model built to be vulnerable."""
import copy
import io

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import blobs
from wmlib import attacks, compare, models, train
from wmlib.attacks import combined, extraction, fine_pruning, neural_cleanse
from wmlib.data import REGISTRY as DATASETS
from wmlib.data import Split
from wmlib.verify import Oracle

FMNIST = DATASETS["fashion-mnist"]


def _stamp(x: torch.Tensor) -> torch.Tensor:
    """A BadNets-style trigger: a bright 4 x 4 square in the bottom-right corner."""
    x = x.clone()
    x[:, :, -5:-1, -5:-1] = 255
    return x


@pytest.fixture(scope="module")
def backdoored():
    """A LeNet-5 on the toy task with a BadNets-style backdoor: 15 % of its training images carry the
    corner square and the label 3."""
    data = blobs(900, seed=11)
    n = 135
    x = torch.cat([data.x, _stamp(data.x[:n])])
    y = torch.cat([data.y, torch.full((n,), 3)])
    torch.manual_seed(0)
    m = models.build("lenet5", 1, 10)
    train.fit(m, Split(x, y), train.TrainConfig(epochs=6, batch_size=64, optimizer="adam", lr=3e-3), progress=False)
    return m


def test_the_backdoor_fixture_is_a_backdoor(backdoored):
    test = blobs(300, seed=2)
    assert train.evaluate(backdoored, test) > 0.95
    assert (Oracle(backdoored).predict(_stamp(test.x)) == 3).float().mean() > 0.95


# --------------------------------------------------------------------------- extraction

def test_stolen_labels_are_the_apis_top1_or_its_softened_scores(trained):
    x = blobs(50, seed=3).x
    o = Oracle(trained)
    assert torch.equal(extraction.stolen_labels(o, x), o.predict(x))
    p1, p3 = extraction.stolen_labels(o, x, "scores"), extraction.stolen_labels(o, x, "scores", T=3.0)
    assert torch.allclose(p1, o(x), atol=1e-6) and torch.allclose(p3.sum(1), torch.ones(50))
    assert (p3.max(1).values < p1.max(1).values + 1e-6).all()  # a higher temperature softens
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
    with pytest.raises(ValueError, match=r"knockoff_budget must be in \[1, 4000\]"):
        extraction.knockoff_queries("mnist-5k", 4001, FMNIST, seed=0)


# --------------------------------------------------------------------------- fine-pruning

def test_fine_pruning_prunes_dormant_channels_first(trained):
    model = copy.deepcopy(trained)
    conv, bn, relu = fine_pruning.last_conv(model)
    assert conv is model[3] and bn is None and relu is model[4]
    dormant = [2, 7, 11]
    with torch.no_grad():
        conv.bias[dormant] = -1e3  # these channels never fire after the ReLU
    acts = fine_pruning.channel_activations(model, blobs(200, seed=1).x)
    assert acts.shape == (16,) and (acts[dormant] == 0).all() and (np.delete(acts.numpy(), dormant) > 0).any()
    thief = blobs(400, seed=1)
    tuned, rep = fine_pruning.fine_prune(model, thief, train.TrainConfig(epochs=1, optimizer="adam", lr=1e-3), budget=0.1)
    gone = rep["order"]
    rest = [c for c in range(16) if c not in gone]
    assert set(dormant) <= set(gone) and acts[gone].max() <= acts[rest].min()  # the dormant ones go first
    w = fine_pruning.last_conv(tuned)[0]
    assert not any(hasattr(w, f"{n}_mask") for n in ("weight", "bias"))  # folded in
    assert (w.weight[gone] == 0).all() and (w.bias[gone] == 0).all()  # still pruned after fine-tuning
    assert train.evaluate(tuned, blobs(300, seed=2)) >= 0.9 * train.evaluate(model, blobs(300, seed=2)) - 0.05


def test_masked_channels_output_nothing(trained):
    masked = fine_pruning.mask_channels(trained, [0, 5])
    out = {}
    masked[4].register_forward_hook(lambda m, i, o: out.setdefault("a", o.detach().clone()))
    masked(train.to_float(blobs(10).x))
    assert (out["a"][:, [0, 5]] == 0).all() and out["a"][:, 1].abs().sum() > 0


# --------------------------------------------------------------------------- Neural Cleanse

def test_anomaly_index_flags_a_small_outlier_only():
    norms = [40, 42, 39, 41, 43, 5, 40, 44, 38, 41]
    idx = neural_cleanse.anomaly_index(norms)
    assert idx[5] > 2 and neural_cleanse.flagged(norms) == [5]
    assert neural_cleanse.flagged([40, 42, 39, 41, 90, 40]) == []  # a large norm is not a trigger


def test_neural_cleanse_flags_the_target_of_a_badnets_backdoor_and_unlearning_removes_it(backdoored):
    thief, test = blobs(400, seed=5), blobs(300, seed=2)
    cfg = train.TrainConfig(epochs=3, batch_size=64, optimizer="adam", lr=1e-3, seed=0)
    out, rep = neural_cleanse.cleanse(backdoored, thief, 10, cfg, samples=300, epochs=6, seed=0)
    assert 3 in rep["flagged"], rep["norms"]
    assert rep["norms"][3] == min(rep["norms"])
    assert (Oracle(out).predict(_stamp(test.x)) == 3).float().mean() < 0.5  # the backdoor is unlearned
    assert train.evaluate(out, test) > 0.9


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
    chain = attacks.REGISTRY["prune-finetune+key-detector"]
    assert chain.side == "query" and set(chain.knobs) >= {"sweep_rates", "budget", "detector_fpr", "detector_epochs"}
    both = combined.Chain(["fine-pruning", "distillation"])
    assert both.name == "fine-pruning+distillation" and both.side == "model" and "distill_T" in both.knobs
    with pytest.raises(ValueError, match="model-side; jpeg is not"):
        combined.Chain(["jpeg", "fine-tune"])
    with pytest.raises(ValueError, match="unknown attack"):
        combined.Chain(["fine-tune", "erase"])


def test_every_new_attack_runs_through_the_matrix_on_the_toy_scheme():
    from tests.unit.test_compare import ToyNoise

    new = ["retrain-labels", "retrain-other-arch", "distillation", "knockoff", "fine-pruning", "neural-cleanse",
           "adversarial-training", "jpeg", "prune-finetune+key-detector"]
    registry = {"toy": lambda knobs: ToyNoise()}
    knobs = dict(dataset="fashion-mnist", profile="smoke", entries=["toy"], seeds=[0], model="lenet5",
                 thief_fraction=0.25, train_limit=1200, test_limit=300, epochs=12, batch_size=64, optimizer="adam",
                 lr=3e-3, momentum=0.9, weight_decay=0.0, schedule="none", milestones=[], augment=False,
                 zoo_confidence=0.99, n_queries=40, alpha=0.01, false_claim_draws=20, finetune_epochs=1,
                 finetune_lr=1e-3, budget=0.1, extract_epochs=3, extract_lr=3e-3, extract_other_model="lenet1",
                 distill_T=3.0, distill_lr=3e-3, knockoff_dataset="mnist-5k", knockoff_budget=300, fineprune_max=1.0, nc_epochs=1,
                 nc_samples=100, nc_share=0.2, advtrain_eps=0.1, advtrain_alpha=0.05, advtrain_steps=2, advtrain_mix=0.5,
                 advtrain_epochs=1, jpeg_quality=45, sweep_rates=[0.0, 0.5], detector_epochs=2, detector_lr=0.01,
                 detector_fpr=0.05, detector_ordinary=200)
    ctx = compare.make_context(knobs, zoo={"train_limit": 1200, "test_limit": 300, "archs": {"lenet1": 4}, "epochs": 2},
                               registry=registry)
    cells = compare.sweep(["toy"], [0], new, ctx, registry=registry, num_cpus=2, progress=False).set_index("attack")
    assert (cells.status == "ok").all(), cells[cells.status != "ok"].T.to_string()
    for a in new:
        assert 0.0 <= cells.loc[a, "statistic"] <= 1.0 and cells.loc[a, "queries"] == 40
    assert cells.loc["retrain-labels", "report_api_queries"] == 300  # the thief's 300 images, each asked once
    assert cells.loc["knockoff", "report_api_queries"] == 300 and cells.loc["knockoff", "report_dataset"] == "mnist-5k"
    assert cells.loc["retrain-other-arch", "report_student"] == "lenet1"
    assert 0.5 <= cells.loc["prune-finetune+key-detector", "report_key-detector:auc"] <= 1.0
    assert cells.loc["prune-finetune+key-detector", "report_prune-finetune:prune_rate"] in (0.0, 0.5)
    assert cells.loc["neural-cleanse", "report_flagged"] != "" and cells.loc["jpeg", "test_acc"] > 0.5
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
