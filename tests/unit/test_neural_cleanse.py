"""Neural Cleanse as the authors run it (wmlib.attacks.neural_cleanse): their λ schedule in their
schedule epochs, detection on the converged masks only, the unlearning epochs, the outcome labels and
what the owner reads off the report with its key."""
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
def fake_inversion(monkeypatch):
    """Stands in reversed triggers of given norms and reached flags for the inversion, and records
    every fine-tuning (its configured epochs, the epochs its history holds)."""
    runs = []
    real_fit = nc.fit_cached

    def fit_spy(model, data, cfg, **kw):
        hist = real_fit(model, data, cfg, **kw)
        runs.append((cfg.epochs, len(hist.epoch)))
        return hist

    def use(scenario):
        norms, reached = NORMS[scenario]

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
