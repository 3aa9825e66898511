"""nn.Modules whose constructors need arguments; their loops run over heads."""

import torch
from torch import nn


class HeadScale(nn.Module):
    def __init__(self, n_heads: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_heads))

    def forward(self, x):
        outs = []
        for h in range(x.shape[1]):
            outs.append(x[:, h] * self.weight[h])
        return torch.stack(outs, 1)


class PerHeadProjection(nn.Module):
    def __init__(self, dim, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        return torch.stack([self.proj(x[h]) for h in range(x.shape[0])])


class Heads(nn.Module):
    def __init__(self, dim, n):
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(dim, 1) for _ in range(n))

    def forward(self, x):
        outs = []
        for head in self.heads:
            outs.append(head(x))
        return torch.cat(outs, -1)


class HeadBias(nn.Module):
    def __init__(self, n_heads, dim):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n_heads, dim))

    def forward(self, x):
        out = torch.empty_like(x)
        for h in range(x.shape[0]):
            out[h] = x[h, :] + self.bias[h]
        return out
