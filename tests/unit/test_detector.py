import pytest
import torch

from tests.conftest import blobs
from wmlib import detector, models
from wmlib.keys import stamp, text_mask
from wmlib.train import TrainConfig


def test_pixel_detector_finds_a_visible_logo_and_not_a_relabelled_image():
    ordinary, held = blobs(400).x, blobs(200, seed=3).x
    logo = stamp(blobs(400, seed=4).x, text_mask("TEST", 28), (255,))
    cfg = TrainConfig(epochs=5, batch_size=50, lr=0.01)
    det = detector.pixel_detector(1, 28)
    detector.train_detector(det, ordinary, logo, cfg)
    _, _, auc = detector.detection_roc(det, held, stamp(blobs(200, seed=5).x, text_mask("TEST", 28), (255,)))
    assert auc > 0.95
    same = detector.pixel_detector(1, 28)
    detector.train_detector(same, ordinary, blobs(400, seed=6).x, cfg)  # "keys" that are ordinary images
    fpr, tpr, auc = detector.detection_roc(same, held, blobs(200, seed=7).x)
    assert 0.35 < auc < 0.65 and fpr[0] == 0 and tpr[-1] == 1


def test_detector_data_balances_the_classes():
    d = detector.detector_data(blobs(50).x, blobs(7).x)
    assert len(d) == 100 and int(d.y.sum()) == 50


@pytest.mark.parametrize("name,channels,size", [("lenet5", 1, 28), ("resnet18", 3, 32), ("vgg11", 3, 32)])
def test_feature_detector_freezes_the_stolen_host(name, channels, size):
    host = models.build(name, channels, 10)
    before = {k: v.clone() for k, v in host.state_dict().items()}
    x = blobs(64, channels, size).x
    det = detector.FeatureDetector(host, x.float() / 255)
    detector.train_detector(det, x, blobs(64, channels, size, seed=1).x, TrainConfig(epochs=1, batch_size=32))
    assert all(torch.equal(before[k], v) for k, v in host.state_dict().items())  # a copy, untouched
    assert all(torch.equal(before[k], v) for k, v in det.features.state_dict().items())  # frozen, BN included
    assert sum(p.numel() for p in det.parameters() if p.requires_grad) == det.head.weight.numel() + 2


def test_penultimate_needs_a_last_linear_layer():
    with pytest.raises(ValueError, match="last linear layer"):
        detector.penultimate(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)))
