import torch

from samplepkg import RowScaler, Scaler


def test_each_element_gets_its_factor():
    x = torch.arange(4, dtype=torch.float32)
    factors = torch.tensor([1.0, 2.0, 0.5, -1.0])
    assert torch.equal(Scaler(factors).apply(x), x * factors)


def test_a_longer_signal():
    x = torch.ones(6)
    factors = torch.linspace(0, 1, 6)
    assert torch.equal(Scaler(factors).apply(x), factors)


def test_each_row_gets_its_factor():
    x = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    factors = torch.tensor([1.0, 2.0, 0.5, -1.0])
    assert torch.equal(RowScaler(factors).apply(x), x * factors[:, None])


def test_a_longer_batch():
    x = torch.ones(6, 3)
    factors = torch.linspace(0, 1, 6)
    assert RowScaler(factors).apply(x).shape == (6, 3)
