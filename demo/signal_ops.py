"""A loop-heavy module in the style loopvec is built for: run `loopvec apply --dry-run demo/`."""

import math

import torch


def polynomial(data: torch.Tensor) -> torch.Tensor:
    result = []
    for x in data:
        result.append(x ** 2 + 3 * x + 1)
    result = torch.tensor(result)
    return result


def gaussian_window(positions: torch.Tensor, width: float) -> torch.Tensor:
    weights = []
    for p in positions:
        weights.append(math.exp(-float(p) ** 2 / (2.0 * width ** 2)))
    return torch.tensor(weights)


def soft_threshold(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(x)
    for i in range(len(x)):
        shrunk = torch.sign(x[i]) * torch.clamp(x[i].abs() - 0.1, min=0.0)
        out[i] = shrunk + 0.5 * y[i]
    return out


def normalise_rows(rows: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.tanh(r) * 0.5 + 0.5 for r in rows])


def running_total(x: torch.Tensor) -> torch.Tensor:
    # a scan: each step reads the previous one, so the elementwise rewrite must refuse it
    out = torch.zeros_like(x)
    out[0] = x[0]
    for i in range(1, len(x)):
        out[i] = out[i - 1] + x[i]
    return out
