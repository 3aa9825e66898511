import torch


class RowScaler:
    """Scales each row of a batch by its own factor."""

    def __init__(self, factors):
        self.factors = factors

    def apply(self, x):
        out = []
        for i in range(x.shape[0]):
            out.append(x[i] * self.factors[i])
        return torch.stack(out)
