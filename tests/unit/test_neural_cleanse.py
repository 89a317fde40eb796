"""Neural Cleanse as the authors run it (wmlib.attacks.neural_cleanse): their λ schedule in their
schedule epochs, detection on the converged masks only, the unlearning epochs, the outcome labels and
what the owner reads off the report with its key."""
import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import blobs
from wmlib import attacks, models, train
from wmlib.attacks import neural_cleanse as nc
from wmlib.data import REGISTRY, Split
from wmlib.keys import Key
from wmlib.verify import Oracle

C, D = 1e-3, 2.0 ** 1.5  # the authors' INIT_COST, and their down multiplier COST_MULTIPLIER ** 1.5


# --------------------------------------------------------------------------- the λ schedule

def test_lambda_starts_at_zero_is_set_after_patience_successes_then_moves_up_and_down():
    s = nc.CostSchedule(init_cost=C, threshold=0.99, patience=2, up=2.0, down=D)
    seq = [0.5, 0.5, 1.0, 0.98, 1.0, 1.0, 1.0, 0.99, 1.0, 0.5, 0.5, 1.0, 0.5, 0.5]
    costs, flags = [], []
    for success in seq:
        costs.append(s.cost)
        s.update(success)
        flags.append((s.up_flag, s.down_flag))
    # failing at λ = 0 keeps it 0; two successes in a row set it (0.98 < 0.99 breaks the run); two more
    # double it (0.99 counts); two failures divide it by 2^1.5, a success between failures does not
    assert costs == pytest.approx([0, 0, 0, 0, 0, 0, C, 2 * C, 2 * C, 4 * C, 4 * C, 4 * C / D, 4 * C / D, 4 * C / D])
    assert s.cost == pytest.approx(4 * C / D ** 2)
    assert flags[1] == (False, True) and flags[5] == (False, False)  # setting λ clears the flags
    assert flags[6] == (True, False) and flags[10] == (True, True)


def _constant(target: int, classes: int = 3, pixels: int = 16) -> nn.Module:
    """A model that answers ``target`` whatever the input (zero weights): cross-entropy has no
    gradient on the mask, so only λ · |m|₁ moves it."""
    m = nn.Sequential(nn.Flatten(), nn.Linear(pixels, classes))
    with torch.no_grad():
        m[1].weight.zero_()
        m[1].bias.zero_()
        m[1].bias[target] = 5.0
    return m


def test_reverse_trigger_runs_the_schedule_in_schedule_epochs_and_lambda_enters_the_loss():
    images = torch.zeros((40, 1, 4, 4), dtype=torch.uint8)
    tr = nc.reverse_trigger(_constant(1), images, 1, epochs=8, mini_batch=2, batch_size=8, patience=2, init_cost=C)
    assert tr.costs == pytest.approx([0, 0, C, 2 * C, 2 * C, 4 * C, 4 * C, 8 * C])  # every epoch a success
    assert tr.successes == [1.0] * 8 and tr.reached
    n = tr.epoch_norms
    assert n[0] == n[1]  # λ = 0: nothing moves the mask
    assert all(b < a for a, b in zip(n[1:], n[2:]))  # λ > 0: the L1 term shrinks it every epoch
    assert tr.norm < n[1]


def _threshold_model(need: float = 2.0, k: float = 10.0) -> nn.Module:
    """On black images, class 1 exactly when the stamped mask · pattern sums above ``need``: the
    attack succeeds while λ is small and fails once λ shrinks the mask too far."""
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        m[1].weight.zero_()
        m[1].bias.zero_()
        m[1].weight[1] = k
        m[1].bias[1] = -k * need
    return m


def test_early_stop_waits_for_lambda_to_move_both_ways_and_the_best_norm_to_stall():
    images = torch.zeros((40, 1, 4, 4), dtype=torch.uint8)
    up_only = nc.reverse_trigger(_constant(1), images, 1, epochs=60, mini_batch=4, batch_size=8, patience=2,
                                 early_stop=6)
    assert up_only.epoch_norms[-20:] == [0.0] * 20 and len(up_only.costs) == 60  # stalled, but λ never went down
    tr = nc.reverse_trigger(_threshold_model(), images, 1, epochs=300, mini_batch=4, batch_size=8, patience=2,
                            init_cost=0.05, early_stop=6)
    c = tr.costs
    ratios = [b / a for a, b in zip(c, c[1:]) if a > 0 and b != a]
    assert c[0] == 0 and ratios and all(r == pytest.approx(2.0) or r == pytest.approx(1 / D) for r in ratios)
    assert any(r > 1 for r in ratios) and any(r < 1 for r in ratios)
    assert len(c) < 300 and tr.reached  # stopped early, with a converged mask
    best = np.minimum.accumulate([r if s >= 0.99 else np.inf for r, s in zip(tr.epoch_norms, tr.successes)])
    assert (best[-7:] == best[-1]).all() and best[-8] > best[-1]  # stopped 6 epochs after the best norm's last fall


# --------------------------------------------------------------------------- detection

def test_unconverged_masks_are_reported_and_left_out_of_the_median_the_mad_and_the_flags():
    norms = [40, 42, 39, 41, 43, 5, 40, 700, 720, 2]
    reached = [True] * 7 + [False] * 3
    idx = nc.anomaly_index(norms, reached)
    # over the 7 converged masks: median 40, MAD 1.4826 x 1 (with all 10: median 40.5, MAD 1.4826 x 2)
    assert idx[5] == pytest.approx(35 / 1.4826) and idx[4] == pytest.approx(3 / 1.4826)
    assert np.isnan(idx[7:]).all()
    assert nc.flagged(norms, reached=reached) == [5]  # class 9's small unconverged mask is no trigger
    assert nc.flagged(norms) == [5, 9]  # what taking every mask would flag
    assert nc.flagged([40, 5, 41, 39], reached=[True, True, False, False]) == []  # two converged: no outlier possible


# --------------------------------------------------------------------------- the attack: unlearning, outcome, owner

NORMS = {  # per scenario: the reversed masks' norms, and which reached the success threshold
    "unlearned": ([40, 42, 39, 41, 43, 5, 40, 44, 38, 41], [True] * 10),
    "nothing flagged": ([40, 42, 39, 41, 43, 37, 40, 44, 38, 41], [True] * 10),
    "no detection": ([40, 42, 39, 41, 43, 5, 40, 44, 38, 41], [False] * 5 + [True] + [False] * 3 + [True]),
}


@pytest.fixture
def fake_inversion(monkeypatch, tmp_path):
    """Stands in reversed triggers of given norms and reached flags for the inversion, and records
    every fine-tuning (its configured epochs, the epochs its history holds). Each scenario its own
    cache: the reversal's cache knows the model and settings, not which fake stands in for it."""
    runs = []
    real_fit = nc.fit_cached

    def fit_spy(model, data, cfg, **kw):
        hist = real_fit(model, data, cfg, **kw)
        runs.append((cfg.epochs, len(hist.epoch)))
        return hist

    def use(scenario):
        norms, reached = NORMS[scenario]
        monkeypatch.setenv("WMLIB_CACHE", str(tmp_path / scenario))

        def fake(model, images, target, *, epochs, seed, **kw):
            c, h, w = images.shape[1:]
            return nc.Trigger(target, torch.full((1, h, w), norms[target] / (h * w)), torch.ones((c, h, w)),
                              1.0 if reached[target] else 0.5, reached[target])
        monkeypatch.setattr(nc, "reverse_trigger", fake)
        monkeypatch.setattr(nc, "fit_cached", fit_spy)
        return runs
    return use


def _attack(scenario, fake_inversion, unlearn_epochs=1):
    runs = fake_inversion(scenario)
    threat = SimpleNamespace(  # what NeuralCleanse reads of a Threat
        thief=blobs(256, seed=5), spec=REGISTRY["fashion-mnist"], seed=0, tag="test",
        finetune=train.TrainConfig(epochs=10, batch_size=64, optimizer="adam", lr=1e-3),
        settings=dict(nc_schedule_epochs=3, nc_samples=64, nc_share=0.2, nc_unlearn_epochs=unlearn_epochs))
    torch.manual_seed(0)
    model = models.build("lenet5", 1, 10)
    return model, nc.NeuralCleanse().apply(model, threat), runs, threat


@pytest.mark.parametrize("unlearn_epochs", [1, 2])
def test_unlearning_runs_the_unlearning_epochs_not_the_thiefs_fine_tuning_epochs(fake_inversion, unlearn_epochs):
    assert {"nc_schedule_epochs", "nc_unlearn_epochs"} <= set(nc.NeuralCleanse.knobs)
    model, suspect, runs, threat = _attack("unlearned", fake_inversion, unlearn_epochs)
    assert runs == [(unlearn_epochs, unlearn_epochs)] and threat.finetune.epochs == 10
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                      suspect.oracle.model.state_dict().values()))


@pytest.mark.parametrize("scenario,flagged,unreached", [
    ("unlearned", "5", "none"), ("nothing flagged", "none", "none"), ("no detection", "none", "0,1,2,3,4,6,7,8")])
def test_the_report_tells_unlearned_from_nothing_flagged_from_no_detection(fake_inversion, scenario, flagged,
                                                                           unreached):
    model, suspect, runs, _ = _attack(scenario, fake_inversion)
    rep = suspect.report
    assert rep["outcome"] == scenario and rep["unlearned"] == (scenario == "unlearned")
    assert rep["flagged"] == flagged and rep["unreached"] == unreached
    assert rep["converged"] == sum(NORMS[scenario][1]) and len(runs) == int(scenario == "unlearned")
    if scenario == "no detection":  # a class nobody could compare is no outlier, and has no index
        assert math.isnan(rep["max_index"]) and sum(not math.isnan(i) for i in rep["anomaly_index"]) == 2
    else:
        assert rep["max_index"] == pytest.approx(max(nc.anomaly_index(NORMS[scenario][0])), rel=1e-4)
    if scenario != "unlearned":  # served as stolen
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                     suspect.oracle.model.state_dict().values()))


def _key(labels) -> Key:
    return Key(torch.zeros((len(labels), 1, 28, 28), dtype=torch.uint8), torch.tensor(labels, dtype=torch.long))


def _owner_report(attack, report, key):
    """The owner's reading, as the comparison makes it: after the attack, with the attack's suspect and its key."""
    from wmlib.attacks import OwnerView, Suspect
    return attack.owner_report(Suspect(None, report), None, OwnerView(key, None, None))


def test_owner_report_gives_the_keys_majority_target_and_whether_it_was_flagged(fake_inversion):
    attack = nc.NeuralCleanse()
    rep = _attack("unlearned", fake_inversion)[1].report
    got = _owner_report(attack, rep, _key([5] * 15 + [1] * 5))
    assert got["key_target"] == 5 and got["key_target_share"] == pytest.approx(0.75)
    assert got["target_flagged"] and got["target_reached"]
    assert got["target_index"] == pytest.approx(35.5 / (1.4826 * 1.5), rel=1e-5)
    assert got["target_norm"] == pytest.approx(5, rel=1e-5) and got["median_norm"] == pytest.approx(40.5, rel=1e-5)
    other = _owner_report(attack, rep, _key([2] * 3 + [7] * 3 + [9]))  # a tie goes to the smallest class
    assert other["key_target"] == 2 and not other["target_flagged"]
    assert other["key_target_share"] == pytest.approx(3 / 7)
    lost = _owner_report(attack, _attack("no detection", fake_inversion)[1].report, _key([3] * 10))
    assert lost["key_target"] == 3 and not lost["target_reached"] and not lost["target_flagged"]
    assert math.isnan(lost["target_index"])  # an unconverged mask has no index
    assert _owner_report(attack, rep, Key(torch.zeros((0, 1, 28, 28), dtype=torch.uint8),
                                        torch.zeros(0, dtype=torch.long)))["key_target"] == -1


# --------------------------------------------------------------------------- end to end

def _stamp(x: torch.Tensor) -> torch.Tensor:
    """A BadNets-style trigger: a bright 4 x 4 square in the bottom-right corner."""
    x = x.clone()
    x[:, :, -5:-1, -5:-1] = 255
    return x


@pytest.fixture(scope="module")
def backdoored():
    """A LeNet-5 on the toy task whose training images carry, 15 % of them, the corner square and label 3."""
    data = blobs(900, seed=11)
    x = torch.cat([data.x, _stamp(data.x[:135])])
    y = torch.cat([data.y, torch.full((135,), 3)])
    torch.manual_seed(0)
    m = models.build("lenet5", 1, 10)
    train.fit(m, Split(x, y), train.TrainConfig(epochs=6, batch_size=64, optimizer="adam", lr=3e-3), progress=False)
    return m


def test_cleanse_flags_a_badnets_target_and_one_unlearning_epoch_removes_the_backdoor(backdoored):
    thief, test = blobs(400, seed=5), blobs(300, seed=2)
    cfg = train.TrainConfig(epochs=3, batch_size=64, optimizer="adam", lr=1e-3, seed=0)
    # 10 schedule epochs of 10 steps (the authors' 31 flag the same class; the test keeps to ~6 s)
    out, rep = nc.cleanse(backdoored, thief, 10, cfg, samples=300, epochs=10, unlearn_epochs=1, seed=0, mini_batch=10)
    assert rep["flagged"] == [3] and rep["outcome"] == "unlearned" and all(rep["reached"]), rep["norms"]
    assert all(len(t.costs) == 10 and t.costs[0] == 0 for t in rep["triggers"])
    assert (Oracle(out).predict(_stamp(test.x)) == 3).float().mean() < 0.5  # the backdoor is unlearned
    assert train.evaluate(out, test) > 0.85


def test_nc_pruning_prunes_the_channels_the_reversed_trigger_drives_and_weakens_the_backdoor(backdoored):
    from wmlib.attacks import fine_pruning as fp
    thief, test = blobs(400, seed=5), blobs(300, seed=2)
    triggers = nc.reversed_triggers(backdoored, thief.x[:300], 10, 10, 0, mini_batch=10)
    assert nc.flagged([t.norm for t in triggers], reached=[t.reached for t in triggers]) == [3]
    cfg = train.TrainConfig(epochs=2, batch_size=64, optimizer="adam", lr=1e-3, seed=0)
    out, channels = nc.nc_prune(backdoored, thief, [triggers[3]], 0.25, cfg, samples=300)
    assert len(channels) == 4  # a quarter of LeNet-5's 16 last-conv channels
    x = train.to_float(thief.x[:300])
    rise = fp.channel_activations(backdoored, triggers[3].stamp(x)) - fp.channel_activations(backdoored, x)
    assert sorted(channels) == sorted(rise.argsort(descending=True)[:4].tolist())  # the most trigger-driven ones
    conv = fp.last_conv(out)[0]
    assert all(float(conv.weight[c].abs().sum()) == 0.0 for c in channels)  # pruned, and kept at zero while fine-tuning
    before = float((Oracle(backdoored).predict(_stamp(test.x)) == 3).float().mean())
    after = float((Oracle(out).predict(_stamp(test.x)) == 3).float().mean())
    assert after < before - 0.2 and train.evaluate(out, test) > 0.85
    # the registered attack: the API's labels, its knobs read; nothing flagged leaves the model as it is
    threat = attacks.Threat(thief=thief, spec=REGISTRY["fashion-mnist"], seed=0, finetune=cfg, budget=0.05,
                            settings=dict(finetune_lr=1e-3, nc_schedule_epochs=10, nc_samples=300, ncprune_ratio=0.25,
                                          ncprune_epochs=2), model_name="lenet5", scheme=None)
    s = attacks.get("nc-pruning").apply(backdoored, threat)
    assert s.report["pruned"] == 4 and s.report["flagged"] == "3" and s.report["api_queries"] == len(thief)


def test_nad_reads_attention_after_each_conv_and_distils_the_backdoor_away(backdoored):
    from wmlib.attacks import backdoor_defences as bd
    points = bd.attention_points(backdoored)
    assert len(points) == 2 and all(isinstance(p, nn.ReLU) for p in points)  # LeNet-5's two conv layers
    assert len(bd.attention_points(models.build("resnet20", 3, 10))) == 9  # a ResNet-20's residual blocks
    f = torch.rand(4, 6, 5, 5)
    a = bd.attention_map(f)
    assert a.shape == (4, 25) and torch.allclose(a.norm(dim=1), torch.ones(4), atol=1e-4)
    assert torch.allclose(a, nn.functional.normalize(f.pow(2).sum(1).flatten(1), dim=1), atol=1e-4)
    # the mechanism: the student's attention moves to the teacher's. A teacher with other attention (a fresh, untrained
    # LeNet-5; on this toy, clean fine-tuning leaves the backdoor and the maps as they were, so the authors' teacher
    # would not show it)
    thief, test = blobs(400, seed=5), blobs(300, seed=2)
    cfg = train.TrainConfig(epochs=2, batch_size=64, optimizer="sgd", momentum=0.9, lr=0.01, seed=0)
    torch.manual_seed(1)
    teacher = models.build("lenet5", 1, 10).eval()

    def gap(m):
        out = []
        for mm in (m, teacher):
            store, handles = bd._capture(bd.attention_points(mm))
            with torch.no_grad():
                mm.eval()(train.to_float(thief.x[:200]))
            for h in handles:
                h.remove()
            out.append([bd.attention_map(f) for f in store])
        return sum(float(nn.functional.mse_loss(a, b)) for a, b in zip(*out))
    distilled = bd.nad(backdoored, thief, None, cfg, beta=5e4, teacher=teacher)
    plain = bd.nad(backdoored, thief, None, cfg, beta=0.0, teacher=teacher)  # beta 0: plain fine-tuning
    assert gap(distilled) < 0.5 * gap(plain)
    # the attack as registered: the teacher fine-tuned on the thief's images, SGD at nad_lr; the task kept
    threat = attacks.Threat(thief=thief, spec=REGISTRY["fashion-mnist"], seed=0, finetune=cfg, budget=0.05,
                            settings=dict(nad_teacher_epochs=2, nad_epochs=2, nad_lr=0.01, nad_beta=5000.0),
                            model_name="lenet5", scheme=None)
    assert train.evaluate(attacks.get("nad").apply(backdoored, threat).oracle.model, test) > 0.85
    with pytest.raises(ValueError, match="no residual block"):
        bd.attention_points(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))


def test_anp_perturbs_neurons_as_the_authors_and_prunes_the_ones_the_backdoor_needs(backdoored):
    from wmlib.attacks import backdoor_defences as bd
    # the neurons: LeNet-5 has no batch norm, so the output channels of its conv and linear layers but the classifier;
    # a ResNet-20's are its batch norms' channels (the authors' NoisyBatchNorm2d)
    assert [type(m) for m in bd.neuron_layers(backdoored)] == [nn.Conv2d, nn.Conv2d, nn.Linear, nn.Linear]
    assert all(isinstance(m, nn.BatchNorm2d) for m in bd.neuron_layers(models.build("resnet20", 3, 10)))
    # the arithmetic: (m + δ)·(y − b) + (1 + ξ)·b while perturbed, m·(y − b) + b otherwise
    lin = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    y, b = lin[0](x), lin[0].bias
    pert = bd.NeuronPerturbation(lin, torch.device("cpu"))
    with torch.no_grad():
        pert.masks[0].copy_(torch.tensor([1.0, 0.5, 0.0, 1.0]))
        pert.deltas[0].copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
        pert.xis[0].copy_(torch.tensor([0.0, 0.4, -0.4, 0.1]))
    with torch.no_grad():
        assert torch.allclose(lin[0](x), pert.masks[0] * (y - b) + b)
        pert.perturbed = True
        assert torch.allclose(lin[0](x), (pert.masks[0] + pert.deltas[0]) * (y - b) + (1 + pert.xis[0]) * b)
    pert.remove()
    assert torch.allclose(lin[0](x), y)
    # the paper's observation (its Fig. 1), through the attack's own perturbation: perturbed adversarially at eps 0.4, the
    # backdoored model sends clean images to the backdoor's class (measured: 98 %), a clean one spreads its errors
    thief, test = blobs(500, seed=5), blobs(300, seed=2)
    x, y = train.to_float(thief.x[:256]), thief.y[:256]

    def perturbed_shares(model):
        net = copy.deepcopy(model).eval().requires_grad_(False)
        pert = bd.NeuronPerturbation(net, torch.device("cpu"))
        bd.perturb_neurons(net, pert, x, y, 0.4, steps=5, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            shares = torch.bincount(net(x).argmax(1), minlength=10).float() / len(x)
        pert.remove()
        return shares
    torch.manual_seed(0)
    clean = models.build("lenet5", 1, 10)
    train.fit(clean, blobs(900, seed=11), train.TrainConfig(epochs=6, batch_size=64, optimizer="adam", lr=3e-3), progress=False)
    assert perturbed_shares(backdoored)[3] > 0.8 and perturbed_shares(clean).max() < 0.5
    # end to end (500 clean thief images, the authors' 1 %): the perturbation is what finds the backdoor's neurons; without
    # it (eps 0) the masks see only clean cross-entropy and prune nothing. On this toy ANP weakens the backdoor without
    # removing it (measured: 300 iterations 100 % -> 91 %, 1,000 -> 63 %, 2,000 -> 89 %, at 20 of 226 neurons pruned)
    masks = bd.anp_masks(backdoored, thief.x, thief.y, eps=0.4, alpha=0.2, iterations=300, lr=0.2, seed=0)
    assert [len(m) for m in masks] == [6, 16, 120, 84] and all(0 <= float(m.min()) and float(m.max()) <= 1 for m in masks)
    pruned, n = bd.prune_neurons(backdoored, masks, 0.2)
    calm, n0 = bd.prune_neurons(backdoored, bd.anp_masks(backdoored, thief.x, thief.y, eps=0.0, iterations=300, seed=0), 0.2)
    asr = lambda m: float((Oracle(m).predict(_stamp(test.x)) == 3).float().mean())  # noqa: E731
    assert n > 0 and n0 == 0, (n, n0)
    assert asr(pruned) < asr(backdoored) - 0.05 and train.evaluate(pruned, test) > 0.95, (asr(backdoored), asr(pruned))
    zeroed = [int((layer.weight.flatten(1).abs().sum(1) == 0).sum()) for layer in bd.neuron_layers(pruned)]
    assert sum(zeroed) == n and float(backdoored[0].weight.abs().sum()) > 0  # pruned on a copy
    # the attack as registered reads its knobs: its first anp_samples images, anp_iterations, the threshold
    threat = attacks.Threat(thief=thief, spec=REGISTRY["fashion-mnist"], seed=0, finetune=None, budget=0.05,
                            settings=dict(anp_eps=0.4, anp_alpha=0.2, anp_iterations=5, anp_lr=0.2, anp_samples=300,
                                          anp_threshold=0.6), model_name="lenet5", scheme=None)
    s = attacks.get("anp").apply(backdoored, threat)
    short = bd.anp_masks(backdoored, thief.x[:300], thief.y[:300], eps=0.4, alpha=0.2, iterations=5, lr=0.2, seed=0)
    assert s.report["pruned"] == bd.prune_neurons(backdoored, short, 0.6)[1] != bd.prune_neurons(backdoored, short, 0.2)[1]
    assert s.report["neurons"] == 226 and s.report["thief_images"] == 300


def test_neural_laundering_resets_the_units_the_reversed_trigger_drives_then_unlearns_it(backdoored):
    thief, test = blobs(400, seed=5), blobs(300, seed=2)
    triggers = nc.reversed_triggers(backdoored, thief.x[:300], 10, 10, 0, mini_batch=300 // 32)  # the attack's schedule
    trigger = min([t for t in triggers if t.reached], key=lambda t: t.norm)
    assert trigger.target == 3  # the smallest reversed mask is the backdoor's
    x = train.to_float(thief.x[:300])
    shift = nc.unit_shift(backdoored, x, trigger.stamp(x))
    assert [tuple(d.shape) for d in shift] == [(6,), (16,), (120,), (84,)]
    # the reset: exactly the units above the threshold output zero afterwards. The reference's thresholds (0.5 for a
    # channel, 0.2 for a neuron: its CIFAR-10 ResNets) reset 13 of 16 conv2 channels and 96 of 204 neurons of this toy
    # LeNet-5, which then answers 10 %: thresholds in activation units are the model's own, here 2 and 10 (4 channels,
    # a few neurons)
    units = [d > (2.0 if conv else 10.0) for d, conv in zip(shift, nc._conv_layers(backdoored))]
    reset, count = nc.reset_units(backdoored, units)
    assert count == sum(int(u.sum()) for u in units) > 0
    from wmlib.attacks.backdoor_defences import neuron_layers
    after = nc.unit_shift(reset, x, trigger.stamp(x))
    for d, u, layer in zip(after, units, neuron_layers(reset)):
        assert not u.any() or float(d[u].abs().max()) == 0.0
        assert float(layer.weight[u].abs().sum() + layer.bias[u].abs().sum()) == 0.0  # the unit outputs exactly zero
        assert float(layer.weight[~u].abs().sum(dim=tuple(range(1, layer.weight.dim()))).min()) > 0  # the others untouched
    cfg = train.TrainConfig(epochs=2, batch_size=64, optimizer="adam", lr=1e-3, seed=0)
    out, rep = nc.launder(backdoored, thief, trigger, cfg, conv_threshold=2.0, dense_threshold=10.0, samples=300)
    assert rep["reset"] == count
    asr = lambda m: float((Oracle(m).predict(_stamp(test.x)) == 3).float().mean())  # noqa: E731
    assert asr(out) < 0.5 < asr(backdoored) and train.evaluate(out, test) > 0.85
    # thresholds that reset nothing leave only the unlearning: the reset is what the thresholds decide
    _, none = nc.launder(backdoored, thief, trigger, cfg, conv_threshold=1e9, dense_threshold=1e9, samples=300)
    assert none["reset"] == 0
    # the reference's thresholds wreck the toy (most units reset); a thief with a 5-point budget on its own held-out
    # images scales them up until the reset keeps its accuracy, then launders
    wrecked, rep = nc.launder(backdoored, thief, trigger, cfg, conv_threshold=0.5, dense_threshold=0.2, samples=300)
    assert rep["scale"] == 1.0 and train.evaluate(wrecked, test) < 0.5
    val = thief.subset(slice(320, None))
    kept, rep = nc.launder(backdoored, thief, trigger, cfg, conv_threshold=0.5, dense_threshold=0.2, samples=300,
                           val=val, budget=0.05)
    assert rep["scale"] > 1.0 and 0 < rep["reset"] and train.evaluate(kept, test) > 0.85 and asr(kept) < 0.5
    smaller = [d > rep["scale"] / 2 * (0.5 if conv else 0.2) for d, conv in zip(shift, nc._conv_layers(backdoored))]
    assert train.evaluate(nc.reset_units(backdoored, smaller)[0], val) < train.evaluate(backdoored, val) - 0.05
    # the attack as registered: the API's labels, the smallest converged trigger, its knobs and the thief's budget read
    threat = attacks.Threat(thief=thief, spec=REGISTRY["fashion-mnist"], seed=0, finetune=cfg, budget=0.05,
                            settings=dict(finetune_lr=1e-3, nc_schedule_epochs=10, nc_samples=300,
                                          launder_conv_threshold=0.5, launder_dense_threshold=0.2, launder_epochs=2),
                            model_name="lenet5", scheme=None)
    s = attacks.get("neural-laundering").apply(backdoored, threat)
    assert s.report["trigger_class"] == 3 and s.report["api_queries"] == len(thief)
    assert s.report["threshold_scale"] == rep["scale"] and s.report["reset"] == rep["reset"]  # held out: the same 80 images
    assert train.evaluate(s.oracle.model, test) > 0.85


def test_the_three_neural_cleanse_attacks_share_one_cached_reversal(backdoored, tmp_path, monkeypatch):
    monkeypatch.setenv("WMLIB_CACHE", str(tmp_path))
    images = blobs(100, seed=5).x
    first = nc.reversed_triggers(backdoored, images, 10, 2, 0, mini_batch=3)
    files = list((tmp_path / "neural-cleanse").glob("triggers-*.pt"))
    assert len(files) == 1
    calls = []
    monkeypatch.setattr(nc, "reverse_trigger", lambda *a, **k: calls.append(a) or first[0])
    again = nc.reversed_triggers(backdoored, images, 10, 2, 0, mini_batch=3)
    assert not calls and all(torch.equal(a.mask, b.mask) and a.costs == b.costs and a.reached == b.reached
                             for a, b in zip(first, again))
    nc.reversed_triggers(backdoored, images, 10, 2, 1, mini_batch=3)  # another seed: reversed anew
    assert len(calls) == 10 and len(list((tmp_path / "neural-cleanse").glob("triggers-*.pt"))) == 2
