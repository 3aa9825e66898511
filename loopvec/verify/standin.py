"""The stand-in for a model the function calls (`model(x[i].unsqueeze(0))`).

A rewrite that batches such calls (`model(x)`) is right only if the model treats rows
independently: no batch norm in training mode, no attention across the batch. The
verifier cannot see the user's model, so it passes this one instead, which has exactly
that property and nothing more: a fixed nonlinear elementwise map, then a per-feature
linear map over the last dim (d features in, d + 1 out, built from the input's shape on
each call). Output row r depends on input row r alone, so a rewrite that is correct for
every row-independent model agrees with the loop on it, and one that mixes rows, swaps
axes, drops the model or applies it twice does not. A proof against it holds only under
that assumption: the verdict names the parameters it replaced (`Verdict.stand_ins`).

Its weights are small multiples of 1/2 and the elementwise map halves or keeps, so on
the verifier's quarter-valued inputs every sum is exact in float32 and batching cannot
change a bit through summation order.
"""

from __future__ import annotations

import torch


class StandInModel(torch.nn.Module):
    """Row-independent: `y[..., j] = sum_k leaky(x[..., k]) * W[k, j] + b[j]`."""

    def __init__(self) -> None:
        super().__init__()
        # A parameter, so `next(model.parameters()).device` and `.dtype` work as in a real
        # model; it multiplies by one and takes no gradient.
        self.gain = torch.nn.Parameter(torch.ones(()), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"stand-in model expects a tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"stand-in model expects floating-point input, got {x.dtype}")
        if x.dim() == 0:
            raise ValueError("stand-in model expects at least one dimension (the features)")
        d = x.shape[-1]
        k = torch.arange(d, device=x.device).unsqueeze(1)
        j = torch.arange(d + 1, device=x.device).unsqueeze(0)
        # Not symmetric, and d -> d + 1 features: a transposed feature axis shows.
        weight = (((3 * k + 5 * j + 1) % 7) - 3).to(x.dtype) / 2
        bias = ((torch.arange(d + 1, device=x.device) % 3) - 1).to(x.dtype) / 4
        leaky = torch.where(x > 0, x, x * 0.5)
        return (leaky @ weight + bias) * self.gain.to(x.dtype)

    def extra_repr(self) -> str:
        return "row-independent stand-in: leaky map, then d -> d + 1 features over the last dim"
