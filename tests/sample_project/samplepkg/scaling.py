import torch


class Scaler:
    """Scales each element of a signal by its own factor."""

    def __init__(self, factors):
        self.factors = factors

    def apply(self, x):
        out = []
        for i in range(x.shape[0]):
            out.append(x[i] * self.factors[i])
        return torch.stack(out)
