import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test trains into its own cache and results folder."""
    monkeypatch.setenv("WMLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WMLIB_RESULTS", str(tmp_path / "results"))
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def trained():
    """A LeNet-5 trained for a few epochs on the toy task (shared by attack and scheme tests)."""
    from tests.conftest import blobs
    from wmlib import models, train

    torch.manual_seed(0)
    m = models.build("lenet5", 1, 10)
    train.fit(m, blobs(600), train.TrainConfig(epochs=4, batch_size=64, optimizer="adam", lr=3e-3), progress=False)
    return m
