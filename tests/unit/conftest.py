import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test trains into its own cache and results folder."""
    monkeypatch.setenv("WMLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WMLIB_RESULTS", str(tmp_path / "results"))
    torch.manual_seed(0)
