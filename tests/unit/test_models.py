import pytest
import torch

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
