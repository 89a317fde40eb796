"""Fine-pruning (Liu et al. 2018) as the thief runs it: which channels it ranks and how (rank what you
mask: a ResNet by its last residual branch, bn2's |output|, not by the block output the skip path
keeps alive), that a pruned channel's ranked activation is exactly zero (on LeNet and on a ResNet's
residual branch, before and after fine-tuning), that the accuracy budget is absolute and seen on the
thief's validation split only, and that every architecture of the registry is either pruned exactly
or refused."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import blobs
from wmlib import attacks, models, train
from wmlib.attacks import fine_pruning
from wmlib.attacks.model import make_permanent

# its last conv feeds the residual sum with no batch norm or ReLU of its own
REFUSED = {"preactresnet18": "PreActBlock"}


def _output(module: nn.Module, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What ``module`` outputs when ``model`` (in eval mode) sees images ``x``, copied before an
    in-place ReLU can overwrite it."""
    out = {}

    def keep(m, inputs, o):  # returns None: a hook's return value would replace the module's output
        out["a"] = o.detach().clone()

    handle = module.register_forward_hook(keep)
    try:
        train.predict_proba(model, x)
    finally:
        handle.remove()
    return out["a"]


def _as_trained(bn: nn.BatchNorm2d) -> nn.BatchNorm2d:
    """Scale, shift and running statistics away from their initial (1, 0, 0, 1): a fresh batch norm
    outputs zero for a zero input, which would hide an unmasked one."""
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(0.5, 1.0)
        bn.running_mean.uniform_(-1.0, 1.0)
        bn.running_var.uniform_(0.5, 2.0)
    return bn


@pytest.fixture
def resnet20():
    torch.manual_seed(0)
    model = models.build("resnet20", 3, 10)
    _as_trained(model.layers[-1].bn2)
    return model


# --------------------------------------------------------------------------- ResNet

def test_a_resnets_last_conv_is_its_last_blocks_branch(resnet20):
    block = resnet20.layers[-1]
    conv, bn, act = fine_pruning.last_conv(resnet20)
    assert conv is block.conv2 and bn is block.bn2 and act is block.bn2  # ranked where it is masked


def _resnet20_with_channels_held_off():
    """The reviewer's case: a ResNet-20 whose last ``bn2`` holds 8 channels far below zero, so that the
    block output ``relu(bn2 + x)`` is 0 there (dormant at the block output) while the branch is
    anything but dormant; masking the branch would hand those channels the skip path, switching them
    on."""
    torch.manual_seed(0)
    model = models.build("resnet20", 3, 10)
    bn = _as_trained(model.layers[-1].bn2)
    with torch.no_grad():
        bn.bias[[2, 9, 17, 23, 31, 40, 52, 60]] = -50.0
    return model, blobs(16, 3, 32, seed=3).x


def _lenet5_trained(trained):
    return trained, blobs(64, seed=1).x


@pytest.mark.parametrize("case", ["resnet20", "lenet5"])
def test_the_ranked_activation_of_every_pruned_channel_is_exactly_zero(case, trained):
    model, x = _resnet20_with_channels_held_off() if case == "resnet20" else _lenet5_trained(trained)
    acts = fine_pruning.channel_activations(model, x)
    order, k = acts.argsort(stable=True).tolist(), 8
    assert (acts[order[k:]] > 0).all()  # the channels kept are measured as alive
    masked = fine_pruning.mask_channels(model, order[:k])
    after = fine_pruning.channel_activations(masked, x)  # what the ranking measures, after pruning
    assert (after[order[:k]] == 0).all(), after[order[:k]]
    unit = fine_pruning.last_conv(masked)[2]
    assert (_output(unit, masked, x)[:, order[:k]] == 0).all()  # zero at every image and position
    assert torch.equal(after[order[k:]] > 0, acts[order[k:]] > 0)


def test_a_pruned_resnet_channel_adds_exactly_nothing_to_the_residual_sum_before_and_after_fine_tuning(resnet20):
    gone = [3, 7, 40]
    masked = fine_pruning.mask_channels(resnet20, gone)
    x = torch.randn(6, 3, 32, 32) * 3
    branch = _output(masked.layers[-1].bn2, masked, x)
    assert (branch[:, gone] == 0).all() and (branch[:, [0, 1]] != 0).any()
    train.fit(masked, blobs(48, 3, 32, seed=4), train.TrainConfig(epochs=1, batch_size=16, optimizer="adam", lr=1e-2),
              progress=False)
    bn = masked.layers[-1].bn2
    assert not torch.equal(bn.bias_orig, resnet20.layers[-1].bn2.bias)  # fine-tuning moved the channels kept
    assert (_output(bn, masked, x)[:, gone] == 0).all()
    make_permanent(masked)
    block = masked.layers[-1]
    assert not hasattr(block.bn2, "bias_mask")  # folded in
    assert (block.conv2.weight[gone] == 0).all() and (block.bn2.weight[gone] == 0).all()
    assert (block.bn2.bias[gone] == 0).all() and (_output(block.bn2, masked, x)[:, gone] == 0).all()


def test_a_resnet_is_ranked_by_its_branchs_absolute_output_not_the_raw_conv_nor_the_block_output(resnet20):
    block, x = resnet20.layers[-1], blobs(16, 3, 32, seed=3).x
    raw = _output(block.conv2, resnet20, x).mean(dim=(0, 2, 3))
    rank = raw.argsort().argsort()
    with torch.no_grad():  # bn2's |shift| turns the raw order round; every other channel is held below zero
        block.bn2.weight.zero_()
        block.bn2.bias.copy_(100.0 * (64 - rank) * (1 - 2 * (rank % 2)))
    acts = fine_pruning.channel_activations(resnet20, x)
    order = acts.argsort(stable=True).tolist()
    assert order == raw.argsort().flip(0).tolist()  # by |bn2 output|: the smallest contribution first
    branch = _output(block.bn2, resnet20, x)
    assert torch.allclose(acts, branch.abs().mean(dim=(0, 2, 3)))  # the residual branch, before the skip path
    signed = branch.mean(dim=(0, 2, 3)).argsort(stable=True).tolist()
    block_out = _output(block, resnet20, x).mean(dim=(0, 2, 3)).argsort(stable=True).tolist()
    assert order != raw.argsort(stable=True).tolist() and order != block_out and order != signed
    # a channel that swings widely about zero (signed mean ~0) moves the residual sum: it is not dormant
    c = order[0]
    with torch.no_grad():
        block.bn2.weight[c], block.bn2.bias[c] = 1e4, 0.0
        block.bn2.running_mean[c], block.bn2.running_var[c] = raw[c], 1.0
    acts = fine_pruning.channel_activations(resnet20, x)
    assert acts[c] > 200.0 and acts.argmin() != c


def test_fine_pruning_a_resnet_leaves_its_pruned_branch_channels_at_zero(resnet20):
    thief = blobs(60, 3, 32, seed=1)
    cfg = train.TrainConfig(epochs=1, batch_size=16, optimizer="adam", lr=1e-3)
    tuned, rep = fine_pruning.fine_prune(resnet20, thief, cfg, budget=0.5, max_share=0.1)  # untrained: the cap binds
    acts = fine_pruning.channel_activations(resnet20, thief.x[18:])
    gone = rep["order"]
    assert rep["pruned"] == len(gone) == 6 and gone == acts.argsort(stable=True)[:6].tolist()
    x = torch.rand(4, 3, 32, 32)
    assert (_output(tuned.layers[-1].bn2, tuned, x)[:, gone] == 0).all()
    assert (fine_pruning.channel_activations(tuned, x)[gone] == 0).all()  # the ranked unit, silenced


# --------------------------------------------------------------------------- every architecture

@pytest.mark.parametrize("name", sorted(models.REGISTRY))
def test_every_registry_model_is_pruned_exactly_or_refused(name):
    torch.manual_seed(0)
    model = models.build(name, 3, 10)
    if name in REFUSED:
        with pytest.raises(ValueError, match=f"cannot fine-prune .*{REFUSED[name]}"):
            fine_pruning.last_conv(model)
        with pytest.raises(attacks.NotApplicable, match=REFUSED[name]):
            attacks.get("fine-pruning").apply(model, threat=None)  # refused before the threat is read
        return
    conv, bn, act = fine_pruning.last_conv(model)
    if "resnet" in name:
        assert act is bn and any(act is m.bn2 for m in model.modules() if isinstance(m, models.BasicBlock))
    else:
        assert isinstance(act, (nn.ReLU, nn.ReLU6))
    assert (bn is None) == (name in ("cw", "lenet1", "lenet3", "lenet5", "svhn6conv"))
    if bn is not None:
        _as_trained(bn)
    masked = fine_pruning.mask_channels(model, [0, 1])
    site = fine_pruning.last_conv(masked)
    x = torch.rand(2, 3, 32, 32)
    out = _output(site[1] or site[0], masked, x)
    assert (out[:, :2] == 0).all() and (out[:, 2:] != 0).any()
    acts = fine_pruning.channel_activations(model, x)
    assert acts.shape == (conv.out_channels,) and (acts >= 0).all()
    assert (fine_pruning.channel_activations(masked, x)[:2] == 0).all()  # the ranked unit is the one silenced


def test_a_batch_norm_after_the_conv_is_ranked_after_it_and_masked():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 10))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([3.0, 1.0, 4.0, 2.0]))
    acts = fine_pruning.channel_activations(model, blobs(8, seed=1).x)
    assert acts.tolist() == [3.0, 1.0, 4.0, 2.0]
    masked = fine_pruning.mask_channels(model, [2])
    assert (_output(masked[2], masked, blobs(8).x)[:, 2] == 0).all()


# --------------------------------------------------------------------------- the budget

def test_the_budget_is_absolute_accuracy_points_on_the_thiefs_validation_split(monkeypatch):
    """Each pruned channel costs 0.95 points of a 50 % accuracy: a 10-point budget allows 10 channels
    (40.5 %); a relative one, (1 - 0.1) x 50 % = 45 %, would stop at 5."""
    torch.manual_seed(0)
    model, thief, seen = models.build("lenet5", 1, 10), blobs(100, seed=1), []

    def scripted(m, split, device=None):
        seen.append(split)
        conv = fine_pruning.last_conv(m)[0]
        k = int((conv.weight_mask.flatten(1).sum(1) == 0).sum()) if hasattr(conv, "weight_mask") else 0
        return 0.5 - 0.0095 * k

    monkeypatch.setattr(fine_pruning, "evaluate", scripted)
    cfg = train.TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=1e-3)
    _, rep = fine_pruning.fine_prune(model, thief, cfg, budget=0.1)
    assert rep["pruned"] == 10 and rep["val_acc_before"] == 0.5 and rep["val_acc_pruned"] == pytest.approx(0.405)
    assert len(seen) == 12  # the unpruned model, then 1..11 channels pruned
    assert all(torch.equal(s.x, thief.x[:30]) for s in seen)  # the thief's validation split only


# --------------------------------------------------------------------------- LeNet

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
    cfg = train.TrainConfig(epochs=1, optimizer="adam", lr=1e-3)
    tuned, rep = fine_pruning.fine_prune(model, thief, cfg, budget=0.1)
    gone = rep["order"]
    rest = [c for c in range(16) if c not in gone]
    assert set(dormant) <= set(gone) and acts[gone].max() <= acts[rest].min()  # the dormant ones go first
    w = fine_pruning.last_conv(tuned)[0]
    assert not any(hasattr(w, f"{n}_mask") for n in ("weight", "bias"))  # folded in
    assert (w.weight[gone] == 0).all() and (w.bias[gone] == 0).all()  # still pruned after fine-tuning
    assert train.evaluate(tuned, blobs(300, seed=2)) >= train.evaluate(model, blobs(300, seed=2)) - 0.1 - 0.05


def test_masked_channels_output_nothing(trained):
    masked = fine_pruning.mask_channels(trained, [0, 5])
    out = _output(masked[4], masked, blobs(10).x)
    assert (out[:, [0, 5]] == 0).all() and out[:, 1].abs().sum() > 0
