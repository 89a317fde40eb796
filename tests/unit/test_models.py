import copy

import pytest
import torch
from torch import nn

from tests.conftest import stock_pools
from wmlib import models


@pytest.mark.parametrize("name", sorted(models.REGISTRY))
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_every_model_maps_a_batch_to_logits(name, channels, size):
    m = models.build(name, channels, 10).eval()
    out = m(torch.rand(2, channels, size, size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_cifar100_head():
    assert models.build("resnet18", 3, 100)(torch.rand(1, 3, 32, 32)).shape == (1, 100)


@pytest.mark.parametrize("name,params", [("resnet20", 0.27e6), ("resnet32", 0.46e6)])
def test_he_et_al_cifar_resnet_sizes(name, params):
    # He et al. 2016, Table 6: 0.27M and 0.46M parameters
    n = sum(p.numel() for p in models.build(name, 3, 10).parameters())
    assert abs(n - params) / params < 0.03


def test_resnet34_has_the_resnet34_block_counts():
    m = models.build("resnet34", 3, 10)
    assert len(m.layers) == 3 + 4 + 6 + 3
    assert 21.0e6 < sum(p.numel() for p in m.parameters()) < 21.6e6  # 21.3M with a 3x3 CIFAR stem


@pytest.mark.parametrize("name,params", [("preactresnet18", 11.17e6), ("mobilenetv2", 2.24e6)])
def test_li_et_al_cifar_hosts_have_their_usual_sizes(name, params):
    n = sum(p.numel() for p in models.build(name, 3, 10).parameters())
    assert abs(n - params) / params < 0.03


def test_lenet5_has_lecun_layer_sizes():
    m = models.build("lenet5", 1, 10)
    linears = [l.out_features for l in m.modules() if isinstance(l, torch.nn.Linear)]
    assert linears == [120, 84, 10]


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="lenet5.*resnet20"):
        models.build("alexnet", 3, 10)


def test_bad_shape_arguments():
    with pytest.raises(ValueError, match="channels"):
        models.build("lenet5", 4, 10)


@pytest.mark.parametrize("x", [torch.randn(3, 4, 6, 8), torch.zeros(3, 4, 6, 8), torch.randint(0, 3, (3, 4, 6, 8)).float()],
                         ids=["random", "all-ties", "some-ties"])
def test_fast_max_pool_matches_pytorch_values_and_gradient_routing(x):
    g = torch.randn(3, 4, 3, 4)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, theirs = models.MaxPool2d(2)(a), nn.functional.max_pool2d(b, 2)
    ours.backward(g)
    theirs.backward(g)
    assert torch.equal(ours, theirs) and torch.equal(a.grad, b.grad)
    with torch.no_grad():
        assert torch.equal(models.MaxPool2d(2)(x), nn.functional.max_pool2d(x, 2))
    odd = torch.randn(2, 3, 5, 7)  # odd sizes take PyTorch's kernel
    assert torch.equal(models.MaxPool2d(2)(odd), nn.functional.max_pool2d(odd, 2))


def test_fast_max_pool_second_derivative_matches_pytorch():
    """GradSigns differentiates the input gradient: through our pooling as through PyTorch's."""
    def grads(pool):
        torch.manual_seed(0)
        w, x = torch.randn(6, 1, 5, 5, requires_grad=True), torch.rand(4, 1, 28, 28, requires_grad=True)
        gx, = torch.autograd.grad(pool(nn.functional.conv2d(x, w, padding=2).relu()).sum(), x, create_graph=True)
        gw, = torch.autograd.grad(gx.pow(2).sum(), w)
        return gx, gw
    for ours, theirs in zip(grads(models.MaxPool2d(2)), grads(lambda z: nn.functional.max_pool2d(z, 2))):
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("name", ["lenet1", "lenet5", "cw"])
def test_training_with_the_fast_pools_gives_the_same_weights_bit_for_bit(name):
    from wmlib import data, train
    torch.manual_seed(1)
    ours = models.build(name, 1, 10)
    stock = stock_pools(copy.deepcopy(ours))
    assert not any(isinstance(m, (models.MaxPool2d, models.AdaptiveAvgPool2d)) for m in stock.modules())
    split = data.Split(torch.randint(0, 256, (256, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (256,)))
    cfg = train.TrainConfig(epochs=2, batch_size=64, lr=0.05, weight_decay=5e-4)
    for m in (ours, stock):
        train.fit(m, split, cfg, device=torch.device("cpu"), progress=False)
    a, b = ours.state_dict(), stock.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
